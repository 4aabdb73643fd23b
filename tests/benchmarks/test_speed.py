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
    for row in res['implicit']['rows']:
        assert row['iterations_per_solve'] >= 1
    assert math.isfinite(res['training_step']['seconds'])
