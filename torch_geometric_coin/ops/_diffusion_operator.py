from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor

from torch_geometric.typing import Adj, OptTensor, SparseTensor
from torch_geometric.utils import (
    is_torch_sparse_tensor,
    scatter,
    to_edge_index,
)

from torch_geometric_coin._checks import check_number
from torch_geometric_coin.ops._diffusion_kernels import (
    _Layout,
    _StepMatrix,
    explicit_diffusion,
    explicit_plain,
    functorch_active,
    implicit_diffusion,
    register_stats,
    values_symmetric,
)
from torch_geometric_coin.utils._coin_norm import NORMALIZATIONS, _coin_norm

# Graphs up to this size get the exact largest eigenvalue (dense).
_DENSE_EIGEN_NODES = 512
_LANCZOS_STEPS = 80


class SolverStats:
    r"""Iteration counts of the solves of
    :meth:`DiffusionOperator.implicit`: :obj:`forward` gets one entry per
    step of the forward pass, :obj:`adjoint` one per adjoint solve once the
    backward pass ran."""
    def __init__(self):
        self.forward: List[int] = []
        self.adjoint: List[int] = []
        self._id = register_stats(self)  # (for torch.compile)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(forward={self.forward}, '
                f'adjoint={self.adjoint})')


class DiffusionOperator:
    r"""The graph Laplacian :math:`\mathbf{L}` of COIN's diffusion in CSR
    layout, with the layout of its transpose, its values, whether it is
    symmetric and an estimate of its largest eigenvalue, and the two
    schemes that run on it: :math:`K` explicit Euler steps
    :math:`\mathbf{u} \leftarrow (\mathbf{I} - \sigma^2 \mathbf{L})
    \mathbf{u}` (:meth:`explicit`) and :math:`K` implicit ones
    :math:`(\mathbf{I} + \sigma^2 \mathbf{L}) \mathbf{u}^{(k+1)} =
    \mathbf{u}^{(k)}` (:meth:`implicit`), each one autograd node.

    Build it with :meth:`from_graph` (any PyG adjacency, validated once), or
    from the output of :func:`~torch_geometric_coin.utils.coin_norm`
    (:obj:`edge_index`, :obj:`value`: the off-diagonal entries, then one
    diagonal entry per node). :meth:`reweight` makes the operator of new
    edge weights on the same graph without rebuilding the layout. Only
    :attr:`value` depends on parameters; gradients flow to it.

    Args:
        edge_index (torch.Tensor): The entries :math:`(2, E)` in the layout
            of :func:`~torch_geometric_coin.utils.coin_norm` (entry
            :obj:`(j, i)` is :math:`L_{ij}`).
        value (torch.Tensor): The values :math:`(E)`.
        num_nodes (int): The number of nodes :math:`N`.
    """
    def __init__(self, edge_index: Tensor, value: Tensor, num_nodes: int,
                 _layout: Optional[_Layout] = None):
        if _layout is None:
            loop = torch.arange(num_nodes, device=edge_index.device)
            tail = edge_index[:, edge_index.size(1) - num_nodes:]
            if edge_index.size(1) < num_nodes or not torch.equal(
                    tail, torch.stack([loop, loop])):
                raise ValueError("'edge_index' must end with one diagonal "
                                 "entry per node, as 'coin_norm' returns")
            _layout = _Layout(edge_index[1], edge_index[0], num_nodes)
        self.num_nodes = num_nodes
        self.value = value[_layout.perm]  # in CSR order
        self._layout = _layout
        # The validated input of `from_graph`, for `reweight`.
        self.graph: Optional[Tuple[Tensor, OptTensor]] = None
        self._keep: Optional[Tensor] = None  # its edges that are no loops
        self.normalization: Optional[str] = None
        self.add_self_loops = True
        self._symmetric: Optional[bool] = None
        self._lambda_max: Optional[float] = None
        # (sigma2, dtype, sigma2 as a tensor, I - sigma2 L) of fixed values
        self._step = None

    @classmethod
    def from_graph(cls, edge_index: Adj, edge_weight: OptTensor,
                   num_nodes: int, normalization: Optional[str] = 'coin',
                   add_self_loops: bool = True,
                   dtype: Optional[torch.dtype] = None,
                   ) -> 'DiffusionOperator':
        r"""Validates a graph (:obj:`edge_index` with optional
        :obj:`edge_weight`, a :class:`torch_sparse.SparseTensor` or a
        :obj:`torch.sparse` COO/CSR/CSC adjacency of shape
        :obj:`[num_nodes, num_nodes]`, as PyG's :obj:`adj_t`) and builds
        the operator of its Laplacian
        (:func:`~torch_geometric_coin.utils.coin_norm`)."""
        check_number('num_nodes', num_nodes, integer=True, low=0)
        num_nodes = int(num_nodes)
        edge_index, edge_weight = _check_graph(edge_index, edge_weight,
                                               num_nodes)
        if edge_weight is not None and dtype is not None:
            edge_weight = edge_weight.to(dtype)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"Unknown 'normalization' {normalization!r}: "
                             f"expected one of {NORMALIZATIONS}")
        # The edges that are not self-loops, once per graph: `reweight` then
        # has output shapes that do not depend on data (torch.compile).
        keep = (edge_index[0] != edge_index[1]).nonzero().view(-1)
        index, value = _coin_norm(edge_index, edge_weight, num_nodes,
                                  normalization, add_self_loops, None, dtype,
                                  keep)
        op = cls(index, value, num_nodes)
        op.graph = (edge_index, edge_weight)
        op.normalization, op.add_self_loops = normalization, add_self_loops
        op._keep = keep
        return op

    def reweight(self, edge_weight: OptTensor) -> 'DiffusionOperator':
        r"""The operator of the same graph (built by :meth:`from_graph`)
        with new :obj:`edge_weight` (for instance learned ones, see
        :mod:`torch_geometric_coin.nn.edge_weights`): the CSR layout is
        shared, gradients flow through the normalisation. The weights are
        not validated (learned weights are non-negative by construction)."""
        if self.graph is None:
            raise ValueError("'reweight' needs an operator built by "
                             "'DiffusionOperator.from_graph'")
        edge_index = self.graph[0]
        if edge_weight is not None and (
                edge_weight.dim() != 1
                or edge_weight.numel() != edge_index.size(1)):
            raise ValueError(f"'edge_weight' must have shape "
                             f"[{edge_index.size(1)}] (got "
                             f"{tuple(edge_weight.size())})")
        index, value = _coin_norm(edge_index, edge_weight, self.num_nodes,
                                  self.normalization, self.add_self_loops,
                                  None, self.value.dtype, self._keep)
        op = DiffusionOperator(index, value, self.num_nodes, self._layout)
        op.graph = (edge_index, edge_weight)
        op.normalization = self.normalization
        op.add_self_loops = self.add_self_loops
        op._keep = self._keep
        return op

    def has_graph(self, edge_index: Adj) -> bool:
        r"""Whether :obj:`edge_index` (any adjacency :meth:`from_graph`
        takes) holds the same edges in the same order as the graph this
        operator was built from, and, for a sparse adjacency, the same
        weights (validated; a comparison on the device)."""
        if self.graph is None:
            raise ValueError("'has_graph' needs an operator built by "
                             "'DiffusionOperator.from_graph'")
        index, weight = _check_graph(edge_index, None, self.num_nodes)
        ref_index, ref_weight = self.graph
        if index.shape != ref_index.shape or not bool(
                torch.equal(index, ref_index)):
            return False
        if weight is None:  # (the weights come as 'edge_weight')
            return True
        if ref_weight is None:
            return bool((weight == 1).all())
        return bool(torch.equal(weight.to(ref_weight.dtype), ref_weight))

    def matrix(self) -> Tensor:
        r"""The :obj:`torch.sparse_csr` matrix :math:`\mathbf{L}`."""
        return self._layout.matrix(self.value)

    @property
    def symmetric(self) -> bool:
        r"""Whether :math:`\mathbf{L}` is symmetric (to a few units of
        rounding); computed once."""
        if self._symmetric is None:
            self._symmetric = values_symmetric(self._layout, self.value)
        return self._symmetric

    def gershgorin_bound(self) -> float:
        r"""Gershgorin's upper bound of the eigenvalue moduli of
        :math:`\mathbf{L}`, over rows and columns (the smaller of both):
        :math:`\max_i |L_{ii}| + \sum_{j \neq i} |L_{ij}|`."""
        n, layout = self.num_nodes, self._layout
        if n == 0:
            return 0.0
        off = self.value.detach().abs()
        center = off[layout.diag_pos]
        off = off.index_fill(0, layout.diag_pos, 0.)
        return gershgorin(layout.row, layout.col, off, center, n)

    def lambda_max(self) -> float:
        r"""An estimate of the largest eigenvalue of :math:`\mathbf{L}`, on
        which the stability of the explicit scheme depends
        (:math:`\sigma^2 \lambda_{\max} \leq 2`); computed once.

        For a symmetric :math:`\mathbf{L}`: exact for graphs of up to 512
        nodes, else the largest Ritz value of 80 Lanczos steps plus its
        residual bound (close to the true value, *e.g.*, :math:`5.78` for
        Cora's :obj:`'coin'` Laplacian, where the Gershgorin bound is
        :math:`11.48`), capped by :meth:`gershgorin_bound`. For a
        non-symmetric :math:`\mathbf{L}` (directed graphs, :obj:`'rw'`),
        whose eigenvalues may be complex, the Gershgorin bound, which keeps
        the explicit scheme stable on every disc it bounds.
        """
        if self._lambda_max is None:
            bound = self.gershgorin_bound()
            if self.symmetric and self.num_nodes > 0:
                bound = min(bound, self._symmetric_lambda_max())
            self._lambda_max = bound
        return self._lambda_max

    def _symmetric_lambda_max(self) -> float:
        n = self.num_nodes
        value = self.value.detach().to(torch.float64)
        mat = self._layout.matrix(value)
        if n <= _DENSE_EIGEN_NODES:
            return float(torch.linalg.eigvalsh(mat.to_dense())[-1])
        gen = torch.Generator().manual_seed(0)
        v = torch.rand(n, 1, generator=gen, dtype=torch.float64)
        v = (v / v.norm()).to(value.device)
        v_prev = torch.zeros_like(v)
        beta = v.new_zeros(())
        alphas, betas = [], []
        for _ in range(min(n, _LANCZOS_STEPS)):
            w = torch.sparse.mm(mat, v) - beta * v_prev
            alpha = (w * v).sum()
            w = w - alpha * v
            beta = w.norm()
            alphas.append(alpha)
            betas.append(beta)
            v_prev, v = v, w / torch.where(beta > 0, beta, 1.)
        a, b = torch.stack(alphas).cpu(), torch.stack(betas).cpu()
        T = torch.diag(a) + torch.diag(b[:-1], 1) + torch.diag(b[:-1], -1)
        evals, evecs = torch.linalg.eigh(T)
        return float(evals[-1] + (b[-1] * evecs[-1, -1]).abs())

    def explicit(self, x: Tensor, K: int,
                 sigma2: Union[float, Tensor]) -> Tensor:
        r"""Takes :math:`K` explicit Euler steps :math:`\mathbf{u}
        \leftarrow (\mathbf{I} - \sigma^2 \mathbf{L}) \mathbf{u}` from
        :obj:`x` :math:`(N, C)` as one autograd node.

        The forward pass costs :math:`K` CSR products. The backward pass
        costs :math:`K` products with the transpose (the same matrix when
        it is symmetric) for the gradient of :obj:`x`; a learnable
        :math:`\sigma^2` alone adds one product, since
        :math:`\partial \mathbf{u}_K / \partial \sigma^2 = -K \mathbf{L}
        \mathbf{M}^{K-1} \mathbf{u}_0`; learnable values of
        :math:`\mathbf{L}` store the :math:`K` states and add one sampled
        dense-dense product per step. Without learnable values no state is
        stored, so memory does not grow with :math:`K`.

        Second-order gradients (:obj:`create_graph=True`, *e.g.*, a
        gradient penalty) are exact: the backward pass is then recomputed
        with differentiable gathers (memory :math:`K |\mathcal{E}| C`, as
        unfused autograd). Under :mod:`torch.func` transforms
        (:func:`~torch.func.grad`, :func:`~torch.func.vmap`,
        :func:`~torch.func.jacrev`, ...) the steps run as such gathers too;
        under :func:`torch.compile` as the custom operator
        :obj:`torch_geometric_coin::explicit_diffusion` (no graph break).
        """
        _check_steps(K, sigma2)
        if K == 0:
            return x
        value = self.value.to(x.dtype)
        if functorch_active():
            return explicit_plain(x, value, _as_tensor(sigma2, x),
                                  self._layout, K)
        step = None
        if not self.value.requires_grad and not isinstance(sigma2, Tensor):
            # Fixed values and step size: I - sigma2 L is assembled once
            # (in eager mode; torch.compile uses the one of a first call).
            key = (float(sigma2), x.dtype)
            if self._step is None or self._step[:2] != key:
                if torch.compiler.is_compiling():
                    key = None
                else:
                    scale = _as_tensor(sigma2, x)
                    self._step = key + (scale, _StepMatrix.shifted(
                        self._layout, value, -scale, self.symmetric))
            if key is not None:
                sigma2, step = self._step[2:]
        if step is None:
            sigma2 = _as_tensor(sigma2, x)
        return explicit_diffusion(x, value, sigma2, self._layout, K,
                                  self._known_symmetric(), step)

    def implicit(self, x: Tensor, K: int, sigma2: Union[float, Tensor],
                 tol: float = 1e-5, max_iter: int = 1000,
                 stats: Optional[SolverStats] = None) -> Tensor:
        r"""Takes :math:`K` implicit (backward) Euler steps
        :math:`(\mathbf{I} + \sigma^2 \mathbf{L}) \mathbf{u}^{(k+1)} =
        \mathbf{u}^{(k)}` from :obj:`x` :math:`(N, C)`, unconditionally
        stable, each solved by
        :func:`~torch_geometric_coin.ops.krylov_solve` (conjugate gradients
        for a symmetric :math:`\mathbf{L}`, BiCGSTAB otherwise) from the
        previous state, to a relative residual :obj:`tol` in at most
        :obj:`max_iter` iterations (else
        :class:`~torch_geometric_coin.ops.ConvergenceError`).

        The gradient solves the adjoint systems in the backward pass, so
        memory does not grow with the solver iterations; for the gradient
        of :math:`\sigma^2` alone only :math:`\mathbf{u}^{(K)}` is kept
        (:math:`\partial \mathbf{u}^{(K)} / \partial \sigma^2 = -K
        \mathbf{R} \mathbf{L} \mathbf{u}^{(K)}`, :math:`\mathbf{R} =
        (\mathbf{I} + \sigma^2 \mathbf{L})^{-1}`); learnable values of
        :math:`\mathbf{L}` keep the :math:`K` states. Iteration counts go
        to :obj:`stats` (a :class:`SolverStats`) if given.

        Each solution meets :obj:`tol` in its *true* residual, computed in
        float64 at the end of the solve (and refined if the solver's
        updated residual drifted, as it does in float32 at a large
        :math:`\sigma^2`); where the dtype of :obj:`x` cannot meet
        :obj:`tol`, :class:`~torch_geometric_coin.ops.ConvergenceError`
        says so. Second-order gradients (:obj:`create_graph=True`) are exact
        (to the tolerance of the solves): the backward pass is then made of
        differentiable implicit steps. Runs under :func:`torch.compile` as
        the custom operator :obj:`torch_geometric_coin::implicit_diffusion`;
        :mod:`torch.func` transforms raise :class:`NotImplementedError`.
        """
        _check_steps(K, sigma2)
        check_number('tol', tol, low=0, high=1, open_low=True)
        check_number('max_iter', max_iter, integer=True, low=1)
        if K == 0:
            return x
        return implicit_diffusion(x, self.value.to(x.dtype),
                                  _as_tensor(sigma2, x), self._layout, K,
                                  self._known_symmetric(), tol, max_iter,
                                  stats)

    def _known_symmetric(self) -> Optional[bool]:
        r""":attr:`symmetric`, or :obj:`None` where finding it would read
        learned values (a host synchronisation in each call) or would run
        under :func:`torch.compile` (the fused operators find it)."""
        if self._symmetric is None and (self.value.requires_grad or
                                        torch.compiler.is_compiling()):
            return None if self._layout.symmetric else False
        return self.symmetric

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_nodes={self.num_nodes}, '
                f'nnz={self.value.numel()})')


