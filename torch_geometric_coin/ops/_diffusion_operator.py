import warnings
from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from torch_geometric.typing import Adj, OptTensor, SparseTensor
from torch_geometric.utils import (
    is_torch_sparse_tensor,
    scatter,
    to_edge_index,
)

from torch_geometric_coin.ops._krylov import krylov_solve
from torch_geometric_coin.utils import coin_norm

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

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(forward={self.forward}, '
                f'adjoint={self.adjoint})')


class _Layout:
    r"""The parameter-free CSR structure of a square matrix with exactly one
    diagonal entry per row, and that of its transpose."""
    def __init__(self, row: Tensor, col: Tensor, num_nodes: int):
        n = num_nodes
        self.num_nodes = n
        self.perm = torch.argsort(row * n + col)  # COO order -> CSR order
        self.row, self.col = row[self.perm], col[self.perm]
        self.crow = _compress(self.row, n)
        self.t_perm = torch.argsort(self.col * n + self.row)
        self.t_crow = _compress(self.col, n)
        self.t_col = self.row[self.t_perm]
        # The diagonal entries are the last `n` of the COO order.
        inv = torch.empty_like(self.perm)
        inv[self.perm] = torch.arange(self.perm.numel(), device=row.device)
        self.diag_pos = inv[row.numel() - n:]
        self.symmetric = bool(torch.equal(self.t_crow, self.crow)
                              and torch.equal(self.t_col, self.col))

    def matrix(self, value: Tensor, transpose: bool = False) -> Tensor:
        size = (self.num_nodes, self.num_nodes)
        crow, col = (self.t_crow, self.t_col) if transpose else (self.crow,
                                                                 self.col)
        if transpose:
            value = value[self.t_perm]
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', '.*Sparse CSR tensor support.*')
            return torch.sparse_csr_tensor(crow, col, value, size,
                                           check_invariants=False)

    def sddmm(self, a: Tensor, b: Tensor, chunk: int = 1 << 22) -> Tensor:
        r"""The sampled product :math:`\sum_c a_{ic} b_{jc}` on every entry
        :math:`(i, j)` of the layout (CSR order), in chunks of :obj:`chunk`
        entries to bound the memory of the gathers."""
        out = a.new_empty(self.col.numel())
        for start in range(0, out.numel(), chunk):
            end = start + chunk
            out[start:end] = (a[self.row[start:end]] *
                              b[self.col[start:end]]).sum(dim=-1)
        return out


class _StepMatrix:
    r"""Products with :math:`\mathbf{I} + s \mathbf{L}` and its transpose."""
    def __init__(self, layout: _Layout, value: Tensor, scale: Tensor,
                 symmetric: bool):
        value = scale * value
        value[layout.diag_pos] += 1.0
        self.layout, self.value, self.symmetric = layout, value, symmetric
        self._mat = layout.matrix(value)
        self._mat_t = self._mat if symmetric else None

    def mm(self, x: Tensor) -> Tensor:
        return torch.sparse.mm(self._mat, x)

    def tmm(self, x: Tensor) -> Tensor:
        if self._mat_t is None:
            self._mat_t = self.layout.matrix(self.value, transpose=True)
        return torch.sparse.mm(self._mat_t, x)

    def diagonal(self) -> Tensor:
        return self.value[self.layout.diag_pos]


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
        self.normalization: Optional[str] = None
        self.add_self_loops = True
        self._symmetric: Optional[bool] = None
        self._lambda_max: Optional[float] = None
        self._step = None  # (sigma2, dtype, I - sigma2 L) of fixed values

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
        edge_index, edge_weight = _check_graph(edge_index, edge_weight,
                                               num_nodes)
        if edge_weight is not None and dtype is not None:
            edge_weight = edge_weight.to(dtype)
        index, value = coin_norm(edge_index, edge_weight, num_nodes,
                                 normalization, add_self_loops, dtype=dtype)
        op = cls(index, value, num_nodes)
        op.graph = (edge_index, edge_weight)
        op.normalization, op.add_self_loops = normalization, add_self_loops
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
        index, value = coin_norm(edge_index, edge_weight, self.num_nodes,
                                 self.normalization, self.add_self_loops,
                                 dtype=self.value.dtype)
        op = DiffusionOperator(index, value, self.num_nodes, self._layout)
        op.graph = (edge_index, edge_weight)
        op.normalization = self.normalization
        op.add_self_loops = self.add_self_loops
        return op

    def matrix(self) -> Tensor:
        r"""The :obj:`torch.sparse_csr` matrix :math:`\mathbf{L}`."""
        return self._layout.matrix(self.value)

    @property
    def symmetric(self) -> bool:
        r"""Whether :math:`\mathbf{L}` is symmetric (to a few units of
        rounding); computed once."""
        if self._symmetric is None:
            value = self.value.detach()
            if not self._layout.symmetric:
                self._symmetric = False
            elif value.numel() == 0:
                self._symmetric = True
            else:
                tol = 16 * torch.finfo(value.dtype).eps * float(
                    value.abs().max())
                diff = (value[self._layout.t_perm] - value).abs().max()
                self._symmetric = bool(diff <= tol)
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
        rows = center + scatter(off, layout.row, 0, dim_size=n, reduce='sum')
        cols = center + scatter(off, layout.col, 0, dim_size=n, reduce='sum')
        return float(torch.minimum(rows.max(), cols.max()))

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
        """
        if K == 0:
            return x
        step = None
        if not self.value.requires_grad and not isinstance(sigma2, Tensor):
            # Fixed values and step size: I - sigma2 L is assembled once.
            key = (float(sigma2), x.dtype)
            if self._step is None or self._step[:2] != key:
                value = self.value.to(x.dtype)
                self._step = key + (_StepMatrix(
                    self._layout, value, -_as_tensor(sigma2, value),
                    self.symmetric), )
            step = self._step[2]
        sigma2 = _as_tensor(sigma2, x)
        symmetric = None if self.value.requires_grad else self.symmetric
        return _ExplicitDiffusion.apply(x, self.value.to(x.dtype), sigma2,
                                        self._layout, K, symmetric, step)

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
        """
        if K == 0:
            return x
        sigma2 = _as_tensor(sigma2, x)
        return _ImplicitDiffusion.apply(x, self.value.to(x.dtype), sigma2,
                                        self._layout, K, self.symmetric, tol,
                                        max_iter, stats)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_nodes={self.num_nodes}, '
                f'nnz={self.value.numel()})')


