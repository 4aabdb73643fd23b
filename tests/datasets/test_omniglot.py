import os.path as osp
import zipfile

import pytest
import torch

from torch_geometric_coin.datasets import (
    dataset_root,
    load_omniglot,
    load_omniglot_runs,
)


def folder():
    path = osp.join(dataset_root(), 'omniglot')
    if not osp.isfile(osp.join(path, 'all_runs.zip')):
        pytest.skip(f'{path} is not available')
    return path


def test_load_omniglot():
    folder()
    data = load_omniglot(size=14)
    assert data.images.shape == (4840, 1, 14, 14)
    assert len(data.characters) == 242 and len(set(data.alphabets)) == 8
    assert torch.bincount(data.labels).eq(20).all()
    # Ink is 1 on a background of 0: strokes cover a minority of pixels.
    assert 0.02 < float(data.images.mean()) < 0.3
    assert float(data.images.min()) >= 0 and float(data.images.max()) <= 1
    with pytest.raises(ValueError, match="'size'"):
        load_omniglot(size=0)


def test_load_omniglot_runs():
    path = folder()
    runs = load_omniglot_runs(size=20)
    assert len(runs) == 20
    with zipfile.ZipFile(osp.join(path, 'all_runs.zip')) as z:
        lines = z.read('run01/class_labels.txt').decode().split()
    # 'run01/test/item01.png run01/training/class08.png', ...
    assert lines[0].endswith('item01.png') and lines[1].endswith('class08.png')
    assert int(runs[0].query_labels[0]) == 7
    for run in runs:
        assert run.support.shape == run.query.shape == (20, 1, 20, 20)
        assert sorted(run.query_labels.tolist()) == list(range(20))
