import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

# A dense transcription of the authors' few-shot pipeline (fewshot/train.py,
# coin.py, utils.py of shwangtangjun/COIN) for one episode: the reference.


def ref_features(support, query, base_mean):
    s = F.normalize(support - base_mean, dim=1)
    q = F.normalize(query - base_mean, dim=1)
    return torch.cat([s, q + s.mean(0, keepdim=True) - q.mean(0, True)])


def ref_laplacian(x, n_top=8, sigma=4):
    dist = (x[None, :, :] - x[:, None, :]).pow(2).sum(-1).sqrt()
    ranked = dist.sort(dim=1).values  # The row's own 0 first.
    cut, scale = ranked[:, n_top - 1:n_top], ranked[:, sigma - 1:sigma]
    w = torch.exp(-(dist / scale).pow(2)) * (dist < cut)
    d = w.sum(1).pow(-0.5)
    w = d[:, None] * w * d[None, :]
    w = (w + w.t()) / 2
    return torch.diag(w.sum(1)) - w


def ref_head(x, lap, fc_w, fc_b, cls_w, cls_b, K=10, sigma2=0.5):
    h = x + F.relu(x @ fc_w.t() + fc_b)
    u = torch.softmax(h @ cls_w.t() + cls_b, dim=1)
    for _ in range(K):
        u = u - sigma2 * lap @ u
    return u


