import numpy as np
import pytest
import torch
from scipy.stats import beta, binom, binomtest, norm
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import erdos_renyi_graph, to_dense_adj

from torch_geometric_coin.theory import (RandomizedSmoothing,
                                         binomial_test_half,
                                         clopper_pearson_lower)

SIGMA = 0.5


class Linear2(torch.nn.Module):
    """Binary linear classifier f(x) = 1[w.x + b > 0] as two logits."""
    def __init__(self, w, b):
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x):
        s = x @ self.w + self.b
        return torch.stack([-s, s], dim=-1)


def test_linear_classifier_radius_is_sound_and_tight():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(5, dtype=torch.float64, generator=gen)
    b = 0.3
    x = torch.randn(40, 5, dtype=torch.float64, generator=gen)
    model = Linear2(w, b)
    smoothed = RandomizedSmoothing(model, num_classes=2, sigma=SIGMA)
    margin = x @ w + b
    true_radius = margin.abs() / w.norm()
    true_class = (margin > 0).long()
    p_a = norm.cdf((true_radius / SIGMA).numpy())

    counts = smoothed.sample_counts(x, num=4000, batch_size=1000,
                                    generator=gen)
    freq = counts[torch.arange(40), true_class].double().numpy() / 4000
    assert np.all(np.abs(freq - p_a) < 4 * np.sqrt(p_a * (1 - p_a) / 4000) +
                  1e-9)

    pred, radius = smoothed.certify(x, n0=100, n=10000, alpha=0.001,
                                    batch_size=2000, generator=gen)
    certified = pred >= 0
    assert certified.sum() > 20
    assert torch.equal(pred[certified], true_class[certified])
    assert torch.all(radius <= true_radius + 1e-12)
    assert torch.all(radius[~certified] == 0)
    # Not vacuous: with p_A = Phi(2) the bound is close to the truth.
    easy = (true_radius > 2 * SIGMA) & (true_radius < 4 * SIGMA)
    assert easy.any()
    assert torch.all(radius[easy] > 0.75 * true_radius[easy])
    # Radius follows sigma * Phi^-1(p_lower) exactly (independent recompute)
    # and the same seed reproduces it.
    gen2 = torch.Generator().manual_seed(5)
    pred2, radius2 = smoothed.certify(x[:3], n0=50, n=500, generator=gen2)
    gen3 = torch.Generator().manual_seed(5)
    smoothed.sample_counts(x[:3], num=50, generator=gen3)
    counts = smoothed.sample_counts(x[:3], num=500, generator=gen3)
    for i in range(3):
        if pred2[i] >= 0:
            k = int(counts[i, pred2[i]])
            lo = clopper_pearson_lower(k, 500, 0.001)
            assert abs(float(radius2[i]) - SIGMA * norm.ppf(lo)) < 1e-12


@pytest.mark.parametrize('batch_size', [None, 512])
def test_node_classification_per_node_certificates(batch_size):
    gen = torch.Generator().manual_seed(1)
    num_nodes, num_feat = 30, 4
    edge_index = erdos_renyi_graph(num_nodes, 0.15)
    ei, ew = gcn_norm(edge_index, num_nodes=num_nodes)
    prop = to_dense_adj(ei, edge_attr=ew, max_num_nodes=num_nodes)[0].double()
    w = torch.randn(num_feat, dtype=torch.float64, generator=gen)
    x = torch.randn(num_nodes, num_feat, dtype=torch.float64, generator=gen)

    shapes = []

    def gnn(feat, edge_index):  # linear one-layer GNN, two classes
        shapes.append(tuple(feat.shape))
        s = prop @ feat @ w  # also for stacked copies [m, N, F]
        return torch.stack([-s, s], dim=-1)

    smoothed = RandomizedSmoothing(
        gnn, 2, SIGMA, forward_fn=lambda model, x, ei: model(x, ei))
    pred, radius = smoothed.certify(x, edge_index, n0=50, n=3000,
                                    batch_size=batch_size, generator=gen)
    # One unstacked copy per call by default, else batch_size stacked ones:
    if batch_size is None:
        assert shapes == [(num_nodes, num_feat)] * 3050
    else:
        assert [s[0] for s in shapes] == [50] + [512] * 5 + [440]
        assert all(s[1:] == (num_nodes, num_feat) for s in shapes)
    assert pred.shape == radius.shape == (num_nodes, )
    # Node i's score is linear in the whole feature matrix with gradient
    # prop[i]^T w^T, so its exact radius (Frobenius norm) is:
    margin = prop @ x @ w
    true_radius = margin.abs() / (prop.norm(dim=1) * w.norm())
    certified = pred >= 0
    assert certified.sum() > num_nodes // 2
    assert torch.equal(pred[certified], (margin[certified] > 0).long())
    assert torch.all(radius <= true_radius + 1e-12)
    easy = (true_radius > 0.5 * SIGMA) & (true_radius < 2.5 * SIGMA)
    assert easy.sum() > 5
    assert torch.all(radius[easy] > 0.7 * true_radius[easy])


