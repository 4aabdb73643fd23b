r"""The two schemes of :class:`~torch_geometric_coin.ops.DiffusionOperator`,
each one :class:`torch.autograd.Function` (forward and backward written
once) on the values of its step matrix, and the definition of the explicit
scheme (differentiable gathers) for second-order gradients and
:mod:`torch.func`."""
import torch
from torch import Tensor

from torch_geometric_coin.ops._krylov import krylov_solve


def functorch_active() -> bool:
    r"""Whether a :mod:`torch.func` transform (grad, vmap, ...) is active."""
    return (not torch.compiler.is_compiling()
            and torch._C._are_functorch_transforms_active())


def propagate(op, x: Tensor, K: int, m: Tensor) -> Tensor:
    r"""The definition of the explicit scheme: :math:`K` steps
    :math:`u_i \leftarrow \sum_j M_{ij} u_j` over the entries :obj:`m` of
    the step matrix, as differentiable gathers and adds (any order of
    derivatives and :mod:`torch.func`, at autograd's memory cost)."""
    row, col, w = op.row(), op.col, m.unsqueeze(-1)
    for _ in range(K):
        x = torch.zeros_like(x).index_add(0, row, w * x[col])
    return x


def explicit(op, x: Tensor, K: int, m: Tensor, s=None) -> Tensor:
    r""":math:`K` steps with the step matrix :obj:`m`; :obj:`s`: a learned
    :math:`\sigma^2` of fixed values (its gradient then needs one product,
    not the :math:`K` states)."""
    if functorch_active():
        return propagate(op, x, K, m if s is None else op.step_matrix(s))
    return _Explicit.apply(x, m, s, op, K) if K > 0 else x


def implicit(op, x: Tensor, K: int, a: Tensor, tol: float, max_iter: int,
             stats, a64: Tensor, s=None) -> Tensor:
    if functorch_active():
        raise NotImplementedError(
            "scheme='implicit' does not support torch.func transforms (its "
            "solves are data-dependent): use scheme='explicit' or autograd")
    return _Implicit.apply(x, a, s, op, K, tol, max_iter, stats, a64) \
        if K > 0 else x


class _Explicit(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, m, s, op, K):
        need_m, need_s = ctx.needs_input_grad[1:3]
        M, states, u = op.matrix(m), [], x
        for k in range(K):
            if need_m or need_s and k == K - 1:
                states.append(u)
            u = torch.sparse.mm(M, u)
        ctx.op, ctx.K = op, K
        ctx.save_for_backward(x, m, s, *states)
        return u

    @staticmethod
    def backward(ctx, g):
        x, m, s, *states = ctx.saved_tensors
        need_x, need_m, need_s = ctx.needs_input_grad[:3]
        op, K = ctx.op, ctx.K
        if torch.is_grad_enabled():  # create_graph=True: the definition
            inputs = [t for t, n in [(x, need_x), (m, need_m), (s, need_s)]
                      if n]
            grads = iter(torch.autograd.grad(propagate(
                op, x, K, op.step_matrix(s, m.dtype) if need_s else m),
                inputs, g, create_graph=True))
            return tuple(next(grads) if n else None
                         for n in (need_x, need_m, need_s)) + (None, None)
        Mt = op.matrix(m, transpose=not op._symmetric)  # (M if symmetric)
        dm = ds = None
        if need_s:  # d u_K / d sigma2 = -K L M^{K-1} u_0
            L = op.matrix(op.value.to(g.dtype))
            ds = -K * (g * torch.sparse.mm(L, states[-1])).sum()
        if need_m:  # dLoss/dM_ij = sum_k g_{k+1}[i] u_k[j]
            dm = torch.zeros_like(m)
            for u in reversed(states):
                dm += op.sddmm(g, u)
                g = torch.sparse.mm(Mt, g)
        elif need_x:
            for _ in range(K):
                g = torch.sparse.mm(Mt, g)
        return g if need_x else None, dm, ds, None, None


class _Implicit(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, a, s, op, K, tol, max_iter, stats, a64):
        its, states = [], []
        u = x
        for _ in range(K):
            u, it = _solve(op, a, a64, u, tol, max_iter)
            its.append(it)
            if ctx.needs_input_grad[1]:
                states.append(u)
        if stats is not None:
            stats.forward.extend(its)
        ctx.op, ctx.K, ctx.options = op, K, (tol, max_iter, stats)
        ctx.save_for_backward(x, a, s, a64, u, *states)
        return u

    @staticmethod
    def backward(ctx, g):
        x, a, s, a64, u_K, *states = ctx.saved_tensors
        need_x, need_a, need_s = ctx.needs_input_grad[:3]
        op, (tol, max_iter, stats) = ctx.op, ctx.options
        t_perm = op._transpose()[0]
        value = op.value.to(g.dtype)  # (d a / d sigma2)
        da = ds = None
        if torch.is_grad_enabled():  # create_graph=True: differentiable
            if need_s:
                a = op.step_matrix(-s, a.dtype)
            op_t, a_t, a64_t = op.transposed(), a[t_perm], a64[t_perm]
            us = [x]  # steps, each an implicit step of its own
            for _ in range(ctx.K if need_a or need_s else 0):
                us.append(_Implicit.apply(us[-1], a, None, op, 1, tol,
                                          max_iter, None, a64))
            row, col = op.row(), op.col
            for k in reversed(range(ctx.K)):
                g = _Implicit.apply(g, a_t, None, op_t, 1, tol, max_iter,
                                    None, a64_t)
                if need_a or need_s:  # dLoss/dA_ij = -sum lam_k[i] u_k[j]
                    term = (g[row] * us[k + 1][col]).sum(-1)
                    da = -term if da is None else da - term
            ds = (da * value).sum() if need_s else None
            return (g if need_x else None, da if need_a else None, ds) + \
                (None, ) * 6
        # The adjoint: lam_k = A^{-T} lam_{k+1}, lam_{K+1} = grad.
        op_t, a_t, a64_t = op.transposed(), a[t_perm], a64[t_perm]
        its = []
        if need_a:
            da = torch.zeros_like(a)
        for k in reversed(range(ctx.K)):
            g, it = _solve(op_t, a_t, a64_t, g, tol, max_iter)
            its.append(it)
            if need_a:
                da -= op.sddmm(g, states[k])
            if need_s and k == ctx.K - 1:
                # u_K = R^K u_0, dR/dsigma2 = -R L R: -K R L u_K.
                ds = -ctx.K * (g * torch.sparse.mm(op.matrix(value),
                                                   u_K)).sum()
                if not need_x:
                    break
        if stats is not None:
            stats.adjoint.extend(its)
        return (g if need_x else None, da, ds) + (None, ) * 6


def _solve(op, a: Tensor, a64: Tensor, b: Tensor, tol: float,
           max_iter: int):
    r"""Solves :math:`\mathbf{A}\mathbf{u} = \mathbf{b}` with the matrix of
    values :obj:`a` on the layout of :obj:`op`, its true residual checked
    with the float64 values :obj:`a64`."""
    A, A64 = op.matrix(a), op.matrix(a64)
    return krylov_solve(lambda v: torch.sparse.mm(A, v), b, b,
                        a[op.diag_pos], op.symmetric, tol, max_iter,
                        lambda v: torch.sparse.mm(A64, v))
