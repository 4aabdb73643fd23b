import csv
import datetime
import json
import math
import os.path as osp

import numpy as np
import pytest
import torch

from torch_geometric.data import Batch
from torch_geometric.nn import GCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from torch_geometric_coin.utils import coin_norm

# A day of 4 regions whose self-loops carry most of the weight; region 3
# only receives (no outgoing flow).
DAY = (torch.tensor([[0, 0, 1, 1, 2, 2, 0, 2, 3],
                     [0, 1, 1, 2, 2, 0, 3, 3, 3]]),
       torch.tensor([900., 40., 500., 25., 700., 10., 5., 30., 80.]))


def authors_laplacian(edge_index, edge_weight, num_nodes):
    r"""The authors' Laplacian, computed as their code does (numpy, dense):
    :obj:`A[source, target]`, diagonal zeroed, row sums, :math:`D^{-1/2} A
    D^{-1/2}` with :obj:`inf` set to 0, :math:`\mathrm{diag}(\hat{A} 1) -
    \hat{A}`."""
    A = np.zeros((num_nodes, num_nodes))
    np.add.at(A, (edge_index[0].numpy(), edge_index[1].numpy()),
              edge_weight.double().numpy())
    np.fill_diagonal(A, 0.)
    with np.errstate(divide='ignore'):
        d = np.power(A.sum(1), -0.5)
    d[np.isinf(d)] = 0.
    A_hat = np.diag(d) @ A @ np.diag(d)
    return np.diag(A_hat.sum(1)) - A_hat


def dense(index, value, num_nodes):
    r"""The dense :math:`L` of :func:`coin_norm`'s output (the entry of the
    edge :math:`j \to i` is :math:`L_{ij}`)."""
    out = torch.zeros(num_nodes, num_nodes, dtype=torch.float64)
    out.index_put_((index[1], index[0]), value.double(), accumulate=True)
    return out.numpy()


def test_authors_laplacian_of_a_day(bench):
    cf = bench('covid_forecast')
    edge_index, edge_weight = DAY
    expected = authors_laplacian(edge_index, edge_weight, 4)
    index, weight = cf.authors_graph(edge_index, edge_weight)
    assert not bool((index[0] == index[1]).any())  # self-loops removed
    L = dense(*coin_norm(index, weight, 4, normalization='coin',
                         add_self_loops=False), 4)
    assert np.allclose(L, expected, atol=1e-6)
    # Out-degree: region 3 has no outgoing flow, so D^{-1/2} zeroes its row
    # and column: it neither gives nor takes (in ours it takes).
    assert np.allclose(expected[3], 0.) and np.allclose(expected[:, 3], 0.)
    # Ours keeps the self-loops in the (in-)degree: a far weaker diffusion.
    ours = dense(*coin_norm(edge_index, edge_weight, 4), 4)
    assert not np.allclose(ours, expected, atol=1e-3)
    assert ours[3, 0] < 0 and ours[3, 2] < 0
    assert np.diag(ours).mean() < 0.2 * np.diag(expected).mean()

    # The authors' COIN diffuses with it: u <- u - sigma2 L u, K times.
    model = cf.AuthorsCOIN(3, 16, K=2, sigma2=0.5, dropout=0.25).eval()
    x = torch.randn(4, 3)
    u = model.base(x).detach().double().numpy()
    for _ in range(2):
        u = u - 0.5 * expected @ u
    out = model(x, index, weight)
    assert np.allclose(out.detach().numpy(), u.ravel(), atol=1e-5)


def test_authors_laplacian_of_england(bench, shared):
    r"""The issue's figures: mean diagonal of the authors' Laplacian
    0.79-0.83 on England's days, ours 0.01-0.10."""
    folder = shared('england_covid')
    cf = bench('covid_forecast')
    _, graphs = cf.read_england_covid(osp.join(folder, 'england_covid.json'))
    for edge_index, edge_weight in graphs[:5]:
        index, weight = cf.authors_graph(edge_index, edge_weight)
        ours = dense(*coin_norm(edge_index, edge_weight, 129), 129)
        authors = dense(*coin_norm(index, weight, 129, normalization='coin',
                                   add_self_loops=False), 129)
        assert np.allclose(authors, authors_laplacian(edge_index, edge_weight,
                                                      129), atol=1e-5)
        assert 0.78 < np.diag(authors).mean() < 0.84
        assert 0.005 < np.diag(ours).mean() < 0.1


