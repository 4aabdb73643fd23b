import re

import pytest

from torch_geometric.datasets import Planetoid


def epochs(out):
    return [tuple(float(v) for v in m) for m in re.findall(
        r'^Epoch: \d{3}, Loss: ([\d.]+), Train: ([\d.]+), Val: ([\d.]+), '
        r'Test: ([\d.]+)$', out, re.M)]


def test_coin_example_offline_falls_back_to_a_synthetic_graph(
        tmp_path, capsys, monkeypatch, load_script):
    def download(self):
        raise OSError('no network')

    monkeypatch.setattr(Planetoid, 'download', download)
    res = load_script('examples/coin.py').main(
        ['--root', str(tmp_path), '--epochs', '30'])
    out = capsys.readouterr().out
    assert 'using a synthetic graph instead: 2000 nodes in 7' in out
    rows = epochs(out)
    assert len(rows) == 30
    assert rows[-1][0] < rows[0][0]  # The training loss falls.
    # 7 clusters, a kNN graph: far better than chance (1/7).
    assert res['test_acc'] == pytest.approx(rows[-1][3], abs=1e-4)
    assert res['test_acc'] > 0.5


def test_coin_example_on_cora(capsys, load_script, cora_root):
    root = cora_root
    res = load_script('examples/coin.py').main(
        ['--root', str(root), '--epochs', '30'])
    out = capsys.readouterr().out
    assert f'Data: Cora from {root}' in out
    rows = epochs(out)
    assert len(rows) == 30 and rows[-1][0] < rows[0][0]
    assert res['val_acc'] == pytest.approx(max(r[2] for r in rows), abs=1e-4)
    assert res['val_acc'] > 0.6
