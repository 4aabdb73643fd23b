import torch
import torch.nn.functional as F
from torch import Tensor


def safe_log(prob: Tensor) -> Tensor:
    r"""The logarithm of (diffused) probabilities, finite everywhere: values
    at or below the smallest normal number of the dtype (zero, or negative
    ones that an unstable explicit scheme can produce) are clamped to it."""
    return prob.clamp_min(torch.finfo(prob.dtype).tiny).log()


def diffused_nll_loss(prob: Tensor, target: Tensor,
                      reduction: str = 'mean') -> Tensor:
    r"""The negative log-likelihood of diffused class probabilities,
    :math:`-\frac{1}{N}\sum_i \log u_{i, y_i}`, the loss of COIN.

    Unlike :obj:`F.nll_loss(prob.log(), target)` it never returns NaN or
    infinity when a probability reaches zero (see :func:`safe_log`).

    Args:
        prob (torch.Tensor): Probabilities :math:`(N, C)`.
        target (torch.Tensor): Class indices :math:`(N)`.
        reduction (str, optional): :obj:`'mean'`, :obj:`'sum'` or
            :obj:`'none'`. (default: :obj:`'mean'`)
    """
    return F.nll_loss(safe_log(prob), target, reduction=reduction)