def test_abstains_on_ties():
    model = Linear2(torch.tensor([1.0, 0.0]), 0.0)
    smoothed = RandomizedSmoothing(model, 2, 1.0)
    x = torch.zeros(8, 2)  # on the decision boundary: p_A = p_B = 1/2
    gen = torch.Generator().manual_seed(0)
    assert torch.all(smoothed.predict(x, n=1000, generator=gen) == -1)
    pred, radius = smoothed.certify(x, n0=100, n=1000, generator=gen)
    assert torch.all(pred == -1) and torch.all(radius == 0)
    # Far from the boundary it does not abstain:
    x = torch.tensor([[3.0, 0.0], [-3.0, 1.0]])
    assert smoothed.predict(x, n=100, generator=gen).tolist() == [1, 0]
    assert torch.equal(smoothed(x, n=100, generator=gen), torch.tensor([1,
                                                                        0]))
    # A classifier returning labels, tied between classes 0 and 2 of 3:
    labels = RandomizedSmoothing(lambda z: 2 * (z[:, 0] > 0).long(), 3, 1.0)
    assert torch.all(labels.predict(torch.zeros(4, 1), n=500,
                                    generator=gen) == -1)


def test_clopper_pearson_is_a_valid_lower_bound():
    n, alpha = 50, 0.05
    k = np.arange(n + 1)
    lo = clopper_pearson_lower(k, n, alpha)
    # Independent characterisation: P(Bin(n, lo) >= k) == alpha.
    assert np.allclose(binom.sf(k[1:] - 1, n, lo[1:]), alpha)
    assert lo[0] == 0 and np.all(np.diff(lo) > 0)
    # Exact coverage for a grid of true p: P(lo(K) > p) <= alpha.
    for p in np.linspace(0.02, 0.98, 49):
        miss = binom.pmf(k, n, p)[lo > p].sum()
        assert miss <= alpha + 1e-12


def test_binomial_test_matches_scipy():
    for n_ab in [1, 2, 7, 50]:
        for n_a in range(n_ab + 1):
            assert np.isclose(binomial_test_half(n_a, n_ab),
                              binomtest(n_a, n_ab, 0.5).pvalue)


def test_bad_input_and_repr():
    model = Linear2(torch.ones(2), 0.0)
    with pytest.raises(ValueError, match='sigma'):
        RandomizedSmoothing(model, 2, 0.0)
    with pytest.raises(ValueError, match='num_classes'):
        RandomizedSmoothing(model, 1, 1.0)
    smoothed = RandomizedSmoothing(model, 2, 0.25)
    assert repr(smoothed) == 'RandomizedSmoothing(Linear2, num_classes=2, ' \
        'sigma=0.25)'
    with pytest.raises(ValueError, match='alpha'):
        smoothed.predict(torch.zeros(2, 2), alpha=1.5)
    with pytest.raises(TypeError, match='forward_fn'):
        smoothed.predict(torch.zeros(2, 2), torch.zeros(2, 1))
    with pytest.raises(ValueError, match='scores of shape'):
        RandomizedSmoothing(model, 3, 1.0).predict(torch.zeros(2, 2))
    with pytest.raises(ValueError, match='Labels'):
        RandomizedSmoothing(lambda z: 5 + 0 * z[:, 0].long(), 3,
                            1.0).predict(torch.zeros(2, 1))
    with pytest.raises(TypeError, match="'x'"):
        smoothed.certify(torch.zeros(2, 2, dtype=torch.long))


