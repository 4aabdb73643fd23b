import io
import json
import math
import os.path as osp
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torch_geometric.data import Data

from torch_geometric_coin.nn import COIN
from torch_geometric_coin.utils import gaussian_knn_graph


# An independent, dense transcription of the authors' few-shot pipeline
# (fewshot/train.py, coin.py, utils.py of shwangtangjun/COIN) for one
# episode, the reference of the tests of the 'authors' setting.

def ref_features(support, query, base_mean):
    s = support - base_mean
    s = s / s.norm(dim=1, keepdim=True)
    q = query - base_mean
    q = q / q.norm(dim=1, keepdim=True)
    q = q + (s.mean(0, keepdim=True) - q.mean(0, keepdim=True))
    return torch.cat([s, q])


def ref_laplacian(x, n_top=8, sigma=4):
    dist = (x[None, :, :] - x[:, None, :]).pow(2).sum(-1).sqrt()
    # Distances sorted per row (the row's own 0 first):
    ranked = dist.sort(dim=1).values
    cut, scale = ranked[:, n_top - 1:n_top], ranked[:, sigma - 1:sigma]
    w = torch.exp(-(dist / scale).pow(2)) * (dist < cut)
    d = w.sum(1).pow(-0.5)
    w = d[:, None] * w * d[None, :]
    w = (w + w.t()) / 2
    return torch.diag(w.sum(1)) - w


def ref_head(x, lap, fc_w, fc_b, cls_w, cls_b, K, sigma2):
    h = x + F.relu(x @ fc_w.t() + fc_b)
    u = torch.softmax(h @ cls_w.t() + cls_b, dim=1)
    for _ in range(K):
        u = u - sigma2 * lap @ u
    return u


def ref_trial(support, query, support_y, base_mean, init, K=10, sigma2=0.5,
              epochs=100):
    x = ref_features(support, query, base_mean)
    lap = ref_laplacian(x)
    params = [p.clone().requires_grad_() for p in init]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [50, 75], gamma=0.1)
    ns = support.size(0)
    for _ in range(epochs):
        u = ref_head(x, lap, *params, K, sigma2)
        loss = F.nll_loss(torch.log(u)[:ns], support_y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        return ref_head(x, lap, *params, K, sigma2)


def head_params(model, b):
    r"""Episode :obj:`b`'s weights of an :class:`EpisodeCOIN` in the
    authors' order: fc weight, fc bias, classifier weight and bias."""
    p = dict(zip(model.names, model.params))
    return [p[n][b] for n in ('lins.0.weight', 'lins.0.bias',
                              'lin_out.weight', 'lin_out.bias')]


# The authors' setting, step by step ##########################################

def test_query_shift_by_hand(bench):
    fs = bench('few_shot')
    # One episode, two support and two query samples, centre (1, 1):
    x = torch.tensor([[[4., 5.], [1., 3.], [2., 1.], [1., 2.]]])
    out = fs.preprocess(x, 2, center=torch.tensor([1., 1.]),
                        query_shift=True)
    # Centred: (3, 4), (0, 2), (1, 0), (0, 1); normalised: (.6, .8),
    # (0, 1), (1, 0), (0, 1). Support mean (.3, .9), query mean (.5, .5):
    # the queries move by (-.2, .4).
    expected = torch.tensor([[[.6, .8], [0., 1.], [.8, .4], [-.2, 1.4]]])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out[0, 2:].mean(0), out[0, :2].mean(0))
    # Without the shift (ours): only centred and normalised.
    plain = fs.preprocess(x, 2, center=torch.tensor([1., 1.]))
    torch.testing.assert_close(plain[0, 2:], torch.tensor([[1., 0.],
                                                           [0., 1.]]))
    # Episodes are shifted by their own means:
    two = torch.cat([x, 3 * x.flip(1)])
    both = fs.preprocess(two, 2, center=torch.tensor([1., 1.]),
                         query_shift=True)
    torch.testing.assert_close(both[:1], out)
    ref = ref_features(3 * x[0].flip(0)[:2], 3 * x[0].flip(0)[2:],
                       torch.tensor([1., 1.]))
    torch.testing.assert_close(both[1], ref)


