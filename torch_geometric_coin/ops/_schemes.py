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


def explicit(op, x: Tensor, K: int, m: Tensor) -> Tensor:
    if functorch_active():
        return propagate(op, x, K, m)
    return _Explicit.apply(x, m, op, K) if K > 0 else x


def implicit(op, x: Tensor, K: int, a: Tensor, tol: float, max_iter: int,
             stats, a64: Tensor) -> Tensor:
    if functorch_active():
        raise NotImplementedError(
            "scheme='implicit' does not support torch.func transforms (grad, "
            "vmap, jacrev, ...): its solves are data-dependent iterations. "
            "Use scheme='explicit', or torch.autograd for the implicit one")
    return _Implicit.apply(x, a, op, K, tol, max_iter, stats, a64) \
        if K > 0 else x


class _Explicit(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, m, op, K):
        M, states, u = op.matrix(m), [], x
        for _ in range(K):
            if ctx.needs_input_grad[1]:
                states.append(u)
            u = torch.sparse.mm(M, u)
        ctx.op, ctx.K = op, K
        ctx.save_for_backward(x, m, *states)
        return u

    @staticmethod
    def backward(ctx, g):
        x, m, *states = ctx.saved_tensors
        need_x, need_m = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled():  # create_graph=True: the definition
            inputs = [t for t, n in [(x, need_x), (m, need_m)] if n]
            grads = iter(torch.autograd.grad(
                propagate(ctx.op, x, ctx.K, m), inputs, g,
                create_graph=True))
            return (next(grads) if need_x else None,
                    next(grads) if need_m else None, None, None)
        Mt, dm = ctx.op.matrix(m, transpose=True), None
        if need_m:  # dLoss/dM_ij = sum_k g_{k+1}[i] u_k[j]
            dm = torch.zeros_like(m)
            for u in reversed(states):
                dm += ctx.op.sddmm(g, u)
                g = torch.sparse.mm(Mt, g)
        elif need_x:
            for _ in range(ctx.K):
                g = torch.sparse.mm(Mt, g)
        return g if need_x else None, dm, None, None


class _Implicit(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, a, op, K, tol, max_iter, stats, a64):
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
        ctx.save_for_backward(x, a, a64, *states)
        return u

    @staticmethod
    def backward(ctx, g):
        x, a, a64, *states = ctx.saved_tensors
        need_x, need_a = ctx.needs_input_grad[:2]
        op, (tol, max_iter, stats) = ctx.op, ctx.options
        t_perm = op._transpose()[0]
        op_t, a_t, a64_t = op.transposed(), a[t_perm], a64[t_perm]
        da = None
        if torch.is_grad_enabled():  # create_graph=True: differentiable
            us = [x]  # steps, each an implicit step of its own
            for _ in range(ctx.K if need_a else 0):
                us.append(_Implicit.apply(us[-1], a, op, 1, tol, max_iter,
                                          None, a64))
            row, col = op.row(), op.col
            for k in reversed(range(ctx.K)):
                g = _Implicit.apply(g, a_t, op_t, 1, tol, max_iter, None,
                                    a64_t)
                if need_a:  # dLoss/dA_ij = -sum_k lam_k[i] u_k[j]
                    term = (g[row] * us[k + 1][col]).sum(-1)
                    da = -term if da is None else da - term
            return (g if need_x else None, da) + (None, ) * 6
        # The adjoint: lam_k = A^{-T} lam_{k+1}, lam_{K+1} = grad.
        its = []
        if need_a:
            da = torch.zeros_like(a)
        for k in reversed(range(ctx.K)):
            g, it = _solve(op_t, a_t, a64_t, g, tol, max_iter)
            its.append(it)
            if need_a:
                da -= op.sddmm(g, states[k])
        if stats is not None:
            stats.adjoint.extend(its)
        return (g if need_x else None, da) + (None, ) * 6


def _solve(op, a: Tensor, a64: Tensor, b: Tensor, tol: float,
           max_iter: int):
    r"""Solves :math:`\mathbf{A}\mathbf{u} = \mathbf{b}` with the matrix of
    values :obj:`a` on the layout of :obj:`op`, its true residual checked
    with the float64 values :obj:`a64`."""
    A, A64 = op.matrix(a), op.matrix(a64)
    return krylov_solve(lambda v: torch.sparse.mm(A, v), b, b,
                        a[op.diag_pos], op.symmetric, tol, max_iter,
                        lambda v: torch.sparse.mm(A64, v))
