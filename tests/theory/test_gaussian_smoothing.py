import math

import numpy as np
import pytest
import torch

from torch_geometric_coin.theory import gaussian_smoothing

SIGMA = 0.8
T = 0.4
S2 = 2 * SIGMA**2 * T  # variance of the injected noise


def z_scores(estimate, reference):
    return ((estimate.mean - reference).abs() / estimate.stderr).max()


def smooth(f, x, t=T, n=20000, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return gaussian_smoothing(f, x, t, sigma=SIGMA, num_samples=n,
                              batch_size=5000, generator=gen)


def points(num, dim, seed=1):
    return torch.randn(num, dim, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(seed))


def test_square_norm_closed_form_and_wrong_time_scaling_fails():
    x = points(6, 3)
    f = lambda z: (z**2).sum(-1)  # noqa: E731
    ref = (x**2).sum(-1) + 3 * 2 * SIGMA**2 * T  # + 2 sigma^2 t per dim
    est = smooth(f, x)
    assert est.mean.shape == est.stderr.shape == (6, )
    assert z_scores(est, ref) < 4
    # sqrt(t) instead of sqrt(2t), i.e. t/2, and 2t instead of t, must fail:
    assert z_scores(smooth(f, x, t=T / 2), ref) > 10
    assert z_scores(smooth(f, x, t=2 * T), ref) > 10


def test_quartic_and_vector_valued_closed_form():
    x = points(5, 1)
    f = lambda z: torch.cat([z**4, z**3], dim=-1)  # noqa: E731
    ref = torch.cat([
        x**4 + 6 * x**2 * S2 + 3 * S2**2,
        x**3 + 3 * x * S2,
    ], dim=-1)
    est = smooth(f, x, n=40000)
    assert est.mean.shape == (5, 2)
    assert z_scores(est, ref) < 4


def test_gaussian_convolved_with_gaussian():
    a2, dim = 0.5, 2
    x = points(6, dim)
    f = lambda z: torch.exp(-(z**2).sum(-1) / (2 * a2))  # noqa: E731
    ref = (a2 / (a2 + S2))**(dim / 2) * torch.exp(-(x**2).sum(-1) /
                                                   (2 * (a2 + S2)))
    est = smooth(f, x)
    assert z_scores(est, ref) < 4
    assert z_scores(smooth(f, x, t=T / 2), ref) > 10


def heat_fd(f0, axes, t, sigma):
    """Explicit finite differences for u_t = sigma^2 Laplacian u on a grid,
    the boundary held at its initial values (far from the evaluation
    points)."""
    h = axes[0][1] - axes[0][0]
    grids = np.meshgrid(*axes, indexing='ij')
    u = f0(*grids)
    dim = len(axes)
    steps = math.ceil(t / (0.4 * h**2 / (dim * sigma**2)))
    dt = t / steps
    inner = tuple(slice(1, -1) for _ in range(dim))
    for _ in range(steps):
        lap = -2 * dim * u[inner]
        for ax in range(dim):
            lo = [slice(1, -1)] * dim
            hi = [slice(1, -1)] * dim
            lo[ax], hi[ax] = slice(0, -2), slice(2, None)
            lap = lap + u[tuple(lo)] + u[tuple(hi)]
        u[inner] += dt * sigma**2 * lap / h**2
    return u


@pytest.mark.parametrize('dim', [1, 2])
def test_finite_difference_heat_solution(dim):
    h = 0.02 if dim == 1 else 0.05
    axis = np.round(np.arange(-6, 6 + h / 2, h), 10)
    coords = np.array([[-1.0, 0.6], [0.0, 0.0], [1.4, -0.8], [0.4, 0.9]])
    idx = np.round((coords[:, :dim] + 6) / h).astype(int)
    if dim == 1:
        f0 = lambda u: np.cos(2 * u) / (1 + u**2)  # noqa: E731
        f = lambda z: torch.cos(2 * z[:, 0]) / (1 + z[:, 0]**2)  # noqa
    else:
        f0 = lambda u, v: np.tanh(u - v) / (1 + u**2 + 2 * v**2)  # noqa
        f = lambda z: torch.tanh(z[:, 0] - z[:, 1]) / (  # noqa: E731
            1 + z[:, 0]**2 + 2 * z[:, 1]**2)
    u = heat_fd(f0, [axis] * dim, T, SIGMA)
    x = torch.tensor(axis[idx], dtype=torch.float64)
    ref = torch.tensor(u[tuple(idx.T)])
    est = smooth(f, x, n=40000)
    assert z_scores(est, ref) < 4
    assert z_scores(smooth(f, x, t=T / 2, n=40000), ref) > 6
    # The smoothing is not trivial here: u(t) differs from f.
    assert z_scores(est, f(x)) > 6


def test_zero_time_is_identity_and_single_point():
    x = torch.tensor([0.3, -1.2])
    est = gaussian_smoothing(lambda z: z.sin().sum(-1), x, 0.0)
    assert est.mean.shape == () and float(est.stderr) == 0
    assert torch.allclose(est.mean, x.sin().sum())


def test_per_point_times():
    x = torch.zeros(3, 1, dtype=torch.float64)
    t = torch.tensor([0.1, 0.5, 1.0], dtype=torch.float64)
    est = smooth(lambda z: z[:, 0]**2, x, t=t)
    assert z_scores(est, 2 * SIGMA**2 * t) < 4


def test_bad_input():
    f = lambda z: z.sum(-1)  # noqa: E731
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="'t'"):
        gaussian_smoothing(f, x, -1.0)
    with pytest.raises(ValueError, match="'t'"):
        gaussian_smoothing(f, x, torch.ones(3))
    with pytest.raises(ValueError, match='sigma'):
        gaussian_smoothing(f, x, 1.0, sigma=0.0)
    with pytest.raises(ValueError, match='num_samples'):
        gaussian_smoothing(f, x, 1.0, num_samples=1)
    with pytest.raises(ValueError, match="'x'"):
        gaussian_smoothing(f, torch.zeros(2, 3, 4), 1.0)
    with pytest.raises(TypeError, match="'x'"):
        gaussian_smoothing(f, torch.zeros(2, 3, dtype=torch.long), 1.0)
    with pytest.raises(ValueError, match="'f'"):
        gaussian_smoothing(lambda z: z.sum(), x, 1.0)


