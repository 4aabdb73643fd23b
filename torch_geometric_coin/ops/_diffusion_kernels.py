r"""The fused diffusion schemes of
:class:`~torch_geometric_coin.ops.DiffusionOperator`: their kernels on the
CSR layout, and the autograd nodes that run them.

Three ways in, with the same results:

- eager autograd: one :class:`torch.autograd.Function` per scheme (the
  cheapest call). With :obj:`create_graph=True` the backward pass is
  recomputed with differentiable operations, so second-order gradients are
  exact;
- under :func:`torch.compile`: opaque :obj:`torch.library.custom_op`\ s on
  dense tensors (:obj:`torch_geometric_coin::explicit_diffusion`, ...) with
  fake and autograd registrations, so the graph has no sparse tensor, no
  host synchronisation and no break;
- under :mod:`torch.func` transforms: the explicit scheme as plain
  differentiable gathers and :obj:`index_add` (see :func:`explicit_plain`).
"""
import itertools
import warnings
import weakref
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from torch_geometric_coin.ops._krylov import krylov_solve

# What the forward pass keeps for the backward pass.
SAVE_NONE, SAVE_LAST, SAVE_ALL = 0, 1, 2

# The live layouts by the id of their `index` (see `_Layout.from_packed`).
_LAYOUTS: 'weakref.WeakValueDictionary' = weakref.WeakValueDictionary()

_NO_FUNC_IMPLICIT = (
    "scheme='implicit' does not support torch.func transforms (grad, vmap, "
    "jacrev, jacfwd, ...): its solves are data-dependent iterations. Use "
    "scheme='explicit', or torch.autograd (loss.backward() or "
    "torch.autograd.grad) for the implicit scheme")


class _Layout:
    r"""The parameter-free CSR structure of a square matrix with exactly one
    diagonal entry per row, and that of its transpose.

    :obj:`row` and :obj:`col` (int64) index the entries in CSR order for
    gathers; the CSR index tensors :obj:`crow`, :obj:`ccol` (and those of
    the transpose, :obj:`t_crow`, :obj:`t_ccol`) are int32 where the sizes
    allow, which halves the time of a sparse product on the CPU (no
    conversion of the indices in each call). All are views of two tensors,
    :obj:`index` and :obj:`position`, the arguments of the custom
    operators."""
    def __init__(self, row: Tensor, col: Tensor, num_nodes: int):
        n = num_nodes
        dtype = torch.int32 if max(n, row.numel()) < 2**31 - 1 \
            else torch.int64
        self.num_nodes = n
        self.perm = torch.argsort(row * n + col)  # COO order -> CSR order
        row, col = row[self.perm], col[self.perm]
        t_perm = torch.argsort(col * n + row)
        t_col = row[t_perm]
        # The diagonal entries are the last `n` of the COO order.
        inv = torch.empty_like(self.perm)
        inv[self.perm] = torch.arange(self.perm.numel(), device=row.device)
        diag_pos = inv[row.numel() - n:]
        self.index = torch.cat([_compress(row, n), col, _compress(col, n),
                                t_col]).to(dtype)
        self.position = torch.cat([row, col, t_perm, t_col, diag_pos])
        self._unpack(row.numel())
        self.symmetric = bool(torch.equal(self.t_crow, self.crow)
                              and torch.equal(self.t_col, self.col))
        self._transposed = None
        _LAYOUTS[id(self.index)] = self  # for `from_packed`

    def __setstate__(self, state):  # (copies and pickles)
        self.__dict__.update(state)
        if self.index is not None:
            _LAYOUTS[id(self.index)] = self

    def _unpack(self, nnz: int):
        n = self.num_nodes
        (self.crow, self.ccol, self.t_crow, self.t_ccol) = torch.split(
            self.index, [n + 1, nnz, n + 1, nnz])
        (self.row, self.col, self.t_perm, self.t_col,
         self.diag_pos) = torch.split(self.position, [nnz] * 4 + [n])

    @classmethod
    def from_packed(cls, index: Tensor, position: Tensor, nnz: int,
                    symmetric: bool = False) -> '_Layout':
        r"""The layout of the :obj:`index` and :obj:`position` of a
        :class:`_Layout` with :obj:`nnz` entries (that layout itself if it
        is alive; else :obj:`symmetric` is the symmetry of the
        structure)."""
        self = _LAYOUTS.get(id(index))
        if self is not None and self.index is index \
                and self.position is position:
            return self
        self = cls.__new__(cls)
        self.num_nodes = position.numel() - 4 * nnz
        self.perm, self.index, self.position = None, index, position
        self._unpack(nnz)
        self.symmetric, self._transposed = symmetric, None
        return self

    def transposed(self) -> '_Layout':
        r"""The layout of the transpose (values :obj:`value[t_perm]`)."""
        if self._transposed is None:
            inv = torch.empty_like(self.t_perm)
            inv[self.t_perm] = torch.arange(self.t_perm.numel(),
                                            device=inv.device)
            t = _Layout.__new__(_Layout)
            t.num_nodes, t.symmetric = self.num_nodes, self.symmetric
            t.perm = t.index = t.position = None
            t.crow, t.ccol, t.t_crow, t.t_ccol = (self.t_crow, self.t_ccol,
                                                  self.crow, self.ccol)
            t.row, t.col, t.t_col = self.col[self.t_perm], self.t_col, \
                self.col
            t.t_perm, t.diag_pos = inv, inv[self.diag_pos]
            t._transposed = self
            self._transposed = t
        return self._transposed

    def matrix(self, value: Tensor, transpose: bool = False) -> Tensor:
        size = (self.num_nodes, self.num_nodes)
        crow, col = (self.t_crow, self.t_ccol) if transpose else (
            self.crow, self.ccol)
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