def test_prepare_authors_matches_reference_features(bench):
    fs = bench('few_shot')
    torch.manual_seed(0)
    x, center = torch.randn(3, 14, 6), torch.randn(6)
    y = torch.arange(2).repeat(7).repeat(3, 1)
    data, is_support, batch = fs.prepare(x, y, shots=2, ways=2,
                                         setting='authors', center=center)
    for b in range(3):
        ref = ref_features(x[b, :4], x[b, 4:], center)
        torch.testing.assert_close(data.x[batch == b], ref)
    assert is_support.view(3, 14)[:, :4].all()
    assert not is_support.view(3, 14)[:, 4:].any()
    data, _, _ = fs.prepare(x, y, 2, 2, 'ours', center)
    ref = F.normalize(x - center, dim=-1).reshape(-1, 6)
    torch.testing.assert_close(data.x, ref)


def test_episode_graph_is_the_authors_laplacian(bench):
    fs = bench('few_shot')
    torch.manual_seed(0)
    x = torch.randn(2, 20, 5, dtype=torch.float64)
    flat, edge_index, edge_weight, batch = fs.episode_graph(x)  # k=6, 3
    W = torch.zeros(40, 40, dtype=torch.float64)
    W[edge_index[1], edge_index[0]] = edge_weight
    lap = torch.diag(W.sum(1)) - W
    for b in range(2):
        idx = slice(20 * b, 20 * (b + 1))
        torch.testing.assert_close(lap[idx, idx], ref_laplacian(x[b]))
    # No edge between episodes:
    assert bool((batch[edge_index[0]] == batch[edge_index[1]]).all())


def test_authors_head_by_hand(bench):
    fs = bench('few_shot')
    torch.manual_seed(0)
    x = torch.randn(2, 12, 5, dtype=torch.float64)
    flat, ei, ew, _ = fs.episode_graph(x)
    model = fs.EpisodeCOIN(2, 5, 3, K=10, sigma2=0.5, dropout=0.,
                           log='plain').double()
    assert sorted(model.names) == ['lin_out.bias', 'lin_out.weight',
                                   'lins.0.bias', 'lins.0.weight']
    out = model(flat, ei, ew)
    for b in range(2):
        u = ref_head(x[b], ref_laplacian(x[b]), *head_params(model, b),
                     10, 0.5)
        torch.testing.assert_close(out[12 * b:12 * (b + 1)], torch.log(u))


def test_authors_plain_log_keeps_nan_and_is_counted(bench):
    fs = bench('few_shot')
    torch.manual_seed(0)
    n, ways = 8, 2
    x = torch.randn(n, 4)
    y = torch.arange(n) % ways
    ei, ew = gaussian_knn_graph(x, 3, 2)
    data = Data(x=x, edge_index=ei, edge_weight=ew, y=y)
    support = torch.arange(n) < 4
    batch = torch.zeros(n, dtype=torch.long)
    # sigma2 far beyond stability: diffused probabilities go negative.
    plain = fs.EpisodeCOIN(1, 4, ways, K=5, sigma2=20., dropout=0.,
                           log='plain')
    safe = fs.EpisodeCOIN(1, 4, ways, K=5, sigma2=20., dropout=0.)
    with pytest.warns(UserWarning, match='unstable'):
        assert bool(torch.isnan(plain(x, ei, ew)).any())
    with torch.no_grad():
        for p, q in zip(safe.params, plain.params):
            p.copy_(q)
    with pytest.warns(UserWarning, match='unstable'):
        assert bool(torch.isfinite(safe(x, ei, ew)).all())
    stats = fs.train_episodes_authors(plain, data, support, batch, epochs=3)
    assert stats['nonfinite'].tolist() == [True]
    # A stable episode is not counted:
    ok = fs.EpisodeCOIN(1, 4, ways, K=5, sigma2=0.5, dropout=0., log='plain')
    stats = fs.train_episodes_authors(ok, data, support, batch, epochs=3)
    assert stats['nonfinite'].tolist() == [False]