def test_authors_masking(bench):
    cf = bench('covid_forecast')
    rng = np.random.default_rng(0)
    z = cf.standardize(rng.poisson(20., size=(30, 7)).astype(float))
    mask = cf.hide_entries(z, 0.9, 2, np.random.RandomState(5))
    # 90% of ALL entries, every region keeps at least 2:
    assert mask.shape == (30, 7) and mask.sum() == int(0.9 * 30 * 7)
    assert (~mask).sum(0).min() >= 2
    # numpy's draw without replacement, as the authors' code makes it:
    expected = np.zeros(z.size, dtype=bool)
    expected[np.random.RandomState(5).choice(z.size, int(0.9 * z.size),
                                             replace=False)] = True
    if (~expected.reshape(z.shape)).sum(0).min() >= 2:  # the first draw
        assert np.array_equal(mask, expected.reshape(z.shape))
    with pytest.raises(ValueError, match='No masking'):
        cf.hide_entries(z, 0.9, 5, np.random.RandomState(0), max_tries=3)


def test_authors_samples(bench):
    cf = bench('covid_forecast')
    T, N, lags = 61, 5, 8
    rng = np.random.default_rng(1)
    cases = rng.poisson(30., size=(T, N)).astype(float)
    z = cf.standardize(cases)
    # Per region over all days, population std + 1e-10, as theirs:
    assert np.allclose(z * (cases.std(0, ddof=0) + 1e-10) + cases.mean(0),
                       cases)
    assert np.allclose(z.mean(0), 0.) and np.allclose(z.std(0), 1.)
    mask = cf.hide_entries(z, 0.9, 2, np.random.RandomState(0))
    graphs = [DAY] * T
    x, y, samples = cf.authors_samples(z, mask, graphs, lags, 0.2)
    S = T - lags
    assert x.shape == (S, N, lags) and y.shape == (S, N) and len(samples) == S
    assert cf.split_sizes(S, 0.2, 0.2) == (10, 10)
    assert cf.split_sizes(54, 0.2, 0.2) == (10, 11)  # Spain
    for i in range(S):  # every split, the test one included
        window = mask[i:i + lags].T
        assert np.all(x[i][window] == 0.)  # hidden inputs are 0
        assert np.array_equal(x[i][~window], z[i:i + lags].T[~window])
        assert torch.equal(samples[i].x, torch.from_numpy(x[i]).float())
    start = 2 * int(0.2 * S)
    assert start == 20
    # Targets: hidden ones NaN before the test split, all of them from it on.
    assert np.array_equal(np.isnan(y[:start]), mask[lags:lags + start])
    assert np.array_equal(y[start:], z[lags + start:])
    # The graphs of a sample: the day's (with self-loops), the reversed
    # loop-free one of COIN, the GCN's normalised day and day 0 (as the
    # authors' cached GCN sees every sample).
    other = (torch.tensor([[0, 1], [1, 2]]), torch.tensor([3., 4.]))
    _, _, samples = cf.authors_samples(z, mask, [DAY] + [other] * (T - 1),
                                       lags, 0.2)
    s = samples[3]
    assert torch.equal(s.edge_index, other[0])
    assert torch.equal(s.coin_edge_index, cf.authors_graph(*other)[0])
    for (index, weight), graph in [((s.gcn_daily_index, s.gcn_daily_weight),
                                    other),
                                   ((s.gcn_day0_index, s.gcn_day0_weight),
                                    DAY)]:
        expected = gcn_norm(*graph, N, add_self_loops=True)
        assert torch.equal(index, expected[0])
        assert torch.equal(weight, expected[1])