def ref_trial(support, query, support_y, base_mean, init, epochs=100):
    x = ref_features(support, query, base_mean)
    lap = ref_laplacian(x)
    params = [p.clone().requires_grad_() for p in init]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [50, 75], gamma=0.1)
    for _ in range(epochs):
        loss = F.nll_loss(torch.log(ref_head(x, lap, *params))[:len(support)],
                          support_y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        return ref_head(x, lap, *params)


def labels(B, ways, shots, queries):
    y = torch.arange(ways)
    return torch.cat([y.repeat_interleave(shots),
                      y.repeat_interleave(queries)]).repeat(B, 1)


def test_prepare_matches_reference_features_and_laplacian(bench):
    fs = bench('few_shot')
    torch.manual_seed(0)
    x, center = torch.randn(3, 20, 6).double(), torch.randn(6).double()
    data = fs.prepare(x, labels(3, 2, 2, 8), 2, 2, 'authors', center)
    W = torch.zeros(60, 60, dtype=torch.float64)
    W[data.edge_index[1], data.edge_index[0]] = data.edge_weight
    lap = torch.diag(W.sum(1)) - W  # No edge between episodes:
    for b in range(3):
        idx = slice(20 * b, 20 * (b + 1))
        ref = ref_features(x[b, :4], x[b, 4:], center)
        torch.testing.assert_close(data.x[idx], ref)
        torch.testing.assert_close(lap[idx, idx], ref_laplacian(ref))
    assert data.is_support.tolist() == ([True] * 4 + [False] * 16) * 3
    data = fs.prepare(x, labels(3, 2, 2, 8), 2, 2, 'ours', center)
    torch.testing.assert_close(data.x, F.normalize(x - center, dim=-1)
                               .reshape(-1, 6))  # Ours: no query shift.


def test_authors_trial_matches_reference(bench):
    # Features, graph, head, loss, SGD, schedule and final model together,
    # two episodes trained at once, each against the dense reference.
    fs = bench('few_shot')
    torch.manual_seed(0)
    B, ways, shots, queries, d = 2, 3, 2, 4, 6
    n, ns = ways * (shots + queries), ways * shots
    x = torch.randn(B, n, d, dtype=torch.float64)
    y, center = labels(B, ways, shots, queries), torch.randn(d).double()
    data = fs.prepare(x, y, shots, ways, 'authors', center)
    model = fs.EpisodeCOIN(B, d, ways, K=10, plain=True).double()
    p = dict(zip(model.names, model.params))
    init = [[p[k][b].detach().clone() for k in (
        'lins.0.weight', 'lins.0.bias', 'lin_out.weight', 'lin_out.bias')]
        for b in range(B)]
    assert not bool(fs.train_episodes_authors(model, data).any())
    with torch.no_grad():
        out = model(data.x, data.edge_index, data.edge_weight)
    for b in range(B):
        ref = ref_trial(x[b, :ns], x[b, ns:], y[b, :ns], center, init[b])
        torch.testing.assert_close(out[n * b:n * (b + 1)], torch.log(ref))


def test_authors_plain_log_keeps_nan_and_is_counted(bench):
    fs = bench('few_shot')
    torch.manual_seed(0)
    data = fs.prepare(torch.randn(1, 8, 4), labels(1, 2, 2, 2), 2, 2, 'ours')
    args = (data.x, data.edge_index, data.edge_weight)
    # sigma2 far beyond stability: diffused probabilities go negative.
    plain = fs.EpisodeCOIN(1, 4, 2, K=5, sigma2=20., plain=True)
    safe = fs.EpisodeCOIN(1, 4, 2, K=5, sigma2=20.)
    safe.load_state_dict(plain.state_dict())
    with pytest.warns(UserWarning, match='unstable'):
        assert bool(torch.isnan(plain(*args)).any())
        assert bool(torch.isfinite(safe(*args)).all())
        assert fs.train_episodes_authors(plain, data, 3).tolist() == [True]
    ok = fs.EpisodeCOIN(1, 4, 2, K=5, plain=True)
    assert fs.train_episodes_authors(ok, data, 3).tolist() == [False]


def test_authors_interval(bench):
    values = [0.8, 1.0, 0.6, 0.9, 0.95]
    assert math.isclose(bench('few_shot').summary(values)['ci95_authors'],
                        1.96 * np.std(values) / np.sqrt(5), rel_tol=1e-12)


@pytest.mark.parametrize('plain', [False, True])
def test_batched_episodes_train_as_if_alone(bench, plain):
    # Two copies of one episode trained together end where the episode
    # trained alone ends: the batch size does not scale the weight decay.
    fs = bench('few_shot')
    torch.manual_seed(0)
    x = torch.randn(1, 12, 5)
    alone = fs.EpisodeCOIN(1, 5, 3, K=3, plain=plain)
    pair = fs.EpisodeCOIN(2, 5, 3, K=3, plain=plain)
    with torch.no_grad():
        for p, q in zip(pair.params, alone.params):
            p.copy_(q.expand_as(p))
    for model in (alone, pair):
        B = model.num_episodes
        data = fs.prepare(x.repeat(B, 1, 1), labels(B, 3, 2, 2), 2, 3, 'ours')
        if plain:
            fs.train_episodes_authors(model, data, 20, weight_decay=0.05)
        else:
            fs.train_episodes(model, data, 20, 0.05, 0.05)
    for p, q in zip(pair.params, alone.params):
        torch.testing.assert_close(p, q.expand_as(p))


def test_sample_and_evaluate_episodes(bench):
    fs = bench('few_shot')
    torch.manual_seed(0)
    # Well separated classes: every method must be (almost) perfect.
    y = torch.arange(8).repeat_interleave(20)
    emb = 10 * torch.eye(16)[y] + 0.1 * torch.randn(160, 16)
    (x, y_ep), = fs.episodes(emb, y, 5, 2, 3, 4)
    assert x.shape == (4, 25, 16) and torch.equal(y_ep, labels(4, 5, 2, 3))
    # The queries are of the support classes, in the same order:
    assert torch.equal(x[:, 10:].argmax(-1),
                       x[:, :10:2].argmax(-1).repeat_interleave(3, 1))
    heads = dict.fromkeys(fs.HEADS, dict(lr=0.05, weight_decay=0., steps=30))
    for setting in fs.SETTINGS:
        res = fs.evaluate_episodes(x, y_ep, 2, 5, setting, heads=heads)
        for m in fs.METHODS:
            assert res[m].shape == (4, ) and float(res[m].min()) >= 0.9
    sizes = [len(b) for b, _ in fs.episodes(emb, y, 5, 1, 7, 5, 2)]
    assert sizes == [2, 2, 1]
    with pytest.raises(ValueError, match="'ways=9'"):
        next(fs.episodes(emb, y, 9, 2, 3, 1))


def test_select_on_validation_episodes(bench, monkeypatch):
    fs = bench('few_shot')
    grid = dict(lr=(0.01, 0.1), weight_decay=(0., 5e-4), steps=(2, 5))
    monkeypatch.setattr(fs, 'GRID', grid)
    monkeypatch.setattr(fs, 'LP_ALPHAS', (0.5, 0.9))
    torch.manual_seed(0)
    y = torch.arange(6).repeat_interleave(12)
    emb = torch.eye(8)[y] + 0.5 * torch.randn(72, 8)
    gen = torch.Generator().manual_seed(0)
    chosen = fs.select(fs.episodes(emb, y, 3, 1, 3, 4, 2, gen), 1, 3, 'ours')
    scores = chosen['scores']
    for name in fs.HEADS:
        h = chosen['heads'][name]
        assert scores[f"{name} {h['lr']} {h['weight_decay']} {h['steps']}"] \
            == max(v for key, v in scores.items() if key.startswith(name))
    assert scores[f"LabelProp {chosen['lp_alpha']}"] == max(
        scores['LabelProp 0.5'], scores['LabelProp 0.9'])
    # 2 heads x 2 lr x 2 wd x 2 steps + 2 alphas, each a mean accuracy:
    assert len(scores) == 18 and all(0 <= v <= 1 for v in scores.values())
    chosen = fs.select(fs.episodes(emb, y, 3, 1, 3, 4, 2, gen), 1, 3,
                       'authors')  # Only the label propagation's alpha.
    assert set(chosen) == {'lp_alpha', 'scores'}


def test_select_step_checkpoints_equal_shorter_runs(bench):
    # The number of steps is chosen from one long run evaluated on the
    # way: the prediction after s steps is that of a run of s steps.
    fs = bench('few_shot')
    torch.manual_seed(0)
    data = fs.prepare(torch.randn(2, 9, 6), labels(2, 3, 1, 2), 1, 3, 'ours')
    model = fs.EpisodeCOIN(2, 6, 3, K=4)
    init, preds = {k: v.clone() for k, v in model.state_dict().items()}, {}
    fs.train_episodes(model, data, 6, 0.05, 5e-4, lambda step, _: preds
                      .setdefault(step, fs.predict(model, data)))
    for steps in (2, 4):
        model.load_state_dict(init)
        fs.train_episodes(model, data, steps, 0.05, 5e-4)
        assert torch.equal(fs.predict(model, data), preds[steps])


def test_split_classes(bench):
    fs = bench('few_shot')
    alphabets, y = list('AABCCD'), torch.tensor([0, 1, 1, 2, 3, 4, 5, 5])
    masks = fs.split_classes(alphabets, y, ['A'], ['C'])  # Base, val, rest:
    assert [m.int().tolist() for m in masks] == [[1, 1, 1, 0, 0, 0, 0, 0],
                                                 [0, 0, 0, 0, 1, 1, 0, 0],
                                                 [0, 0, 0, 1, 0, 0, 1, 1]]
    for base, val in (('A', 'A'), ('A', 'Z'), ('AB', 'CD')):
        with pytest.raises(ValueError, match='disjoint'):
            fs.split_classes(alphabets, y, list(base), list(val))


@pytest.mark.slow
def test_few_shot_smoke(tmp_path, bench, shared, monkeypatch):
    shared('omniglot', 'all_runs.zip')
    fs = bench('few_shot')
    monkeypatch.setattr(fs, 'GRID', dict(lr=(0.05, 0.1), weight_decay=(0., ),
                                         steps=(2, 3)))
    monkeypatch.setattr(fs, 'LP_ALPHAS', (0.5, 0.9))
    res = fs.main(['--epochs', '1', '--episodes', '3', '--shots', '1',
                   '--val-episodes', '2', '--out-dir', str(tmp_path)])
    assert list(res['settings']) == ['5-way 1-shot',
                                     'official 20-way 1-shot runs']
    for shape, n in (('5-way 1-shot', 3), ('official 20-way 1-shot runs', 20)):
        row = res['settings'][shape]
        assert set(row) == {'authors', 'ours', 'ours - authors'}
        for m in fs.METHODS:
            assert row['ours'][m]['n'] == n
            assert math.isclose(
                row['ours - authors'][m]['mean'],
                row['ours'][m]['mean'] - row['authors'][m]['mean'],
                abs_tol=1e-6)
        heads = res['selected'][shape]['ours']['heads']
        assert {h['steps'] for h in heads.values()} <= {2, 3}
    with open(tmp_path / 'few_shot.json') as f:
        assert json.load(f)['settings'] == res['settings']
    text = (tmp_path / 'few_shot.md').read_text()
    assert '| 5-way 1-shot | ours - authors | 3 |' in text
    assert 'Chosen on the validation classes' in text