def gershgorin(row: Tensor, col: Tensor, off: Tensor, center: Tensor,
               n: int) -> float:
    r"""Gershgorin's bound :math:`\min(\max_i \sum_j |L_{ij}|, \max_j
    \sum_i |L_{ij}|)` from the moduli of the off-diagonal entries
    :obj:`off` at :obj:`(row, col)` and of the diagonal :obj:`center`."""
    rows = center + scatter(off, row, 0, dim_size=n, reduce='sum')
    cols = center + scatter(off, col, 0, dim_size=n, reduce='sum')
    return float(torch.minimum(rows.max(), cols.max()))


def unstable_message(sigma2: float, lam: float, normalization: Optional[str],
                     implicit: bool = True) -> str:
    r"""The warning (or error) of an explicit scheme outside its stable
    range :math:`\sigma^2 \lambda_{\max} \leq 2` (pointing to the implicit
    scheme where the caller has one)."""
    return (f"Explicit diffusion is unstable: sigma2 * lambda_max = "
            f"{sigma2:.4g} * {lam:.4g} = {sigma2 * lam:.4g} > 2, where "
            f"lambda_max is the largest eigenvalue of the "
            f"{normalization!r} Laplacian; the scheme is stable for sigma2 "
            f"<= {2.0 / lam:.4g}"
            + (" (or use scheme='implicit')" if implicit else ""))