def test_snapshot_mse(bench):
    cf = bench('covid_forecast')
    out = torch.tensor([1., 2., 3., 4., 5.])
    y = torch.tensor([0., 2., 1., 4., 9.])
    sample = torch.tensor([2., 2., 5., 5., 5.])
    loss = cf.snapshot_mse(out, torch.stack([y, sample], 1))
    # Mean over samples of each sample's MSE (not the pooled MSE):
    expected = (0.5 * (1 + 0) + (4 + 0 + 16) / 3) / 2
    assert math.isclose(float(loss), expected, rel_tol=1e-6)


def test_linear_regression(bench):
    from sklearn.linear_model import LinearRegression
    cf = bench('covid_forecast')
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 6, 3))
    y = x @ np.array([1., -2., 0.5]) + rng.normal(size=(12, 6))
    y[:4][rng.random((4, 6)) < 0.5] = np.nan
    xt, yt = x[:4].reshape(-1, 3), y[:4].ravel()
    seen = ~np.isnan(yt)
    reg = LinearRegression().fit(xt[seen], yt[seen])
    pred = reg.predict(x[7:].reshape(-1, 3))
    expected = np.mean((pred - y[7:].ravel())**2)
    assert math.isclose(cf.linear_regression(x, y, 4, 7), expected,
                        rel_tol=1e-9)


def test_authors_models(bench):
    cf = bench('covid_forecast')
    # Their modules, created in their order, start from their weights.
    torch.manual_seed(3)
    lin1, lin2, shortcut = (torch.nn.Linear(8, 16), torch.nn.Linear(16, 1),
                            torch.nn.Linear(8, 1))
    torch.manual_seed(3)
    base = cf.AuthorsResNet(8, 16, 1)
    x = torch.randn(5, 8)
    expected = shortcut(x) + lin2(torch.nn.functional.elu(lin1(x)))
    assert torch.allclose(base(x), expected)
    torch.manual_seed(3)
    fc1, fc2 = torch.nn.Linear(8, 16), torch.nn.Linear(16, 1)
    torch.manual_seed(3)
    mlp = cf.AuthorsMLP(8, 16, 0.25).eval()
    assert torch.allclose(mlp(x), fc2(torch.nn.functional.elu(fc1(x))).view(
        -1))

    # Their GCN has cached=True: every sample (here sample 1) is propagated
    # over the graph of the first one it saw (sample 0); ours passes day 0's
    # graph, normalised once, to every sample.
    other = (torch.tensor([[0, 1, 2], [1, 2, 3]]), torch.tensor([1., 2., 3.]))
    x0, x1 = torch.randn(4, 8), torch.randn(4, 8)
    torch.manual_seed(4)
    gcn = cf.GCN(8, 16, 0.25, act='elu', normalize=False).eval()

    def theirs_gcn(cached):
        conv1 = GCNConv(8, 16, cached=cached)
        conv2 = GCNConv(16, 1, cached=cached)
        conv1.load_state_dict(gcn.conv1.state_dict())
        conv2.load_state_dict(gcn.conv2.state_dict())
        return lambda x, graph: conv2(torch.nn.functional.elu(
            conv1(x, *graph)), *graph).view(-1)

    cached = theirs_gcn(cached=True)
    cached(x0, DAY)
    theirs = cached(x1, other)
    z = np.random.default_rng(0).normal(size=(10, 4))
    _, _, samples = cf.authors_samples(z, np.zeros_like(z, dtype=bool),
                                       [DAY] + [other] * 9, 8, 0.2)
    samples[0].x, samples[1].x = x0, x1
    batch = Batch.from_data_list(samples)
    out = gcn(batch.x, batch.gcn_day0_index, batch.gcn_day0_weight)
    assert torch.allclose(out[4:], theirs, atol=1e-6)
    daily = gcn(batch.x, batch.gcn_daily_index, batch.gcn_daily_weight)
    assert not torch.allclose(daily[4:], theirs, atol=1e-3)
    assert torch.allclose(daily[4:], theirs_gcn(cached=False)(x1, other),
                          atol=1e-6)


