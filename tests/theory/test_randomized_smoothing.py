import numpy as np
import pytest
import torch
from scipy.stats import binom, binomtest, norm
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


def test_node_classification_per_node_certificates():
    gen = torch.Generator().manual_seed(1)
    num_nodes, num_feat = 30, 4
    edge_index = erdos_renyi_graph(num_nodes, 0.15)
    ei, ew = gcn_norm(edge_index, num_nodes=num_nodes)
    prop = to_dense_adj(ei, edge_attr=ew, max_num_nodes=num_nodes)[0].double()
    w = torch.randn(num_feat, dtype=torch.float64, generator=gen)
    x = torch.randn(num_nodes, num_feat, dtype=torch.float64, generator=gen)

    def gnn(feat, edge_index):  # linear one-layer GNN, two classes
        s = prop @ feat @ w
        return torch.stack([-s, s], dim=-1)

    smoothed = RandomizedSmoothing(
        gnn, 2, SIGMA, forward_fn=lambda model, x, ei: model(x, ei))
    pred, radius = smoothed.certify(x, edge_index, n0=50, n=3000,
                                    generator=gen)
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
    with pytest.raises(ValueError, match='Scores'):
        RandomizedSmoothing(model, 3, 1.0).predict(torch.zeros(2, 2))
    with pytest.raises(ValueError, match='Labels'):
        RandomizedSmoothing(lambda z: 5 + 0 * z[:, 0].long(), 3,
                            1.0).predict(torch.zeros(2, 1))
    with pytest.raises(TypeError, match="'x'"):
        smoothed.certify(torch.zeros(2, 2, dtype=torch.long))
