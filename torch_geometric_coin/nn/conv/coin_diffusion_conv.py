import math
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter

from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import Adj, OptTensor, SparseTensor
from torch_geometric.utils import scatter

from torch_geometric_coin._checks import (
    check_bool,
    check_number,
    warn_at_caller,
)
from torch_geometric_coin.ops import DiffusionOperator
from torch_geometric_coin.ops._diffusion_operator import unstable_message
from torch_geometric_coin.utils import coin_norm
from torch_geometric_coin.utils._coin_norm import NORMALIZATIONS


SCHEMES = ('explicit', 'implicit')
STABILITY = ('warn', 'raise', 'ignore')
_LEARNED = object()  # the cached operator was built from learned weights
_MESSAGE_PASSING_DEFAULTS = {'aggr': 'add', 'aggr_kwargs': None,
                             'flow': 'source_to_target', 'node_dim': -2,
                             'decomposed_layers': 1}
_PREPARE_EAGERLY = (
    "CoinDiffusionConv prepares a graph (validation, CSR layout, eigenvalue "
    "estimate) in eager mode. To compile with fullgraph=True, build it with "
    "cached=True and call the model once before torch.compile")


def _has_learned_values(adj: Adj) -> bool:
    if isinstance(adj, SparseTensor):
        return adj.requires_grad()
    return isinstance(adj, Tensor) and adj.layout != torch.strided \
        and adj.requires_grad


