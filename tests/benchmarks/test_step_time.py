import json

import pytest


@pytest.mark.slow
def test_step_time_tiny(bench, shared, tmp_path):
    step_time = bench('step_time')
    root = shared()
    shared('planetoid', 'Cora')
    payload = step_time.main(['--root', root, '--repeats', '1', '--nodes',
                              '300', '--no-compile', '--runs', '2',
                              '--epochs', '2', '--threads', '1', '--out-dir',
                              str(tmp_path)])
    res = json.loads((tmp_path / 'step_time.json').read_text())
    md = (tmp_path / 'step_time.md').read_text()
    assert res['command'].startswith('python benchmarks/step_time.py ')
    steps = res['steps']
    assert steps['GCN (PyG, 64 hidden)']['vs_gcn'] == 1.0
    assert 'COIN defaults, torch.compile' not in steps
    coin = steps['COIN defaults']
    assert abs(coin['vs_gcn'] - coin['ms'] /
               steps['GCN (PyG, 64 hidden)']['ms']) < 1e-9
    assert coin['vs_cached'] > 0
    assert set(res['layers']) == {'Cora, 7 channels', 'Cora, 64 channels',
                                  'random 300, 7 channels',
                                  'random 300, 64 channels'}
    for cases in res['layers'].values():
        assert cases['CoinDiffusionConv cached=True']['vs_cached'] == 1.0
        assert cases['APPNP cached=True']['vs_cached'] == 1.0
    assert set(res['stacked']) == {'COIN', 'GCN'}
    for r in res['stacked'].values():
        assert r['runs'] == 2 and r['epochs'] == 2
        assert abs(r['speedup'] - r['one_by_one_s'] / r['stacked_s']) < 1e-9
        assert 0 <= r['test_acc_stacked'] <= 1
    assert 'Command: `python benchmarks/step_time.py' in md
    assert '### R runs in one pass' in md
    assert payload['repeats'] == 1
