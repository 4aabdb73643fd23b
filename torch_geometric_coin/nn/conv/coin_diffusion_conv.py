import math
import warnings
from typing import NamedTuple, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter

from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.typing import Adj, OptTensor, SparseTensor
from torch_geometric.utils import (
    is_torch_sparse_tensor,
    scatter,
    spmm,
    to_edge_index,
)

from torch_geometric_coin.ops import (
    CSROperator,
    explicit_diffusion,
    implicit_diffusion,
)
from torch_geometric_coin.utils.diffusion_laplacian import (
    check_normalization,
    diffusion_laplacian,
    gershgorin_bound,
    laplacian_diagonal,
)

LEARN_EDGE_WEIGHTS = (None, 'kernel', 'per_edge')
STABILITY = ('warn', 'raise', 'ignore')
SCHEMES = ('explicit', 'implicit')


class DiffusionGraph(NamedTuple):
    r"""The parameter-free part of a diffusion operator, prepared once per
    graph (and cached with :obj:`cached=True`)."""
    num_nodes: int
    edge_index: Tensor  # (2, E): the input edges, (source, target)
    edge_weight: Optional[Tensor]  # (E,): the input weights, validated
    off_mask: Tensor  # (E,): edges that are not self-loops
    full_index: Tensor  # (2, E_off + N): off-diagonal edges, then the loops
    csr_perm: Tensor  # order of `full_index` in the CSR layout of `op`
    op: CSROperator  # the CSR layout of L (and of its transpose)
    lap: Optional[Tensor]  # values of L on `full_index`, if parameter-free
    lap_csr: Optional[Tensor]  # the same values in the CSR order of `op`
    symmetric: Optional[bool]  # whether L is symmetric, if parameter-free
    bound: Optional[float]  # Gershgorin bound of L, when parameter-free


