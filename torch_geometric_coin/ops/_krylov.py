from typing import Callable, Optional, Tuple

import torch
from torch import Tensor

from torch_geometric_coin._checks import check_number

_MAX_REFINE = 10  # refinements, each lowering the true residual by:
_REFINE_FACTOR = 0.5


class ConvergenceError(RuntimeError):
    r"""Raised when an iterative solver does not reach its tolerance."""


def krylov_solve(matvec: Callable[[Tensor], Tensor], b: Tensor, x0: Tensor,
                 diag: Tensor, symmetric: bool, tol: float = 1e-5,
                 max_iter: int = 1000,
                 matvec64: Optional[Callable[[Tensor], Tensor]] = None,
                 ) -> Tuple[Tensor, int]:
    r"""Solves :math:`\mathbf{A} \mathbf{X} = \mathbf{B}` with
    Jacobi-preconditioned conjugate gradients (if :obj:`symmetric`, and
    positive definite) or BiCGSTAB until the *true* relative residual
    :math:`\|\mathbf{b} - \mathbf{A}\mathbf{x}\| \leq \mathrm{tol} \cdot
    \|\mathbf{b}\|` in every column, refining the solution (solving
    :math:`\mathbf{A}\mathbf{d} = \mathbf{b} - \mathbf{A}\mathbf{x}` again)
    while the true residual (in float64 with :obj:`matvec64`) exceeds it.

    Args:
        matvec (Callable): :math:`\mathbf{X} \mapsto \mathbf{A}\mathbf{X}` in
            the dtype of :obj:`b`.
        b (torch.Tensor): The right-hand sides :math:`(N, C)`.
        x0 (torch.Tensor): The initial guess :math:`(N, C)`.
        diag (torch.Tensor): The diagonal of :math:`\mathbf{A}` (positive).
        symmetric (bool): Whether :math:`\mathbf{A}` is symmetric.
        tol (float, optional): The tolerance. (default: :obj:`1e-5`)
        max_iter (int, optional): Iterations per solve. (default: :obj:`1000`)
        matvec64 (Callable, optional): The same product in float64, for the
            true residual. (default: :obj:`None`: :obj:`matvec`)

    Returns:
        (torch.Tensor, int): The solution and the number of iterations,
        refinements included (:obj:`0` if :obj:`x0` meets the tolerance).

    Raises:
        ConvergenceError: if the tolerance is not met in :obj:`max_iter`
            iterations, or after refinement.
    """
    check_number('tol', tol, low=0, high=1, open_low=True)
    check_number('max_iter', max_iter, integer=True, low=1)
    max_iter = int(max_iter)
    x, it = _solve(matvec, b, x0, diag, symmetric, tol, max_iter)
    return _refine(matvec, matvec64, b, x, it, diag, symmetric, tol, max_iter)


def _solve(matvec, b, x0, diag, symmetric, tol, max_iter):
    dinv = diag.reciprocal().view(-1, 1)
    bound = tol * b.norm(dim=0)
    x = x0.clone()
    r = b - matvec(x)
    res = r.norm(dim=0)
    if bool((res <= bound).all()):
        return x, 0
    solver = _cg if symmetric else _bicgstab
    x, res, it = solver(matvec, x, r, dinv, bound, max_iter)
    if not bool((res <= bound).all()):
        worst, rel = _worst_column(res, b)
        raise ConvergenceError(
            f"{'Conjugate gradients' if symmetric else 'BiCGSTAB'} did not "
            f"converge in {it} iterations (max_iter={max_iter}): relative "
            f"residual {rel:.3g} > tol={tol:g} in column {worst}. Raise "
            f"'max_iter' or 'tol', or lower 'sigma2'")
    return x, it


def _worst_column(res: Tensor, b: Tensor) -> Tuple[int, float]:
    r"""The column of the largest relative residual, and that residual."""
    rel = res / b.norm(dim=0).clamp_min(1e-300)
    worst = int(torch.argmax(rel))
    return worst, float(rel[worst])


