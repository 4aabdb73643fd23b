import gzip
import json
import math
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

import common

from torch_geometric.data import Data
from torch_geometric.transforms import ToSparseTensor

from torch_geometric_coin.nn import COIN

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _csv(path, rows):
    with gzip.open(path, 'wt') as f:
        for row in np.atleast_2d(rows).reshape(len(rows), -1):
            f.write(','.join(str(v) for v in row) + '\n')


def write_tiny_ogbn(root, name='ogbn-arxiv', num_nodes=60, num_feats=8,
                    num_classes=40, seed=0):
    r"""Writes a small graph in OGB's on-disk format for :obj:`name`
    (``raw/``, ``split/time/``, ``RELEASE_v1.txt``; ogbn-arxiv's master.csv
    entry also asks for ``raw/node_year.csv.gz``)."""
    rng = np.random.default_rng(seed)
    folder = osp.join(root, name.replace('-', '_'))
    raw, split = osp.join(folder, 'raw'), osp.join(folder, 'split', 'time')
    os.makedirs(raw)
    os.makedirs(split)
    y = rng.integers(0, 4, num_nodes)
    x = rng.normal(size=(num_nodes, num_feats)).round(4) + y[:, None]
    src = rng.integers(0, num_nodes, 4 * num_nodes)
    dst = np.where(rng.random(src.size) < 0.8,  # Mostly same-class edges.
                   [rng.choice(np.flatnonzero(y == y[s])) for s in src],
                   rng.integers(0, num_nodes, src.size))
    keep = src != dst
    edge = np.stack([src[keep], dst[keep]], axis=1)
    _csv(osp.join(raw, 'edge.csv.gz'), edge)
    _csv(osp.join(raw, 'node-feat.csv.gz'), x)
    _csv(osp.join(raw, 'node-label.csv.gz'), y[:, None])
    _csv(osp.join(raw, 'node_year.csv.gz'), rng.integers(
        2000, 2020, (num_nodes, 1)))
    _csv(osp.join(raw, 'num-node-list.csv.gz'), [[num_nodes]])
    _csv(osp.join(raw, 'num-edge-list.csv.gz'), [[len(edge)]])
    perm = rng.permutation(num_nodes)
    a, b = num_nodes // 2, 3 * num_nodes // 4
    for part, idx in [('train', perm[:a]), ('valid', perm[a:b]),
                      ('test', perm[b:])]:
        _csv(osp.join(split, f'{part}.csv.gz'), np.sort(idx)[:, None])
    open(osp.join(folder, 'RELEASE_v1.txt'), 'w').close()
    return root


def test_rows_forward_is_coin_at_the_training_nodes(bench):
    ogbn = bench('ogbn')
    gen = torch.Generator().manual_seed(0)
    data = ToSparseTensor()(Data(x=torch.randn(40, 5, generator=gen),
                                 edge_index=common.random_graph(40, 160)))
    torch.manual_seed(0)
    model = COIN(5, 3, hidden_channels=8, K=3, dropout=0., cached=True)
    train = torch.tensor([3, 0, 17, 25, 39])
    forward, bound = ogbn.rows_forward(model, data, train)
    out, ref = forward(model.train(), data), model(data.x, data.adj_t)
    assert bound == 0 and torch.allclose(out[train], ref[train], atol=1e-6)
    out.sum().backward()  # (gradients reach the base model)
    assert all(p.grad is not None for p in model.base.parameters())
    assert torch.allclose(forward(model.eval(), data),
                          model(data.x, data.adj_t), atol=1e-6)


@pytest.mark.slow
def test_ogbn_tiny(tmp_path):
    write_tiny_ogbn(str(tmp_path / 'ogb'))
    root = str(tmp_path)  # --root: the datasets folder, which holds ogb/
    out = tmp_path / 'out'
    env = dict(os.environ, PYTHONPATH=ROOT, TMPDIR=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'benchmarks', 'ogbn.py'), '--root',
         root, '--seeds', '2', '--epochs', '5', '--hidden-channels', '16',
         '--K', '2', '--out-dir', str(out)],
        env=env, capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / 'ogbn_ogbn_arxiv.json') as f:
        res = json.load(f)
    assert set(res['summary']) == {'COIN', 'GCN', 'SAGE'}
    for name, s in res['summary'].items():
        assert 0 <= s['test_acc']['mean'] <= 1
        assert math.isfinite(s['time_per_epoch']) and s['time_per_epoch'] > 0
        assert len(res['runs'][name]) == 2
    # OGB read the split files: 15 test nodes, accuracy in multiples of 1/15.
    acc = res['runs']['GCN'][0]['test_acc']
    assert abs(acc * 15 - round(acc * 15)) < 1e-6
    assert (out / 'ogbn_ogbn_arxiv.md').read_text().count('| COIN |') == 1
    assert proc.stdout.splitlines()[-1] == \
        f"wrote {out / 'ogbn_ogbn_arxiv.md'}"


@pytest.mark.slow
def test_ogbn_tiny_decoupled(tmp_path):
    write_tiny_ogbn(str(tmp_path / 'ogb'))
    root = str(tmp_path)  # --root: the datasets folder, which holds ogb/
    out = tmp_path / 'out'
    env = dict(os.environ, PYTHONPATH=ROOT, TMPDIR=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'benchmarks', 'ogbn.py'), '--root',
         root, '--seeds', '2', '--epochs', '5', '--hidden-channels', '16',
         '--K', '2', '--models', 'COIN', 'GCN', '--decoupled', '--eps',
         '1e-3', '--out-dir', str(out)],
        env=env, capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / 'ogbn_ogbn_arxiv_decoupled.json') as f:
        res = json.load(f)
    assert set(res['summary']) == {'COIN', 'GCN'}
    coin = res['runs']['COIN'][0]
    assert 0 < coin['bound'] < 1 and coin['preprocess_time'] > 0
    assert 'bound' not in res['runs']['GCN'][0]
    # Scored on OGB's split: 15 test nodes, multiples of 1/15.
    acc = coin['test_acc']
    assert abs(acc * 15 - round(acc * 15)) < 1e-6
    assert 'COIN decoupled (eps=0.001' in (
        out / 'ogbn_ogbn_arxiv_decoupled.md').read_text()