def test_authors_sgd_schedule(bench):
    fs = bench('few_shot')
    torch.manual_seed(0)
    n, ways = 10, 2
    x = torch.randn(n, 4)
    ei, ew = gaussian_knn_graph(x, 3, 2)
    data = Data(x=x, edge_index=ei, edge_weight=ew, y=torch.arange(n) % 2)
    model = fs.EpisodeCOIN(1, 4, ways, K=2, sigma2=0.5, dropout=0.,
                           log='plain')
    stats = fs.train_episodes_authors(model, data, torch.arange(n) < 4,
                                      torch.zeros(n, dtype=torch.long))
    lrs = stats['lrs']
    assert len(lrs) == 100
    for epoch, lr in [(0, 0.1), (49, 0.1), (50, 0.01), (74, 0.01),
                      (75, 0.001), (99, 0.001)]:
        assert math.isclose(lrs[epoch], lr, rel_tol=1e-9), epoch
    # The milestones follow the number of epochs, as the authors':
    model = fs.EpisodeCOIN(1, 4, ways, K=2, sigma2=0.5, dropout=0.)
    lrs = fs.train_episodes_authors(model, data, torch.arange(n) < 4,
                                    torch.zeros(n, dtype=torch.long),
                                    epochs=8)['lrs']
    assert [round(v, 6) for v in lrs] == [0.1] * 4 + [0.01] * 2 + [0.001] * 2
    assert fs.AUTHORS['lr'] == 0.1 and fs.AUTHORS['momentum'] == 0.9
    assert fs.AUTHORS['weight_decay'] == 1e-4
    assert fs.AUTHORS['epochs'] == 100 and fs.AUTHORS['gamma'] == 0.1


def test_authors_trial_matches_reference(bench):
    # Features, graph, head, loss, SGD, schedule and final model together,
    # two episodes trained at once, each against the dense reference.
    fs = bench('few_shot')
    torch.manual_seed(0)
    B, ways, shots, queries, d = 2, 3, 2, 4, 6
    n = ways * (shots + queries)
    x = torch.randn(B, n, d, dtype=torch.float64)
    y = torch.cat([torch.arange(ways).repeat_interleave(shots),
                   torch.arange(ways).repeat_interleave(queries)])
    y = y.repeat(B, 1)
    center = torch.randn(d, dtype=torch.float64)
    data, is_support, batch = fs.prepare(x, y, shots, ways, 'authors',
                                         center)
    model = fs.EpisodeCOIN(B, d, ways, K=10, sigma2=0.5, dropout=0.,
                           log='plain').double()
    init = [head_params(model, b) for b in range(B)]
    init = [[p.detach().clone() for p in ps] for ps in init]
    stats = fs.train_episodes_authors(model, data, is_support, batch)
    assert not bool(stats['nonfinite'].any())
    with torch.no_grad():
        out = model(data.x, data.edge_index, data.edge_weight)
    for b in range(B):
        ns = ways * shots
        ref = ref_trial(x[b, :ns], x[b, ns:], y[b, :ns], center, init[b])
        torch.testing.assert_close(out[n * b:n * (b + 1)], torch.log(ref))


def test_authors_episodes_and_interval(bench):
    fs = bench('few_shot')
    args = fs.make_parser().parse_args([])
    assert args.ways == [5] and args.shots == [1, 5]
    assert args.queries == 15 and args.episodes == 10000
    assert fs.AUTHORS['K'] == 10 and fs.AUTHORS['sigma2'] == 0.5
    assert (fs.AUTHORS['k'], fs.AUTHORS['bandwidth_k']) == (6, 3)
    assert args.setting == ['authors', 'ours']
    values = [0.8, 1.0, 0.6, 0.9, 0.95]
    s = fs.summary(values)
    ci = 1.96 * np.std(values) / np.sqrt(len(values))
    assert math.isclose(s['ci95_authors'], ci, rel_tol=1e-12)
    assert math.isclose(s['mean'], np.mean(values), rel_tol=1e-12)