class CoinDiffusionConv(MessagePassing):
    r"""The diffusion layer of Convection-Diffusion Networks (COIN) from the
    `"Convection-Diffusion Equation: A Theoretically Certified Framework for
    Neural Networks" <https://arxiv.org/abs/2403.15726>`_ paper: :math:`K`
    explicit Euler steps of the graph heat equation
    :math:`\partial_t \mathbf{u} = -\sigma^2 \mathbf{L} \mathbf{u}`,

    .. math::
        \mathbf{X}^{(0)} &= \mathbf{X}

        \mathbf{X}^{(k)} &= (\mathbf{I} - \sigma^2 \mathbf{L})
        \mathbf{X}^{(k-1)}

        \mathbf{X}^{\prime} &= \mathbf{X}^{(K)},

    with :math:`\mathbf{L} = \mathrm{diag}(\hat{\mathbf{A}}\mathbf{1}) -
    \hat{\mathbf{A}}`, :math:`\hat{\mathbf{A}} = \tilde{\mathbf{D}}^{-1/2}
    (\mathbf{A} + \mathbf{I}) \tilde{\mathbf{D}}^{-1/2}` by default (the
    authors' operator; see :func:`~torch_geometric_coin.utils.coin_norm`).
    Each step is one :meth:`propagate` over the entries of
    :math:`\mathbf{I} - \sigma^2 \mathbf{L}`; the :math:`K` steps run as one
    autograd node of :class:`~torch_geometric_coin.ops.DiffusionOperator`
    (:math:`K` CSR products forward, :math:`K` backward, no stored state).
    The explicit scheme is stable when :math:`\sigma^2
    \lambda_{\max}(\mathbf{L}) \leq 2`; :obj:`scheme='implicit'` takes
    unconditionally stable backward Euler steps :math:`(\mathbf{I} +
    \sigma^2 \mathbf{L}) \mathbf{X}^{(k)} = \mathbf{X}^{(k-1)}` instead.
    Learnable edge weights come in as :obj:`edge_weight` (see
    :mod:`torch_geometric_coin.nn.edge_weights`).

    Args:
        K (int, optional): Number of steps :math:`K`. (default: :obj:`20`)
        sigma2 (float, optional): Step size :math:`\sigma^2 > 0`.
            (default: :obj:`0.35`)
        normalization (str, optional): The Laplacian: :obj:`'coin'`,
            :obj:`'sym'`, :obj:`'rw'`, or :obj:`None` for
            :math:`\mathrm{diag}(\mathbf{W}\mathbf{1}) - \mathbf{W}` on
            weights that are already normalised (such as those of
            :func:`~torch_geometric_coin.utils.gaussian_knn_graph`).
            (default: :obj:`'coin'`)
        add_self_loops (bool, optional): Whether to add self-loops of weight
            one before normalising. (default: :obj:`True`)
        cached (bool, optional): If set to :obj:`True`, the layer caches
            the operator of the graph (and its eigenvalue estimate) on first
            execution; new :obj:`edge_weight` tensors (learned ones) reuse
            its layout. Only for transductive learning: another graph (a
            new adjacency object holding other edges, or the same edges in
            another order) raises a :class:`ValueError`.
            (default: :obj:`False`)
        dropout (float, optional): Dropout probability of the features
            before each step during training. (default: :obj:`0.`)
        learn_sigma2 (bool, optional): If set to :obj:`True`,
            :math:`\sigma^2 = \mathrm{softplus}(\rho)` is learned, starting at
            :obj:`sigma2`. (default: :obj:`False`)
        scheme (str, optional): :obj:`'explicit'` or :obj:`'implicit'`.
            (default: :obj:`'explicit'`)
        tol (float, optional): Relative residual tolerance of each implicit
            solve (:obj:`1e-5` if :obj:`None`; implicit scheme only).
            (default: :obj:`None`)
        max_iter (int, optional): Iteration limit of each implicit solve,
            beyond which :class:`~torch_geometric_coin.ops.ConvergenceError`
            is raised (:obj:`1000` if :obj:`None`; implicit scheme only).
            (default: :obj:`None`)
        stability (str, optional): What to do when
            :math:`\sigma^2 \lambda_{\max} > 2` in the explicit scheme
            (checked once per graph, learned edge weights and
            :math:`\sigma^2` on their first values): :obj:`'warn'` (at the
            caller's line), :obj:`'raise'` or :obj:`'ignore'`. Outside the
            certified regime the output is checked in eager mode (one read
            from the device per call): an overflow raises
            :class:`FloatingPointError`. Learned values can leave the
            stable regime during training, so they are never certified
            and their output is always checked.
            (default: :obj:`'warn'`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    .. note::
        With :obj:`cached=True` the layer runs under
        :obj:`torch.compile(model, fullgraph=True)` once a first call in
        eager mode has prepared the graph. It does not run per edge type
        under :func:`~torch_geometric.nn.to_hetero`, since the diffusion
        spreads over one graph of all nodes: call it on
        :obj:`data.to_homogeneous()`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F)`,
          edge indices :math:`(2, |\mathcal{E}|)` or sparse matrix
          :math:`(|\mathcal{V}|, |\mathcal{V}|)`,
          edge weights :math:`(|\mathcal{E}|)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, F)`
    """
    _cached_op: Optional[DiffusionOperator]

    def __init__(self, K: int = 20, sigma2: float = 0.35,
                 normalization: Optional[str] = 'coin',
                 add_self_loops: bool = True, cached: bool = False,
                 dropout: float = 0., learn_sigma2: bool = False,
                 scheme: str = 'explicit', tol: Optional[float] = None,
                 max_iter: Optional[int] = None, stability: str = 'warn',
                 **kwargs):
        # The fused operator computes `propagate` with these settings only;
        # other values would be accepted by MessagePassing and then ignored.
        for name, default in _MESSAGE_PASSING_DEFAULTS.items():
            if name in kwargs and kwargs[name] != default:
                raise ValueError(f"'{self.__class__.__name__}' only supports "
                                 f"{name}={default!r} (got "
                                 f"{kwargs[name]!r})")
        super().__init__(**kwargs)
        if scheme == 'explicit' and (tol is not None or max_iter is not None):
            raise ValueError("'tol' and 'max_iter' apply to "
                             "scheme='implicit' only")
        tol = 1e-5 if tol is None else tol
        max_iter = 1000 if max_iter is None else max_iter
        check_number('K', K, integer=True, low=0)
        check_number('sigma2', sigma2, low=0, open_low=True)
        check_number('dropout', dropout, low=0, high=1)
        check_number('tol', tol, low=0, high=1, open_low=True)
        check_number('max_iter', max_iter, integer=True, low=1)
        for name, flag in [('add_self_loops', add_self_loops),
                           ('cached', cached), ('learn_sigma2', learn_sigma2)]:
            check_bool(name, flag)
        for name, value, choices in [('normalization', normalization,
                                      NORMALIZATIONS),
                                     ('scheme', scheme, SCHEMES),
                                     ('stability', stability, STABILITY)]:
            if value not in choices:
                raise ValueError(f"Unknown '{name}' {value!r}: expected one "
                                 f"of {choices}")
        self.K = int(K)
        self.sigma2_init = float(sigma2)
        self.normalization = normalization
        self.add_self_loops = bool(add_self_loops)
        self.cached = bool(cached)
        self.dropout = float(dropout)
        self.learn_sigma2 = bool(learn_sigma2)
        self.scheme = scheme
        self.tol = float(tol)
        self.max_iter = int(max_iter)
        self.stability = stability
        self.sigma2_raw = Parameter(torch.empty(())) if learn_sigma2 else None
        self._cached_op = None
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        if self.sigma2_raw is not None:
            with torch.no_grad():  # softplus^-1(sigma2)
                self.sigma2_raw.fill_(self.sigma2_init + math.log(
                    -math.expm1(-self.sigma2_init)))
        self._cached_op = None
        self._cached_index = None
        self._cached_weight = None
        self._checked_learned = False
        self._warned = False

    @property
    def sigma2(self) -> Union[Tensor, float]:
        r"""The step size :math:`\sigma^2` (a tensor if learned)."""
        if self.sigma2_raw is not None:
            return F.softplus(self.sigma2_raw)
        return self.sigma2_init

    def forward(self, x: Tensor, edge_index: Adj,
                edge_weight: OptTensor = None) -> Tensor:
        if isinstance(x, (tuple, list)):
            raise ValueError(
                f"'{self.__class__.__name__}' diffuses over one set of nodes "
                f"and takes no bipartite (x_src, x_dst) input, so it does not "
                f"run per edge type under 'to_hetero'. Diffuse over the whole "
                f"graph instead: 'data.to_homogeneous()'")
        if not isinstance(x, Tensor) or x.dim() != 2 \
                or not x.is_floating_point():
            raise ValueError(f"'x' must be a 2-D floating point tensor of "
                             f"shape [num_nodes, num_channels] (got "
                             f"{getattr(x, 'shape', type(x))})")
        in_dtype = x.dtype
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()  # diffuse low-precision inputs in float32
        op = self._operator(x, edge_index, edge_weight)
        if self.K == 0:
            return x.to(in_dtype)

        sigma2 = self.sigma2
        certified = self._check_stability(op, sigma2)
        out = x
        if self.explain:  # PyG's explainers mask the messages themselves
            out = self._propagate_steps(out, op, sigma2)
        else:
            # `_propagate_steps` computed as one fused operator; with
            # dropout before each step, one operator per step.
            drop = self.dropout > 0 and self.training
            for _ in range(self.K if drop else 1):
                if drop:
                    out = F.dropout(out, p=self.dropout, training=True)
                K = 1 if drop else self.K
                if self.scheme == 'implicit':
                    out = op.implicit(out, K, sigma2, self.tol, self.max_iter)
                else:
                    out = op.explicit(out, K, sigma2)
        # (Under torch.compile the check is left out: it reads the output.)
        if not certified and not torch.compiler.is_compiling() \
                and not bool(torch.isfinite(out).all()) \
                and bool(torch.isfinite(x).all()):
            raise FloatingPointError(
                f"Explicit diffusion overflowed after {self.K} steps with "
                f"sigma2={float(self.sigma2):.4g}: sigma2 times the largest "
                f"eigenvalue of the Laplacian exceeds 2. Lower 'sigma2' or "
                f"'K', or use scheme='implicit'")
        return out.to(in_dtype)

    def _operator(self, x: Tensor, edge_index: Adj,
                  edge_weight: OptTensor) -> DiffusionOperator:
        op = self._cached_op
        if self.cached and _has_learned_values(edge_index):
            raise ValueError("A cached layer keeps its graph, not learned "
                             "weights: pass them as 'edge_weight' with an "
                             "'edge_index' (or use 'cached=False')")
        if op is None:
            op = self._prepare(x, edge_index, edge_weight)
            if edge_weight is None or not edge_weight.requires_grad:
                return op
        else:
            if op.num_nodes != x.size(0):
                raise ValueError(f"The cached graph has {op.num_nodes} nodes "
                                 f"but 'x' has {x.size(0)} rows; use "
                                 f"'cached=False' for changing graphs")
            if edge_index is not self._cached_index:
                self._check_cached_graph(op, edge_index)
            if not isinstance(edge_index, Tensor) or edge_index.is_sparse \
                    or edge_index.layout != torch.strided:
                return op  # its values were the cached weights (checked)
            if edge_weight is self._cached_weight and (
                    edge_weight is None or not edge_weight.requires_grad):
                return op
        # New edge weights (e.g., learned): the same layout, new values.
        return op.reweight(edge_weight)

    @torch.compiler.disable(reason=_PREPARE_EAGERLY)
    def _prepare(self, x: Tensor, edge_index: Adj,
                 edge_weight: OptTensor) -> DiffusionOperator:
        op = DiffusionOperator.from_graph(
            edge_index, None if edge_weight is None else edge_weight.detach(),
            x.size(0), self.normalization, self.add_self_loops, x.dtype)
        if self.cached:  # hold no autograd graph
            learned = edge_weight is not None and edge_weight.requires_grad
            self._cached_op = op
            self._cached_index = edge_index
            self._cached_weight = _LEARNED if learned else edge_weight
        return op

    @torch.compiler.disable(reason=_PREPARE_EAGERLY)
    def _check_cached_graph(self, op: DiffusionOperator, edge_index: Adj):
        # A new adjacency object for a cached layer: the same graph (for
        # instance a copy, or the same edges in a new tensor) is fine,
        # another one would silently get the cached operator.
        if not op.has_graph(edge_index):
            raise ValueError(
                f"The layer cached the operator of the graph of its first "
                f"call ({op.graph[0].size(1)} edges), but was given another "
                f"graph (or the same edges in another order). "
                f"'cached=True' is for one fixed graph: use 'cached=False' "
                f"for changing graphs, or 'reset_parameters()' to forget "
                f"the cached one")
        self._cached_index = edge_index

    def _check_stability(self, op: DiffusionOperator,
                         sigma2: Union[Tensor, float]) -> bool:
        r"""Returns whether the explicit scheme is certified stable; warns
        or raises (see :obj:`stability`) when it is not. Learned edge
        weights and :math:`\sigma^2` are checked on their first values
        only (and then never count as certified)."""
        if self.scheme == 'implicit':
            return True
        if self.stability == 'ignore' and not self.cached:
            return False  # no estimate for each new graph
        # Learned edge weights or sigma2 are checked on their first values
        # (reading them at every call would sync with the device).
        learned = op.value.requires_grad or isinstance(sigma2, Tensor)
        if learned and self._checked_learned:
            return False
        self._checked_learned = learned
        lam = op.lambda_max()
        s = float(sigma2.detach() if isinstance(sigma2, Tensor) else sigma2)
        if s * lam <= 2.0:
            return not learned
        if self.stability != 'ignore':
            msg = unstable_message(s, lam, self.normalization)
            if self.stability == 'raise':
                raise ValueError(msg)
            if not self._warned:  # once per layer (and reset)
                warn_at_caller(msg)
                self._warned = True
        return False

    def _propagate_steps(self, x: Tensor, op: DiffusionOperator,
                         sigma2: Union[Tensor, float]) -> Tensor:
        r"""The definition: :math:`K` times :meth:`propagate` over the
        entries of :math:`\mathbf{M} = \mathbf{I} - \sigma^2 \mathbf{L}`,
        each off-diagonal one as the flux
        :math:`M_{ij} (\mathbf{x}_j - \mathbf{x}_i)` (so that an explainer's
        mask on an edge scales the mass it exchanges), plus
        :math:`(\mathbf{M}\mathbf{1})_i \mathbf{x}_i`."""
        if self.scheme != 'explicit':
            raise ValueError("PyG's explainers need scheme='explicit' (the "
                             "implicit scheme has no per-edge messages)")
        graph_index, graph_weight = op.graph
        index, weight = coin_norm(graph_index, graph_weight, op.num_nodes,
                                  self.normalization, self.add_self_loops,
                                  sigma2=sigma2, dtype=x.dtype)
        num_off = weight.numel() - op.num_nodes
        off = weight[:num_off]
        row_sum = weight[num_off:] + scatter(off, index[1, :num_off], 0,
                                             dim_size=op.num_nodes)
        edge_weight = torch.cat([off, row_sum])
        self_weight = torch.cat([-off, torch.zeros_like(row_sum)])
        self._off_diagonal = graph_index[0] != graph_index[1]
        for _ in range(self.K):
            if self.dropout > 0:
                x = F.dropout(x, p=self.dropout, training=self.training)
            # propagate_type: (x: Tensor, edge_weight: Tensor,
            #                  self_weight: Tensor)
            x = self.propagate(index, x=x, edge_weight=edge_weight,
                               self_weight=self_weight)
        return x

    def message(self, x_i: Tensor, x_j: Tensor, edge_weight: Tensor,
                self_weight: Tensor) -> Tensor:
        return edge_weight.view(-1, 1) * x_j + self_weight.view(-1, 1) * x_i

    def explain_message(self, inputs: Tensor, dim_size: Optional[int],
                        ) -> Tensor:
        # The messages are the input's off-diagonal edges in their order,
        # then one per node (the input's self-loops are in the diagonal).
        edge_mask = self._edge_mask
        if edge_mask is None:
            raise ValueError("Could not find a pre-defined 'edge_mask' to "
                             "explain. Did you forget to initialize it?")
        if self._apply_sigmoid:
            edge_mask = edge_mask.sigmoid()
        edge_mask = torch.cat([edge_mask[self._off_diagonal],
                               edge_mask.new_ones(dim_size)])
        return inputs * edge_mask.view(-1, 1)

    def __repr__(self) -> str:
        args = [f'K={self.K}', f'sigma2={self.sigma2_init}',
                f'normalization={self.normalization!r}']
        for name, default in [('dropout', 0.), ('learn_sigma2', False),
                              ('scheme', 'explicit')]:
            if getattr(self, name) != default:
                args.append(f'{name}={getattr(self, name)!r}')
        return f'{self.__class__.__name__}({", ".join(args)})'
