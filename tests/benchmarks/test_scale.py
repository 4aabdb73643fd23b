import json
import math

import pytest
import torch

import common
from training import fit

from torch_geometric.data import Data

from torch_geometric_coin.nn import COIN


def _data(num_nodes=30, num_classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    edge_index = common.random_graph(num_nodes, 4 * num_nodes, seed=seed)
    y = torch.randint(num_classes, (num_nodes, ), generator=gen)
    x = torch.randn(num_nodes, 5, generator=gen) + y.view(-1, 1)
    split = torch.randperm(num_nodes, generator=gen).split(
        [num_nodes // 2, num_nodes // 4, num_nodes - 3 * num_nodes // 4])
    return Data(x=x, y=y, edge_index=edge_index), split


def _model(seed=0):
    torch.manual_seed(seed)
    return COIN(5, 3, hidden_channels=8, K=3, sigma2=0.3, dropout=0.,
                cached=True, stability='ignore')


def test_exact_rows_train_as_the_full_graph(bench):
    # Without truncation, the rows of the training nodes give fit's full
    # batch steps on the whole graph, and those of the validation nodes its
    # selection: the same parameters, epoch and scores.
    scale = bench('scale')
    data, split = _data()
    full, dec = _model(), _model()
    kwargs = dict(epochs=6, lr=0.05, weight_decay=0.01)
    ref, = fit(full, data, *split, **kwargs)
    res = scale.fit_rows(dec, data, *split, **kwargs)
    for (name, p), q in zip(full.named_parameters(), dec.parameters()):
        assert torch.allclose(p, q, atol=1e-5, rtol=1e-4), name
    assert res['epoch'] == ref['epoch'] and res['bound'] == 0
    for key in ('train_acc', 'val_acc', 'test_acc', 'test_loss'):
        assert res[key] == pytest.approx(ref[key], abs=1e-5), key
    assert not all(torch.equal(p, q) for p, q in zip(
        _model().parameters(), dec.parameters()))  # (it trained)
    # Truncated rows: a positive bound on their L1 error, fewer entries.
    trunc = scale.fit_rows(_model(), data, *split, eps=1e-2, **kwargs)
    assert 0 < trunc['bound'] < 1 and trunc['nnz'] < res['nnz']


@pytest.mark.slow
def test_scale_synthetic(bench, tmp_path, capsys):
    scale = bench('scale')
    res = scale.main(['--sizes', '300:1500', '400:2000', '--epochs', '2',
                      '--train-fraction', '0.05', '--hidden-channels', '8',
                      '--K', '3', '--threads', '1', '--out-dir',
                      str(tmp_path)])
    runs = json.loads((tmp_path / 'scale.json').read_text())['runs']
    assert [r['nodes'] for r in runs] == [300, 400]
    assert runs == res['runs']
    for r in runs:
        assert r['num_train'] == int(0.05 * r['nodes'])
        assert 0 < r['nnz'] <= 256 * r['num_train']  # topk=256 by default
        assert 0 <= r['bound'] < 1 and r['peak_rss'] > 2**20
        for key in ('graph_time', 'preprocess_time', 'time_per_epoch',
                    'predict_time'):
            assert math.isfinite(r[key]) and r[key] > 0, key
    md = (tmp_path / 'scale.md').read_text()
    assert md.count('\n| 300 | ') == 1 and md.count('\n| 400 | ') == 1
    assert capsys.readouterr().out.splitlines()[-1] == \
        f"wrote {tmp_path / 'scale.md'}"
    with pytest.raises(SystemExit):
        scale.main(['--sizes', '300', '--out-dir', str(tmp_path)])


@pytest.mark.slow
def test_scale_real(bench, tmp_path, monkeypatch):
    scale = bench('scale')

    def load_real(name, root):  # Tiny graphs, tolokers with 2 splits.
        n = 60 if name == 'tolokers' else 150
        gen = torch.Generator().manual_seed(0)
        y = torch.arange(n) % 2
        x = torch.randn(n, 4, generator=gen) + y.view(-1, 1)
        data = Data(x=x, y=y, edge_index=common.random_graph(n, 4 * n))
        if name == 'tolokers':
            perm = torch.stack([torch.randperm(n, generator=gen)
                                for _ in range(2)], dim=1)
            data.train_mask, data.val_mask = perm < 30, (perm >= 30) & (
                perm < 45)
            data.test_mask = ~(data.train_mask | data.val_mask)
        return data

    monkeypatch.setattr(scale, 'load_real', load_real)
    res = scale.main(['--real', '--datasets', 'Physics', 'tolokers',
                      '--seeds', '2', '--epochs', '3', '--hidden-channels',
                      '8', '--K', '3', '--eps', '1e-3', '--topk', '8',
                      '--threads', '1', '--out-dir', str(tmp_path)])
    assert set(res['summary']) == {
        f'{name} {mode}' for name in ('Physics', 'tolokers')
        for mode in ('full', 'decoupled')}
    dec = res['runs']['tolokers decoupled']
    assert len(dec) == 2 and all(0 <= r['test_acc'] <= 1 for r in dec)
    assert all(0 < r['bound'] < 1 for r in dec)  # topk=8 truncates
    md = (tmp_path / 'scale_real.md').read_text()
    assert '| tolokers | 60 / ' in md and '| Physics | 150 / ' in md