def test_evaluate_episodes_authors_uses_authors_pipeline(bench, monkeypatch):
    fs = bench('few_shot')
    torch.manual_seed(0)
    labels = torch.arange(6).repeat_interleave(10)
    emb = 3 * torch.eye(8)[labels] + 0.3 * torch.randn(60, 8)
    x, y = fs.sample_episodes(emb, labels, 3, 1, 4, 2)
    seen = {}
    train = fs.train_episodes_authors

    def spy(model, data, is_support, batch, *args):
        seen[model.diffusion.K] = (model.log, args)
        return train(model, data, is_support, batch, *args)

    monkeypatch.setattr(fs, 'train_episodes_authors', spy)
    graph = fs.episode_graph

    def spy_graph(x, k, bandwidth_k):
        seen['graph'] = (k, bandwidth_k)
        return graph(x, k, bandwidth_k)

    monkeypatch.setattr(fs, 'episode_graph', spy_graph)
    # Our options (K, steps, ...) do not reach the authors' setting:
    res = fs.evaluate_episodes(x, y, 1, 3, setting='authors', K=3,
                               steps=1, lr=5., k=2, bandwidth_k=1)
    a = fs.AUTHORS
    expected = (a['epochs'], a['lr'], a['momentum'], a['weight_decay'],
                a['milestones'], a['gamma'])
    assert seen == {10: ('plain', expected), 0: ('plain', expected),
                    'graph': (6, 3)}
    assert set(res) == set(fs.METHODS) | {'nonfinite'}
    with pytest.raises(ValueError, match='Unknown setting'):
        fs.evaluate_episodes(x, y, 1, 3, setting='paper')


# Our setting, batching, selection ############################################

def test_episode_coin_matches_one_coin_per_episode(bench):
    fs = bench('few_shot')
    torch.manual_seed(0)
    B, n, d, ways = 3, 12, 5, 4
    x = torch.randn(B * n, d)
    batch = torch.arange(B).repeat_interleave(n)
    edge_index, edge_weight = gaussian_knn_graph(x, 3, 2, batch=batch)
    model = fs.EpisodeCOIN(B, d, ways, K=4, sigma2=0.5, dropout=0.)
    out = model(x, edge_index, edge_weight)
    for b in range(B):
        # An independent COIN with the weights of episode b on its own graph:
        coin = COIN(d, ways, None, K=4, sigma2=0.5, normalization=None,
                    dropout=0.)
        coin.base.load_state_dict({name: p[b] for name, p in
                                   zip(model.names, model.params)})
        idx = slice(b * n, (b + 1) * n)
        ei, ew = gaussian_knn_graph(x[idx], 3, 2)
        torch.testing.assert_close(out[idx], coin(x[idx], ei, ew))
    # Only the stacked episode weights are trained:
    assert all(p.size(0) == B for p in model.parameters())


def _pair(fs, log):
    torch.manual_seed(0)
    n, d, ways = 12, 5, 3
    x = torch.randn(n, d)
    y = torch.arange(n) % ways
    support = torch.arange(n) < 6
    ei, ew = gaussian_knn_graph(x, 3, 2)
    alone = fs.EpisodeCOIN(1, d, ways, K=3, sigma2=0.5, dropout=0., log=log)
    pair = fs.EpisodeCOIN(2, d, ways, K=3, sigma2=0.5, dropout=0., log=log)
    with torch.no_grad():
        for p, q in zip(pair.params, alone.params):
            p.copy_(q.expand_as(p))
    one = (Data(x=x, edge_index=ei, edge_weight=ew, y=y), support,
           torch.zeros(n, dtype=torch.long))
    two = (Data(x=x.repeat(2, 1), y=y.repeat(2),
                edge_index=torch.cat([ei, ei + n], 1),
                edge_weight=ew.repeat(2)), support.repeat(2),
           torch.arange(2).repeat_interleave(n))
    return alone, pair, one, two


