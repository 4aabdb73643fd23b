from typing import Callable, NamedTuple, Optional, Union

import numpy as np
import torch
from torch import Tensor

from torch_geometric_coin._checks import check_number


class MonteCarloEstimate(NamedTuple):
    r"""A Monte Carlo estimate of an expectation.

    Args:
        mean (torch.Tensor): The sample mean.
        stderr (torch.Tensor): Its standard error, the sample standard
            deviation divided by :math:`\sqrt{n}`.
    """
    mean: Tensor
    stderr: Tensor


def gaussian_smoothing(
    f: Callable[[Tensor], Tensor],
    x: Tensor,
    t: Union[float, Tensor],
    sigma: float = 1.0,
    num_samples: int = 1000,
    batch_size: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
) -> MonteCarloEstimate:
    r"""Gaussian noise injection as diffusion: estimates

    .. math::
        u(t, \mathbf{x}) = \mathbb{E}_{\boldsymbol{\epsilon} \sim
        \mathcal{N}(\mathbf{0}, \mathbf{I})} \left[ f\left(\mathbf{x} +
        \sqrt{2t}\, \sigma \boldsymbol{\epsilon}\right) \right]

    by Monte Carlo, the solution of the heat equation :math:`\partial_t u =
    \sigma^2 \Delta u`, :math:`u(0, \cdot) = f`: training :math:`f` on
    inputs with Gaussian noise of variance :math:`s^2` trains the diffused
    network :math:`u(s^2 / (2 \sigma^2), \cdot)`.

    Args:
        f (callable): The base function; maps points :math:`(M, d)` to
            finite values :math:`(M)` or :math:`(M, k)`.
        x (torch.Tensor): Finite evaluation points :math:`(B, d)`, or one
            point :math:`(d)`.
        t (float or torch.Tensor): Diffusion time :math:`t \ge 0`, a scalar
            or one per point :math:`(B)`.
        sigma (float, optional): Diffusion coefficient :math:`\sigma > 0`.
            (default: :obj:`1.0`)
        num_samples (int, optional): Number of noise samples :math:`n \ge 2`
            per point. (default: :obj:`1000`)
        batch_size (int, optional): Number of samples per point and call of
            :obj:`f`. (default: :obj:`num_samples`)
        generator (torch.Generator, optional): Source of the noise.
            (default: :obj:`None`)

    Returns:
        MonteCarloEstimate: :math:`u(t, \mathbf{x})` and its standard error,
        :math:`(B)` or :math:`(B, k)` (no :math:`B` for one point), in the
        dtype of :obj:`f`'s values (of :obj:`x` for integer values).
    """
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError("'x' must be a floating-point tensor")
    if x.dim() not in (1, 2):
        raise ValueError(f"'x' must have shape [d] or [B, d] "
                         f"(got {tuple(x.shape)})")
    single = x.dim() == 1
    x = x.unsqueeze(0) if single else x
    num_points, dim = x.shape
    if isinstance(t, (Tensor, np.ndarray)):
        t = torch.as_tensor(t)
        if t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"'t' must hold real numbers (got {t.dtype})")
    else:
        check_number('t', t, low=0)
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.dim() > 1 or (t.dim() == 1 and t.numel() != num_points):
        raise ValueError(f"'t' must be a scalar or have shape "
                         f"[{num_points}] (got {tuple(t.shape)})")
    if not torch.isfinite(t).all() or (t < 0).any():
        raise ValueError("'t' must be finite and non-negative")
    check_number('sigma', sigma, low=0, open_low=True)
    check_number('num_samples', num_samples, integer=True, low=2)
    batch_size = num_samples if batch_size is None else batch_size
    check_number('batch_size', batch_size, integer=True, low=1)
    check_generator(generator, x.device)
    check_finite('x', x)

    scale = (torch.sqrt(2 * t) * sigma).reshape(-1, 1, 1)  # [B or 1, 1, 1]

    def draw(m: int) -> Tensor:
        eps = torch.randn(num_points, m, dim, dtype=x.dtype, device=x.device,
                          generator=generator)
        z = (x.unsqueeze(1) + scale * eps).reshape(num_points * m, dim)
        out = apply_batched(f, z, 'points', 'd')
        return out.reshape(num_points, m, *out.shape[1:])

    mean, stderr = monte_carlo_mean(draw, num_samples, batch_size, x.dtype)
    if single:
        mean, stderr = mean[0], stderr[0]
    return MonteCarloEstimate(mean, stderr)


def check_finite(name: str, x: Tensor):
    r"""Raises a :class:`ValueError` naming :obj:`name` if :obj:`x` has NaN
    or infinite entries."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"'{name}' contains NaN or infinite values")


def check_generator(generator, device: torch.device):
    r"""Checks that :obj:`generator` is :obj:`None` or a generator on the
    device type of :obj:`device`."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"'generator' must be a torch.Generator or None "
                        f"(got {type(generator).__name__})")
    if generator.device.type != torch.device(device).type:
        raise ValueError(f"'generator' is on {generator.device} but the "
                         f"inputs are on {device}; create it with "
                         f"torch.Generator(device='{device}')")


def apply_batched(f: Callable[[Tensor], Tensor], z: Tensor, what: str,
                  dim: str) -> Tensor:
    r"""Calls :obj:`f` on a batch :obj:`z` of shape :math:`(M, \cdot)` and
    checks that it returns one real value (or vector) per row."""
    out = f(z)
    if not torch.is_tensor(out) or out.dim() == 0 or out.size(0) != z.size(0):
        raise ValueError(f"'f' must map [M, {dim}] {what} to values of shape "
                         f"[M] or [M, k] (got "
                         f"{getattr(out, 'shape', type(out))} for M="
                         f"{z.size(0)})")
    if out.is_complex():
        raise TypeError(f"'f' must return real values (got {out.dtype})")
    return out


@torch.no_grad()
def monte_carlo_mean(draw: Callable[[int], Tensor], num_samples: int,
                     batch_size: int,
                     default_dtype: torch.dtype) -> MonteCarloEstimate:
    r"""Averages :obj:`num_samples` draws :math:`(B, m, *)` of
    :obj:`draw(m)`, :obj:`batch_size` at a time, with the standard error, in
    the samples' dtype (:obj:`default_dtype` for integers or booleans)."""
    total = total_sq = shift = bad = None
    done, dtype = 0, default_dtype
    while done < num_samples:
        m = min(batch_size, num_samples - done)
        out = draw(m)
        dtype = out.dtype if out.is_floating_point() else dtype
        out = out.double()
        if shift is None:
            shift = out.mean(1)
            bad = ~torch.isfinite(shift)
            total = total_sq = torch.zeros_like(shift)
        else:
            bad = bad | ~torch.isfinite(out).all(1)
        out = out - shift.unsqueeze(1)
        total, total_sq = total + out.sum(1), total_sq + (out * out).sum(1)
        done += m
    if bool(bad.any()):
        raise ValueError("'f' returned NaN or infinite values at some "
                         "sample points; the expectation is undefined")
    mean = total / num_samples
    var = (total_sq - num_samples * mean * mean).clamp(min=0)
    var = var / (num_samples - 1)
    stderr = torch.sqrt(var / num_samples)
    mean = mean + shift
    result = MonteCarloEstimate(mean.to(dtype), stderr.to(dtype))
    if not all(bool(torch.isfinite(v).all()) for v in result):
        raise FloatingPointError(f"The mean or its standard error overflows "
                                 f"{dtype}; rescale 'f' or use float64")
    return result