class CoinDiffusionConv(MessagePassing):
    r"""The diffusion layer of Convection-Diffusion Networks (COIN) from the
    `"Convection-Diffusion Equation: A Theoretically Certified Framework for
    Neural Networks" <https://arxiv.org/abs/2403.15726>`_ paper.

    It takes :math:`K` explicit Euler steps of the graph heat equation
    :math:`\partial_t \mathbf{u} = -\sigma^2 \mathbf{L} \mathbf{u}`:

    .. math::
        \mathbf{X}^{(0)} &= \mathbf{X}

        \mathbf{X}^{(k)} &= \mathbf{X}^{(k-1)} - \sigma^2 \mathbf{L}
        \mathbf{X}^{(k-1)} = (\mathbf{I} - \sigma^2 \mathbf{L})
        \mathbf{X}^{(k-1)}

        \mathbf{X}^{\prime} &= \mathbf{X}^{(K)},

    i.e. :math:`\mathbf{x}_i \leftarrow \mathbf{x}_i + \sigma^2 \sum_j
    A_{ij} (\mathbf{x}_j - \mathbf{x}_i)` for :obj:`normalization='coin'`,
    where :math:`\mathbf{A} = \tilde{\mathbf{D}}^{-1/2} (\mathbf{W} +
    \mathbf{I}) \tilde{\mathbf{D}}^{-1/2}` is the GCN normalisation and
    :math:`\mathbf{L} = \mathrm{diag}(\mathbf{A}\mathbf{1}) - \mathbf{A}`.
    See :func:`~torch_geometric_coin.utils.diffusion_laplacian` for the other
    Laplacians. The layer diffuses whatever it is given (probabilities,
    logits, hidden features); :obj:`K=0` is the identity.

    The CSR layout of :math:`\mathbf{L}` (and of its transpose) is prepared
    once per graph (cached with :obj:`cached=True`); each forward pass only
    computes the values that depend on parameters and runs the :math:`K`
    sparse products as one fused autograd operator
    (:func:`~torch_geometric_coin.ops.explicit_diffusion`), whose backward
    pass costs :math:`K` more products for the gradient of the input, one
    more for a learnable :math:`\sigma^2`, and one sampled product per step
    for learnable edge weights. :obj:`fused=False` applies the step matrix
    :math:`\mathbf{I} - \sigma^2 \mathbf{L}` :math:`K` times through
    :meth:`message_and_aggregate` with plain autograd instead. The explicit
    scheme is stable when :math:`\sigma^2 \lambda_{\max}(\mathbf{L}) \leq
    2`; the layer checks this against a Gershgorin bound of
    :math:`\lambda_{\max}` (see :obj:`stability`).

    :obj:`scheme='implicit'` takes backward Euler steps instead,
    :math:`(\mathbf{I} + \sigma^2 \mathbf{L}) \mathbf{X}^{(k)} =
    \mathbf{X}^{(k-1)}`, unconditionally stable, each solved by
    Jacobi-preconditioned conjugate gradients when :math:`\mathbf{L}` is
    symmetric (:obj:`'coin'`, :obj:`'sym'` and :obj:`None` on undirected
    graphs) or BiCGSTAB otherwise (:obj:`'rw'`, directed graphs), with the
    gradient from the adjoint systems
    (:func:`~torch_geometric_coin.ops.implicit_diffusion`).

    Learnable edge weights (:obj:`learn_edge_weights`) replace the input
    weights :math:`a_{ij}` (ones if not given) before normalisation by

    * :obj:`'kernel'`: the inductive Gaussian kernel
      :math:`w_{ij} = a_{ij} \exp(-\| \mathbf{P}(\mathbf{h}_i -
      \mathbf{h}_j)\|^2)` with a learnable projection :math:`\mathbf{P}`
      of node features :math:`\mathbf{h}` (:obj:`h` in :meth:`forward`,
      :obj:`x` by default);
    * :obj:`'per_edge'`: the transductive :math:`w_{ij} = a_{ij}
      \mathrm{softplus}(\theta_{ij})`, one free parameter per edge
      (initialised to :math:`w_{ij} = a_{ij}`).

    Both stay non-negative, which the comparison principle needs, and the
    gradients flow through the normalisation.

    Args:
        K (int, optional): Number of diffusion steps :math:`K`.
            (default: :obj:`20`)
        sigma2 (float, optional): Diffusion strength (step size)
            :math:`\sigma^2 > 0`. (default: :obj:`0.35`)
        normalization (str, optional): The Laplacian: :obj:`'coin'`,
            :obj:`'sym'`, :obj:`'rw'`, or :obj:`None` for
            :math:`\mathrm{diag}(\mathbf{W}\mathbf{1}) - \mathbf{W}` on weights
            that are already normalised (such as the output of
            :func:`~torch_geometric_coin.utils.gaussian_knn_graph`).
            (default: :obj:`'coin'`)
        add_self_loops (bool, optional): Whether to add self-loops of weight
            one before normalising. (default: :obj:`True`)
        learn_sigma2 (bool, optional): If set to :obj:`True`,
            :math:`\sigma^2 = \mathrm{softplus}(\rho)` is learned, starting at
            :obj:`sigma2`. (default: :obj:`False`)
        learn_edge_weights (str, optional): :obj:`None`, :obj:`'kernel'` or
            :obj:`'per_edge'` (see above). (default: :obj:`None`)
        kernel_channels (int, optional): Size of :math:`\mathbf{h}`, needed
            for :obj:`learn_edge_weights='kernel'`. (default: :obj:`None`)
        num_edges (int, optional): Number of edges, needed for
            :obj:`learn_edge_weights='per_edge'`. (default: :obj:`None`)
        dropout (float, optional): Dropout probability applied to the node
            features before each step during training. (default: :obj:`0.`)
        cached (bool, optional): If set to :obj:`True`, the layer caches the
            graph structure (and the Laplacian when it has no learnable
            weights) on first execution. Only for transductive learning.
            (default: :obj:`False`)
        stability (str, optional): What to do when :math:`\sigma^2` times the
            Gershgorin bound of :math:`\lambda_{\max}(\mathbf{L})` exceeds
            :math:`2`, so that the explicit scheme may amplify some modes:
            :obj:`'warn'`, :obj:`'raise'` or :obj:`'ignore'`. Only for
            the explicit scheme. (default: :obj:`'warn'`)
        scheme (str, optional): :obj:`'explicit'` or :obj:`'implicit'` Euler
            steps. (default: :obj:`'explicit'`)
        fused (bool, optional): Run the explicit steps as one fused
            operator with its own backward pass; if :obj:`False`, through
            :meth:`propagate` with plain autograd. (default: :obj:`True`)
        checkpoint (bool, optional): For learnable edge weights with the
            explicit scheme, store only every
            :math:`\lceil \sqrt{K} \rceil`-th state for the backward pass
            and recompute the others (:math:`K` more products). The gradients
            of the input and of :math:`\sigma^2` never store the states.
            (default: :obj:`False`)
        tol (float, optional): Relative residual tolerance of each implicit
            solve. (default: :obj:`1e-5`)
        max_iter (int, optional): Iteration limit of each implicit solve;
            a solve that does not converge raises
            :class:`~torch_geometric_coin.ops.ConvergenceError`.
            (default: :obj:`1000`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F)`,
          edge indices :math:`(2, |\mathcal{E}|)` or a sparse adjacency
          :math:`(|\mathcal{V}|, |\mathcal{V}|)`,
          edge weights :math:`(|\mathcal{E}|)` *(optional)*,
          kernel features :math:`(|\mathcal{V}|, H)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, F)`
    """
    _cache: Optional[DiffusionGraph]

    def __init__(
        self,
        K: int = 20,
        sigma2: float = 0.35,
        normalization: Optional[str] = 'coin',
        add_self_loops: bool = True,
        learn_sigma2: bool = False,
        learn_edge_weights: Optional[str] = None,
        kernel_channels: Optional[int] = None,
        num_edges: Optional[int] = None,
        dropout: float = 0.,
        cached: bool = False,
        stability: str = 'warn',
        scheme: str = 'explicit',
        fused: bool = True,
        checkpoint: bool = False,
        tol: float = 1e-5,
        max_iter: int = 1000,
        **kwargs,
    ):
        kwargs.setdefault('aggr', 'add')
        super().__init__(**kwargs)

        if isinstance(K, bool) or not isinstance(K, int) or K < 0:
            raise ValueError(f"'K' must be a non-negative integer (got {K!r})")
        if not isinstance(sigma2, (int, float)) or not math.isfinite(sigma2) \
                or sigma2 <= 0:
            raise ValueError(f"'sigma2' must be a positive finite number "
                             f"(got {sigma2!r})")
        check_normalization(normalization)
        if learn_edge_weights not in LEARN_EDGE_WEIGHTS:
            raise ValueError(f"Unknown 'learn_edge_weights' "
                             f"{learn_edge_weights!r}: expected one of "
                             f"{LEARN_EDGE_WEIGHTS}")
        if not 0. <= dropout < 1.:
            raise ValueError(f"'dropout' must be in [0, 1) (got {dropout})")
        if stability not in STABILITY:
            raise ValueError(f"Unknown 'stability' {stability!r}: expected "
                             f"one of {STABILITY}")
        if scheme not in SCHEMES:
            raise ValueError(f"Unknown 'scheme' {scheme!r}: expected one of "
                             f"{SCHEMES}")
        if not isinstance(tol, (int, float)) or not 0 < tol < 1:
            raise ValueError(f"'tol' must be in (0, 1) (got {tol!r})")
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) \
                or max_iter < 1:
            raise ValueError(f"'max_iter' must be a positive integer "
                             f"(got {max_iter!r})")
        if self.flow != 'source_to_target':
            raise ValueError(f"'{self.__class__.__name__}' only supports "
                             f"flow='source_to_target'")

        self.K = K
        self.sigma2_init = float(sigma2)
        self.normalization = normalization
        self.add_self_loops = add_self_loops
        self.learn_sigma2 = learn_sigma2
        self.learn_edge_weights = learn_edge_weights
        self.kernel_channels = kernel_channels
        self.num_edges = num_edges
        self.dropout = dropout
        self.cached = cached
        self.stability = stability
        self.scheme = scheme
        self.fused = fused
        self.checkpoint = checkpoint
        self.tol = float(tol)
        self.max_iter = max_iter

        if learn_sigma2:
            self.sigma2_raw = Parameter(torch.empty(()))
        else:
            self.register_parameter('sigma2_raw', None)

        self.kernel = None
        self.edge_param = None
        if learn_edge_weights == 'kernel':
            if not isinstance(kernel_channels, int) or kernel_channels <= 0:
                raise ValueError("learn_edge_weights='kernel' needs a "
                                 "positive 'kernel_channels' (the size of "
                                 "the kernel features 'h')")
            self.kernel = Linear(kernel_channels, kernel_channels, bias=False,
                                 weight_initializer='glorot')
        elif learn_edge_weights == 'per_edge':
            if not isinstance(num_edges, int) or num_edges <= 0:
                raise ValueError("learn_edge_weights='per_edge' needs a "
                                 "positive 'num_edges'")
            self.edge_param = Parameter(torch.empty(num_edges))

        self._cache = None
        self._warned = False
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        if self.sigma2_raw is not None:
            with torch.no_grad():
                self.sigma2_raw.fill_(_inv_softplus(self.sigma2_init))
        if self.kernel is not None:
            self.kernel.reset_parameters()
        if self.edge_param is not None:
            with torch.no_grad():
                self.edge_param.fill_(_inv_softplus(1.0))
        self._cache = None
        self._warned = False

    @property
    def sigma2(self) -> Union[Tensor, float]:
        r"""The diffusion strength :math:`\sigma^2` (a tensor if learned)."""
        if self.sigma2_raw is not None:
            return F.softplus(self.sigma2_raw)
        return self.sigma2_init

    def forward(
        self,
        x: Tensor,
        edge_index: Adj,
        edge_weight: OptTensor = None,
        h: OptTensor = None,
    ) -> Tensor:
        _check_features(x, 'x')
        num_nodes = x.size(0)

        in_dtype = x.dtype
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()  # Diffuse low-precision inputs in float32.

        graph = self._cache
        if graph is None:
            graph = self._prepare(edge_index, edge_weight, num_nodes, x.dtype)
            if self.cached:
                self._cache = graph
        elif graph.num_nodes != num_nodes:
            raise ValueError(f"The cached graph has {graph.num_nodes} "
                             f"nodes but 'x' has {num_nodes} rows; "
                             f"use 'cached=False' for changing graphs")

        if self.K == 0:
            return x.to(in_dtype)

        lap, symmetric, bound = graph.lap, graph.symmetric, graph.bound
        if lap is None:
            weight = self._edge_weight(graph, x, h)
            adj, diag = diffusion_laplacian(graph.edge_index, weight,
                                            num_nodes, self.normalization,
                                            self.add_self_loops, x.dtype)
            lap = _step_laplacian(graph.edge_index, graph.off_mask, adj,
                                  diag)
            if self.scheme == 'explicit' and self.stability != 'ignore':
                bound = float(
                    gershgorin_bound(graph.edge_index, adj, diag,
                                     self.normalization))

        sigma2 = self.sigma2
        if self.scheme == 'explicit' and bound is not None:
            self._check_stability(float(sigma2.detach()) if isinstance(
                sigma2, Tensor) else sigma2, bound)

        if self.explain:
            x = self._explain_steps(x, graph, lap, sigma2)
        elif self.fused or self.scheme == 'implicit':
            lap_csr = graph.lap_csr if graph.lap is not None \
                else lap[graph.csr_perm]
            x = self._fused_steps(x, graph, lap_csr, sigma2, symmetric)
        else:
            # The step matrix M = I - sigma2 * L, applied K times by
            # `propagate` (plain autograd through `spmm`); coalesced, since
            # the autograd of sparse products rejects duplicate entries.
            num_off = lap.numel() - num_nodes
            value = torch.cat([-sigma2 * lap[:num_off],
                               1.0 - sigma2 * lap[num_off:]])
            step_index = torch.sparse_coo_tensor(
                graph.full_index.flip(0), value,
                (num_nodes, num_nodes), check_invariants=False).coalesce()
            step_index = step_index.to_sparse_csr()
            for _ in range(self.K):
                if self.dropout > 0:
                    x = F.dropout(x, p=self.dropout, training=self.training)
                # propagate_type: (x: Tensor, edge_weight: OptTensor,
                #                  self_weight: OptTensor)
                x = self.propagate(step_index, x=x, edge_weight=None,
                                   self_weight=None)

        if self.scheme == 'explicit' and not bool(torch.isfinite(x).all()):
            raise FloatingPointError(
                f"Explicit diffusion overflowed after {self.K} steps with "
                f"sigma2={float(sigma2):.4g}: sigma2 times the largest "
                f"eigenvalue of the Laplacian exceeds 2 (Gershgorin bound "
                f"{bound if bound is not None else 'not computed'}). Lower "
                f"'sigma2' or 'K', or use scheme='implicit'")
        return x.to(in_dtype)

    def _fused_steps(self, x: Tensor, graph: DiffusionGraph, lap: Tensor,
                     sigma2: Union[Tensor, float],
                     symmetric: Optional[bool]) -> Tensor:
        # One autograd node for all K steps; with dropout before each step,
        # one node per step.
        drop = self.dropout > 0 and self.training
        if drop and symmetric is None:  # decide once, not at every step
            symmetric = graph.op.is_symmetric(lap)
        for _ in range(self.K if drop else 1):
            if drop:
                x = F.dropout(x, p=self.dropout, training=True)
            K = 1 if drop else self.K
            if self.scheme == 'implicit':
                x = implicit_diffusion(x, lap, sigma2, graph.op, K,
                                       symmetric, self.tol, self.max_iter)
            else:
                x = explicit_diffusion(x, lap, sigma2, graph.op, K,
                                       symmetric, self.checkpoint)
        return x

    def _explain_steps(self, x: Tensor, graph: DiffusionGraph, lap: Tensor,
                       sigma2: Union[Tensor, float]) -> Tensor:
        if self.scheme != 'explicit':
            raise ValueError("PyG's Explainer needs scheme='explicit' (the "
                             "implicit scheme has no per-edge messages)")
        # Explainers mask messages: write each off-diagonal entry as the
        # flux sigma2 * A_ij * (x_j - x_i), so that a masked edge stops
        # exchanging mass instead of losing it.
        num_nodes = graph.num_nodes
        num_off = lap.numel() - num_nodes
        off = -sigma2 * lap[:num_off]
        flux = scatter(off, graph.full_index[1, :num_off], 0,
                       dim_size=num_nodes, reduce='sum')
        value = torch.cat([off, 1.0 - sigma2 * lap[num_off:]])
        self_weight = torch.cat([-off, flux])
        for _ in range(self.K):
            if self.dropout > 0:
                x = F.dropout(x, p=self.dropout, training=self.training)
            # propagate_type: (x: Tensor, edge_weight: OptTensor,
            #                  self_weight: OptTensor)
            x = self.propagate(graph.full_index, x=x, edge_weight=value,
                               self_weight=self_weight)
        return x

    def _prepare(self, edge_index: Adj, edge_weight: OptTensor,
                 num_nodes: int, dtype: torch.dtype) -> DiffusionGraph:
        edge_index, edge_weight = _to_edge_index(edge_index, edge_weight,
                                                 num_nodes)
        if edge_weight is not None:
            edge_weight = edge_weight.to(dtype)
        if self.edge_param is not None \
                and self.edge_param.numel() != edge_index.size(1):
            raise ValueError(f"The layer learns {self.edge_param.numel()} "
                             f"edge weights ('num_edges') but the graph has "
                             f"{edge_index.size(1)} edges")

        off_mask = edge_index[0] != edge_index[1]
        loop = torch.arange(num_nodes, device=edge_index.device)
        full_index = torch.cat([
            edge_index[:, off_mask],
            torch.stack([loop, loop]),
        ], dim=1)
        # The CSR layout of L (row = target, col = source); its diagonal
        # entries are the last `num_nodes` ones of `full_index`.
        num_off = full_index.size(1) - num_nodes
        op, csr_perm = CSROperator.from_coo(full_index[1], full_index[0],
                                            num_nodes, num_off + loop)

        lap = lap_csr = symmetric = None
        bound: Optional[float] = None
        if self.learn_edge_weights is None:
            adj, diag = diffusion_laplacian(edge_index, edge_weight,
                                            num_nodes, self.normalization,
                                            self.add_self_loops, dtype)
            lap = _step_laplacian(edge_index, off_mask, adj, diag)
            lap_csr = lap[csr_perm]
            symmetric = op.is_symmetric(lap_csr)
            if self.scheme == 'explicit' and self.stability != 'ignore':
                bound = float(
                    gershgorin_bound(edge_index, adj, diag,
                                     self.normalization))

        return DiffusionGraph(num_nodes, edge_index, edge_weight, off_mask,
                              full_index, csr_perm, op, lap, lap_csr,
                              symmetric, bound)

    def _edge_weight(self, graph: DiffusionGraph, x: Tensor,
                     h: OptTensor) -> Tensor:
        weight = graph.edge_weight
        if weight is None:
            weight = x.new_ones(graph.edge_index.size(1))
        if self.edge_param is not None:
            return weight * F.softplus(self.edge_param).to(weight.dtype)
        assert self.kernel is not None
        h = x if h is None else h
        _check_features(h, 'h')
        if h.size(0) != x.size(0) or h.size(1) != self.kernel_channels:
            raise ValueError(f"'h' must have shape ({x.size(0)}, "
                             f"{self.kernel_channels}) (got "
                             f"{tuple(h.size())})")
        ph = self.kernel(h.to(x.dtype))
        # edge_updater_type: (ph: Tensor, edge_weight: Tensor)
        return self.edge_updater(graph.edge_index, ph=ph, edge_weight=weight)

    def edge_update(self, ph_i: Tensor, ph_j: Tensor,
                    edge_weight: Tensor) -> Tensor:
        return edge_weight * torch.exp(-(ph_i - ph_j).square().sum(dim=-1))

    def _check_stability(self, sigma2: float, bound: float):
        if self.stability == 'ignore' or sigma2 * bound <= 2.0:
            return
        msg = (f"Explicit diffusion may be unstable: sigma2 * bound = "
               f"{sigma2:.4g} * {bound:.4g} = {sigma2 * bound:.4g} > 2, "
               f"where 'bound' is the Gershgorin upper bound of the largest "
               f"eigenvalue of the '{self.normalization}' Laplacian. The "
               f"scheme is guaranteed stable for sigma2 <= "
               f"{2.0 / bound:.4g}")
        if self.stability == 'raise':
            raise ValueError(msg)
        if not self._warned:
            warnings.warn(msg, stacklevel=3)
            self._warned = True

    def message(self, x_i: Tensor, x_j: Tensor, edge_weight: Tensor,
                self_weight: Tensor) -> Tensor:
        return edge_weight.view(-1, 1) * x_j + self_weight.view(-1, 1) * x_i

    def explain_message(self, inputs: Tensor,
                        dim_size: Optional[int]) -> Tensor:
        # The explain path always sends the input's off-diagonal edges in
        # their order, then one message per node (the input's self-loops are
        # folded into the diagonal). PyG re-maps the mask only when the
        # counts differ, which misplaces it on a graph with exactly N loops.
        edge_mask = self._edge_mask
        if edge_mask is None:
            raise ValueError("Could not find a pre-defined 'edge_mask' to "
                             "explain. Did you forget to initialize it?")
        if self._apply_sigmoid:
            edge_mask = edge_mask.sigmoid()
        edge_mask = torch.cat([edge_mask[self._loop_mask],
                               edge_mask.new_ones(dim_size)])
        return inputs * edge_mask.view(-1, 1)

    def message_and_aggregate(self, adj_t: Adj, x: Tensor) -> Tensor:
        return spmm(adj_t, x, reduce=self.aggr)

    def __repr__(self) -> str:
        args = [f'K={self.K}', f'sigma2={self.sigma2_init}',
                f'normalization={self.normalization!r}']
        if self.learn_sigma2:
            args.append('learn_sigma2=True')
        if self.learn_edge_weights is not None:
            args.append(f'learn_edge_weights={self.learn_edge_weights!r}')
        if self.dropout > 0:
            args.append(f'dropout={self.dropout}')
        if self.scheme != 'explicit':
            args.append(f'scheme={self.scheme!r}')
        return f'{self.__class__.__name__}({", ".join(args)})'


