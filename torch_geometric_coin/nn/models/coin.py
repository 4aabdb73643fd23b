from typing import Optional, Tuple

import torch
from torch import Tensor

from torch_geometric.typing import Adj, OptTensor

from torch_geometric_coin._checks import check_choice, check_number
from torch_geometric_coin.nn._diffused_nll_loss import safe_log
from torch_geometric_coin.nn.conv import CoinDiffusionConv
from torch_geometric_coin._graph_cache import GraphCache
from torch_geometric_coin.nn.edge_weights import (
    KernelEdgeWeight,
    PerEdgeWeight,
)
from torch_geometric_coin.nn.models.residual_convection import (
    ResidualConvection,
)
from torch_geometric_coin.ops import validate_graph

DIFFUSE = ('prob', 'logits', 'hidden')
LEARN_EDGE_WEIGHTS = (None, 'kernel', 'per_edge')
DIFFUSION_KWARGS = ('add_self_loops', 'cached', 'learn_sigma2', 'scheme',
                    'tol', 'max_iter', 'stability')


class COIN(torch.nn.Module):
    r"""The Convection-Diffusion Network (COIN) from the `"Convection-Diffusion
    Equation: A Theoretically Certified Framework for Neural Networks"
    <https://arxiv.org/abs/2403.15726>`_ paper: a residual base classifier
    (the convection part, :class:`ResidualConvection`) followed by
    :class:`CoinDiffusionConv` over the graph of samples (the diffusion part).

    .. math::
        \mathbf{U}^{(0)} &= \mathrm{softmax}(f_\theta(\mathbf{X}))

        \mathbf{U}^{(K)} &= (\mathbf{I} - \sigma^2 \mathbf{L})^K
        \mathbf{U}^{(0)},

    and the model returns :math:`\log \mathbf{U}^{(K)}` (finite everywhere,
    see :func:`~torch_geometric_coin.nn.diffused_nll_loss`), so that
    :obj:`F.nll_loss` on the output is the authors' loss. :obj:`K=0` gives
    the base classifier alone.

    Args:
        in_channels (int): Size of each input sample.
        out_channels (int): Number of classes (at least two).
        hidden_channels (int, optional): Width of the residual blocks;
            :obj:`None` for the authors' width (that of the input, with no
            input projection). (default: :obj:`64`)
        num_layers (int, optional): Number of residual blocks.
            (default: :obj:`1`)
        K, sigma2, normalization (optional): Those of
            :class:`CoinDiffusionConv` (defaults: :obj:`20`, :obj:`0.35`,
            :obj:`'coin'`).
        diffuse (str, optional): What is diffused: :obj:`'prob'`,
            :obj:`'logits'` (then normalised by a log-softmax) or
            :obj:`'hidden'` (the last hidden features, before the output
            map). (default: :obj:`'prob'`)
        dropout, T, act, norm (optional): Those of the base classifier
            :class:`ResidualConvection` (defaults: :obj:`0.5`, :obj:`1.`,
            :obj:`'relu'`, :obj:`None`).
        diffusion_dropout (float, optional): Dropout before each diffusion
            step. (default: :obj:`0.`)
        learn_edge_weights (str, optional): :obj:`None`, :obj:`'kernel'`
            (a :class:`~torch_geometric_coin.nn.KernelEdgeWeight` on the
            dense input features) or :obj:`'per_edge'` (a
            :class:`~torch_geometric_coin.nn.PerEdgeWeight`), whose output
            weights the diffusion's graph (an :obj:`edge_index` in any
            order, or a sparse adjacency read as PyG's :obj:`adj_t`).
            (default: :obj:`None`)
        num_edges (int, optional): The number of distinct edges, needed
            for :obj:`learn_edge_weights='per_edge'`.
            (default: :obj:`None`)
        **kwargs (optional): Additional arguments of
            :class:`CoinDiffusionConv`: :obj:`add_self_loops`,
            :obj:`cached`, :obj:`learn_sigma2`, :obj:`scheme`, :obj:`tol`,
            :obj:`max_iter`, :obj:`stability`.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})`, dense or
          sparse (COO or CSR; in the dtype of the parameters), edge
          indices :math:`(2, |\mathcal{E}|)` or a sparse adjacency, edge
          weights :math:`(|\mathcal{E}|)` *(optional)*
        - **output:** log-probabilities :math:`(|\mathcal{V}|, C)`
    """
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: Optional[int] = 64,
        num_layers: int = 1,
        K: int = 20,
        sigma2: float = 0.35,
        normalization: Optional[str] = 'coin',
        diffuse: str = 'prob',
        dropout: float = 0.5,
        T: float = 1.,
        act: str = 'relu',
        norm: Optional[str] = None,
        diffusion_dropout: float = 0.,
        learn_edge_weights: Optional[str] = None,
        num_edges: Optional[int] = None,
        **kwargs,
    ):
        super().__init__()
        check_number('in_channels', in_channels, integer=True, low=1)
        check_number('out_channels', out_channels, integer=True, low=2)
        check_number('diffusion_dropout', diffusion_dropout, low=0, high=1)
        check_choice('diffuse', diffuse, DIFFUSE)
        check_choice('learn_edge_weights', learn_edge_weights,
                     LEARN_EDGE_WEIGHTS)
        if (num_edges is not None) != (learn_edge_weights == 'per_edge'):
            raise ValueError("'num_edges' is needed for, and only for, "
                             "learn_edge_weights='per_edge'")
        unknown = sorted(set(kwargs) - set(DIFFUSION_KWARGS))
        if unknown:
            raise TypeError(f"COIN got unexpected keyword arguments "
                            f"{unknown}; the options of the diffusion layer "
                            f"it forwards are {list(DIFFUSION_KWARGS)}")
        self.diffuse = diffuse
        self.learn_edge_weights = learn_edge_weights
        self.edge_weights = None
        if learn_edge_weights == 'kernel':
            self.edge_weights = KernelEdgeWeight(in_channels)
        elif learn_edge_weights == 'per_edge':
            self.edge_weights = PerEdgeWeight(num_edges)
        self.base = ResidualConvection(in_channels, hidden_channels,
                                       out_channels, num_layers=num_layers,
                                       T=T, act=act, norm=norm,
                                       dropout=dropout)
        self.diffusion = CoinDiffusionConv(K=K, sigma2=sigma2,
                                           normalization=normalization,
                                           dropout=diffusion_dropout,
                                           **kwargs)
        # (Its warnings name the line that called COIN.)
        self.diffusion._stacklevel = CoinDiffusionConv._stacklevel + 4
        self._graph = GraphCache()  # a sparse adjacency as edge_index

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        self.base.reset_parameters()
        self.diffusion.reset_parameters()
        if self.edge_weights is not None:
            self.edge_weights.reset_parameters()
        self._graph = GraphCache()

    def forward(self, x: Tensor, edge_index: Adj,
                edge_weight: OptTensor = None) -> Tensor:
        return self._forward(x, edge_index, edge_weight)

    @torch.no_grad()
    def inference(self, x: Tensor, edge_index: Adj,
                  edge_weight: OptTensor = None,
                  chunk_size: int = 4096) -> Tensor:
        r"""Full-graph prediction of a model in evaluation mode, as
        :meth:`forward` computes it, with the base classifier (whose memory
        grows with its width) applied to :obj:`chunk_size` nodes at a time
        and one fused diffusion over the whole graph (as PyG's
        :meth:`~torch_geometric.nn.models.basic_gnn.BasicGNN.inference`)."""
        if self.training:
            raise ValueError("'inference' needs a model in evaluation mode: "
                             "call 'model.eval()' first")
        check_number('chunk_size', chunk_size, integer=True, low=1)
        return self._forward(x, edge_index, edge_weight, int(chunk_size))

    def _forward(self, x: Tensor, edge_index: Adj, edge_weight: OptTensor,
                 chunk_size: Optional[int] = None) -> Tensor:
        def chunked(fn, x):  # fn over the rows of x, chunk_size at a time
            if chunk_size is None:
                return fn(x)
            return torch.cat([fn(_rows(x, i, min(i + chunk_size, x.size(0))))
                              for i in range(0, x.size(0), chunk_size)])

        if isinstance(x, (torch.fx.Proxy, dict, tuple, list)):  # to_hetero
            raise ValueError("COIN diffuses over one set of nodes and does "
                             "not run under 'to_hetero'; diffuse over the "
                             "whole graph: 'data.to_homogeneous()'")
        if self.edge_weights is not None:
            kernel = isinstance(self.edge_weights, KernelEdgeWeight)
            if kernel and isinstance(x, Tensor) and \
                    x.layout != torch.strided:
                raise ValueError(f"learn_edge_weights='kernel' needs dense "
                                 f"node features 'x' (got layout "
                                 f"{x.layout}): pass 'x.to_dense()'")
            edge_index, edge_weight = self._edge_index(x, edge_index,
                                                       edge_weight)
            edge_weight = self.edge_weights(*([x] if kernel else []),
                                            edge_index, edge_weight)
        if self.diffuse == 'hidden':
            h = self.diffusion(chunked(self.base.encode, x), edge_index,
                               edge_weight)
            return torch.log_softmax(chunked(self.base.decode, h), dim=-1)
        logits = chunked(self.base, x)
        if self.diffuse == 'logits':
            out = self.diffusion(logits, edge_index, edge_weight)
            return torch.log_softmax(out, dim=-1)
        return safe_log(self.diffusion(logits.softmax(dim=-1), edge_index,
                                       edge_weight))

    def _edge_index(self, x: Tensor, adj: Adj, edge_weight: OptTensor,
                    ) -> Tuple[Tensor, OptTensor]:
        r"""A sparse adjacency as :obj:`(edge_index, edge_weight)`."""
        if isinstance(adj, Tensor) and adj.layout == torch.strided:
            return adj, edge_weight
        num_nodes = x.size(0)
        if not self._graph.hit(adj, edge_weight, num_nodes):
            value = validate_graph(adj, edge_weight, num_nodes)[:2]
            self._graph.store(value, adj, edge_weight, num_nodes)
        return self._graph.value

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.base.in_channels}, '
                f'{self.base.out_channels}, diffuse={self.diffuse!r}, '
                + (f'edge_weights={self.edge_weights}, '
                   if self.edge_weights is not None else '')
                + f'diffusion={self.diffusion})')


def _rows(x: Tensor, start: int, end: int) -> Tensor:
    r"""Rows :obj:`start:end` of a dense, COO or CSR :obj:`x`."""
    if x.layout == torch.sparse_coo:
        return x.narrow_copy(0, start, end - start)
    if x.layout != torch.sparse_csr:
        return x[start:end]
    crow = x.crow_indices()[start:end + 1]
    a, b = int(crow[0]), int(crow[-1])
    return torch.sparse_csr_tensor(crow - a, x.col_indices()[a:b],
                                   x.values()[a:b], (end - start, x.size(1)))