def values_symmetric(layout: _Layout, value: Tensor) -> bool:
    r"""Whether the matrix of :obj:`value` on :obj:`layout` is symmetric, to
    a few units of rounding."""
    value = value.detach()
    if value.numel() == 0:
        return True
    tol = 16 * torch.finfo(value.dtype).eps * float(value.abs().max())
    if layout.symmetric and bool(
            (value[layout.t_perm] - value).abs().max() <= tol):
        return True
    # Duplicate entries (a multigraph) may pair up in another order in the
    # transpose, or in other numbers: compare the sums per (row, col).
    n = layout.num_nodes
    key, inverse = torch.unique_consecutive(layout.row * n + layout.col,
                                            return_inverse=True)
    if key.numel() == value.numel():
        return False  # no duplicates: the comparison above was exact
    summed = value.new_zeros(key.numel()).index_add_(0, inverse, value)
    t_key = (key % n) * n + torch.div(key, n, rounding_mode='floor')
    pos = torch.searchsorted(key, t_key).clamp_max(key.numel() - 1)
    if not bool((key[pos] == t_key).all()):
        return False
    return bool((summed[pos] - summed).abs().max() <= tol)


class _StepMatrix:
    r"""Products with a matrix of the layout (:math:`\mathbf{I} + s
    \mathbf{L}`, see :meth:`shifted`) and with its transpose."""
    def __init__(self, layout: _Layout, value: Tensor, symmetric: bool):
        self.layout, self.value, self.symmetric = layout, value, symmetric
        self._mat = self._mat_t = None

    @classmethod
    def shifted(cls, layout: _Layout, value: Tensor, scale: Tensor,
                symmetric: bool) -> '_StepMatrix':
        r""":math:`\mathbf{I} + s \mathbf{L}` (no autograd)."""
        value = scale * value
        value[layout.diag_pos] += 1.0
        return cls(layout, value, symmetric)

    def __getstate__(self):  # the sparse matrices are views, not copied
        return dict(self.__dict__, _mat=None, _mat_t=None)

    def mm(self, x: Tensor) -> Tensor:
        if self._mat is None:
            self._mat = self.layout.matrix(self.value)
        return torch.sparse.mm(self._mat, x)

    def tmm(self, x: Tensor) -> Tensor:
        if self.symmetric:
            return self.mm(x)
        if self._mat_t is None:
            self._mat_t = self.layout.matrix(self.value, transpose=True)
        return torch.sparse.mm(self._mat_t, x)

    def diagonal(self) -> Tensor:
        return self.value[self.layout.diag_pos]


