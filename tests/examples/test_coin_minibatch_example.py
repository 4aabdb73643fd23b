import math
import os.path as osp
import runpy
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SHARED = osp.join(ROOT, '..', 'shared', 'datasets', 'coauthor', 'Physics')


def test_coin_minibatch_example_runs(capsys, monkeypatch):
    if not osp.isdir(SHARED):
        pytest.skip('Coauthor-Physics is not available')
    monkeypatch.setattr(sys, 'argv', [
        'coin_minibatch.py', '--max-nodes', '2000', '--epochs', '1', '--K',
        '2', '--batch-size', '128'
    ])
    runpy.run_path(osp.join(ROOT, 'examples', 'coin_minibatch.py'),
                   run_name='__main__')
    out = capsys.readouterr().out
    assert 'neighbor loader' in out and 'Best: epoch 1' in out
    acc = float(out.split('test accuracy ')[-1].split()[0])
    assert math.isfinite(acc) and 0 <= acc <= 1


def test_cluster_loader_needs_metis(capsys, monkeypatch):
    import torch_geometric
    if not osp.isdir(SHARED):
        pytest.skip('Coauthor-Physics is not available')
    monkeypatch.setattr(sys, 'argv', [
        'coin_minibatch.py', '--max-nodes', '2000', '--epochs', '1', '--K',
        '2', '--loader', 'cluster', '--num-parts', '4',
        '--clusters-per-batch', '2'
    ])
    path = osp.join(ROOT, 'examples', 'coin_minibatch.py')
    if not torch_geometric.typing.WITH_METIS:
        with pytest.raises(RuntimeError, match='needs METIS'):
            runpy.run_path(path, run_name='__main__')
    else:
        runpy.run_path(path, run_name='__main__')
        assert 'Best: epoch 1' in capsys.readouterr().out
