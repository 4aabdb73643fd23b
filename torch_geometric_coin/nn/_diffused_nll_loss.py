from typing import Any

import torch
from torch import Tensor

from torch_geometric_coin._checks import check_choice

REDUCTIONS = ('mean', 'sum', 'none')


def safe_log(prob: Tensor) -> Tensor:
    r"""The logarithm of (diffused) probabilities, with values at or below
    the smallest normal number of the dtype clamped to it (NaN stays
    NaN)."""
    if not isinstance(prob, Tensor) or not prob.is_floating_point():
        raise TypeError(f"'prob' must be a floating point tensor (got "
                        f"{getattr(prob, 'dtype', type(prob).__name__)})")
    return prob.clamp_min(torch.finfo(prob.dtype).tiny).log()


def diffused_nll_loss(prob: Tensor, target: Tensor,
                      reduction: str = 'mean') -> Tensor:
    r"""The negative log-likelihood of diffused class probabilities,
    :math:`\ell_i = -\log u_{i, y_i}` (the loss of COIN), finite where a
    probability reaches zero (see :func:`safe_log`). Every target must be
    a class (no :obj:`ignore_index`; checked on the CPU, by an asynchronous
    assertion elsewhere).

    Args:
        prob (torch.Tensor): Probabilities :math:`(N, C)`.
        target (torch.Tensor): Class indices :math:`(N)` in
            :math:`\{0, \ldots, C - 1\}`.
        reduction (str, optional): :obj:`'mean'`, :obj:`'sum'` or
            :obj:`'none'` (the losses :math:`(N)`). (default: :obj:`'mean'`)
    """
    check_choice('reduction', reduction, REDUCTIONS)
    if not isinstance(prob, Tensor) or prob.dim() != 2:
        raise ValueError(f"'prob' must be a tensor of shape [num_samples, "
                         f"num_classes] (got {_shape(prob)})")
    if not isinstance(target, Tensor) or target.shape != prob.shape[:1]:
        raise ValueError(f"'target' must be a tensor of shape "
                         f"[{prob.size(0)}] (got {_shape(target)})")
    if target.is_floating_point() or target.is_complex() or \
            target.dtype == torch.bool:
        raise TypeError(f"'target' must hold integer class indices (got "
                        f"{target.dtype})")
    if target.device != prob.device:
        raise ValueError(f"'target' is on {target.device} but 'prob' is on "
                         f"{prob.device}")
    if reduction == 'mean' and target.numel() == 0:
        raise ValueError("The 'mean' of no samples is undefined: 'prob' and "
                         "'target' are empty (use reduction='sum')")
    target = target.long()
    bad = (target < 0) | (target >= prob.size(1))
    if target.device.type != 'cpu':  # no host sync
        torch._assert_async(~bad.any(), "'target' must hold class indices "
                                        "in [0, num_classes - 1]")
    elif bool(bad.any()):
        raise ValueError(f"'target' must hold class indices in [0, "
                         f"{prob.size(1) - 1}] (got values in "
                         f"[{int(target.min())}, {int(target.max())}])")
    loss = -safe_log(prob).gather(1, target.view(-1, 1)).view(-1)
    return loss.mean() if reduction == 'mean' else \
        loss.sum() if reduction == 'sum' else loss


def _shape(value: Any) -> str:
    return str(list(value.size())) if isinstance(value, Tensor) else \
        type(value).__name__