def save_mode(need_value: bool, need_sigma2: bool) -> int:
    return SAVE_ALL if need_value else SAVE_LAST if need_sigma2 else SAVE_NONE


def functorch_active() -> bool:
    r"""Whether a :mod:`torch.func` transform (grad, vmap, ...) is active."""
    return (not torch.compiler.is_compiling()
            and torch._C._are_functorch_transforms_active())


# The explicit scheme ########################################################


def _explicit_forward(x: Tensor, M: _StepMatrix, K: int, save: int):
    r""":math:`K` products :math:`\mathbf{u} \leftarrow \mathbf{M}
    \mathbf{u}`; keeps all states :math:`\mathbf{u}_0 .. \mathbf{u}_{K-1}`
    for the gradient of the values, only :math:`\mathbf{u}_{K-1}` for
    :math:`\sigma^2` alone (:math:`\mathbf{M}^k` are polynomials of
    :math:`\mathbf{L}`), none for the input alone."""
    saved = []
    u = x
    for k in range(K):
        if save == SAVE_ALL or (save == SAVE_LAST and k == K - 1):
            saved.append(u)
        u = M.mm(u)
    return u, saved


def _explicit_backward(grad_out, M, layout, K, value, sigma2, saved, need):
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
    return g if need_x else None, grad_value, grad_sigma2


def explicit_plain(x: Tensor, value: Tensor, sigma2: Tensor,
                   layout: _Layout, K: int) -> Tensor:
    r"""The explicit scheme as plain differentiable operations (a gather and
    an :obj:`index_add` per step over the CSR entries): any order of
    derivatives, :mod:`torch.func` transforms, at the memory cost of autograd
    (:math:`|\mathcal{E}| \times C` per step)."""
    eye = torch.zeros_like(value).index_fill(-1, layout.diag_pos, 1.)
    weight = (eye - sigma2 * value).unsqueeze(-1)
    row, col = layout.row, layout.col
    u = x
    for _ in range(K):
        u = torch.zeros_like(u).index_add(0, row, weight * u[col])
    return u


def _explicit_double(grad_out, x, value, sigma2, layout, K, need):
    r"""The gradients as a differentiable function of the inputs and
    :obj:`grad_out` (for :obj:`create_graph=True`)."""
    inputs = [t for t, n in zip((x, value, sigma2), need) if n]
    with torch.enable_grad():
        u = explicit_plain(x, value, sigma2, layout, K)
        grads = iter(torch.autograd.grad(u, inputs, grad_out,
                                         create_graph=True,
                                         allow_unused=True))
    return tuple(next(grads) if n else None for n in need)


class _ExplicitDiffusion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, value, sigma2, layout, K, symmetric, step):
        need = ctx.needs_input_grad[:3]
        M = step or _StepMatrix.shifted(layout, value, -sigma2,
                                        bool(symmetric))
        u, saved = _explicit_forward(x, M, K, save_mode(*need[1:]))
        ctx.matrix, ctx.layout, ctx.K = M, layout, K
        ctx.save_for_backward(x, value, sigma2, *saved)
        return u

    @staticmethod
    def backward(ctx, grad_out):
        x, value, sigma2, *saved = ctx.saved_tensors
        need = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # create_graph=True
            grads = _explicit_double(grad_out, x, value, sigma2, ctx.layout,
                                     ctx.K, need)
        else:
            grads = _explicit_backward(grad_out, ctx.matrix, ctx.layout,
                                       ctx.K, value, sigma2, saved, need)
        return (*grads, None, None, None, None)