def test_authors_training_and_seeds(bench, monkeypatch):
    r"""100 epochs of Adam (0.01, 5e-4), no validation (the final model),
    the per-sample loss; the seeds of their code: RandomState(42) draws one
    per masking, which draws the masking, then one torch seed per
    initialisation."""
    cf = bench('covid_forecast')
    args = cf.setting_args(cf.parse([])[0], 'authors')
    assert (args.hidden_channels, args.dropout, args.epochs, args.seeds,
            args.seed, args.maskings) == (16, 0.25, 100, 10, 42, 10)
    assert (args.lr, args.weight_decay, args.K, args.sigma2,
            args.diffusion_dropout, args.hidden_ratio) == (0.01, 5e-4, 10,
                                                           0.5, 0.25, 0.9)
    calls = []

    def fake_fit(model, data, train_mask, val_mask, test_mask, **kwargs):
        calls.append(dict(kwargs, model=model, val_mask=val_mask,
                          samples=data.batch.unique().tolist(),
                          seen=torch.equal(train_mask,
                                           ~torch.isnan(data.y[:, 0]))))
        return {}

    monkeypatch.setattr(cf, 'fit', fake_fit)
    tested = []
    evaluate = cf.evaluate

    def spy_evaluate(model, forward, data):
        tested.append(data.num_graphs)
        return evaluate(model, forward, data)

    monkeypatch.setattr(cf, 'evaluate', spy_evaluate)
    seeds = []
    run = cf.run_authors

    def spy(train, test, args, seed):
        seeds.append(seed)
        return run(train, test, args, seed)

    monkeypatch.setattr(cf, 'run_authors', spy)
    rng = np.random.default_rng(3)
    cases = rng.poisson(40., size=(40, 6)).astype(float)
    args.maskings, args.seeds = 2, 3
    ring = (torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]]),
            torch.ones(6))
    runs = cf.main_authors(args, cases, [ring] * 40)
    # 32 samples: 6 train, 6 val, 20 test.
    for call in calls:
        assert call['val_mask'] is None and call['epochs'] == 100
        assert call['lr'] == 0.01 and call['weight_decay'] == 5e-4
        assert call['loss_fn'] is cf.snapshot_mse
        assert call['samples'] == list(range(6)) and call['seen']
    assert tested == [20] * len(calls)  # the final models, on the test days
    assert {type(c['model']).__name__ for c in calls} == {
        'AuthorsMLP', 'GCN', 'AuthorsResNet', 'AuthorsCOIN'}
    assert len(calls) == 5 * 6 and len(runs['COIN']) == 6

    z = cf.standardize(cases)
    expected = []
    for masking_seed in np.random.RandomState(42).randint(0, 1000000, 2):
        r = np.random.RandomState(masking_seed)
        cf.hide_entries(z, 0.9, 2, r)
        expected += r.randint(0, 1000000, 3).tolist()
    assert seeds == expected


# Small data in the raw formats ###############################################

def write_data(root, T=30, N=6, seed=0):
    r"""Writes an :obj:`england_covid.json` and a pandemic_tgnn England of
    :obj:`T` days and :obj:`N` regions (random cases, a ring of flows plus
    heavy self-loops)."""
    rng = np.random.default_rng(seed)
    cases = rng.poisson(20., size=(T, N)).astype(int)
    edges = {}
    for t in range(T):
        edges[t] = ([[i, i] for i in range(N)] +
                    [[i, (i + 1) % N] for i in range(N)],
                    [float(rng.integers(500, 900)) for _ in range(N)] +
                    [float(rng.integers(1, 50)) for _ in range(N)])
    (root / 'england_covid').mkdir(parents=True)
    with open(root / 'england_covid' / 'england_covid.json', 'w') as f:
        json.dump({'time_periods': T, 'y': cases.tolist(), 'edge_mapping': {
            'edge_index': {str(t): e for t, (e, _) in edges.items()},
            'edge_weight': {str(t): w for t, (_, w) in edges.items()}}}, f)
    folder = root / 'pandemic_tgnn' / 'England'
    (folder / 'graphs').mkdir(parents=True)
    days = [(datetime.date(2020, 3, 1) + datetime.timedelta(t)).isoformat()
            for t in range(T)]
    names = [f'r{i}' for i in range(N)]
    with open(folder / 'england_labels.csv', 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['name'] + days)
        for i in range(N):
            writer.writerow([names[i]] + cases[:, i].tolist())
    for t, day in enumerate(days):
        with open(folder / 'graphs' / f'EN_{day}.csv', 'w', newline='') as f:
            csv.writer(f).writerows(
                [names[i], names[j], w] for (i, j), w in zip(*edges[t]))
    return cases