def counting_f(num_points, offset):
    r"""Ignores the noisy points: the value of sample :math:`j` of point
    :math:`b` is :obj:`offset + 10 b + j`, so the mean and the standard
    error over :math:`n` samples are known exactly."""
    state = {'done': 0, 'calls': []}

    def f(z):
        m = z.size(0) // num_points
        state['calls'].append(m)
        j = torch.arange(state['done'], state['done'] + m,
                         dtype=torch.float64)
        state['done'] += m
        b = torch.arange(num_points, dtype=torch.float64).view(-1, 1)
        return (offset + 10 * b + j).reshape(-1)

    return f, state


@pytest.mark.parametrize('offset', [0.0, 1e11])
def test_mean_and_stderr_are_exact(offset):
    n = 1000
    f, state = counting_f(3, offset)
    est = gaussian_smoothing(f, torch.zeros(3, 2, dtype=torch.float64), 0.5,
                             num_samples=n, batch_size=300)
    assert state['calls'] == [300, 300, 300, 100]
    mean = offset + 10 * torch.arange(3.0, dtype=torch.float64) + (n - 1) / 2
    # Sample variance of 0, ..., n - 1 is n (n + 1) / 12:
    stderr = math.sqrt(n * (n + 1) / 12 / n)
    assert torch.allclose(est.mean, mean, rtol=1e-15, atol=0)
    assert torch.allclose(est.stderr, torch.full((3, ), stderr,
                                                 dtype=torch.float64),
                          rtol=1e-9, atol=0)


def test_integer_and_boolean_values_are_averaged_as_numbers():
    # E 1[x + s eps > 0] = Phi(x / s), s = sqrt(2 t) sigma:
    x = torch.tensor([[0.3], [-1.0], [0.0]], dtype=torch.float64)
    ref = torch.tensor([0.5 * math.erfc(-v / (math.sqrt(2 * S2)))
                        for v in x[:, 0].tolist()], dtype=torch.float64)
    for cast in (lambda b: b, lambda b: b.long()):
        est = smooth(lambda z: cast(z[:, 0] > 0), x)
        assert est.mean.dtype == est.stderr.dtype == torch.float64
        assert z_scores(est, ref) < 4
        assert float(est.stderr.min()) > 1e-3
    est = gaussian_smoothing(lambda z: (z[:, 0] > 0).int(), x.float(), T,
                             num_samples=10)
    assert est.mean.dtype == torch.float32


def test_numeric_arguments_and_non_finite_values():
    f = lambda z: z.sum(-1)  # noqa: E731
    x = torch.ones(2, 3, dtype=torch.float64)
    # numpy scalars are numbers; the results equal those for Python floats.
    ref = smooth(f, x, t=0.25)
    gen = torch.Generator().manual_seed(0)
    est = gaussian_smoothing(f, x, np.float32(0.25), sigma=np.float32(SIGMA),
                             num_samples=np.int64(20000),
                             batch_size=np.int64(5000), generator=gen)
    assert torch.allclose(est.mean, ref.mean, rtol=0, atol=1e-6)
    for t in (True, float('inf'), float('nan'), -0.1, 'a',
              torch.tensor([True, False])):
        with pytest.raises((ValueError, TypeError), match="'t'"):
            gaussian_smoothing(f, x, t)
    for sigma in (True, float('inf'), np.float64('nan'), 0):
        with pytest.raises(ValueError, match="'sigma'"):
            gaussian_smoothing(f, x, 0.1, sigma=sigma)
    with pytest.raises(TypeError, match='generator'):
        gaussian_smoothing(f, x, 0.1, generator=0)
    bad = x.clone()
    bad[1, 2] = float('nan')
    with pytest.raises(ValueError, match="'x' contains NaN"):
        gaussian_smoothing(f, bad, 0.1)
    # A function that is infinite (or NaN) on part of the noise:
    with pytest.raises(ValueError, match="'f' returned NaN or infinite"):
        gaussian_smoothing(lambda z: 1 / (z[:, 0] > 1).double(), x, 0.1)
    with pytest.raises(ValueError, match="'f' returned NaN or infinite"):
        gaussian_smoothing(lambda z: z[:, 0].log(), x, 0.5, batch_size=7)
    # Finite values whose square overflows float64:
    with pytest.raises(FloatingPointError, match='overflows'):
        gaussian_smoothing(lambda z: 1e200 * z[:, 0], x, 0.5)
