import json
import math
import os.path as osp
import runpy
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_speed_benchmark_tiny(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, 'argv', [
        'speed.py', '--tiny', '--repeats', '1', '--out-dir', str(tmp_path)
    ])
    runpy.run_path(osp.join(ROOT, 'benchmarks', 'speed.py'),
                   run_name='__main__')
    res = json.loads((tmp_path / 'speed_cpu.json').read_text())
    assert (tmp_path / 'speed_cpu.md').exists()
    assert (tmp_path / 'speed_cpu.png').exists()
    assert len(res['graphs']) == 2
    for row in res['graphs']:
        assert all(math.isfinite(t) and t > 0 for t in row['seconds'].values())
    rows = res['implicit']['rows']  # sigma2 = 0.5, 50
    for row in rows:  # a real backward pass: the adjoint solves iterate too
        assert row['forward_iterations'] >= 1
        assert row['adjoint_iterations'] >= 1
    assert rows[1]['forward_iterations'] > rows[0]['forward_iterations']
    assert math.isfinite(res['training_step']['seconds'])