def test_batched_episodes_train_as_if_alone(bench):
    # Two copies of one episode trained together end where the episode
    # trained alone ends: the batch size does not scale the weight decay.
    fs = bench('few_shot')
    alone, pair, one, two = _pair(fs, 'safe')
    fs.train_episodes(alone, *one[:2], steps=20, lr=0.05, weight_decay=0.05)
    fs.train_episodes(pair, *two[:2], steps=20, lr=0.05, weight_decay=0.05)
    for p, q in zip(pair.params, alone.params):
        torch.testing.assert_close(p[0], q[0])
        torch.testing.assert_close(p[1], q[0])
    # The same for the authors' SGD loop:
    alone, pair, one, two = _pair(fs, 'plain')
    fs.train_episodes_authors(alone, *one, epochs=20, weight_decay=0.05)
    fs.train_episodes_authors(pair, *two, epochs=20, weight_decay=0.05)
    for p, q in zip(pair.params, alone.params):
        torch.testing.assert_close(p[0], q[0])
        torch.testing.assert_close(p[1], q[0])


def test_sample_and_evaluate_episodes(bench):
    fs = bench('few_shot')
    torch.manual_seed(0)
    # Well separated classes: every method must be (almost) perfect.
    labels = torch.arange(8).repeat_interleave(20)
    emb = 10 * torch.eye(16)[labels] + 0.1 * torch.randn(160, 16)
    x, y = fs.sample_episodes(emb, labels, 5, 2, 3, 4)
    assert x.shape == (4, 25, 16) and y.shape == (4, 25)
    assert y[0, :10].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    for setting in fs.SETTINGS:
        res = fs.evaluate_episodes(x, y, shots=2, ways=5, setting=setting,
                                   k=4, bandwidth_k=2, steps=30, lr=0.05)
        assert set(fs.METHODS) <= set(res)
        for m in fs.METHODS:
            assert res[m].shape == (4, ) and float(res[m].min()) >= 0.9
    with pytest.raises(ValueError, match="'ways'"):
        fs.sample_episodes(emb, labels, 9, 2, 3, 1)


def test_ours_heads_take_their_own_hyperparameters(bench, monkeypatch):
    fs = bench('few_shot')
    torch.manual_seed(0)
    labels = torch.arange(6).repeat_interleave(10)
    emb = torch.randn(60, 8)
    x, y = fs.sample_episodes(emb, labels, 3, 1, 4, 2)
    seen = {}

    def spy(model, data, is_support, steps, lr, weight_decay, progress=None):
        seen[model.diffusion.K] = (model.log, steps, lr, weight_decay)

    monkeypatch.setattr(fs, 'train_episodes', spy)
    fs.evaluate_episodes(x, y, 1, 3, K=4, heads={
        'COIN': dict(lr=0.1, weight_decay=0., steps=7),
        'Head (K=0)': dict(lr=0.2, weight_decay=1e-3, steps=9)})
    assert seen == {4: ('safe', 7, 0.1, 0.), 0: ('safe', 9, 0.2, 1e-3)}


def test_select_on_validation_episodes(bench):
    fs = bench('few_shot')
    torch.manual_seed(0)
    labels = torch.arange(6).repeat_interleave(12)
    emb = torch.eye(8)[labels] + 0.5 * torch.randn(72, 8)
    grid = dict(lr=(0.01, 0.1), weight_decay=(0., 5e-4), steps=(2, 5))
    gen = torch.Generator().manual_seed(0)
    chosen, scores = fs.select(emb, labels, 3, 1, 3, 4, 2, gen, 'ours',
                               grid=grid, lp_alphas=(0.5, 0.9))
    assert chosen['lp_alpha'] in (0.5, 0.9)
    for name in fs.HEADS:
        h = chosen['heads'][name]
        assert h['lr'] in grid['lr'] and h['steps'] in grid['steps']
        assert h['weight_decay'] in grid['weight_decay']
        best = max(v for key, v in scores.items() if key.startswith(name))
        assert scores[f"{name} {h['lr']} {h['weight_decay']} "
                      f"{h['steps']}"] == best
    # 2 heads x 2 lr x 2 wd x 2 steps + 2 alphas, each a mean accuracy:
    assert len(scores) == 18 and all(0 <= v <= 1 for v in scores.values())
    # The authors' setting chooses only the label propagation's alpha:
    chosen, scores = fs.select(emb, labels, 3, 1, 3, 4, 2, gen, 'authors',
                               grid=grid, lp_alphas=(0.5, 0.9))
    assert set(chosen) == {'lp_alpha'} and len(scores) == 2


