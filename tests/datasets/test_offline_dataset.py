import os
import os.path as osp

import numpy as np
import pytest
from scipy.io import savemat

from torch_geometric_coin.datasets import Omniglot, PandemicTGNN, Prostate


@pytest.mark.parametrize('load,missing,source', [
    (lambda root: Omniglot(root), 'images_background_small1.zip',
     'brendenlake/omniglot'),
    (lambda root: Omniglot(root, 'runs'), 'all_runs.zip',
     'brendenlake/omniglot'),
    (lambda root: Prostate(root), 'Prostate_GE.mat', 'scikit-feature'),
    (lambda root: PandemicTGNN(root, 'Italy'), 'italy_labels.csv',
     'geopanag/pandemic_tgnn'),
])
def test_missing_raw_files_are_named(tmp_path, load, missing, source):
    with pytest.raises(FileNotFoundError) as info:
        load(str(tmp_path))
    assert missing in str(info.value) and source in str(info.value)
    assert 'not downloaded automatically' in str(info.value)


def test_missing_raw_files_only_the_missing_ones(tmp_path):
    (tmp_path / 'Italy').mkdir()
    (tmp_path / 'Italy' / 'italy_labels.csv').write_text('name\n')
    with pytest.raises(FileNotFoundError) as info:
        PandemicTGNN(str(tmp_path), 'Italy')
    assert str(tmp_path / 'Italy' / 'graphs') in str(info.value)
    assert 'data/Italy' in str(info.value)
    assert 'italy_labels.csv' not in str(info.value)


def write_prostate(folder, y):
    os.makedirs(folder, exist_ok=True)
    savemat(osp.join(folder, 'Prostate_GE.mat'),
            {'X': np.eye(2), 'Y': np.array([[y], [1]])})


def test_raw_folder_layouts(tmp_path):
    # The raw files directly in root (a copy of the data folder):
    write_prostate(str(tmp_path / 'plain'), 2)
    dataset = Prostate(str(tmp_path / 'plain'))
    assert dataset.raw_dir == str(tmp_path / 'plain')
    assert dataset.processed_dir == str(tmp_path / 'plain' / 'processed')
    assert dataset[0].y.tolist() == [1, 0]
    # PyG's layout, root/raw/, takes precedence:
    write_prostate(str(tmp_path / 'pyg'), 1)
    write_prostate(str(tmp_path / 'pyg' / 'raw'), 2)
    dataset = Prostate(str(tmp_path / 'pyg'))
    assert dataset.raw_dir == str(tmp_path / 'pyg' / 'raw')
    assert dataset[0].y.tolist() == [1, 0]


def test_force_reload(tmp_path):
    write_prostate(str(tmp_path), 2)
    assert Prostate(str(tmp_path))[0].y.tolist() == [1, 0]
    write_prostate(str(tmp_path), 1)
    assert Prostate(str(tmp_path))[0].y.tolist() == [1, 0]  # Processed.
    assert Prostate(str(tmp_path), force_reload=True)[0].y.tolist() == [0, 0]


@pytest.mark.skipif(hasattr(os, 'geteuid') and os.geteuid() == 0,
                    reason='root can write into read-only folders')
def test_read_only_root(tmp_path):
    write_prostate(str(tmp_path), 2)
    os.chmod(tmp_path, 0o555)
    try:
        with pytest.raises(PermissionError, match='not writable: copy'):
            Prostate(str(tmp_path))
    finally:
        os.chmod(tmp_path, 0o755)


def test_root_type():
    with pytest.raises(TypeError, match="'root'"):
        Prostate(None)


def test_unwritable_processed_dir(tmp_path, monkeypatch):
    from torch_geometric.io import fs
    write_prostate(str(tmp_path), 2)

    def makedirs(path, exist_ok=True):
        raise PermissionError(13, 'Permission denied', path)

    monkeypatch.setattr(fs, 'makedirs', makedirs)
    with pytest.raises(PermissionError) as info:
        Prostate(str(tmp_path))
    assert str(tmp_path / 'processed') in str(info.value)
    assert 'copy' in str(info.value) and "'root'" in str(info.value)


def damage_file(path, damage):
    with open(path, 'rb') as f:
        content = f.read()
    with open(path, 'wb') as f:
        f.write({'truncate': content[:len(content) // 2],
                 'garbage': b'garbage' * 10, 'empty': b''}[damage])


@pytest.mark.parametrize('damage', ['truncate', 'garbage', 'empty'])
def test_damaged_processed_file(tmp_path, damage):
    # E.g. a run killed while saving: the error names the processed file
    # (not torch.load's internals) and force_reload=True recovers.
    write_prostate(str(tmp_path), 2)
    Prostate(str(tmp_path))
    path = osp.join(str(tmp_path), 'processed', 'data.pt')
    damage_file(path, damage)
    with pytest.raises(ValueError) as info:
        Prostate(str(tmp_path))
    assert f"processed file '{path}'" in str(info.value)
    assert 'damaged' in str(info.value)
    assert 'force_reload=True' in str(info.value)
    assert Prostate(str(tmp_path), force_reload=True)[0].y.tolist() == [1, 0]


def test_root_as_bytes_and_path(tmp_path):
    # str(b'/a') would be the folder "b'/a'":
    from pathlib import Path
    write_prostate(str(tmp_path), 2)
    for root in [os.fsencode(str(tmp_path)), Path(tmp_path)]:
        dataset = Prostate(root)
        assert dataset.processed_dir == str(tmp_path / 'processed')
        assert dataset[0].y.tolist() == [1, 0]
    assert sorted(os.listdir(tmp_path)) == ['Prostate_GE.mat', 'processed']


@pytest.mark.parametrize('kwargs,match', [
    (dict(transform=1), "'transform' must be callable or None"),
    (dict(pre_transform='normalize'), "'pre_transform' must be callable"),
    (dict(force_reload='yes'), "'force_reload' must be True or False"),
])
def test_argument_types(tmp_path, kwargs, match):
    # Checked at construction (not at the first access of a sample):
    write_prostate(str(tmp_path), 2)
    with pytest.raises(TypeError, match=match):
        Prostate(str(tmp_path), **kwargs)
