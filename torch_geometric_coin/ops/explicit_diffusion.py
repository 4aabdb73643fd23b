import math
from typing import Optional, Union

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from torch_geometric_coin.ops.csr_operator import CSROperator, LinearOperator


def step_values(op: CSROperator, lap: Tensor, sigma2: Tensor,
                sign: float) -> Tensor:
    r"""The CSR values of :math:`\mathbf{I} + \mathrm{sign} \cdot \sigma^2
    \mathbf{L}` from those of :math:`\mathbf{L}`."""
    value = (sign * sigma2) * lap
    value[op.diag_pos] += 1.0
    return value


class ExplicitDiffusion(torch.autograd.Function):
    r"""The fused operator of :func:`explicit_diffusion`."""
    @staticmethod
    def forward(ctx, x: Tensor, lap: Tensor, sigma2: Tensor, op: CSROperator,
                K: int, symmetric: Optional[bool], checkpoint: bool):
        _, need_lap, need_sigma2 = ctx.needs_input_grad[:3]
        M = LinearOperator(op, step_values(op, lap, sigma2, -1.0), symmetric)
        # What the backward pass needs: all states u_0..u_{K-1} for the
        # gradient of the values (or every `seg`-th one, recomputing the
        # others), only u_{K-1} for sigma2 alone (M^k are polynomials of L).
        seg = math.ceil(math.sqrt(K)) if checkpoint else 1
        saved = []
        u = x
        for k in range(K):
            if need_lap and k % seg == 0:
                saved.append(u)
            elif need_sigma2 and not need_lap and k == K - 1:
                saved.append(u)
            u = M.mm(u)
        ctx.M, ctx.op, ctx.K, ctx.seg = M, op, K, seg
        ctx.save_for_backward(lap, sigma2, *saved)
        return u

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        need_x, need_lap, need_sigma2 = ctx.needs_input_grad[:3]
        lap, sigma2, *saved = ctx.saved_tensors
        M, op, K, seg = ctx.M, ctx.op, ctx.K, ctx.seg
        grad_lap = grad_sigma2 = None
        g = grad_out
        if need_lap:
            # dLoss/dM_ij = sum_k g_{k+1}[i] u_k[j], segment by segment.
            dvalue = torch.zeros_like(lap)
            for start in reversed(range(0, K, seg)):
                states = [saved[start // seg]]
                for _ in range(start + 1, min(start + seg, K)):
                    states.append(M.mm(states[-1]))
                for u in reversed(states):
                    dvalue += op.sddmm(g, u)
                    g = M.tmm(g)
            grad_lap = -sigma2 * dvalue
            if need_sigma2:
                grad_sigma2 = -(lap * dvalue).sum()
        else:
            if need_sigma2:  # d u_K / d sigma2 = -K L M^{K-1} u_0
                Lu = LinearOperator(op, lap, M.symmetric).mm(saved[0])
                grad_sigma2 = -K * (grad_out * Lu).sum()
            if need_x:
                for _ in range(K):
                    g = M.tmm(g)
        return (g if need_x else None, grad_lap, grad_sigma2, None, None,
                None, None)


def explicit_diffusion(x: Tensor, lap: Tensor, sigma2: Union[Tensor, float],
                       op: CSROperator, K: int,
                       symmetric: Optional[bool] = None,
                       checkpoint: bool = False) -> Tensor:
    r"""Takes :math:`K` explicit Euler steps :math:`\mathbf{u} \leftarrow
    (\mathbf{I} - \sigma^2 \mathbf{L}) \mathbf{u}` as one autograd node.

    The forward pass costs :math:`K` CSR products. The backward pass costs
    :math:`K` products with the transpose (the same matrix when it is
    symmetric) for the gradient of :obj:`x`; a learnable :math:`\sigma^2`
    alone adds one product, since :math:`\partial \mathbf{u}_K / \partial
    \sigma^2 = -K \mathbf{L} \mathbf{M}^{K-1} \mathbf{u}_0`; learnable
    values of :math:`\mathbf{L}` add one sampled dense-dense product
    (SDDMM) per step over the stored states (with :obj:`checkpoint=True`,
    only every :math:`\lceil \sqrt{K} \rceil`-th state is stored and the
    others recomputed, :math:`K` more products).

    Args:
        x (torch.Tensor): The initial state :math:`(N, C)`.
        lap (torch.Tensor): The values of :math:`\mathbf{L}` in the CSR order
            of :obj:`op`.
        sigma2 (torch.Tensor or float): The step size :math:`\sigma^2`.
        op (CSROperator): The layout of :math:`\mathbf{L}`.
        K (int): The number of steps.
        symmetric (bool, optional): Whether :math:`\mathbf{L}` is symmetric
            (detected from the values if :obj:`None`).
        checkpoint (bool, optional): Recompute states in the backward pass
            instead of storing them all. (default: :obj:`False`)
    """
    if K == 0:  # no step: the state itself (and no gradient for sigma2)
        return x
    if not isinstance(sigma2, Tensor):
        sigma2 = torch.tensor(float(sigma2), dtype=x.dtype, device=x.device)
    sigma2 = sigma2.to(x.dtype)
    return ExplicitDiffusion.apply(x, lap.to(x.dtype), sigma2, op, K,
                                   symmetric, checkpoint)
