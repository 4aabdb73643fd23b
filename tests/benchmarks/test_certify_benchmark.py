import json
import math
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CORA = osp.join(ROOT, '..', 'shared', 'datasets', 'planetoid')


def test_certify_benchmark_tiny(tmp_path):
    if not osp.isdir(osp.join(CORA, 'Cora', 'raw')):
        pytest.skip('Cora not available under ../shared/datasets')
    cmd = [
        sys.executable, osp.join(ROOT, 'benchmarks', 'certify.py'),
        '--epochs', '2', '--n0', '5', '--n', '20', '--K', '2', '--hidden',
        '8', '--threads', '1', '--out', str(tmp_path)
    ]
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / 'certify.json') as f:
        out = json.load(f)
    assert set(out['results']) == {'COIN', 'GCN'}
    for res in out['results'].values():
        accs = list(res['certified_acc'].values())
        assert all(math.isfinite(a) and 0 <= a <= 1 for a in accs)
        assert accs == sorted(accs, reverse=True)
    assert (tmp_path / 'certify.md').read_text().count('| GCN |') == 1
    assert (tmp_path / 'certify.png').stat().st_size > 0
