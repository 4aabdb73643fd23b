import itertools
from typing import Callable, NamedTuple, Optional

import torch
from torch import Tensor

from torch_geometric_coin._checks import check_bool, check_number

from ._gaussian_smoothing import (apply_batched, check_finite,
                                  check_generator, monte_carlo_mean)

MAX_EXACT_UNITS = 16

_RANDOM_IN_TRAINING = (torch.nn.modules.dropout._DropoutNd,
                       torch.nn.modules.batchnorm._BatchNorm)


class DropoutDiffusion(NamedTuple):
    r"""The effect of dropout on a network's expected output, see
    :func:`dropout_diffusion_term`.

    Args:
        expected (torch.Tensor): :math:`\mathbb{E}_{\mathbf{m}}[f(\mathbf{h}
            \odot \mathbf{m} / (1 - p))]`, exact or Monte Carlo.
        no_dropout (torch.Tensor): :math:`f(\mathbf{h})`.
        difference (torch.Tensor): :obj:`expected - no_dropout`.
        stderr (torch.Tensor): Standard error of :obj:`expected` (zero when
            exact).
        predicted (torch.Tensor): The second-order (diffusion) term.
        exact (bool): Whether :obj:`expected` enumerates all masks.
    """
    expected: Tensor
    no_dropout: Tensor
    difference: Tensor
    stderr: Tensor
    predicted: Tensor
    exact: bool


def dropout_diffusion_term(
    f: Callable[[Tensor], Tensor],
    h: Tensor,
    p: float,
    exact: Optional[bool] = None,
    num_samples: Optional[int] = None,
    batch_size: int = 4096,
    generator: Optional[torch.Generator] = None,
) -> DropoutDiffusion:
    r"""Dropout on hidden units as a diffusion term: inverted dropout
    :math:`\mathbf{h} \mapsto \mathbf{h} \odot \mathbf{m} / (1 - p)`,
    :math:`m_i \sim \mathrm{Bernoulli}(1 - p)`, adds zero-mean noise of
    variance :math:`h_i^2 p / (1 - p)`, so that to second order

    .. math::
        \mathbb{E}_{\mathbf{m}} \left[ f\left(\frac{\mathbf{h} \odot
        \mathbf{m}}{1 - p}\right) \right] - f(\mathbf{h}) \approx
        \frac{1}{2} \frac{p}{1 - p} \sum_i h_i^2
        \frac{\partial^2 f}{\partial h_i^2}(\mathbf{h}),

    exact for quadratic :math:`f`. Computes both sides: the expectation
    over all :math:`2^n` masks or by Monte Carlo, and the prediction from
    the Hessian's diagonal (:func:`torch.func.hessian`).

    Args:
        f (callable): The network after the dropout layer: maps activations
            :math:`(M, n)` to floating-point outputs :math:`(M)` or
            :math:`(M, k)`, deterministic and twice differentiable with
            :mod:`torch.func`.
        h (torch.Tensor): Finite activations :math:`(n)` or :math:`(B, n)`.
        p (float): Dropout probability, :math:`0 < p < 1`.
        exact (bool, optional): Enumerate all masks. (default: :obj:`True`
            if :math:`n \le 16`, else :obj:`False`)
        num_samples (int, optional): Monte Carlo masks per row.
            (default: :obj:`10000`)
        batch_size (int, optional): Masks per row and call of :obj:`f`.
            (default: :obj:`4096`)
        generator (torch.Generator, optional): Source of the Monte Carlo
            masks. (default: :obj:`None`)

    Returns:
        DropoutDiffusion: each field of shape :math:`(B)`, :math:`(B, k)`,
        or without :math:`B` for one :math:`\mathbf{h}`.
    """
    if not torch.is_tensor(h) or not h.is_floating_point():
        raise TypeError("'h' must be a floating-point tensor")
    if h.dim() not in (1, 2) or h.size(-1) == 0:
        raise ValueError(f"'h' must have shape [n] or [B, n] with n > 0 "
                         f"(got {tuple(h.shape)})")
    check_number('p', p, low=0, high=1, open_low=True)
    p = float(p)
    if exact is not None:
        check_bool('exact', exact)
    single = h.dim() == 1
    h = h.unsqueeze(0) if single else h
    n = h.size(1)
    exact = n <= MAX_EXACT_UNITS if exact is None else bool(exact)
    if exact and n > MAX_EXACT_UNITS:
        raise ValueError(f"Exact enumeration of 2^{n} masks is too costly; "
                         f"use at most {MAX_EXACT_UNITS} units or "
                         f"exact=False")
    if exact and (num_samples is not None or generator is not None):
        raise ValueError(f"'num_samples' and 'generator' apply to the Monte "
                         f"Carlo estimate, not to the exact one over 2^{n} "
                         f"masks; pass exact=False or drop them")
    num_samples = 10000 if num_samples is None else num_samples
    check_number('num_samples', num_samples, integer=True, low=2)
    check_number('batch_size', batch_size, integer=True, low=1)
    check_generator(generator, h.device)
    check_finite('h', h)
    for module in (f.modules() if isinstance(f, torch.nn.Module) else ()):
        if module.training and isinstance(module, _RANDOM_IN_TRAINING):
            raise ValueError(f"'f' contains {type(module).__name__} in "
                             f"training mode (not deterministic); call "
                             f"f.eval() first")

    with torch.no_grad():
        base = apply_batched(f, h, 'activations', 'n')  # [B, *out]
    if not base.is_floating_point():
        raise TypeError(f"'f' must return floating-point values, as it is "
                        f"differentiated twice (got {base.dtype})")
    check_finite('f(h)', base)
    if exact:
        expected, stderr = _exact_expectation(f, h, p, batch_size)
    else:
        expected, stderr = _monte_carlo_expectation(f, h, p, num_samples,
                                                    batch_size, generator)

    def g(row: Tensor) -> Tensor:
        return f(row.unsqueeze(0)).squeeze(0)

    try:
        hess = torch.func.vmap(torch.func.hessian(g))(h)  # [B, *out, n, n]
    except RuntimeError as e:
        raise ValueError(f"The Hessian of 'f' could not be computed with "
                         f"torch.func; 'f' must be deterministic and built "
                         f"from differentiable torch operations ({e})") from e
    diag = torch.diagonal(hess, dim1=-2, dim2=-1)  # [B, *out, n]
    if not bool(torch.isfinite(diag).all()):
        raise ValueError("The second derivatives of 'f' at 'h' are not "
                         "finite ('f' is not twice differentiable there)")
    h2 = h.reshape(h.size(0), *([1] * (diag.dim() - 2)), n)**2
    predicted = 0.5 * p / (1 - p) * (diag * h2).sum(-1)

    out = [expected, base, expected - base, stderr, predicted.detach()]
    return DropoutDiffusion(*[v[0] if single else v for v in out], exact)


