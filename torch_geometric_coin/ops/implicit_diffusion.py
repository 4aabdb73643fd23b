from typing import Optional, Union

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from torch_geometric_coin.ops.csr_operator import CSROperator, LinearOperator
from torch_geometric_coin.ops.explicit_diffusion import step_values
from torch_geometric_coin.ops.krylov_solve import krylov_solve


class ImplicitDiffusion(torch.autograd.Function):
    r"""The operator of :func:`implicit_diffusion`."""
    @staticmethod
    def forward(ctx, x: Tensor, lap: Tensor, sigma2: Tensor, op: CSROperator,
                K: int, symmetric: Optional[bool], tol: float,
                max_iter: int):
        _, need_lap, need_sigma2 = ctx.needs_input_grad[:3]
        A = LinearOperator(op, step_values(op, lap, sigma2, 1.0), symmetric)
        diag = A.diagonal()
        saved = []
        u = x
        for _ in range(K):
            u = krylov_solve(A.mm, u, u, diag, A.symmetric, tol, max_iter)
            if need_lap:
                saved.append(u)
        if need_sigma2 and not need_lap:
            saved.append(u)
        ctx.A, ctx.op, ctx.K = A, op, K
        ctx.tol, ctx.max_iter = tol, max_iter
        ctx.save_for_backward(lap, sigma2, *saved)
        return u

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        need_x, need_lap, need_sigma2 = ctx.needs_input_grad[:3]
        lap, sigma2, *saved = ctx.saved_tensors
        A, op, K = ctx.A, ctx.op, ctx.K
        diag = A.diagonal()
        grad_lap = grad_sigma2 = dvalue = None
        if need_lap:
            dvalue = torch.zeros_like(lap)
        # The adjoint: lam_k = A^{-T} lam_{k+1}, lam_{K+1} = grad_out.
        lam = grad_out
        for k in reversed(range(K)):
            lam = krylov_solve(A.tmm, lam, lam, diag, A.symmetric, ctx.tol,
                               ctx.max_iter)
            if need_lap:  # dLoss/dA_ij = -sum_k lam_k[i] u_k[j]
                dvalue -= op.sddmm(lam, saved[k])
            elif need_sigma2 and k == K - 1:
                # u_K = R^K u_0 with R = A^{-1}, dR/dsigma2 = -R L R, so
                # d u_K / d sigma2 = -K R L u_K.
                Lu = LinearOperator(op, lap, A.symmetric).mm(saved[0])
                grad_sigma2 = -K * (lam * Lu).sum()
                if not need_x:
                    break
        if need_lap:
            grad_lap = sigma2 * dvalue
            if need_sigma2:
                grad_sigma2 = (lap * dvalue).sum()
        return (lam if need_x else None, grad_lap, grad_sigma2, None, None,
                None, None, None)


def implicit_diffusion(x: Tensor, lap: Tensor, sigma2: Union[Tensor, float],
                       op: CSROperator, K: int,
                       symmetric: Optional[bool] = None, tol: float = 1e-5,
                       max_iter: int = 1000) -> Tensor:
    r"""Takes :math:`K` implicit (backward) Euler steps :math:`(\mathbf{I} +
    \sigma^2 \mathbf{L}) \mathbf{u}^{(k+1)} = \mathbf{u}^{(k)}`, each solved
    by :func:`krylov_solve` (conjugate gradients for a symmetric
    :math:`\mathbf{L}`, BiCGSTAB otherwise) from the previous state.

    The gradient solves the adjoint systems :math:`(\mathbf{I} + \sigma^2
    \mathbf{L})^{\top} \boldsymbol{\lambda}^{(k)} =
    \boldsymbol{\lambda}^{(k+1)}` in a custom autograd function, so memory
    does not grow with the solver iterations; for the gradient of
    :math:`\sigma^2` alone only :math:`\mathbf{u}^{(K)}` is kept
    (:math:`\partial \mathbf{u}^{(K)} / \partial \sigma^2 = -K \mathbf{R}
    \mathbf{L} \mathbf{u}^{(K)}` with :math:`\mathbf{R} = (\mathbf{I} +
    \sigma^2 \mathbf{L})^{-1}`); learnable values of :math:`\mathbf{L}`
    keep the :math:`K` states.

    Args:
        x (torch.Tensor): The initial state :math:`(N, C)`.
        lap (torch.Tensor): The values of :math:`\mathbf{L}` in the CSR order
            of :obj:`op`.
        sigma2 (torch.Tensor or float): The step size :math:`\sigma^2`.
        op (CSROperator): The layout of :math:`\mathbf{L}`.
        K (int): The number of steps.
        symmetric (bool, optional): Whether :math:`\mathbf{L}` is symmetric
            (detected from the values if :obj:`None`).
        tol (float, optional): Relative residual tolerance of each solve.
            (default: :obj:`1e-5`)
        max_iter (int, optional): Iteration limit of each solve.
            (default: :obj:`1000`)
    """
    if not isinstance(sigma2, Tensor):
        sigma2 = torch.tensor(float(sigma2), dtype=x.dtype, device=x.device)
    sigma2 = sigma2.to(x.dtype)
    return ImplicitDiffusion.apply(x, lap.to(x.dtype), sigma2, op, K,
                                   symmetric, tol, max_iter)
