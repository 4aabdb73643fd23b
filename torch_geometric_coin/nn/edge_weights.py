r"""Learnable edge weights: small modules that return an :obj:`edge_weight`
for :class:`~torch_geometric_coin.nn.CoinDiffusionConv` (or any PyG layer
that takes one). Both stay non-negative, which the comparison principle of
the diffusion needs; gradients flow through the layer's normalisation."""
import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter

from torch_geometric.nn.dense.linear import Linear
from torch_geometric.typing import OptTensor


class KernelEdgeWeight(torch.nn.Module):
    r"""The inductive Gaussian kernel on projected node features,

    .. math::
        w_{ij} = a_{ij} \exp\left(-\| \mathbf{P}(\mathbf{h}_i -
        \mathbf{h}_j) \|^2\right),

    with a learnable projection :math:`\mathbf{P}` and the input weights
    :math:`a_{ij}` (ones if not given).

    Args:
        in_channels (int): Size of the node features :math:`\mathbf{h}`.
        out_channels (int, optional): Size of the projection
            (:obj:`in_channels` if :obj:`None`). (default: :obj:`None`)

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F)`, edge indices
          :math:`(2, |\mathcal{E}|)`, edge weights :math:`(|\mathcal{E}|)`
          *(optional)*
        - **output:** edge weights :math:`(|\mathcal{E}|)`
    """
    def __init__(self, in_channels: int, out_channels: int = None):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        self.lin = Linear(in_channels, self.out_channels, bias=False,
                          weight_initializer='glorot')
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        self.lin.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_weight: OptTensor = None) -> Tensor:
        _check_edges(edge_index, edge_weight)
        h = self.lin(x)
        w = torch.exp(-(h[edge_index[0]] - h[edge_index[1]]).square().sum(-1))
        return w if edge_weight is None else edge_weight.to(w.dtype) * w

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels})')


class PerEdgeWeight(torch.nn.Module):
    r"""One free weight per edge of a fixed graph (transductive),

    .. math::
        w_{e} = a_{e} \, \mathrm{softplus}(\theta_e),

    initialised to :math:`w_e = a_e` (the input weights, ones if not
    given).

    Args:
        num_edges (int): The number of edges :math:`|\mathcal{E}|`.

    Shapes:
        - **input:** edge indices :math:`(2, |\mathcal{E}|)`, edge weights
          :math:`(|\mathcal{E}|)` *(optional)*
        - **output:** edge weights :math:`(|\mathcal{E}|)`
    """
    def __init__(self, num_edges: int):
        super().__init__()
        if isinstance(num_edges, bool) or not isinstance(num_edges, int) \
                or num_edges < 0:
            raise ValueError(f"'num_edges' must be a non-negative integer "
                             f"(got {num_edges!r})")
        self.num_edges = num_edges
        self.weight = Parameter(torch.empty(num_edges))
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        with torch.no_grad():  # softplus(theta) = 1
            self.weight.fill_(1.0 + math.log(-math.expm1(-1.0)))

    def forward(self, edge_index: Tensor,
                edge_weight: OptTensor = None) -> Tensor:
        _check_edges(edge_index, edge_weight)
        if edge_index.size(1) != self.num_edges:
            raise ValueError(f"The module learns {self.num_edges} edge "
                             f"weights but the graph has "
                             f"{edge_index.size(1)} edges")
        w = F.softplus(self.weight)
        return w if edge_weight is None else edge_weight.to(w.dtype) * w

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.num_edges})'


def _check_edges(edge_index: Tensor, edge_weight: OptTensor):
    if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 \
            or edge_index.size(0) != 2:
        raise ValueError("Learnable edge weights need an 'edge_index' "
                         "tensor of shape [2, num_edges] (not a sparse "
                         "adjacency)")
    if edge_weight is not None and edge_weight.shape != (edge_index.size(1),):
        raise ValueError(f"'edge_weight' must have shape "
                         f"[{edge_index.size(1)}] (got "
                         f"{tuple(edge_weight.size())})")