def _refine(matvec, matvec64, b, x, it, diag, symmetric, tol, max_iter):
    r"""Checks the true residual of :obj:`x` and refines it."""
    if matvec64 is None:
        matvec64, wide = matvec, b
    else:
        wide = b.to(torch.float64)
    bound = tol * wide.norm(dim=0)
    prev = None
    for step in range(_MAX_REFINE + 1):
        r = wide - matvec64(x.to(wide.dtype))
        res = r.norm(dim=0)
        todo = res > bound
        if not bool(todo.any()):
            return x, it
        if step == _MAX_REFINE or (prev is not None and not bool(
                (res[todo] <= _REFINE_FACTOR * prev[todo]).all())):
            break
        prev = res
        # The correction of the unfinished columns (unit right-hand sides):
        scale = torch.where(todo, res, torch.zeros_like(res))
        rhs = (r / res.clamp_min(1e-300)).to(b.dtype) * todo.to(b.dtype)
        d, it_d = _solve(matvec, rhs, torch.zeros_like(rhs), diag, symmetric,
                         tol, max_iter)
        x = x + d * scale.to(b.dtype)
        it += it_d
    worst, rel = _worst_column(res, wide)
    raise ConvergenceError(
        f"The solution of {'conjugate gradients' if symmetric else 'BiCGSTAB'}"
        f" in {b.dtype} does not meet tol={tol:g}: its true relative residual "
        f"is {rel:.3g} in column {worst} after iterative refinement (the "
        f"system is too ill-conditioned for this dtype at this tolerance, "
        f"e.g., a large 'sigma2'). Use float64 (convert the model and its "
        f"input with '.double()') or a larger 'tol'")


def _safe_div(a: Tensor, b: Tensor) -> Tensor:
    return torch.where(b != 0, a / torch.where(b != 0, b, 1), 0)


def _cg(matvec, x, r, dinv, bound, max_iter):
    z = dinv * r
    p = z
    rz = (r * z).sum(dim=0)
    res = r.norm(dim=0)
    it = 0
    while it < max_iter and not bool((res <= bound).all()):
        it += 1
        active = (res > bound).to(x.dtype)
        Ap = matvec(p)
        alpha = active * _safe_div(rz, (p * Ap).sum(dim=0))
        x = x + alpha * p
        r = r - alpha * Ap
        res = r.norm(dim=0)
        z = dinv * r
        rz_new = (r * z).sum(dim=0)
        p = z + _safe_div(rz_new, rz) * p
        rz = rz_new
    return x, res, it


def _bicgstab(matvec, x, r, dinv, bound, max_iter):
    r_hat = r.clone()
    rho = alpha = omega = r.new_ones(r.size(1))
    v = p = torch.zeros_like(r)
    res = r.norm(dim=0)
    it = 0
    while it < max_iter and not bool((res <= bound).all()):
        it += 1
        active = (res > bound).to(x.dtype)
        rho_new = (r_hat * r).sum(dim=0)
        # Breakdown (r_hat orthogonal to r, or omega = 0): r_hat = r again.
        restart = (active > 0) & ((rho_new == 0) | (omega == 0))
        if bool(restart.any()):
            r_hat = torch.where(restart, r, r_hat)
            rho_new = torch.where(restart, (r * r).sum(dim=0), rho_new)
        beta = _safe_div(rho_new, rho) * _safe_div(alpha, omega)
        beta = torch.where(restart, 0, beta)
        p = r + beta * (p - omega * v)
        y = dinv * p
        v = matvec(y)
        alpha = _safe_div(rho_new, (r_hat * v).sum(dim=0))
        s = r - alpha * v
        z = dinv * s
        t = matvec(z)
        omega = _safe_div((t * s).sum(dim=0), (t * t).sum(dim=0))
        x = x + active * (alpha * y + omega * z)
        r = torch.where(active.bool(), s - omega * t, r)
        res = r.norm(dim=0)
        rho = rho_new
    return x, res, it