def test_select_step_checkpoints_equal_shorter_runs(bench):
    # The number of steps is chosen from one long run evaluated on the
    # way: the accuracy after s steps is that of a run of s steps.
    fs = bench('few_shot')
    torch.manual_seed(0)
    labels = torch.arange(4).repeat_interleave(8)
    emb = torch.randn(32, 6)
    x, y = fs.sample_episodes(emb, labels, 3, 1, 3, 2)
    data, is_support, _ = fs.prepare(x, y, 1, 3, 'ours')
    accs = {}
    torch.manual_seed(1)
    model = fs.EpisodeCOIN(2, 6, 3, K=4, sigma2=0.5, dropout=0.)
    init = [p.detach().clone() for p in model.params]

    def progress(step, _):
        accs[step] = fs.predict(model, data)

    fs.train_episodes(model, data, is_support, 6, 0.05, 5e-4, progress)
    for steps in (2, 4):
        short = fs.EpisodeCOIN(2, 6, 3, K=4, sigma2=0.5, dropout=0.)
        with torch.no_grad():
            for p, q in zip(short.params, init):
                p.copy_(q)
        fs.train_episodes(short, data, is_support, steps, 0.05, 5e-4)
        assert torch.equal(fs.predict(short, data), accs[steps])


def test_split_classes(bench):
    fs = bench('few_shot')
    alphabets = ['A', 'A', 'B', 'C', 'C', 'D']
    y = torch.tensor([0, 1, 1, 2, 3, 4, 5, 5])
    base, val, novel = fs.split_classes(alphabets, y, ['A'], ['C'])
    assert base.tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert val.tolist() == [0, 0, 0, 0, 1, 1, 0, 0]
    assert novel.tolist() == [0, 0, 0, 1, 0, 0, 1, 1]
    with pytest.raises(ValueError, match='share'):
        fs.split_classes(alphabets, y, ['A'], ['A'])
    with pytest.raises(ValueError, match='unknown'):
        fs.split_classes(alphabets, y, ['A'], ['Z'])
    with pytest.raises(ValueError, match='must leave'):
        fs.split_classes(alphabets, y, ['A', 'B'], ['C', 'D'])


# The script ##################################################################

def _png(grey):
    from PIL import Image
    out = io.BytesIO()
    Image.fromarray(grey.astype(np.uint8), 'L').save(out, 'PNG')
    return out.getvalue()


def write_omniglot(folder, alphabets=('Base', 'Val', 'Novel'), chars=5,
                   drawings=4, side=16):
    r"""A small Omniglot in the raw format (the two background archives):
    per character a random stroke pattern, drawn with noise."""
    rng = np.random.default_rng(0)
    for k in (1, 2):
        name = f'images_background_small{k}'
        with zipfile.ZipFile(osp.join(folder, f'{name}.zip'), 'w') as z:
            for a, alphabet in enumerate(alphabets):
                if a % 2 != k - 1:
                    continue
                for c in range(chars):
                    pattern = rng.random((side, side)) < 0.3
                    for i in range(drawings):
                        ink = pattern ^ (rng.random((side, side)) < 0.05)
                        z.writestr(f'{name}/{alphabet}/character{c + 1:02d}/'
                                   f'{a:02d}{c:02d}_{i:02d}.png',
                                   _png(255 * (1 - ink)))


