import math
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter

from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import Adj, OptTensor
from torch_geometric.utils import scatter

from torch_geometric_coin._checks import check_bool, check_choice, \
    check_number
from torch_geometric_coin.ops import DiffusionOperator
from torch_geometric_coin.ops._operator import OperatorCache, check_overflow
from torch_geometric_coin.utils._coin_norm import NORMALIZATIONS

SCHEMES = ('explicit', 'implicit')
STABILITY = ('warn', 'raise', 'ignore')
# The fused operator computes `propagate` with these settings only.
_MESSAGE_PASSING = {'aggr': 'add', 'aggr_kwargs': None,
                    'flow': 'source_to_target', 'node_dim': -2,
                    'decomposed_layers': 1}
_HETERO = ("'CoinDiffusionConv' diffuses over one set of nodes: it takes no "
           "bipartite (x_src, x_dst) input, so it does not run per edge type "
           "under 'to_hetero'. Use it on 'data.to_homogeneous()'")


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
    explainers run); otherwise the :math:`K` steps are one autograd node
    of :class:`~torch_geometric_coin.ops.DiffusionOperator`, prepared once
    per graph (the same, unchanged tensors reuse it). The explicit scheme is
    stable when :math:`\sigma^2 \lambda_{\max}(\mathbf{L}) \leq 2`;
    :obj:`scheme='implicit'` takes unconditionally stable backward Euler
    steps :math:`(\mathbf{I} + \sigma^2 \mathbf{L}) \mathbf{X}^{(k)} =
    \mathbf{X}^{(k-1)}` instead.

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
        stability (str, optional): :obj:`'warn'`, :obj:`'raise'` or
            :obj:`'ignore'` when :math:`\sigma^2 \lambda_{\max} > 2` in the
            explicit scheme (checked once per operator, learned values on
            their first values); then the output is checked for overflow
            (:class:`FloatingPointError`). (default: :obj:`'warn'`)
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
    _stacklevel = 7  # (a warning's frame: the line that called the layer)

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
        check_choice('normalization', normalization, NORMALIZATIONS)
        check_choice('scheme', scheme, SCHEMES)
        check_choice('stability', stability, STABILITY)
        if scheme == 'explicit' and (tol, max_iter) != (None, None):
            raise ValueError("'tol' and 'max_iter' apply to "
                             "scheme='implicit' only")
        self.tol = 1e-5 if tol is None else tol
        self.max_iter = 1000 if max_iter is None else max_iter
        check_number('K', K, integer=True, low=0)
        check_number('sigma2', sigma2, low=0, open_low=True)
        check_number('dropout', dropout, low=0, high=1)
        check_number('tol', self.tol, low=0, high=1, open_low=True)
        check_number('max_iter', self.max_iter, integer=True, low=1)
        for name in ('add_self_loops', 'cached', 'learn_sigma2'):
            check_bool(name, locals()[name])
        self.K, self.sigma2_init, self.dropout = int(K), float(sigma2), dropout
        self.normalization, self.scheme = normalization, scheme
        self.add_self_loops, self.cached = add_self_loops, cached
        self.learn_sigma2, self.stability = learn_sigma2, stability
        self.sigma2_raw = Parameter(torch.empty(())) if learn_sigma2 else None
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        if self.sigma2_raw is not None:
            with torch.no_grad():  # softplus^-1(sigma2)
                self.sigma2_raw.fill_(self.sigma2_init + math.log(
                    -math.expm1(-self.sigma2_init)))
        self._prepare = OperatorCache(self.normalization,
                                      self.add_self_loops, self.cached)
        self._checked_learned = self._warned = False

    @property
    def sigma2(self) -> Union[Tensor, float]:
        r"""The step size :math:`\sigma^2` (a tensor if learned)."""
        return self.sigma2_init if self.sigma2_raw is None else \
            F.softplus(self.sigma2_raw)

    def forward(self, x: Tensor, edge_index: Adj,
                edge_weight: OptTensor = None) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 2 \
                or not x.is_floating_point():
            raise ValueError(
                _HETERO if isinstance(x, (tuple, list)) else
                f"'x' must be a 2-D floating point tensor of shape "
                f"[num_nodes, num_channels] (got {getattr(x, 'shape', x)})")
        in_dtype = x.dtype
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()  # diffuse low-precision inputs in float32
        op = self._prepare(edge_index, edge_weight, x.size(0), x.dtype)
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
                out = F.dropout(out, self.dropout) if drop else out
                K = 1 if drop else self.K  # (arguments checked here)
                out = op._explicit(out, K, sigma2) if self.scheme == \
                    'explicit' else op._implicit(out, K, sigma2, self.tol,
                                                 self.max_iter)
        if not certified:
            check_overflow(out, x, self.K, sigma2)
        return out

    def _check_stability(self, op: DiffusionOperator,
                         sigma2: Union[Tensor, float]) -> bool:
        r"""Whether the explicit steps are certified stable; else warns or
        raises (:obj:`stability`)."""
        learned = op.value.requires_grad or isinstance(sigma2, Tensor)
        free = self.scheme == 'implicit' or self.K == 0  # no explicit step
        if free or learned and self._checked_learned:
            return free
        self._checked_learned = learned
        mode = 'ignore' if self._warned else self.stability  # (warn once)
        stable = op.certify(float(sigma2), mode, self._stacklevel)
        self._warned |= not stable and mode == 'warn'
        return stable and not learned

    def _propagate_steps(self, x: Tensor, op: DiffusionOperator,
                         sigma2: Union[Tensor, float]) -> Tensor:
        r"""The definition: :math:`K` times :meth:`propagate`, each entry
        :math:`M_{ij}` of :math:`\mathbf{I} - \sigma^2 \mathbf{L}` as the
        flux :math:`M_{ij} (\mathbf{x}_j - \mathbf{x}_i)` (which an
        explainer's edge mask scales), plus
        :math:`(\mathbf{M}\mathbf{1})_i \mathbf{x}_i`."""
        if self.scheme != 'explicit':
            raise ValueError("PyG's explainers need scheme='explicit' (the "
                             "implicit scheme has no per-edge messages)")
        index, weight = op.step_matrix(sigma2, x.dtype, per_edge=True)
        self._off_diagonal = op.graph[0][0] != op.graph[0][1]
        E = index.size(1) - op.num_nodes
        off, row_sum = weight[:E], weight[E:] + scatter(
            weight[:E], index[1, :E], 0, dim_size=op.num_nodes)
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
                f'normalization={self.normalization!r}'] + [
            f'{name}={getattr(self, name)!r}' for name, default in [
                ('dropout', 0.), ('learn_sigma2', False),
                ('scheme', 'explicit'), ('cached', False)]
            if getattr(self, name) != default]
        return f'{self.__class__.__name__}({", ".join(args)})'