def _as_tensor(sigma2: Union[float, Tensor], x: Tensor) -> Tensor:
    if not isinstance(sigma2, Tensor):
        return torch.tensor(float(sigma2), dtype=x.dtype, device=x.device)
    return sigma2.to(x.dtype)


def _check_steps(K, sigma2):
    # Python numbers only: no host synchronisation.
    check_number('K', K, integer=True, low=0)
    if not isinstance(sigma2, Tensor):
        check_number('sigma2', sigma2)


def _check_graph(edge_index: Adj, edge_weight: OptTensor, num_nodes: int):
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
        if edge_index.layout == torch.sparse_coo:
            # Coalesced here (PyG's `to_edge_index` would only mark the
            # caller's tensor as coalesced, and is not differentiable in
            # the values); duplicates sum, as they do in the Laplacian.
            adj = edge_index.coalesce()
            adj_t, edge_weight = adj.indices(), adj.values()
        else:
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
        if edge_index.numel() > 0:
            low, high = int(edge_index.min()), int(edge_index.max())
            if low < 0 or high >= num_nodes:
                raise ValueError(f"'edge_index' contains node indices outside "
                                 f"[0, {num_nodes - 1}] (range found: "
                                 f"[{low}, {high}])")
    else:
        raise TypeError(f"Unsupported adjacency type "
                        f"'{type(edge_index).__name__}': expected an "
                        f"'edge_index' tensor, a 'SparseTensor' or a "
                        f"torch.sparse tensor")

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