def test_few_shot_main_both_settings(tmp_path, bench):
    pytest.importorskip('PIL')
    fs = bench('few_shot')
    folder = tmp_path / 'data' / 'omniglot'
    folder.mkdir(parents=True)
    write_omniglot(str(folder))
    out = tmp_path / 'out'
    res = fs.main(['--root', str(tmp_path / 'data'), '--epochs', '1',
                   '--no-rotations', '--size', '16', '--base-alphabets',
                   'Base', '--val-alphabets', 'Val', '--ways', '3',
                   '--shots', '1', '--queries', '2', '--episodes', '3',
                   '--val-episodes', '2', '--grid-lr', '0.05', '0.1',
                   '--grid-weight-decay', '0', '--grid-steps', '2', '3',
                   '--grid-lp-alpha', '0.5', '0.9', '--no-official-runs',
                   '--out-dir', str(out)])
    row = res['settings']['3-way 1-shot']
    assert set(row) == {'authors', 'ours', 'ours - authors'}
    for setting in ('authors', 'ours'):
        for m in fs.METHODS:
            assert 0 <= row[setting][m]['mean'] <= 1
            assert row[setting][m]['n'] == 3
    assert row['authors']['nonfinite'] == 0
    for m in fs.METHODS:
        assert math.isclose(row['ours - authors'][m]['mean'],
                            row['ours'][m]['mean'] - row['authors'][m]['mean'],
                            abs_tol=1e-9)
    sel = res['selected']['3-way 1-shot']
    assert sel['ours']['validated'] and sel['authors']['validated']
    for name in fs.HEADS:
        assert sel['ours']['heads'][name]['steps'] in (2, 3)
    with open(out / 'few_shot.json') as f:
        assert json.load(f)['settings'] == res['settings']
    text = (out / 'few_shot.md').read_text()
    assert '| 3-way 1-shot | authors | 3 |' in text
    assert '| 3-way 1-shot | ours - authors | 3 |' in text
    assert 'Chosen on the validation classes' in text
    # Without validation alphabets, our fixed values are used and marked:
    res = fs.main(['--root', str(tmp_path / 'data'), '--epochs', '1',
                   '--no-rotations', '--size', '16', '--base-alphabets',
                   'Base', '--val-alphabets', '--setting', 'ours',
                   '--ways', '3', '--shots', '1', '--queries', '2',
                   '--episodes', '2', '--steps', '2', '--no-official-runs',
                   '--out-dir', str(out)])
    sel = res['selected']['3-way 1-shot']['ours']
    assert not sel['validated'] and sel['heads']['COIN']['steps'] == 2
    assert set(res['settings']['3-way 1-shot']) == {'ours'}


def test_few_shot_smoke(tmp_path, bench, shared):
    shared('omniglot', 'all_runs.zip')
    fs = bench('few_shot')
    res = fs.main(['--epochs', '1', '--no-rotations', '--size', '16',
                   '--episodes', '3', '--ways', '5', '--shots', '1',
                   '--val-episodes', '2', '--grid-lr', '0.05',
                   '--grid-weight-decay', '0', '--grid-steps', '3',
                   '--grid-lp-alpha', '0.9', '--out-dir', str(tmp_path)])
    assert set(res['settings']) == {'5-way 1-shot',
                                    'official 20-way 1-shot runs'}
    for row in res['settings'].values():
        for setting in ('authors', 'ours', 'ours - authors'):
            for method in fs.METHODS:
                assert -1 <= row[setting][method]['mean'] <= 1
                assert math.isfinite(row[setting][method]['ci95'])
    runs = res['settings']['official 20-way 1-shot runs']
    assert runs['authors']['COIN']['n'] == 20
    with open(tmp_path / 'few_shot.json') as f:
        assert json.load(f)['settings'] == res['settings']
    assert '| 5-way 1-shot | authors | 3 |' in (
        tmp_path / 'few_shot.md').read_text()