def scripted(num_items, label_of_draw, num_classes=3, stacked=False):
    r"""A base classifier whose label for every item is a fixed function of
    the index of the noise draw (counted across calls), so the counts of
    selection and estimation draws are known exactly; records the number of
    draws per call."""
    calls = []

    def labels(m):
        start = sum(calls)
        calls.append(m)
        return torch.tensor([label_of_draw(start + j) for j in range(m)])

    def model(z):  # row-wise: [m * B, F] -> labels [m * B]
        return labels(z.size(0) // num_items).repeat_interleave(num_items)

    def forward_fn(model, z, *args):  # stacked: [m, B, F] -> [m, B]
        if z.dim() == 2:  # one copy per call (no batch_size given)
            return labels(1).expand(num_items)
        assert z.dim() == 3 and z.size(1) == num_items
        return labels(z.size(0)).view(-1, 1).expand(-1, num_items)

    smoothed = RandomizedSmoothing(model, num_classes, SIGMA,
                                   forward_fn=forward_fn if stacked else None)
    return smoothed, calls


@pytest.mark.parametrize('stacked', [False, True])
def test_certify_selects_with_n0_and_estimates_with_n_fresh_draws(stacked):
    x = torch.zeros(4, 2)
    n0, n, alpha = 20, 200, 0.001
    # Selection draws say class 0, the estimation draws class 1: the class
    # is chosen from the selection draws, and its count in the estimation
    # draws is 0, so it abstains (choosing from the estimation draws would
    # certify class 1 at the largest radius).
    smoothed, calls = scripted(4, lambda i: 0 if i < n0 else 1,
                               stacked=stacked)
    pred, radius = smoothed.certify(x, n0=n0, n=n, alpha=alpha,
                                    batch_size=64)
    assert pred.tolist() == [-1] * 4 and radius.tolist() == [0.0] * 4
    assert calls == [20, 64, 64, 64, 8]  # batch_size is honoured
    # Class 0 in 180 of the 200 estimation draws (and in all selection
    # draws): certified with sigma * Phi^-1(p_lower), p_lower the alpha
    # quantile of Beta(180, 21) (scipy, independently of the package).
    smoothed, calls = scripted(4, lambda i: 0 if i < n0 + 180 else 2,
                               stacked=stacked)
    pred, radius = smoothed.certify(x, n0=n0, n=n, alpha=alpha,
                                    batch_size=7)
    expected = SIGMA * norm.ppf(beta.ppf(alpha, 180, 21))
    assert abs(expected - 0.5 * 0.90899139600828) < 1e-12
    assert pred.tolist() == [0] * 4
    assert np.allclose(radius.numpy(), expected, rtol=0, atol=1e-12)
    assert calls == [7, 7, 6] + [7] * 28 + [4]
    # All n estimation draws agree: p_lower = alpha^(1/n) in closed form.
    smoothed, calls = scripted(4, lambda i: 2, stacked=stacked)
    pred, radius = smoothed.certify(x, n0=n0, n=n, alpha=alpha)
    assert calls == ([1] * 220 if stacked else [20, 100, 100])
    assert pred.tolist() == [2] * 4
    assert np.allclose(radius.numpy(), SIGMA * norm.ppf(alpha**(1 / n)),
                       rtol=0, atol=1e-12)


def test_predict_tests_top_two_counts_exactly():
    # 55 draws of class 2, 35 of class 0, 10 of class 1: the two-sided
    # binomial test of 55 out of 55 + 35 has p = 0.0446 (55 of 100 would
    # give 0.37, a one-sided test 0.022).
    def label(i):
        return 2 if i < 55 else (0 if i < 90 else 1)

    pvalue = binomtest(55, 90, 0.5).pvalue
    assert 0.04 < pvalue < 0.05
    x = torch.zeros(3, 1)
    for alpha, want in [(0.05, 2), (0.04, -1)]:
        smoothed, calls = scripted(3, label)
        assert smoothed.predict(x, n=100, alpha=alpha,
                                batch_size=30).tolist() == [want] * 3
        assert calls == [30, 30, 30, 10]


def test_nan_inputs_and_nan_scores_are_refused():
    model = Linear2(torch.tensor([1.0, -1.0]), 0.0)
    smoothed = RandomizedSmoothing(model, 2, SIGMA)
    for bad in (float('nan'), float('inf')):
        x = torch.zeros(3, 2)
        x[1, 0] = bad
        with pytest.raises(ValueError, match="'x' contains NaN"):
            smoothed.certify(x, n0=10, n=100)
        with pytest.raises(ValueError, match="'x' contains NaN"):
            smoothed.predict(x, n=100)
    # NaN scores (here for one item in one draw only) are refused, whether
    # row-wise or through forward_fn:
    calls = []

    def nan_once(z):
        out = model(z)
        calls.append(z.size(0))
        if len(calls) == 3:
            out[..., 1, 1] = float('nan')  # item 1, row-wise or stacked
        return out

    for forward_fn, batch_size in [(None, 1), (lambda m, z: m(z), None),
                                   (lambda m, z: m(z), 1)]:
        calls.clear()
        smoothed = RandomizedSmoothing(nan_once, 2, SIGMA, forward_fn)
        with pytest.raises(ValueError, match='NaN scores'):
            smoothed.certify(torch.full((3, 2), 5.0), n0=1, n=100,
                             batch_size=batch_size)
        calls.clear()
        with pytest.raises(ValueError, match='NaN scores'):
            smoothed.predict(torch.full((3, 2), 5.0), n=100,
                             batch_size=batch_size)
    # Infinite scores are ordered as usual:
    inf_model = RandomizedSmoothing(
        lambda z: torch.stack([z[:, 0] * 0, z[:, 0] * 0 + float('inf')], -1),
        2, SIGMA)
    pred, radius = inf_model.certify(torch.zeros(2, 1), n0=10, n=100)
    assert pred.tolist() == [1, 1] and radius.min() > 0


def test_numeric_arguments():
    model = Linear2(torch.ones(2), 0.0)
    for sigma in (True, float('inf'), float('nan'), -1.0, '0.5'):
        with pytest.raises(ValueError, match="'sigma'"):
            RandomizedSmoothing(model, 2, sigma)
    with pytest.raises(ValueError, match="'num_classes'"):
        RandomizedSmoothing(model, True, 1.0)
    smoothed = RandomizedSmoothing(model, np.int64(2), np.float32(0.25))
    assert smoothed.sigma == 0.25 and type(smoothed.num_classes) is int
    x = torch.tensor([[4.0, 4.0], [-4.0, -4.0]])
    gen = torch.Generator().manual_seed(0)
    # numpy scalars are numbers:
    pred, radius = smoothed.certify(x, n0=np.int64(10), n=np.int64(100),
                                    alpha=np.float32(0.01),
                                    batch_size=np.int64(50), generator=gen)
    assert pred.tolist() == [1, 0]
    assert smoothed.predict(x, n=np.int32(50), alpha=np.float64(0.01),
                            generator=gen).tolist() == [1, 0]
    for kwargs, name in [(dict(n0=True), 'n0'), (dict(n=0), "'n'"),
                         (dict(n=10.0), "'n'"), (dict(alpha=True), 'alpha'),
                         (dict(alpha=float('nan')), 'alpha'),
                         (dict(batch_size=0), 'batch_size'),
                         (dict(batch_size=True), 'batch_size')]:
        with pytest.raises(ValueError, match=name):
            smoothed.certify(x, **kwargs)
    with pytest.raises(ValueError, match="'n'"):
        smoothed.predict(x, n=-5)
    with pytest.raises(TypeError, match='generator'):
        smoothed.certify(x, generator=0)


def test_wrong_outputs_of_forward_fn():
    x = torch.zeros(5, 3)
    unstacked = RandomizedSmoothing(
        lambda z: z[:, :2], 2, SIGMA, forward_fn=lambda m, z: m(z))
    assert unstacked.predict(x, n=10).shape == (5, )
    # With batch_size, forward_fn gets [m, 5, 3] and must return
    # [m, 5, 2]; this one returns [m, 5, 3]:
    stacked = RandomizedSmoothing(lambda z: z, 2, SIGMA,
                                  forward_fn=lambda m, z: m(z))
    with pytest.raises(ValueError, match=r"\[4, 5, 2\].*batch_size"):
        stacked.predict(x, n=10, batch_size=4)
    with pytest.raises(ValueError, match='integer labels'):
        RandomizedSmoothing(lambda z: z[:, 0].to(torch.complex64), 2,
                            SIGMA).predict(x, n=10)


def test_counts_are_validated():
    for bad in (float('nan'), 2.5, -1, True, [1, 11]):
        with pytest.raises((ValueError, TypeError), match='successes'):
            clopper_pearson_lower(bad, 10, 0.05)
        with pytest.raises((ValueError, TypeError), match='successes'):
            binomial_test_half(bad, 10)
    for trials in (10.5, True, -1, float('inf')):
        with pytest.raises(ValueError, match='trials'):
            clopper_pearson_lower(3, trials, 0.05)
    for trials in (10.5, True, -1, float('inf'), 2):
        with pytest.raises((ValueError, TypeError), match='trials'):
            binomial_test_half(3, trials)
    with pytest.raises(ValueError, match='alpha'):
        clopper_pearson_lower(3, 10, True)
    # numpy scalars, integer tensors and whole floats are counts:
    assert np.isclose(clopper_pearson_lower(torch.tensor([3]), np.int64(10),
                                            np.float32(0.05))[0],
                      beta.ppf(np.float32(0.05), 3, 8))
    assert np.isclose(binomial_test_half(np.int64(3), 10.0),
                      binomtest(3, 10).pvalue)
