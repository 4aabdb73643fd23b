import os.path as osp
import re
import shutil

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PLANETOID = osp.join(ROOT, '..', 'shared', 'datasets', 'planetoid')


def test_coin_decoupled_example_on_cora(capsys, load_script, tmp_path):
    if not osp.isdir(osp.join(PLANETOID, 'Cora', 'raw')):
        pytest.skip(f'{PLANETOID}/Cora is not available')
    shutil.copytree(osp.join(PLANETOID, 'Cora', 'raw'),
                    tmp_path / 'Cora' / 'raw')
    res = load_script('examples/coin_decoupled.py').main(
        ['--root', str(tmp_path), '--epochs', '15'])
    out = capsys.readouterr().out
    rows = [tuple(float(v) for v in m) for m in re.findall(
        r'^Epoch: \d{3}, Loss: ([\d.]+), Train: ([\d.]+), Val: ([\d.]+), '
        r'Test: ([\d.]+)$', out, re.M)]
    assert len(rows) == 15 and rows[-1][0] < rows[0][0]
    assert re.search(r'^Rows: 140, \d+ entries per row', out, re.M)
    assert res['val_acc'] == pytest.approx(max(r[2] for r in rows))
    assert res['val_acc'] > 0.6  # (chance: 1/7)
    assert sorted(p.name for p in (tmp_path / 'Cora').iterdir()) == ['raw']