class _ExplicitDiffusion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, value, sigma2, layout, K, symmetric, step):
        _, need_value, need_sigma2 = ctx.needs_input_grad[:3]
        M = step or _StepMatrix(layout, value, -sigma2, bool(symmetric))
        # What the backward pass needs: all states u_0..u_{K-1} for the
        # gradient of the values, only u_{K-1} for sigma2 alone (M^k are
        # polynomials of L), none for the input alone.
        saved = []
        u = x
        for k in range(K):
            if need_value or (need_sigma2 and k == K - 1):
                saved.append(u)
            u = M.mm(u)
        _save(ctx, M, layout, K, value, sigma2, saved)
        return u

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        need, M, layout, K, value, sigma2, saved = _saved(ctx)
        need_x, need_value, need_sigma2 = need
        grad_value = grad_sigma2 = None
        g = grad_out
        if need_value:
            # dLoss/dM_ij = sum_k g_{k+1}[i] u_k[j]
            dvalue = torch.zeros_like(value)
            for u in reversed(saved):
                dvalue += layout.sddmm(g, u)
                g = M.tmm(g)
            grad_value = -sigma2 * dvalue
            if need_sigma2:
                grad_sigma2 = -(value * dvalue).sum()
        else:
            if need_sigma2:  # d u_K / d sigma2 = -K L M^{K-1} u_0
                L = layout.matrix(value)
                grad_sigma2 = -K * (grad_out *
                                    torch.sparse.mm(L, saved[-1])).sum()
            if need_x:
                for _ in range(K):
                    g = M.tmm(g)
        return g if need_x else None, grad_value, grad_sigma2, None, None, \
            None, None


class _ImplicitDiffusion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, value, sigma2, layout, K, symmetric, tol, max_iter,
                stats):
        _, need_value, need_sigma2 = ctx.needs_input_grad[:3]
        A = _StepMatrix(layout, value, sigma2, symmetric)
        diag = A.diagonal()
        saved = []
        u = x
        for _ in range(K):
            u, it = krylov_solve(A.mm, u, u, diag, symmetric, tol, max_iter)
            if stats is not None:
                stats.forward.append(it)
            if need_value:
                saved.append(u)
        if need_sigma2 and not need_value:
            saved.append(u)
        ctx.tol, ctx.max_iter, ctx.stats = tol, max_iter, stats
        _save(ctx, A, layout, K, value, sigma2, saved)
        return u

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        need, A, layout, K, value, sigma2, saved = _saved(ctx)
        diag, stats = A.diagonal(), ctx.stats
        need_x, need_value, need_sigma2 = need
        grad_value = grad_sigma2 = dvalue = None
        if need_value:
            dvalue = torch.zeros_like(value)
        # The adjoint: lam_k = A^{-T} lam_{k+1}, lam_{K+1} = grad_out.
        lam = grad_out
        for k in reversed(range(K)):
            lam, it = krylov_solve(A.tmm, lam, lam, diag, A.symmetric,
                                   ctx.tol, ctx.max_iter)
            if stats is not None:
                stats.adjoint.append(it)
            if need_value:  # dLoss/dA_ij = -sum_k lam_k[i] u_k[j]
                dvalue -= layout.sddmm(lam, saved[k])
            elif need_sigma2 and k == K - 1:
                # u_K = R^K u_0 with R = A^{-1}, dR/dsigma2 = -R L R, so
                # d u_K / d sigma2 = -K R L u_K.
                L = layout.matrix(value)
                grad_sigma2 = -K * (lam * torch.sparse.mm(L, saved[0])).sum()
                if not need_x:
                    break
        if need_value:
            grad_value = sigma2 * dvalue
            if need_sigma2:
                grad_sigma2 = (value * dvalue).sum()
        return (lam if need_x else None, grad_value, grad_sigma2, None, None,
                None, None, None, None)


def _save(ctx, matrix, layout, K, value, sigma2, saved):
    ctx.matrix, ctx.layout, ctx.K = matrix, layout, K
    ctx.save_for_backward(value, sigma2, *saved)


def _saved(ctx):
    value, sigma2, *saved = ctx.saved_tensors
    return (ctx.needs_input_grad[:3], ctx.matrix, ctx.layout, ctx.K, value,
            sigma2, saved)


def _as_tensor(sigma2: Union[float, Tensor], x: Tensor) -> Tensor:
    if not isinstance(sigma2, Tensor):
        return torch.tensor(float(sigma2), dtype=x.dtype, device=x.device)
    return sigma2.to(x.dtype)


def _compress(index: Tensor, num_nodes: int) -> Tensor:
    crow = index.new_zeros(num_nodes + 1)
    crow[1:] = torch.cumsum(torch.bincount(index, minlength=num_nodes), 0)
    return crow


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
