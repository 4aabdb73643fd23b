import os.path as osp
import re
import shutil

import pytest

from torch_geometric.datasets import Coauthor

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PHYSICS = osp.join(ROOT, '..', 'shared', 'datasets', 'coauthor', 'Physics')


def test_coin_minibatch_example(tmp_path, capsys, load_script):
    if not osp.isdir(osp.join(PHYSICS, 'raw')):
        pytest.skip(f'{PHYSICS} is not available')
    shutil.copytree(osp.join(PHYSICS, 'raw'), tmp_path / 'Physics' / 'raw')
    res = load_script('examples/coin_minibatch.py').main([
        '--root', str(tmp_path), '--max-nodes', '2000', '--epochs', '2',
        '--K', '2', '--batch-size', '128'
    ])
    out = capsys.readouterr().out
    assert 'Data: Coauthor-Physics, 2000 nodes' in out
    rows = re.findall(r'^Epoch: (\d{3}), Loss: [\d.]+, Train: [\d.]+, '
                      r'Val: [\d.]+, Test: ([\d.]+)$', out, re.M)
    assert [r[0] for r in rows] == ['001', '002']
    assert res['test_acc'] == pytest.approx(float(rows[-1][1]), abs=1e-4)
    assert 0.3 < res['test_acc'] <= 1  # 5 classes


def test_coin_minibatch_example_errors(tmp_path, capsys, monkeypatch,
                                       load_script):
    def download(self):
        raise OSError('no network')

    monkeypatch.setattr(Coauthor, 'download', download)
    main = load_script('examples/coin_minibatch.py').main
    with pytest.raises(SystemExit):
        main(['--root', str(tmp_path), '--epochs', '1'])
    assert (f'Coauthor-Physics is not in {tmp_path} and could not be '
            f'downloaded (OSError): pass --root') in capsys.readouterr().err
    (tmp_path / 'shared' / 'Physics').mkdir(parents=True, mode=0o555)
    with pytest.raises(SystemExit):
        main(['--root', str(tmp_path / 'shared'), '--epochs', '1'])
    assert f"{tmp_path / 'shared' / 'Physics'} is read-only" in \
        capsys.readouterr().err
