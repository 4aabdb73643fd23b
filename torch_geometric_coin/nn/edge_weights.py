r"""Learnable, non-negative edge weights for
:class:`~torch_geometric_coin.nn.CoinDiffusionConv`, equivariant to the
storage order of :obj:`edge_index`."""
import math
from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter

from torch_geometric.nn.dense.linear import Linear
from torch_geometric.typing import OptTensor

from torch_geometric_coin._checks import check_features, check_number
from torch_geometric_coin._graph_cache import GraphCache
from torch_geometric_coin.ops import validate_graph


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
        - **input:** node features :math:`(|\mathcal{V}|, F)` (dense), edge
          indices :math:`(2, |\mathcal{E}|)`, edge weights
          :math:`(|\mathcal{E}|)` *(optional, non-negative)*
        - **output:** edge weights :math:`(|\mathcal{E}|)`
    """
    def __init__(self, in_channels: int, out_channels: Optional[int] = None):
        super().__init__()
        check_number('in_channels', in_channels, integer=True, low=1)
        if out_channels is not None:
            check_number('out_channels', out_channels, integer=True, low=1)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels or in_channels)
        self.lin = Linear(self.in_channels, self.out_channels, bias=False,
                          weight_initializer='glorot')
        self._graph = GraphCache()
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        self.lin.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_weight: OptTensor = None) -> Tensor:
        check_features(x, self.in_channels, self.lin.weight, sparse=False)
        _validate(self._graph, edge_index, edge_weight, x.size(0))
        h = self.lin(x)
        w = torch.exp(-(h[edge_index[0]] - h[edge_index[1]]).square().sum(-1))
        return w if edge_weight is None else edge_weight.to(w.dtype) * w

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels})')


class PerEdgeWeight(torch.nn.Module):
    r"""One free weight per edge of a fixed graph (transductive),

    .. math::
        w_{ji} = a_{ji} \, \mathrm{softplus}(\theta_{ji}),

    initialised to :math:`w_{ji} = a_{ji}` (the input weights, ones if not
    given). :obj:`weight[k]` belongs to the :math:`k`-th distinct edge
    :math:`(j, i)` in lexicographic (source, target) order, that of a
    coalesced :obj:`edge_index`, whatever the order of the input; duplicate
    entries of an edge share its parameter.

    Args:
        num_edges (int): The number of distinct edges
            :math:`|\mathcal{E}|`.

    Shapes:
        - **input:** edge indices :math:`(2, |\mathcal{E}|)` in any order,
          edge weights :math:`(|\mathcal{E}|)` *(optional, non-negative)*
        - **output:** edge weights :math:`(|\mathcal{E}|)`, in the order of
          the input
    """
    def __init__(self, num_edges: int):
        super().__init__()
        check_number('num_edges', num_edges, integer=True, low=0)
        self.num_edges = int(num_edges)
        self.weight = Parameter(torch.empty(self.num_edges))
        self._graph = GraphCache()  # edge_index -> edge_ids
        self._weight = GraphCache()  # the validated input edge_weight
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        with torch.no_grad():  # softplus(theta) = 1
            self.weight.fill_(1.0 + math.log(-math.expm1(-1.0)))

    def edge_ids(self, edge_index: Tensor) -> Optional[Tensor]:
        r"""The index into :obj:`weight` of each column of
        :obj:`edge_index` (:obj:`None` for the identity), once per
        tensor."""
        if self._graph.hit(edge_index):
            return self._graph.value
        _validate(None, edge_index, None, None)
        ids, count = canonical_edge_ids(edge_index)
        if count != self.num_edges:
            raise ValueError(f"The module learns {self.num_edges} weights "
                             f"but the graph has {count} distinct edges (in "
                             f"{edge_index.size(1)} columns of 'edge_index')")
        if count == edge_index.size(1) and bool(torch.equal(
                ids, torch.arange(count, device=ids.device))):
            ids = None  # coalesced: no gather on the hot path
        return self._graph.store(ids, edge_index)

    def forward(self, edge_index: Tensor,
                edge_weight: OptTensor = None) -> Tensor:
        ids = self.edge_ids(edge_index)
        _validate(self._weight, edge_index, edge_weight, None)
        w = F.softplus(self.weight)
        w = w if ids is None else w[ids]
        return w if edge_weight is None else edge_weight.to(w.dtype) * w

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.num_edges})'


def canonical_edge_ids(edge_index: Tensor) -> Tuple[Tensor, int]:
    r"""Numbers the distinct edges :math:`(j, i)` of :obj:`edge_index` in
    lexicographic (source, target) order and returns the number of each
    column, and how many distinct edges there are."""
    if edge_index.size(1) == 0:
        return edge_index.new_empty(0, dtype=torch.long), 0
    src, dst = edge_index[0].long(), edge_index[1].long()
    key = src * (int(dst.max()) + 1) + dst  # (non-negative indices)
    distinct, ids = torch.unique(key, return_inverse=True)
    return ids, distinct.numel()


@torch.compiler.disable
def _validate(cache: Optional[GraphCache], edge_index: Any,
              edge_weight: OptTensor, num_nodes: Optional[int]):
    r"""Validates an :obj:`edge_index` tensor and its weights, once per
    graph if :obj:`cache` is given."""
    if cache is not None and cache.hit(edge_index, edge_weight, num_nodes):
        return
    if not isinstance(edge_index, Tensor) or \
            edge_index.layout != torch.strided:
        got = getattr(edge_index, 'layout', type(edge_index).__name__)
        raise TypeError(f"Learnable edge weights need an 'edge_index' "
                        f"tensor of shape [2, num_edges] (got {got}); turn "
                        f"a sparse adj_t into one with "
                        f"'to_edge_index(adj_t)[0].flip(0)'")
    validate_graph(edge_index, edge_weight, num_nodes)
    if cache is not None:
        cache.store(None, edge_index, edge_weight, num_nodes)
