import os.path as osp
import runpy
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SHARED_DATASETS = osp.join(ROOT, '..', 'shared', 'datasets')


def test_coin_example_runs_on_cora(capsys, monkeypatch):
    if not osp.isdir(osp.join(SHARED_DATASETS, 'planetoid', 'Cora')):
        pytest.skip('Cora is not available')
    monkeypatch.setattr(sys, 'argv', ['coin.py', '--epochs', '3'])
    runpy.run_path(osp.join(ROOT, 'examples', 'coin.py'), run_name='__main__')
    out = capsys.readouterr().out
    assert 'COIN: test accuracy' in out and 'GCN: test accuracy' in out
