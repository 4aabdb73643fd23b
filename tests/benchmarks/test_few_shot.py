import json
import math

import pytest
import torch

from torch_geometric_coin.nn import COIN
from torch_geometric_coin.utils import gaussian_knn_graph


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
        coin = COIN(d, ways, K=4, sigma2=0.5, normalization=None, dropout=0.)
        coin.base.load_state_dict({name: p[b] for name, p in
                                   zip(model.names, model.params)})
        idx = slice(b * n, (b + 1) * n)
        ei, ew = gaussian_knn_graph(x[idx], 3, 2)
        torch.testing.assert_close(out[idx], coin(x[idx], ei, ew))
    # Only the stacked episode weights are trained:
    assert all(p.size(0) == B for p in model.parameters())


def test_batched_episodes_train_as_if_alone(bench):
    # Two copies of one episode trained together end where the episode
    # trained alone ends: the batch size does not scale the weight decay.
    from torch_geometric.data import Data
    fs = bench('few_shot')
    torch.manual_seed(0)
    n, d, ways = 12, 5, 3
    x = torch.randn(n, d)
    y = torch.arange(n) % ways
    support = torch.arange(n) < 6
    ei, ew = gaussian_knn_graph(x, 3, 2)
    alone = fs.EpisodeCOIN(1, d, ways, K=3, sigma2=0.5, dropout=0.)
    pair = fs.EpisodeCOIN(2, d, ways, K=3, sigma2=0.5, dropout=0.)
    with torch.no_grad():
        for p, q in zip(pair.params, alone.params):
            p.copy_(q.expand_as(p))
    fs.train_episodes(alone, Data(x=x, edge_index=ei, edge_weight=ew, y=y),
                      support, steps=20, lr=0.05, weight_decay=0.05)
    fs.train_episodes(pair, Data(x=x.repeat(2, 1), y=y.repeat(2),
                                 edge_index=torch.cat([ei, ei + n], 1),
                                 edge_weight=ew.repeat(2)),
                      support.repeat(2), steps=20, lr=0.05,
                      weight_decay=0.05)
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
    res = fs.evaluate_episodes(x, y, shots=2, ways=5, k=4, bandwidth_k=2,
                               steps=30, lr=0.05)
    assert set(res) == set(fs.METHODS)
    for acc in res.values():
        assert acc.shape == (4, ) and float(acc.min()) >= 0.9
    with pytest.raises(ValueError, match="'ways'"):
        fs.sample_episodes(emb, labels, 9, 2, 3, 1)


def test_few_shot_smoke(tmp_path, bench, shared):
    shared('omniglot', 'all_runs.zip')
    fs = bench('few_shot')
    res = fs.main(['--epochs', '1', '--no-rotations', '--size', '16',
                   '--episodes', '3', '--ways', '5', '--shots', '1',
                   '--steps', '5', '--out-dir', str(tmp_path)])
    assert set(res['settings']) == {'5-way 1-shot',
                                    'official 20-way 1-shot runs'}
    for row in res['settings'].values():
        for method in fs.METHODS:
            assert 0 <= row[method]['mean'] <= 1
            assert math.isfinite(row[method]['ci95'])
    assert res['settings']['official 20-way 1-shot runs']['COIN']['n'] == 20
    with open(tmp_path / 'few_shot.json') as f:
        assert json.load(f)['settings'] == res['settings']
    assert '| 5-way 1-shot | 3 |' in (tmp_path / 'few_shot.md').read_text()
