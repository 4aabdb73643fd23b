from typing import Callable, Tuple

import torch
from torch import Tensor


class ConvergenceError(RuntimeError):
    r"""Raised when an iterative solver does not reach its tolerance."""


def krylov_solve(matvec: Callable[[Tensor], Tensor], b: Tensor, x0: Tensor,
                 diag: Tensor, symmetric: bool, tol: float = 1e-5,
                 max_iter: int = 1000) -> Tuple[Tensor, int]:
    r"""Solves :math:`\mathbf{A} \mathbf{X} = \mathbf{B}` for all columns at
    once with Jacobi-preconditioned conjugate gradients when
    :math:`\mathbf{A}` is symmetric positive definite, else with
    Jacobi-preconditioned BiCGSTAB, until
    :math:`\|\mathbf{b} - \mathbf{A}\mathbf{x}\| \leq \mathrm{tol} \cdot
    \|\mathbf{b}\|` in every column.

    Args:
        matvec (Callable): :math:`\mathbf{X} \mapsto \mathbf{A}\mathbf{X}`.
        b (torch.Tensor): The right-hand sides :math:`(N, C)`.
        x0 (torch.Tensor): The initial guess :math:`(N, C)`.
        diag (torch.Tensor): The diagonal of :math:`\mathbf{A}` (positive).
        symmetric (bool): Whether :math:`\mathbf{A}` is symmetric.
        tol (float, optional): Relative residual tolerance.
            (default: :obj:`1e-5`)
        max_iter (int, optional): Iteration limit. (default: :obj:`1000`)

    Returns:
        (torch.Tensor, int): The solution and the number of iterations
        (:obj:`0` when :obj:`x0` already meets the tolerance).

    Raises:
        ConvergenceError: if the tolerance is not met in :obj:`max_iter`
            iterations (or the iteration breaks down).
    """
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
        worst = int(torch.argmax(res / b.norm(dim=0).clamp_min(1e-300)))
        rel = float(res[worst] / b[:, worst].norm().clamp_min(1e-300))
        raise ConvergenceError(
            f"{'Conjugate gradients' if symmetric else 'BiCGSTAB'} did not "
            f"converge in {it} iterations (max_iter={max_iter}): relative "
            f"residual {rel:.3g} > tol={tol:g} in column {worst}. Raise "
            f"'max_iter' or 'tol', or lower 'sigma2'")
    return x, it


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
        # Breakdown (r_hat orthogonal to r, or omega = 0): restart the
        # column with r_hat = r.
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
