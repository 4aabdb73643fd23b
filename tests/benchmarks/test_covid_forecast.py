import argparse
import math
import os.path as osp

import numpy as np
import pytest
import torch
from torch.nn.functional import elu

from torch_geometric.data import Batch
from torch_geometric.nn import GCNConv

from torch_geometric_coin.utils import coin_norm

# A day of 4 regions whose self-loops carry most of the weight; region 3
# only receives (no outgoing flow).
DAY = (torch.tensor([[0, 0, 1, 1, 2, 2, 0, 2, 3],
                     [0, 1, 1, 2, 2, 0, 3, 3, 3]]),
       torch.tensor([900., 40., 500., 25., 700., 10., 5., 30., 80.]))


def authors_laplacian(edge_index, edge_weight, n):
    r"""As their code: dense :obj:`A[source, target]`, diagonal zeroed, row
    sums, :math:`D^{-1/2} A D^{-1/2}` (inf to 0), :math:`\mathrm{diag}(
    \hat{A} 1) - \hat{A}`."""
    A = np.zeros((n, n))
    np.add.at(A, tuple(edge_index.numpy()), edge_weight.double().numpy())
    np.fill_diagonal(A, 0.)
    with np.errstate(divide='ignore'):
        d = np.power(A.sum(1), -0.5)
    d[np.isinf(d)] = 0.
    A_hat = np.diag(d) @ A @ np.diag(d)
    return np.diag(A_hat.sum(1)) - A_hat


def dense(index, value, n):  # coin_norm's entry of the edge j -> i is L_ij
    out = torch.zeros(n, n, dtype=torch.float64)
    out.index_put_((index[1], index[0]), value.double(), accumulate=True)
    return out.numpy()


def test_authors_laplacian_and_coin(bench):
    cf = bench('covid_forecast')
    expected = authors_laplacian(*DAY, 4)
    index, weight = cf.authors_graph(*DAY)
    L = dense(*coin_norm(index, weight, 4, add_self_loops=False), 4)
    assert np.allclose(L, expected, atol=1e-6)
    # Out-degree: region 3 neither gives nor takes; ours is far weaker.
    assert np.allclose(expected[3], 0.) and np.allclose(expected[:, 3], 0.)
    ours = dense(*coin_norm(*DAY, 4), 4)
    assert np.diag(ours).mean() < 0.2 * np.diag(expected).mean()
    # Their COIN: u <- u - sigma2 L u, K times.
    model = cf.Diffused(cf.AuthorsResNet(3, 16), K=2, sigma2=0.5,
                        add_self_loops=False, dropout=0.25).eval()
    x = torch.randn(4, 3)
    u = model.base(x).detach().double().numpy()
    for _ in range(2):
        u = u - 0.5 * expected @ u
    assert np.allclose(model(x, index, weight).detach().numpy(), u,
                       atol=1e-5)


def test_authors_laplacian_of_england(bench, shared):
    cf, root = bench('covid_forecast'), osp.dirname(shared('england_covid'))
    _, graphs = cf.load(argparse.Namespace(root=root, dataset='England'),
                        'authors')
    for edge_index, edge_weight in graphs[:5]:
        authors = dense(*coin_norm(*cf.authors_graph(edge_index, edge_weight),
                                   129, add_self_loops=False), 129)
        assert np.allclose(authors, authors_laplacian(edge_index, edge_weight,
                                                      129), atol=1e-5)
        assert 0.78 < np.diag(authors).mean() < 0.84
        ours = dense(*coin_norm(edge_index, edge_weight, 129), 129)
        assert 0.005 < np.diag(ours).mean() < 0.1


def test_authors_masking_and_samples(bench):
    cf = bench('covid_forecast')
    T, N = 61, 5
    cases = np.random.default_rng(1).poisson(30., size=(T, N)).astype(float)
    z = cf.standardize(cases)  # per region, population std + 1e-10
    assert np.allclose(z * (cases.std(0) + 1e-10) + cases.mean(0), cases)
    mask = cf.hide_entries(z, np.random.RandomState(5))
    # 90% of ALL entries (numpy's draw), every region keeps at least 2:
    assert mask.sum() == int(0.9 * T * N) and (~mask).sum(0).min() >= 2
    first = np.random.RandomState(5).choice(T * N, 274, replace=False)
    assert np.array_equal(mask.ravel(), np.isin(np.arange(T * N), first))
    with pytest.raises(ValueError, match='No masking'):
        cf.hide_entries(z, np.random.RandomState(0), min_keep=10, tries=3)
    S = T - 8  # 10 / 10 / 33 samples; Spain's 54: 10 / 11 / 33
    assert cf.split_sizes(S) == (10, 10) and cf.split_sizes(54) == (10, 11)
    other = (torch.tensor([[0, 1], [1, 2]]), torch.tensor([3., 4.]))
    x, y, samples = cf.authors_samples(z, mask, [DAY] + [other] * (T - 1))
    assert x.shape == (S, N, 8) and y.shape == (S, N)
    for i in range(S):  # hidden inputs are 0 in every split
        window = mask[i:i + 8].T
        assert np.all(x[i][window] == 0.)
        assert np.array_equal(x[i][~window], z[i:i + 8].T[~window])
    # Hidden targets NaN up to the test split (sample 20), all from it on:
    assert np.array_equal(np.isnan(y[:20]), mask[8:28])
    assert np.array_equal(y[20:], z[28:])
    s = samples[3]  # the day's graph, day 0's, and COIN's
    assert torch.equal(s.edge_index, other[0])
    assert torch.equal(s.day0_index, DAY[0])
    assert torch.equal(s.coin_edge_index, cf.authors_graph(*other)[0])