def _inv_softplus(value: float) -> float:
    return value + math.log(-math.expm1(-value))


def _check_features(x: Tensor, name: str):
    if not isinstance(x, Tensor) or x.dim() != 2:
        shape = tuple(x.size()) if isinstance(x, Tensor) else type(x)
        raise ValueError(f"'{name}' must be a 2-D tensor of shape "
                         f"[num_nodes, num_channels] (got {shape})")
    if not x.is_floating_point():
        raise TypeError(f"'{name}' must be a floating point tensor "
                        f"(got {x.dtype})")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"'{name}' contains NaN or infinite values")


def _to_edge_index(edge_index: Adj, edge_weight: OptTensor, num_nodes: int):
    r"""Turns any supported adjacency into validated :obj:`(edge_index,
    edge_weight)` with :obj:`edge_index = (source, target)`."""
    if isinstance(edge_index, SparseTensor):
        if edge_weight is not None:
            raise ValueError("Pass edge weights as the values of the "
                             "'SparseTensor', not as 'edge_weight'")
        _check_square(tuple(edge_index.sizes()), num_nodes)
        row, col, edge_weight = edge_index.coo()  # adj_t: (target, source)
        edge_index = torch.stack([col, row])
    elif is_torch_sparse_tensor(edge_index):
        if edge_weight is not None:
            raise ValueError("Pass edge weights as the values of the sparse "
                             "tensor, not as 'edge_weight'")
        if edge_index.layout == torch.sparse_csc:
            edge_index = edge_index.to_sparse_csr()
        _check_square(tuple(edge_index.size()), num_nodes)
        adj_t, edge_weight = to_edge_index(edge_index)
        edge_index = adj_t.flip(0)
    elif isinstance(edge_index, Tensor):
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"'edge_index' must have shape [2, num_edges] "
                             f"(got {tuple(edge_index.size())})")
        if edge_index.dtype not in (torch.long, torch.int, torch.int16,
                                    torch.int8, torch.uint8):
            raise TypeError(f"'edge_index' must be an integer tensor "
                            f"(got {edge_index.dtype})")
        edge_index = edge_index.long()
        if edge_index.numel() > 0 and (int(edge_index.min()) < 0 or
                                       int(edge_index.max()) >= num_nodes):
            raise ValueError(f"'edge_index' contains node indices outside "
                             f"[0, {num_nodes - 1}] (range found: "
                             f"[{int(edge_index.min())}, "
                             f"{int(edge_index.max())}])")
    else:
        raise TypeError(f"Unsupported adjacency type {type(edge_index)}")

    if edge_weight is not None:
        if edge_weight.dim() != 1 or edge_weight.numel() != edge_index.size(1):
            raise ValueError(f"'edge_weight' must have shape "
                             f"[{edge_index.size(1)}] (got "
                             f"{tuple(edge_weight.size())})")
        if not edge_weight.is_floating_point():
            edge_weight = edge_weight.float()
        if not bool(torch.isfinite(edge_weight).all()):
            raise ValueError("'edge_weight' contains NaN or infinite values")
        if bool((edge_weight < 0).any()):
            raise ValueError("'edge_weight' must be non-negative (the "
                             "comparison principle needs it)")
    return edge_index, edge_weight


def _check_square(size, num_nodes: int):
    if size[0] != size[1] or size[0] != num_nodes:
        raise ValueError(f"The sparse adjacency must have shape "
                         f"[{num_nodes}, {num_nodes}] to match 'x' "
                         f"(got {list(size)})")


def _step_laplacian(edge_index: Tensor, off_mask: Tensor, adj: Tensor,
                    diag: Tensor) -> Tensor:
    r"""The values of :math:`\mathbf{L} = \mathrm{diag}(\mathbf{l}) -
    \mathbf{A}` on the off-diagonal input edges, then on the diagonal,
    which absorbs the self-loops of the input."""
    return torch.cat([-adj[off_mask],
                      laplacian_diagonal(edge_index, adj, diag)])