def explicit_diffusion(x: Tensor, value: Tensor, sigma2: Tensor,
                       layout: _Layout, K: int, symmetric: Optional[bool],
                       step: Optional[_StepMatrix]) -> Tensor:
    r""":math:`K` steps :math:`\mathbf{u} \leftarrow (\mathbf{I} - \sigma^2
    \mathbf{L}) \mathbf{u}` as one autograd node (a custom operator under
    :func:`torch.compile`); :obj:`step`: the step matrix, if fixed."""
    if not torch.compiler.is_compiling():
        return _ExplicitDiffusion.apply(x, value, sigma2, layout, K,
                                        symmetric, step)
    grad = torch.is_grad_enabled()
    save = save_mode(grad and value.requires_grad,
                     grad and sigma2.requires_grad)
    u, _ = torch.ops.torch_geometric_coin.explicit_diffusion(
        x, value, sigma2, layout.index, layout.position, K, bool(symmetric),
        None if step is None else step.value, save)
    return u


# The implicit scheme ########################################################


def _implicit_matrix(layout, value, sigma2, symmetric, wide=False):
    r""":math:`\mathbf{I} + \sigma^2 \mathbf{L}`, in float64 if
    :obj:`wide` (to verify the residuals of lower precisions; :obj:`None`
    if the values are float64 already)."""
    if wide:
        if value.dtype == torch.float64:
            return None
        value, sigma2 = value.double(), sigma2.double()
    return _StepMatrix.shifted(layout, value, sigma2, symmetric)


def _matvec64(A64: Optional[_StepMatrix], transpose: bool = False):
    if A64 is None:
        return None
    return A64.tmm if transpose else A64.mm


def _implicit_forward(x, A, A64, K, tol, max_iter, save):
    diag = A.diagonal()
    saved: List[Tensor] = []
    its: List[int] = []
    u = x
    for _ in range(K):
        u, it = krylov_solve(A.mm, u, u, diag, A.symmetric, tol, max_iter,
                             _matvec64(A64))
        its.append(it)
        if save == SAVE_ALL:
            saved.append(u)
    if save == SAVE_LAST:
        saved.append(u)
    return u, saved, its


def _implicit_backward(grad_out, A, A64, layout, K, value, sigma2, saved,
                       need, tol, max_iter):
    diag = A.diagonal()
    need_x, need_value, need_sigma2 = need
    grad_value = grad_sigma2 = dvalue = None
    its: List[int] = []
    if need_value:
        dvalue = torch.zeros_like(value)
    # The adjoint: lam_k = A^{-T} lam_{k+1}, lam_{K+1} = grad_out.
    lam = grad_out
    for k in reversed(range(K)):
        lam, it = krylov_solve(A.tmm, lam, lam, diag, A.symmetric, tol,
                               max_iter, _matvec64(A64, transpose=True))
        its.append(it)
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
    return (lam if need_x else None, grad_value, grad_sigma2), its


def _implicit_double(grad_out, x, value, sigma2, layout, K, symmetric, tol,
                     max_iter, need):
    r"""The gradients as a differentiable function of the inputs and
    :obj:`grad_out` (for :obj:`create_graph=True`): the forward and adjoint
    solves again, each a differentiable implicit step (on the transposed
    layout for the adjoint), and the sampled products as gathers."""
    need_x, need_value, need_sigma2 = need
    with torch.enable_grad():
        us = [x]
        if need_value or need_sigma2:
            for _ in range(K):
                us.append(_ImplicitDiffusion.apply(
                    us[-1], value, sigma2, layout, 1, symmetric, tol,
                    max_iter, None))
        layout_t = layout.transposed()
        value_t = value[layout.t_perm]
        lam, dvalue = grad_out, None
        for k in reversed(range(K)):
            lam = _ImplicitDiffusion.apply(lam, value_t, sigma2, layout_t, 1,
                                           symmetric, tol, max_iter, None)
            if len(us) > 1:  # dLoss/dA_ij = -sum_k lam_k[i] u_k[j]
                term = (lam[layout.row] * us[k + 1][layout.col]).sum(-1)
                dvalue = -term if dvalue is None else dvalue - term
        return (lam if need_x else None,
                sigma2 * dvalue if need_value else None,
                (value * dvalue).sum() if need_sigma2 else None)


