from typing import Any

import torch
from torch import Tensor

REDUCTIONS = ('mean', 'sum', 'none')


def safe_log(prob: Tensor) -> Tensor:
    r"""The logarithm of (diffused) probabilities, finite everywhere: values
    at or below the smallest normal number of the dtype (zero, or negative
    ones that an unstable explicit scheme can produce) are clamped to it.
    NaN stays NaN."""
    if not isinstance(prob, Tensor) or not prob.is_floating_point():
        raise TypeError(f"'prob' must be a floating point tensor (got "
                        f"{getattr(prob, 'dtype', type(prob).__name__)})")
    return prob.clamp_min(torch.finfo(prob.dtype).tiny).log()


def diffused_nll_loss(prob: Tensor, target: Tensor,
                      reduction: str = 'mean') -> Tensor:
    r"""The negative log-likelihood of diffused class probabilities,
    :math:`\ell_i = -\log u_{i, y_i}`, the loss of COIN, averaged
    (:math:`\frac{1}{N}\sum_i \ell_i`), summed or returned per sample.

    Unlike :obj:`F.nll_loss(prob.log(), target)` it never returns NaN or
    infinity when a probability reaches zero (see :func:`safe_log`), and
    it has no :obj:`ignore_index`: every target must be a class (checked
    with a :class:`ValueError` on the CPU, with an asynchronous device
    assertion elsewhere, so as not to wait for the device at every step).

    Args:
        prob (torch.Tensor): Probabilities :math:`(N, C)`.
        target (torch.Tensor): Class indices :math:`(N)` in
            :math:`\{0, \ldots, C - 1\}`.
        reduction (str, optional): :obj:`'mean'`, :obj:`'sum'` or
            :obj:`'none'` (the losses :math:`(N)`). (default: :obj:`'mean'`)
    """
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"Unknown 'reduction' {reduction!r}: expected one "
                         f"of {REDUCTIONS}")
    if not isinstance(prob, Tensor) or prob.dim() != 2:
        raise ValueError(f"'prob' must be a tensor of shape [num_samples, "
                         f"num_classes] (got {_shape(prob)})")
    if not isinstance(target, Tensor) or target.shape != prob.shape[:1]:
        raise ValueError(f"'target' must be a tensor of shape "
                         f"[{prob.size(0)}] (one class index per row of "
                         f"'prob'; got {_shape(target)})")
    if target.is_floating_point() or target.is_complex() or \
            target.dtype == torch.bool:
        raise TypeError(f"'target' must hold integer class indices (got "
                        f"{target.dtype})")
    if target.device != prob.device:
        raise ValueError(f"'target' is on {target.device} but 'prob' is on "
                         f"{prob.device}; move one of them")
    if reduction == 'mean' and target.numel() == 0:
        raise ValueError("The 'mean' of no samples is undefined: 'prob' and "
                         "'target' are empty (check the mask that selects "
                         "them, or use reduction='sum')")
    target = target.long()
    bad = (target < 0) | (target >= prob.size(1))
    if target.device.type == 'cpu':  # no host sync elsewhere
        if bool(bad.any()):
            raise ValueError(f"'target' must hold class indices in [0, "
                             f"{prob.size(1) - 1}] (got values in "
                             f"[{int(target.min())}, {int(target.max())}])")
    else:
        torch._assert_async(~bad.any(), "'target' must hold class indices "
                                        "in [0, num_classes - 1]")
    loss = -safe_log(prob).gather(1, target.view(-1, 1)).view(-1)
    if reduction == 'mean':
        return loss.mean()
    if reduction == 'sum':
        return loss.sum()
    return loss


def _shape(value: Any) -> str:
    if isinstance(value, Tensor):
        return str(list(value.size()))
    return type(value).__name__
