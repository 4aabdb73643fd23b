import json
import math

import pytest


@pytest.mark.slow
def test_speed_tiny(bench, tmp_path):
    speed = bench('speed')
    speed.main(['--datasets', '--sizes', '2000:20000:8', '--repeats', '1',
                '--implicit-sigma2', '0.5', '50', '--implicit-nodes', '2000',
                '--train-step', '5000:50000:8', '--threads', '1',
                '--out-dir', str(tmp_path)])
    res = json.loads((tmp_path / 'speed_cpu.json').read_text())
    assert res['command'].startswith('python benchmarks/speed.py ')
    assert (tmp_path / 'speed_cpu.md').exists()
    assert (tmp_path / 'speed_cpu.png').exists()
    assert [row['K'] for row in res['graphs']] == [10, 20]
    for row in res['graphs']:
        assert all(math.isfinite(t) and t > 0 for t in row['seconds'].values())
        assert row['vs_floor'][speed.FLOOR] == 1.0
    assert speed.LOOP in res['graphs'][1]['seconds']  # K=20 only
    rows = res['implicit']['rows']  # sigma2 = 0.5, 50
    for row in rows:  # a real backward pass: the adjoint solves iterate too
        assert row['forward_iterations'] >= 1
        assert row['adjoint_iterations'] >= 1
    assert rows[1]['forward_iterations'] > rows[0]['forward_iterations']
    assert math.isfinite(res['training_step']['seconds'])
