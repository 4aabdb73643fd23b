import math
import warnings
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter

from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import Adj, OptTensor, SparseTensor
from torch_geometric.utils import scatter

from torch_geometric_coin._checks import check_bool, check_number
from torch_geometric_coin._graph_cache import GraphCache
from torch_geometric_coin.ops import DiffusionOperator
from torch_geometric_coin.ops._operator import unstable_message
from torch_geometric_coin.utils._coin_norm import NORMALIZATIONS

SCHEMES = ('explicit', 'implicit')
STABILITY = ('warn', 'raise', 'ignore')
# The fused operator computes `propagate` with these settings only.
_MESSAGE_PASSING = {'aggr': 'add', 'aggr_kwargs': None,
                    'flow': 'source_to_target', 'node_dim': -2,
                    'decomposed_layers': 1}


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
    :math:`\mathbf{I} - \sigma^2 \mathbf{L}` (the definition, which PyG's
    explainers run); otherwise the :math:`K` steps run as one autograd node
    of :class:`~torch_geometric_coin.ops.DiffusionOperator` (:math:`K` CSR
    products forward, :math:`K` backward, no stored state). The explicit
    scheme is stable when :math:`\sigma^2 \lambda_{\max}(\mathbf{L}) \leq
    2`; :obj:`scheme='implicit'` takes unconditionally stable backward Euler
    steps :math:`(\mathbf{I} + \sigma^2 \mathbf{L}) \mathbf{X}^{(k)} =
    \mathbf{X}^{(k-1)}` instead. Learnable edge weights come in as
    :obj:`edge_weight` (see :mod:`torch_geometric_coin.nn.edge_weights`).

    The operator of a graph (validation, CSR layouts, the stability
    estimate) is prepared once: a graph given again as the same, unchanged
    tensors (by identity and in-place version) reuses it, and new
    :obj:`edge_weight` tensors that require gradients reuse its layout.

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
        cached (bool, optional): If set to :obj:`True`, the layer keeps the
            graph of its first call: for transductive learning. New
            :obj:`edge_weight` tensors reuse its layouts; another graph (a
            new adjacency holding other edges, the same edges in another
            order, or the first one edited in place) raises a
            :class:`ValueError`. (default: :obj:`False`)
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
        max_iter (int, optional): Iteration limit of each implicit solve
            (:obj:`1000` if :obj:`None`; implicit scheme only).
            (default: :obj:`None`)
        stability (str, optional): What to do when
            :math:`\sigma^2 \lambda_{\max} > 2` in the explicit scheme
            (checked once per operator; learned edge weights and
            :math:`\sigma^2` on their first values): :obj:`'warn'`,
            :obj:`'raise'` or :obj:`'ignore'`. Outside the certified regime
            (and always for learned values) the output is checked: an
            overflow raises :class:`FloatingPointError`.
            (default: :obj:`'warn'`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    .. note::
        Under :func:`torch.compile` the diffusion is one graph break. The
        layer does not run per edge type under
        :func:`~torch_geometric.nn.to_hetero`, since the diffusion spreads
        over one graph of all nodes: call it on
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
    # The frame of a warning: the line that called the layer (above the
    # check, _diffuse and its torch.compiler.disable wrapper, forward,
    # Module._call_impl and Module._wrapped_call_impl).
    _stacklevel = 7

    def __init__(self, K: int = 20, sigma2: float = 0.35,
                 normalization: Optional[str] = 'coin',
                 add_self_loops: bool = True, cached: bool = False,
                 dropout: float = 0., learn_sigma2: bool = False,
                 scheme: str = 'explicit', tol: Optional[float] = None,
                 max_iter: Optional[int] = None, stability: str = 'warn',
                 **kwargs):
        for name, default in _MESSAGE_PASSING.items():
            if kwargs.get(name, default) != default:
                raise ValueError(f"'{self.__class__.__name__}' only supports "
                                 f"{name}={default!r} (got {kwargs[name]!r})")
        super().__init__(**kwargs)
        for name, value, choices in [('normalization', normalization,
                                      NORMALIZATIONS),
                                     ('scheme', scheme, SCHEMES),
                                     ('stability', stability, STABILITY)]:
            if value not in choices:
                raise ValueError(f"Unknown '{name}' {value!r}: expected one "
                                 f"of {choices}")
        if scheme == 'explicit' and (tol, max_iter) != (None, None):
            raise ValueError("'tol' and 'max_iter' apply to "
                             "scheme='implicit' only")
        self.tol = 1e-5 if tol is None else tol
        self.max_iter = 1000 if max_iter is None else max_iter
        for name, value, integer, low, high in [
                ('K', K, True, 0, None), ('sigma2', sigma2, False, 0, None),
                ('dropout', dropout, False, 0, 1),
                ('tol', self.tol, False, 0, 1),
                ('max_iter', self.max_iter, True, 1, None)]:
            check_number(name, value, integer, low, high,
                         open_low=name in ('sigma2', 'tol'))
        for name, flag in [('add_self_loops', add_self_loops),
                           ('cached', cached), ('learn_sigma2', learn_sigma2)]:
            check_bool(name, flag)
        self.K, self.sigma2_init = int(K), float(sigma2)
        self.normalization, self.add_self_loops = normalization, \
            bool(add_self_loops)
        self.cached, self.dropout = bool(cached), float(dropout)
        self.learn_sigma2, self.scheme = bool(learn_sigma2), scheme
        self.stability = stability
        self.sigma2_raw = Parameter(torch.empty(())) if learn_sigma2 else None
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        if self.sigma2_raw is not None:
            with torch.no_grad():  # softplus^-1(sigma2)
                self.sigma2_raw.fill_(self.sigma2_init + math.log(
                    -math.expm1(-self.sigma2_init)))
        self._cached_op = None
        self._graph = GraphCache()
        self._checked_learned = self._warned = False

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
        return self._diffuse(x, op, self.sigma2).to(in_dtype)

    @torch.compiler.disable  # (one graph break: sparse products)
    def _diffuse(self, x: Tensor, op: DiffusionOperator,
                 sigma2: Union[Tensor, float]) -> Tensor:
        certified = self._check_stability(op, sigma2)
        if self.explain:  # PyG's explainers mask the messages themselves
            out = self._propagate_steps(x, op, sigma2)
        else:  # with dropout before each step, one call per step
            drop, out = self.dropout > 0 and self.training, x
            for _ in range(self.K if drop else 1):
                if drop:
                    out = F.dropout(out, p=self.dropout, training=True)
                K = 1 if drop else self.K
                if self.scheme == 'implicit':  # (arguments checked here)
                    out = op._implicit(out, K, sigma2, self.tol,
                                       self.max_iter)
                else:
                    out = op._explicit(out, K, sigma2)
        if not certified and not bool(torch.isfinite(out).all()) \
                and bool(torch.isfinite(x).all()):
            raise FloatingPointError(
                f"Explicit diffusion overflowed after {self.K} steps with "
                f"sigma2={float(sigma2):.4g}: sigma2 times the largest "
                f"eigenvalue of the Laplacian exceeds 2. Lower 'sigma2' or "
                f"'K', or use scheme='implicit'")
        return out

    @torch.compiler.disable
    def _operator(self, x: Tensor, edge_index: Adj,
                  edge_weight: OptTensor) -> DiffusionOperator:
        n = x.size(0)
        learned = edge_weight is not None and edge_weight.requires_grad
        if isinstance(edge_index, SparseTensor) and \
                edge_index.requires_grad() or isinstance(edge_index, Tensor) \
                and edge_index.layout != torch.strided and \
                edge_index.requires_grad:  # learned values: at each call
            if self.cached:
                raise ValueError("A cached layer keeps its graph, not learned "
                                 "weights: pass them as 'edge_weight' with "
                                 "an 'edge_index' (or use 'cached=False')")
            return self._prepare(edge_index, None, n, x.dtype)
        op = self._cached_op
        if op is not None and op.num_nodes != n:
            raise ValueError(f"The cached graph has {op.num_nodes} nodes but "
                             f"'x' has {n} rows; use 'cached=False' for "
                             f"changing graphs")
        weight = None if learned else edge_weight
        if self._graph.hit(edge_index, weight, n):
            op = self._graph.value
        elif op is None:
            op = self._prepare(edge_index, weight, n, x.dtype)
            self._cached_op = op if self.cached else None
        elif not op.has_graph(edge_index):
            raise ValueError(
                f"The layer cached the operator of the graph of its first "
                f"call ({op.graph[0].size(1)} edges), but was given another "
                f"graph (or the same edges in another order, or edited in "
                f"place). 'cached=True' is for one fixed graph: use "
                f"'cached=False' for changing graphs, or 'reset_parameters()' "
                f"to forget the cached one")
        elif isinstance(edge_index, Tensor) and edge_index.layout == \
                torch.strided:  # new weights on the cached layout
            op = op.reweight(weight)
        self._graph.store(op, edge_index, weight, n)
        return op.reweight(edge_weight) if learned else op

    def _prepare(self, edge_index: Adj, edge_weight: OptTensor, n: int,
                 dtype: torch.dtype) -> DiffusionOperator:
        return DiffusionOperator.from_graph(edge_index, edge_weight, n,
                                            self.normalization,
                                            self.add_self_loops, dtype)

    def _check_stability(self, op: DiffusionOperator,
                         sigma2: Union[Tensor, float]) -> bool:
        r"""Whether the explicit scheme is certified stable; warns or raises
        (see :obj:`stability`) when it is not."""
        if self.scheme == 'implicit':
            return True
        learned = op.value.requires_grad or isinstance(sigma2, Tensor)
        if learned and self._checked_learned:
            return False
        self._checked_learned = learned
        s = float(sigma2)
        if op.stable(s):
            return not learned
        if self.stability != 'ignore':
            msg = unstable_message(s, op.lambda_max(), self.normalization)
            if self.stability == 'raise':
                raise ValueError(msg)
            if not self._warned:  # once per layer (and reset)
                warnings.warn(msg, UserWarning, stacklevel=self._stacklevel)
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
        graph_index, n = op.graph[0], op.num_nodes
        self._off_diagonal = graph_index[0] != graph_index[1]
        loop = torch.arange(n, device=graph_index.device)
        index = torch.cat([graph_index[:, self._off_diagonal],
                           torch.stack([loop, loop])], dim=1)
        weight = op.step_matrix(sigma2, x.dtype, per_edge=True)
        off = weight[:-n] if n else weight
        row_sum = weight[off.numel():] + scatter(
            off, index[1, :off.numel()], 0, dim_size=n)
        edge_weight = torch.cat([off, row_sum])
        self_weight = torch.cat([-off, torch.zeros_like(row_sum)])
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

    def explain_message(self, inputs: Tensor,
                        dim_size: Optional[int]) -> Tensor:
        # The messages are the input's off-diagonal edges in their order,
        # then one per node (the input's self-loops are in the diagonal).
        if self._edge_mask is None:
            raise ValueError("Could not find a pre-defined 'edge_mask' to "
                             "explain. Did you forget to initialize it?")
        edge_mask = self._edge_mask.sigmoid() if self._apply_sigmoid else \
            self._edge_mask
        edge_mask = torch.cat([edge_mask[self._off_diagonal],
                               edge_mask.new_ones(dim_size)])
        return inputs * edge_mask.view(-1, 1)

    def __repr__(self) -> str:
        args = [f'K={self.K}', f'sigma2={self.sigma2_init}',
                f'normalization={self.normalization!r}']
        for name, default in [('dropout', 0.), ('learn_sigma2', False),
                              ('scheme', 'explicit'), ('cached', False)]:
            if getattr(self, name) != default:
                args.append(f'{name}={getattr(self, name)!r}')
        return f'{self.__class__.__name__}({", ".join(args)})'
