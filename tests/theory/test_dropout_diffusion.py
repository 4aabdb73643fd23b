import itertools
import math

import numpy as np
import pytest
import torch

from torch_geometric_coin.theory import dropout_diffusion_term

N = 10


def quadratic(num_units, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(2, num_units, num_units, dtype=torch.float64,
                    generator=gen)
    a = a + a.transpose(1, 2)
    b = torch.randn(2, num_units, dtype=torch.float64, generator=gen)

    def f(z):  # [M, n] -> [M, 2]
        return torch.einsum('mi,kij,mj->mk', z, a, z) + z @ b.t()

    return f, a


def smooth_head(scale=1.0, seed=0):
    torch.manual_seed(seed)
    head = torch.nn.Sequential(
        torch.nn.Linear(N, 16),
        torch.nn.Tanh(),
        torch.nn.Linear(16, 1),
        torch.nn.Flatten(0),
    ).double()
    h = scale * torch.randn(N, dtype=torch.float64)
    return head, h


@pytest.mark.parametrize('p', [0.1, 0.5, 0.8])
def test_quadratic_is_exact(p):
    f, a = quadratic(N)
    h = torch.randn(3, N, dtype=torch.float64)
    res = dropout_diffusion_term(f, h, p)
    assert res.exact and res.expected.shape == res.predicted.shape == (3, 2)
    assert float(res.stderr.abs().max()) == 0
    # Independent reference: Var(m / (1 - p)) = p / (1 - p), so
    # E[z^T A z] = h^T A h + p / (1 - p) * sum_i A_ii h_i^2.
    ref = p / (1 - p) * torch.einsum('bi,kii->bk', h**2, a)
    assert torch.allclose(res.difference, ref, atol=1e-9)
    assert torch.allclose(res.predicted, ref, atol=1e-9)


def test_quadratic_monte_carlo():
    f, a = quadratic(30)
    h = torch.randn(30, dtype=torch.float64)
    p = 0.3
    res = dropout_diffusion_term(f, h, p, num_samples=40000,
                                 generator=torch.Generator().manual_seed(0))
    assert not res.exact and res.difference.shape == (2, )
    ref = p / (1 - p) * torch.einsum('i,kii->k', h**2, a)
    z = (res.difference - ref).abs() / res.stderr
    assert float(z.max()) < 4
    # Monte Carlo agrees with the exact enumeration as well:
    f, _ = quadratic(N)
    h = torch.randn(N, dtype=torch.float64)
    mc = dropout_diffusion_term(f, h, p, exact=False, num_samples=40000,
                                generator=torch.Generator().manual_seed(1))
    ex = dropout_diffusion_term(f, h, p, exact=True)
    assert float(((mc.expected - ex.expected).abs() / mc.stderr).max()) < 4


def test_smooth_network_matches_and_scales_like_p_over_1_minus_p():
    head, h = smooth_head(scale=0.2)
    ps = [0.05, 0.1, 0.2, 0.3, 0.5]
    diffs, preds = [], []
    for p in ps:
        res = dropout_diffusion_term(head, h, p)
        assert res.exact and res.difference.shape == ()
        diffs.append(float(res.difference))
        preds.append(float(res.predicted))
    ratios = [d / pr for d, pr in zip(diffs, preds)]
    assert all(abs(r - 1) < 0.1 for r in ratios), ratios
    # The exact difference grows like p / (1 - p), not like p:
    odds = [p / (1 - p) for p in ps]
    slope = (math.log(abs(diffs[-1])) - math.log(abs(diffs[0]))) / (
        math.log(odds[-1]) - math.log(odds[0]))
    assert abs(slope - 1) < 0.05
    per_odds = [d / o for d, o in zip(diffs, odds)]
    per_p = [d / p for d, p in zip(diffs, ps)]
    assert max(per_odds) / min(per_odds) < 1.1
    assert max(per_p) / min(per_p) > 1.5
    # Higher-order terms fade as the activations shrink:
    small = dropout_diffusion_term(head, h / 4, 0.3)
    error = abs(float(small.difference) / float(small.predicted) - 1)
    assert error < abs(ratios[3] - 1) / 2


def test_bad_input():
    head, h = smooth_head()
    with pytest.raises(ValueError, match="'p'"):
        dropout_diffusion_term(head, h, 1.0)
    with pytest.raises(ValueError, match="'h'"):
        dropout_diffusion_term(head, h.view(1, 1, -1), 0.5)
    with pytest.raises(TypeError, match="'h'"):
        dropout_diffusion_term(head, h.long(), 0.5)
    with pytest.raises(ValueError, match='exact=False'):
        dropout_diffusion_term(lambda z: z.sum(-1), torch.ones(20), 0.5,
                               exact=True)
    with pytest.raises(ValueError, match="'f'"):
        dropout_diffusion_term(lambda z: z.sum(), h, 0.5)


@pytest.mark.parametrize('p', [0.2, 0.7])
def test_two_units_closed_form(p):
    h1, h2 = 0.7, -1.3

    def f(z):
        return torch.exp(z[:, 0]) * z[:, 1] + torch.sin(z[:, 0] + z[:, 1])

    def f_py(a, b):
        return math.exp(a) * b + math.sin(a + b)

    q = 1 - p
    expected = (q * q * f_py(h1 / q, h2 / q) + q * p * f_py(h1 / q, 0) +
                p * q * f_py(0, h2 / q) + p * p * f_py(0, 0))
    # d2f/dz1^2 = e^z1 z2 - sin(z1 + z2), d2f/dz2^2 = -sin(z1 + z2):
    s = math.sin(h1 + h2)
    predicted = 0.5 * p / q * (h1**2 * (math.exp(h1) * h2 - s) - h2**2 * s)
    res = dropout_diffusion_term(f, torch.tensor([h1, h2],
                                                 dtype=torch.float64), p)
    assert res.exact
    assert abs(float(res.expected) - expected) < 1e-12
    assert abs(float(res.no_dropout) - f_py(h1, h2)) < 1e-12
    assert abs(float(res.difference) - (expected - f_py(h1, h2))) < 1e-12
    assert abs(float(res.predicted) - predicted) < 1e-12
    # Masks per row and call of f, honoured on both paths:
    sizes = []
    counted = (lambda z: sizes.append(z.size(0)) or f(z))
    h = torch.tensor([[h1, h2]] * 3, dtype=torch.float64)
    batched = dropout_diffusion_term(counted, h, p, batch_size=3)
    # f(h), then 4 masks in chunks of 3 for 3 rows, then the Hessian:
    assert sizes[1:-1] == [9, 3]
    assert torch.allclose(batched.expected, torch.full(
        (3, ), expected, dtype=torch.float64), rtol=0, atol=1e-12)
    sizes.clear()
    dropout_diffusion_term(counted, h, p, exact=False, num_samples=10,
                           batch_size=4)
    assert sizes[1:-1] == [12, 12, 6]


def test_monte_carlo_standard_error_is_right():
    # The standard error against the exact standard deviation of f under
    # the 2^10 masks (enumerated independently here):
    f, _ = quadratic(N)
    h = torch.randn(N, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(2))
    p = 0.3
    masks = torch.tensor(list(itertools.product((0., 1.), repeat=N)),
                         dtype=torch.float64)
    w = (1 - p)**masks.sum(1) * p**(N - masks.sum(1))
    vals = f(h * masks / (1 - p))  # [2^N, 2]
    mean = (w.view(-1, 1) * vals).sum(0)
    std = torch.sqrt((w.view(-1, 1) * (vals - mean)**2).sum(0))
    n = 20000
    mc = dropout_diffusion_term(f, h, p, exact=False, num_samples=n,
                                generator=torch.Generator().manual_seed(3))
    assert torch.allclose(dropout_diffusion_term(f, h, p).expected, mean,
                          rtol=1e-12, atol=1e-12)
    assert torch.allclose(mc.stderr, std / math.sqrt(n), rtol=0.05, atol=0)
    assert float(((mc.expected - mean).abs() / mc.stderr).max()) < 4


def test_numeric_arguments_and_refused_options():
    f, _ = quadratic(4)
    h = torch.randn(4, dtype=torch.float64)
    ref = dropout_diffusion_term(f, h, 0.25)
    for p in (np.float32(0.25), np.float64(0.25)):
        res = dropout_diffusion_term(f, h, p)
        assert torch.allclose(res.expected, ref.expected, rtol=1e-12)
    for p in (True, float('nan'), 0, 1.5, torch.tensor(0.3)):
        with pytest.raises(ValueError, match="'p'"):
            dropout_diffusion_term(f, h, p)
    for exact in ('no', 1, 0.0):
        with pytest.raises(TypeError, match="'exact'"):
            dropout_diffusion_term(f, h, 0.5, exact=exact)
    # Monte Carlo options with an exact enumeration would be ignored:
    with pytest.raises(ValueError, match='num_samples'):
        dropout_diffusion_term(f, h, 0.5, num_samples=100)
    with pytest.raises(ValueError, match='exact=False'):
        dropout_diffusion_term(f, h, 0.5, exact=True,
                               generator=torch.Generator())
    mc = dropout_diffusion_term(f, h, 0.5, exact=False,
                                num_samples=np.int64(100),
                                generator=torch.Generator().manual_seed(0))
    assert not mc.exact and float(mc.stderr.min()) > 0
    with pytest.raises(TypeError, match='generator'):
        dropout_diffusion_term(f, h, 0.5, exact=False, generator=1)


def test_non_finite_and_unusable_functions():
    f, _ = quadratic(4)
    h = torch.randn(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="'h' contains NaN"):
        dropout_diffusion_term(f, torch.tensor([1.0, float('nan')]), 0.5)
    with pytest.raises(ValueError, match='NaN or infinite'):
        dropout_diffusion_term(lambda z: z.sum(-1) * float('nan'), h, 0.5)
    # Finite at h but infinite when a unit is dropped:
    with pytest.raises(ValueError, match='dropout masks'):
        dropout_diffusion_term(lambda z: 1 / z[:, 0], h.abs() + 1, 0.5)
    with pytest.raises(ValueError, match='NaN or infinite'):
        dropout_diffusion_term(lambda z: 1 / z[:, 0], h.abs() + 1, 0.5,
                               exact=False, num_samples=200)
    # Not twice differentiable at h:
    with pytest.raises(ValueError, match='second derivatives'):
        dropout_diffusion_term(lambda z: z[:, 0].abs().sqrt(),
                               torch.tensor([0.0, 1.0]), 0.5)
    with pytest.raises(TypeError, match='floating-point'):
        dropout_diffusion_term(lambda z: (z.sum(-1) > 0).long(), h, 0.5)
    with pytest.raises(ValueError, match='torch.func'):
        dropout_diffusion_term(
            lambda z: torch.from_numpy(z.detach().numpy().sum(-1)), h, 0.5)
    head = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Dropout(0.5),
                               torch.nn.Linear(3, 1), torch.nn.Flatten(0))
    head = head.double()
    with pytest.raises(ValueError, match=r'Dropout in training mode.*eval'):
        dropout_diffusion_term(head, h, 0.5)
    res = dropout_diffusion_term(head.eval(), h, 0.5)
    assert res.expected.shape == ()