class _ImplicitDiffusion(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, value, sigma2, layout, K, symmetric, tol, max_iter,
                stats):
        need = ctx.needs_input_grad[:3]
        A = _implicit_matrix(layout, value, sigma2, symmetric)
        A64 = _implicit_matrix(layout, value, sigma2, symmetric, wide=True)
        u, saved, its = _implicit_forward(x, A, A64, K, tol, max_iter,
                                          save_mode(*need[1:]))
        if stats is not None:
            stats.forward.extend(its)
        ctx.matrix, ctx.layout, ctx.K, ctx.symmetric = A, layout, K, symmetric
        ctx.tol, ctx.max_iter, ctx.stats = tol, max_iter, stats
        ctx.save_for_backward(x, value, sigma2, *saved)
        return u

    @staticmethod
    def backward(ctx, grad_out):
        x, value, sigma2, *saved = ctx.saved_tensors
        need = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # create_graph=True
            grads = _implicit_double(grad_out, x, value, sigma2, ctx.layout,
                                     ctx.K, ctx.symmetric, ctx.tol,
                                     ctx.max_iter, need)
        else:
            A64 = _implicit_matrix(ctx.layout, value, sigma2, ctx.symmetric,
                                   wide=True)
            grads, its = _implicit_backward(
                grad_out, ctx.matrix, A64, ctx.layout, ctx.K, value, sigma2,
                saved, need, ctx.tol, ctx.max_iter)
            if ctx.stats is not None:
                ctx.stats.adjoint.extend(its)
        return (*grads, None, None, None, None, None, None)


# Solver statistics under torch.compile: the custom operators get an id.
_STATS: 'weakref.WeakValueDictionary' = weakref.WeakValueDictionary()
_STATS_IDS = itertools.count(1)


def register_stats(stats) -> int:
    r"""The id of a :class:`SolverStats` (on construction) by which the
    custom operators find it."""
    key = next(_STATS_IDS)
    _STATS[key] = stats
    return key


def implicit_diffusion(x: Tensor, value: Tensor, sigma2: Tensor,
                       layout: _Layout, K: int, symmetric: Optional[bool],
                       tol: float, max_iter: int, stats) -> Tensor:
    r""":math:`K` steps :math:`(\mathbf{I} + \sigma^2 \mathbf{L})
    \mathbf{u}^{(k+1)} = \mathbf{u}^{(k)}` as one autograd node (a custom
    operator under :func:`torch.compile`). :obj:`symmetric` says whether
    :math:`\mathbf{L}` is (:obj:`None`: to be found from the values)."""
    if functorch_active():
        raise NotImplementedError(_NO_FUNC_IMPLICIT)
    if not torch.compiler.is_compiling():
        if symmetric is None:
            symmetric = values_symmetric(layout, value)
        return _ImplicitDiffusion.apply(x, value, sigma2, layout, K,
                                        symmetric, tol, max_iter, stats)
    grad = torch.is_grad_enabled()
    save = save_mode(grad and value.requires_grad,
                     grad and sigma2.requires_grad)
    sym = -1 if symmetric is None else int(symmetric)
    u, _ = torch.ops.torch_geometric_coin.implicit_diffusion(
        x, value, sigma2, layout.index, layout.position, K, sym, tol, max_iter,
        0 if stats is None else stats._id, save)
    return u


# The custom operators of torch.compile ######################################
#
# The layout comes in as `_Layout.index` and `_Layout.position` (see
# `_Layout.from_packed`; the number of entries is that of `value`).


def _empty(x: Tensor) -> Tensor:
    return x.new_empty(0)


def _states(K: int, save: int, x: Tensor) -> Tensor:
    num = K if save == SAVE_ALL else 1 if save == SAVE_LAST else 0
    return x.new_empty((num, ) + x.shape)