def test_snapshot_mse_and_least_squares(bench):
    from sklearn.linear_model import LinearRegression
    cf = bench('covid_forecast')
    out = torch.tensor([1., 2., 3., 4., 5.])
    target = torch.tensor([[0., 2], [2, 2], [1, 5], [4, 5], [9, 5]])
    # The mean over samples of each sample's MSE (not the pooled MSE):
    assert math.isclose(float(cf.snapshot_mse(out, target)),
                        (0.5 + 20 / 3) / 2, rel_tol=1e-6)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(40, 3)), rng.normal(size=40)
    train = rng.random(40) < 0.5
    expected = LinearRegression().fit(x[train], y[train]).predict(x)
    pred = cf.least_squares(torch.from_numpy(x), torch.from_numpy(y),
                            torch.from_numpy(train))
    assert np.allclose(pred.numpy(), expected, atol=1e-10)


def test_authors_models(bench):
    cf = bench('covid_forecast')
    # Their modules, created in their order, start from their weights.
    torch.manual_seed(3)
    lin1, lin2, shortcut = (torch.nn.Linear(8, 16), torch.nn.Linear(16, 1),
                            torch.nn.Linear(8, 1))
    torch.manual_seed(3)
    base, x = cf.AuthorsResNet(8, 16), torch.randn(5, 8)
    assert torch.allclose(base(x), shortcut(x) + lin2(elu(lin1(x))))
    # Their GCN has cached=True: every sample (here sample 1) is propagated
    # over the graph of the first one it saw; ours passes day 0's graph.
    other = (torch.tensor([[0, 1, 2], [1, 2, 3]]), torch.tensor([1., 2., 3.]))
    z = np.random.default_rng(0).normal(size=(10, 4))
    _, _, samples = cf.authors_samples(z, np.zeros_like(z, dtype=bool),
                                       [DAY] + [other] * 9)
    batch = Batch.from_data_list(samples[:2])
    gcn = cf.GCN(8, 16, 2, 1, act='elu').eval()
    convs = GCNConv(8, 16, cached=True), GCNConv(16, 1, cached=True)
    for conv, ours in zip(convs, gcn.convs):
        conv.load_state_dict(ours.state_dict())
    convs[1](elu(convs[0](samples[0].x, *DAY)), *DAY)  # caches day 0's
    theirs = convs[1](elu(convs[0](samples[1].x, *other)), *other)
    out = gcn(batch.x, batch.day0_index, batch.day0_weight)
    assert torch.allclose(out[4:], theirs, atol=1e-6)
    daily = gcn(batch.x, batch.edge_index, batch.edge_weight)
    assert not torch.allclose(daily[4:], theirs, atol=1e-3)


def test_authors_seeds(bench, monkeypatch):
    r"""RandomState(42) draws one seed per masking, whose RandomState draws
    the masking, then one torch seed per initialisation; 100 epochs of the
    per-sample loss, the final model."""
    cf = bench('covid_forecast')
    seeds, calls = [], []
    monkeypatch.setattr(torch, 'manual_seed', seeds.append)

    def fake_fit(model, data, train, val, test, **kwargs):
        calls.append((val, kwargs['epochs'], kwargs['loss_fn']))
        return [{}]

    monkeypatch.setattr(cf, 'fit', fake_fit)
    args = argparse.Namespace(dropout=0.25, hidden_channels=16, seed=42,
                              maskings=2, seeds=3, K=10, sigma2=0.5, lr=0.01,
                              weight_decay=5e-4, epochs=100)
    cases = np.random.default_rng(3).poisson(40., size=(40, 4)).astype(float)
    runs = list(cf.authors(args, cases, [DAY] * 40))
    assert len(runs) == 6 and set(calls) == {(None, 100, cf.snapshot_mse)}
    z, expected = cf.standardize(cases), []
    for seed in np.random.RandomState(42).randint(0, 1000000, 2):
        rng = np.random.RandomState(seed)
        cf.hide_entries(z, rng)
        expected += [s for s in rng.randint(0, 1000000, 3) for _ in range(5)]
    assert seeds == expected


def test_hide_targets(bench):
    hide, gen = bench('covid_forecast').hide_targets, torch.Generator()
    assert hide(10, 50, gen).sum(0).eq(2).all()  # at least 2 kept
    mask = hide(40, 50, gen)  # 10% of 40 days kept, per region:
    assert mask.sum(0).eq(4).all() and not mask[:, 0].equal(mask[:, 1])


@pytest.mark.slow
def test_covid_forecast_smoke(tmp_path, bench, shared):
    root, cf = osp.dirname(shared('england_covid')), bench('covid_forecast')
    shared('pandemic_tgnn', 'England')
    res = cf.main(['--root', root, '--maskings', '1', '--seeds', '2',
                   '--epochs', '2', '--out-dir', str(tmp_path)])
    for setting in cf.SETTINGS:
        for method in cf.METHODS[setting]:
            assert len(res['runs'][setting][method]) == 2
            assert math.isfinite(
                res['summary'][setting][method]['test_mse']['mean'])
    assert res['params']['authors']['hidden_channels'] == 16
    text = (tmp_path / 'covid_forecast.md').read_text()
    assert '| GCN (daily graphs) |' in text and 'ours - authors' in text
