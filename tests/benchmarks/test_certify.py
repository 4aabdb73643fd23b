import json
import math

import pytest


@pytest.mark.slow
def test_certify_tiny(bench, datasets_root, tmp_path, capsys):
    out = bench('certify').main([
        '--epochs', '2', '--n0', '5', '--n', '20', '--K', '2',
        '--hidden-channels', '8', '--threads', '1', '--sigmas', '0.5',
        '--root', datasets_root, '--out-dir', str(tmp_path)
    ])
    with open(tmp_path / 'certify.json') as f:
        assert json.load(f)['results'] == out['results']
    assert set(out['results']) == {'COIN, sigma=0.5', 'GCN, sigma=0.5'}
    for res in out['results'].values():
        accs = list(res['certified_acc'].values())
        assert all(math.isfinite(a) and 0 <= a <= 1 for a in accs)
        assert accs == sorted(accs, reverse=True)
    table = (tmp_path / 'certify.md').read_text()
    assert table.count('| GCN, sigma=0.5 |') == 1
    assert (tmp_path / 'certify.png').stat().st_size > 0
    assert out['num_test_nodes'] == 1000  # Cora's public test split
    assert capsys.readouterr().out.splitlines()[-3:] == [
        f'wrote {tmp_path / name}'
        for name in ('certify.json', 'certify.md', 'certify.png')]