def _stack(saved: List[Tensor], x: Tensor) -> Tensor:
    return torch.stack(saved) if saved else x.new_empty((0, ) + x.shape)


def _grad_fakes(grad_out, value, sigma2, need_x, need_value, need_sigma2):
    return (grad_out.new_empty(grad_out.shape) if need_x else _empty(value),
            value.new_empty(value.shape) if need_value else _empty(value),
            sigma2.new_empty(()) if need_sigma2 else _empty(value))


def _explicit_step(index, position, value, sigma2, symmetric, step_value):
    layout = _Layout.from_packed(index, position, value.numel(), symmetric)
    if step_value is None:
        M = _StepMatrix.shifted(layout, value, -sigma2, symmetric)
    else:
        M = _StepMatrix(layout, step_value, symmetric)
    return layout, M


@torch.library.custom_op('torch_geometric_coin::explicit_diffusion',
                         mutates_args=())
def _explicit_op(x: Tensor, value: Tensor, sigma2: Tensor, index: Tensor,
                 position: Tensor, K: int, symmetric: bool,
                 step_value: Optional[Tensor], save: int,
                 ) -> Tuple[Tensor, Tensor]:
    _, M = _explicit_step(index, position, value, sigma2, symmetric,
                          step_value)
    u, saved = _explicit_forward(x, M, K, save)
    return u, _stack(saved, x)


@_explicit_op.register_fake
def _(x, value, sigma2, index, position, K, symmetric, step_value, save):
    return x.new_empty(x.shape), _states(K, save, x)


def _explicit_setup(ctx, inputs, output):
    x, value, sigma2, index, position, K, symmetric, step_value, _ = inputs
    ctx.K, ctx.symmetric = K, symmetric
    ctx.save_for_backward(x, value, sigma2, index, position, step_value,
                          output[1])


def _explicit_op_backward(ctx, grad_out, _grad_states):
    x, value, sigma2, index, position, step_value, states = \
        ctx.saved_tensors
    need = tuple(ctx.needs_input_grad[:3])
    if torch.is_grad_enabled():  # create_graph=True
        layout = _Layout.from_packed(index, position, value.numel())
        grads = _explicit_double(grad_out, x, value, sigma2, layout, ctx.K,
                                 need)
    else:
        grads = torch.ops.torch_geometric_coin.explicit_diffusion_backward(
            grad_out, value, sigma2, index, position, ctx.K, ctx.symmetric,
            step_value, states, *need)
        grads = tuple(g if n else None for g, n in zip(grads, need))
    return (*grads, None, None, None, None, None, None)


_explicit_op.register_autograd(_explicit_op_backward,
                               setup_context=_explicit_setup)


@torch.library.custom_op('torch_geometric_coin::explicit_diffusion_backward',
                         mutates_args=())
def _explicit_backward_op(grad_out: Tensor, value: Tensor, sigma2: Tensor,
                          index: Tensor, position: Tensor, K: int,
                          symmetric: bool, step_value: Optional[Tensor],
                          states: Tensor, need_x: bool, need_value: bool,
                          need_sigma2: bool,
                          ) -> Tuple[Tensor, Tensor, Tensor]:
    layout, M = _explicit_step(index, position, value, sigma2, symmetric,
                               step_value)
    grads = _explicit_backward(grad_out, M, layout, K, value, sigma2,
                               list(states.unbind(0)),
                               (need_x, need_value, need_sigma2))
    return tuple(_empty(value) if g is None else g for g in grads)


@_explicit_backward_op.register_fake
def _(grad_out, value, sigma2, index, position, K, symmetric, step_value,
      states, need_x, need_value, need_sigma2):
    return _grad_fakes(grad_out, value, sigma2, need_x, need_value,
                       need_sigma2)


def _implicit_layout(index, position, value, symmetric):
    layout = _Layout.from_packed(index, position, value.numel(),
                                 symmetric != 0)
    if symmetric < 0:  # a symmetric structure: are the values?
        symmetric = values_symmetric(layout, value)
    return layout, bool(symmetric)


