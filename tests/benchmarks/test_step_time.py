import json
import math


def test_step_time_tiny(bench, planetoid_root, tmp_path):
    step_time = bench('step_time')
    payload = step_time.main(['--root', planetoid_root, '--repeats', '1',
                              '--threads', '1', '--profile', '3',
                              '--out-dir', str(tmp_path)])
    res = json.loads((tmp_path / 'step_time.json').read_text())
    md = (tmp_path / 'step_time.md').read_text()
    assert res['datasets'] == payload['datasets']
    assert res['command'].startswith('python benchmarks/step_time.py ')
    assert res['machine'] and res['date'] and res['threads'] == 1
    cora = res['datasets']['Cora']
    assert (cora['nodes'], cora['features']) == (2708, 1433)
    assert 0 < cora['density'] < 0.05
    cases = cora['cases']
    assert len(cases) == 7 and step_time.GCN in cases
    gcn = cases[step_time.GCN]['ms']
    for name, r in cases.items():
        assert math.isfinite(r['ms']) and r['ms'] > 0, name
        assert math.isclose(r['ratio_to_gcn'], r['ms'] / gcn), name
        assert f"| {name} | {r['ms']:.2f} | {r['ratio_to_gcn']:.2f} |" in md
    assert cases[step_time.GCN]['ratio_to_gcn'] == 1.0
    sparse = cases["COIN authors' width, CSR x"]['ratio_to_gcn']
    assert cora['goal_met'] == (sparse <= 1.0)
    assert 'Command: `python benchmarks/step_time.py' in md
    assert set(cora['profile']) == set(cases)
    for name, prof in cora['profile'].items():
        assert len(prof['ops']) == 3 and prof['total_ms'] > 0
        assert f'Profile of one step of {name}' in md
        ms = [o['ms'] for o in prof['ops']]
        assert ms == sorted(ms, reverse=True) and ms[0] <= prof['total_ms']