def test_covid_forecast_both_settings(tmp_path, bench):
    write_data(tmp_path / 'data')
    cf = bench('covid_forecast')
    out = tmp_path / 'out'
    res = cf.main(['--root', str(tmp_path / 'data'), '--maskings', '1',
                   '--seeds', '2', '--epochs', '3', '--out-dir', str(out)])
    for setting in cf.SETTINGS:
        for method in cf.METHODS[setting]:
            summary = res['summary'][setting][method]['test_mse']
            assert math.isfinite(summary['mean']) and summary['n'] == 2
            assert len(res['runs'][setting][method]) == 2
    assert res['params']['authors']['hidden_channels'] == 16
    assert res['params']['ours']['hidden_channels'] == 64
    # Linear regression does not depend on the initialisation:
    lr = res['runs']['authors']['Linear regression']
    assert lr[0] == lr[1]
    with open(out / 'covid_forecast.json') as f:
        assert json.dumps(json.load(f)['summary']) == json.dumps(
            res['summary'])
    text = (out / 'covid_forecast.md').read_text()
    assert '| COIN |' in text and 'ours - authors' in text
    assert '| GCN (daily graphs) |' in text

    res = cf.main(['--root', str(tmp_path / 'data'), '--setting', 'authors',
                   '--maskings', '1', '--seeds', '1', '--epochs', '2',
                   '--out-dir', str(out)])
    assert list(res['summary']) == ['authors']


def test_hide_targets(bench):
    cf = bench('covid_forecast')
    gen = torch.Generator().manual_seed(0)
    mask = cf.hide_targets(10, 50, 0.9, 2, gen)
    assert mask.shape == (10, 50) and mask.sum(0).eq(2).all()
    mask = cf.hide_targets(40, 50, 0.9, 2, gen)
    assert mask.sum(0).eq(4).all()  # 10% of 40 days kept.
    assert not torch.equal(mask[:, 0], mask[:, 1]) or not torch.equal(
        mask[:, 1], mask[:, 2])
    with pytest.raises(ValueError, match='Cannot keep'):
        cf.hide_targets(1, 5, 0.9, 2, gen)


def test_covid_forecast_smoke(tmp_path, bench, shared):
    shared('pandemic_tgnn', 'England')
    cf = bench('covid_forecast')
    res = cf.main(['--setting', 'ours', '--days', '24', '--maskings', '1',
                   '--seeds', '1', '--epochs', '5', '--out-dir',
                   str(tmp_path)])
    for method in cf.METHODS['ours']:
        assert math.isfinite(res['summary']['ours'][method]['test_mse'][
            'mean'])
        assert len(res['runs']['ours'][method]) == 1
        assert res['summary']['ours'][method]['test_mse']['n'] == 1
    assert res['summary']['ours']['Linear regression']['test_mse'][
        'mean'] > 0
    with open(tmp_path / 'covid_forecast.json') as f:
        # One run: the confidence interval is NaN (NaN != NaN, so compare
        # the serialised text).
        assert json.dumps(json.load(f)['summary']) == json.dumps(
            res['summary'])
    assert '| COIN |' in (tmp_path / 'covid_forecast.md').read_text()


def test_covid_forecast_other_country(tmp_path, bench, shared):
    shared('pandemic_tgnn', 'Spain')
    res = bench('covid_forecast').main([
        '--dataset', 'Spain', '--maskings', '1', '--seeds', '1', '--epochs',
        '3', '--out-dir', str(tmp_path)])
    for setting in ('authors', 'ours'):
        assert math.isfinite(res['summary'][setting]['COIN']['test_mse'][
            'mean'])
    assert (tmp_path / 'covid_forecast_spain.json').is_file()