@torch.library.custom_op('torch_geometric_coin::implicit_diffusion',
                         mutates_args=())
def _implicit_op(x: Tensor, value: Tensor, sigma2: Tensor, index: Tensor,
                 position: Tensor, K: int, symmetric: int, tol: float,
                 max_iter: int, stats: int, save: int,
                 ) -> Tuple[Tensor, Tensor]:
    layout, symmetric = _implicit_layout(index, position, value, symmetric)
    A = _implicit_matrix(layout, value, sigma2, symmetric)
    A64 = _implicit_matrix(layout, value, sigma2, symmetric, wide=True)
    u, saved, its = _implicit_forward(x, A, A64, K, tol, max_iter, save)
    if _STATS.get(stats) is not None:
        _STATS[stats].forward.extend(its)
    return u, _stack(saved, x)


@_implicit_op.register_fake
def _(x, value, sigma2, index, position, K, symmetric, tol, max_iter, stats,
      save):
    return x.new_empty(x.shape), _states(K, save, x)


def _implicit_setup(ctx, inputs, output):
    x, value, sigma2, index, position, *rest = inputs
    ctx.K, ctx.symmetric, ctx.tol, ctx.max_iter, ctx.stats, _ = rest
    ctx.save_for_backward(x, value, sigma2, index, position, output[1])


def _implicit_op_backward(ctx, grad_out, _grad_states):
    x, value, sigma2, index, position, states = ctx.saved_tensors
    need = tuple(ctx.needs_input_grad[:3])
    if torch.is_grad_enabled():  # create_graph=True
        layout, symmetric = _implicit_layout(index, position, value,
                                             ctx.symmetric)
        grads = _implicit_double(grad_out, x, value, sigma2, layout, ctx.K,
                                 symmetric, ctx.tol, ctx.max_iter, need)
    else:
        grads = torch.ops.torch_geometric_coin.implicit_diffusion_backward(
            grad_out, value, sigma2, index, position, ctx.K, ctx.symmetric,
            ctx.tol, ctx.max_iter, ctx.stats, states, *need)
        grads = tuple(g if n else None for g, n in zip(grads, need))
    return (*grads, None, None, None, None, None, None, None, None)


_implicit_op.register_autograd(_implicit_op_backward,
                               setup_context=_implicit_setup)


@torch.library.custom_op('torch_geometric_coin::implicit_diffusion_backward',
                         mutates_args=())
def _implicit_backward_op(grad_out: Tensor, value: Tensor, sigma2: Tensor,
                          index: Tensor, position: Tensor, K: int,
                          symmetric: int, tol: float, max_iter: int,
                          stats: int, states: Tensor, need_x: bool,
                          need_value: bool, need_sigma2: bool,
                          ) -> Tuple[Tensor, Tensor, Tensor]:
    layout, symmetric = _implicit_layout(index, position, value, symmetric)
    A = _implicit_matrix(layout, value, sigma2, symmetric)
    A64 = _implicit_matrix(layout, value, sigma2, symmetric, wide=True)
    grads, its = _implicit_backward(
        grad_out, A, A64, layout, K, value, sigma2, list(states.unbind(0)),
        (need_x, need_value, need_sigma2), tol, max_iter)
    if _STATS.get(stats) is not None:
        _STATS[stats].adjoint.extend(its)
    return tuple(_empty(value) if g is None else g for g in grads)


@_implicit_backward_op.register_fake
def _(grad_out, value, sigma2, index, position, K, symmetric, tol, max_iter,
      stats, states, need_x, need_value, need_sigma2):
    return _grad_fakes(grad_out, value, sigma2, need_x, need_value,
                       need_sigma2)


def _compress(index: Tensor, num_nodes: int) -> Tensor:
    crow = index.new_zeros(num_nodes + 1)
    crow[1:] = torch.cumsum(torch.bincount(index, minlength=num_nodes), 0)
    return crow