@torch.no_grad()
def _exact_expectation(f, h: Tensor, p: float, batch_size: int):
    n = h.size(1)
    masks = torch.tensor(list(itertools.product((0., 1.), repeat=n)),
                         dtype=h.dtype, device=h.device)  # [2^n, n]
    kept = masks.sum(1)
    weights = (1 - p)**kept * p**(n - kept)  # [2^n]
    total = 0.
    for chunk, w in zip(masks.split(batch_size), weights.split(batch_size)):
        z = (h.unsqueeze(1) * chunk / (1 - p)).reshape(-1, n)
        out = apply_batched(f, z, 'activations', 'n')
        out = out.reshape(h.size(0), chunk.size(0), *out.shape[1:])
        total = total + (out * w.view(1, -1, *([1] * (out.dim() - 2)))).sum(1)
    if not bool(torch.isfinite(total).all()):
        raise ValueError("'f' returned NaN or infinite values for some "
                         "dropout masks; the expectation is undefined")
    return total, torch.zeros_like(total)


def _monte_carlo_expectation(f, h: Tensor, p: float, num_samples: int,
                             batch_size: int, generator):
    n = h.size(1)

    def draw(m: int) -> Tensor:
        keep = torch.rand(h.size(0), m, n, dtype=h.dtype, device=h.device,
                          generator=generator) >= p
        z = (h.unsqueeze(1) * keep / (1 - p)).reshape(-1, n)
        out = apply_batched(f, z, 'activations', 'n')
        return out.reshape(h.size(0), m, *out.shape[1:])

    return monte_carlo_mean(draw, num_samples, batch_size, h.dtype)
