import math

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
