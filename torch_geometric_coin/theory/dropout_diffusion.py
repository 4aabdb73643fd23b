import itertools
from typing import Callable, NamedTuple, Optional

import torch
from torch import Tensor

from torch_geometric_coin._checks import check_number

from ._gaussian_smoothing import apply_batched, monte_carlo_mean

MAX_EXACT_UNITS = 16


class DropoutDiffusion(NamedTuple):
    r"""The effect of dropout on a network's expected output, see
    :func:`dropout_diffusion_term`.

    Args:
        expected (torch.Tensor): :math:`\mathbb{E}_{\mathbf{m}}[f(\mathbf{h}
            \odot \mathbf{m} / (1 - p))]`, exact or Monte Carlo.
        no_dropout (torch.Tensor): :math:`f(\mathbf{h})`.
        difference (torch.Tensor): :obj:`expected - no_dropout`.
        stderr (torch.Tensor): Standard error of :obj:`expected` and
            :obj:`difference` (zero when computed exactly).
        predicted (torch.Tensor): The second-order (diffusion) term
            :math:`\frac{1}{2} \frac{p}{1-p} \sum_i h_i^2
            \partial^2 f / \partial h_i^2`.
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
    num_samples: int = 10000,
    batch_size: int = 4096,
    generator: Optional[torch.Generator] = None,
) -> DropoutDiffusion:
    r"""Dropout on hidden units as a diffusion term. With inverted dropout
    :math:`\mathbf{h} \mapsto \mathbf{h} \odot \mathbf{m} / (1 - p)`,
    :math:`m_i \sim \mathrm{Bernoulli}(1 - p)` independent, the perturbation
    :math:`\delta_i = h_i (m_i / (1 - p) - 1)` has mean zero, variance
    :math:`h_i^2 p / (1 - p)` and independent coordinates, so a second-order
    Taylor expansion of the rest of the network :math:`f` gives

    .. math::
        \mathbb{E}_{\mathbf{m}} \left[ f\left(\frac{\mathbf{h} \odot
        \mathbf{m}}{1 - p}\right) \right] - f(\mathbf{h}) \approx
        \frac{1}{2} \frac{p}{1 - p} \sum_i h_i^2
        \frac{\partial^2 f}{\partial h_i^2}(\mathbf{h}),

    a diffusion (second-order) term with a diagonal, state-dependent
    diffusivity :math:`\frac{p}{1-p} h_i^2`. The formula is exact for
    quadratic :math:`f`; otherwise higher derivatives contribute terms that
    are small when :math:`|h_i|` is small on the scale on which
    :math:`f` curves.

    Computes both sides: the expectation exactly, by enumerating all
    :math:`2^n` masks, or by Monte Carlo, and the prediction from the
    diagonal of the Hessian (:func:`torch.func.hessian`).

    Args:
        f (callable): The network after the dropout layer; maps hidden
            activations of shape :math:`(M, n)` to outputs of shape
            :math:`(M)` or :math:`(M, k)`. Must be deterministic and
            differentiable twice (compatible with :mod:`torch.func`), e.g.
            an :class:`~torch.nn.Module` in evaluation mode.
        h (torch.Tensor): Hidden activations of shape :math:`(n)` or
            :math:`(B, n)`.
        p (float): Dropout probability, :math:`0 < p < 1`.
        exact (bool, optional): Enumerate all masks. (default: :obj:`True`
            if :math:`n \le 16`, else :obj:`False`)
        num_samples (int, optional): Monte Carlo masks per row when not
            exact. (default: :obj:`10000`)
        batch_size (int, optional): Masks per call of :obj:`f`.
            (default: :obj:`4096`)
        generator (torch.Generator, optional): Source of the masks.
            (default: :obj:`None`)

    Returns:
        DropoutDiffusion: expectation, no-dropout output, their difference
        with its standard error, and the predicted second-order term, each
        of shape :math:`(B)`, :math:`(B, k)` or without the :math:`B`
        dimension for a single :math:`\mathbf{h}`.
    """
    if not torch.is_tensor(h) or not h.is_floating_point():
        raise TypeError("'h' must be a floating-point tensor")
    if h.dim() not in (1, 2) or h.size(-1) == 0:
        raise ValueError(f"'h' must have shape [n] or [B, n] with n > 0 "
                         f"(got {tuple(h.shape)})")
    if not isinstance(p, (int, float)) or not 0 < p < 1:
        raise ValueError(f"'p' must lie in (0, 1) (got {p!r})")
    single = h.dim() == 1
    h = h.unsqueeze(0) if single else h
    n = h.size(1)
    if exact is None:
        exact = n <= MAX_EXACT_UNITS
    if exact and n > MAX_EXACT_UNITS:
        raise ValueError(f"Exact enumeration of 2^{n} masks is too costly; "
                         f"use at most {MAX_EXACT_UNITS} units or "
                         f"exact=False")
    check_number('num_samples', num_samples, integer=True, low=2)
    check_number('batch_size', batch_size, integer=True, low=1)

    with torch.no_grad():
        base = apply_batched(f, h, 'activations', 'n')  # [B, *out]
    if exact:
        expected, stderr = _exact_expectation(f, h, p, batch_size)
    else:
        expected, stderr = _monte_carlo_expectation(f, h, p, num_samples,
                                                    batch_size, generator)

    def g(row: Tensor) -> Tensor:
        return f(row.unsqueeze(0)).squeeze(0)

    hess = torch.func.vmap(torch.func.hessian(g))(h)  # [B, *out, n, n]
    diag = torch.diagonal(hess, dim1=-2, dim2=-1)  # [B, *out, n]
    h2 = h.reshape(h.size(0), *([1] * (diag.dim() - 2)), n)**2
    predicted = 0.5 * p / (1 - p) * (diag * h2).sum(-1)

    out = DropoutDiffusion(expected, base, expected - base, stderr,
                           predicted.detach(), exact)
    if single:
        out = out._replace(**{
            k: v[0]
            for k, v in out._asdict().items() if torch.is_tensor(v)
        })
    return out


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

    return monte_carlo_mean(draw, num_samples, batch_size)
