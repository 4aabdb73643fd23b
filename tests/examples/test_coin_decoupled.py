import re

import pytest


def epochs(out):
    return [tuple(float(v) for v in m) for m in re.findall(
        r'^Epoch: \d{3}, Loss: ([\d.]+), Train: ([\d.]+), Val: ([\d.]+), '
        r'Test: ([\d.]+)$', out, re.M)]


def test_coin_decoupled_example_on_cora(capsys, load_script, cora_root):
    res = load_script('examples/coin_decoupled.py').main(
        ['--root', str(cora_root), '--epochs', '15'])
    out = capsys.readouterr().out
    rows = epochs(out)
    assert len(rows) == 15 and rows[-1][0] < rows[0][0]
    assert re.search(r'^Rows: 140, \d+ entries per row', out, re.M)
    assert res['val_acc'] == pytest.approx(max(r[2] for r in rows))
    assert res['val_acc'] > 0.6  # (chance: 1/7)
