import os.path as osp
import zipfile

import pytest
import torch

from torch_geometric_coin.datasets import (
    dataset_root,
    load_omniglot,
    load_omniglot_runs,
)


def decode(png, size):
    r"""An independent decoder: ink = 1 - grey / 255 after a bilinear
    resize."""
    import io

    import numpy as np
    from PIL import Image
    img = Image.open(io.BytesIO(png)).convert('L').resize((size, size),
                                                          Image.BILINEAR)
    return torch.from_numpy(1 - np.asarray(img, dtype=np.float32) / 255)


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
    # Images and labels stay paired: the first drawing of the last class is
    # the file of that character, decoded independently.
    c = len(data.characters) - 1
    alphabet, character = data.characters[c].split('/')
    first = int((data.labels == c).nonzero()[0])
    assert float(data.images[first].sum()) > 0
    for name in ['images_background_small1.zip',
                 'images_background_small2.zip']:
        with zipfile.ZipFile(osp.join(folder(), name)) as z:
            files = sorted(p for p in z.namelist() if p.endswith('.png') and
                           p.split('/')[1:3] == [alphabet, character])
            if files:
                assert torch.equal(data.images[first, 0],
                                   decode(z.read(files[0]), 14))
                break
    else:
        raise AssertionError(f'{data.characters[c]} not found')


def test_load_omniglot_runs():
    path = folder()
    runs = load_omniglot_runs(size=20)
    assert len(runs) == 20
    with zipfile.ZipFile(osp.join(path, 'all_runs.zip')) as z:
        lines = z.read('run01/class_labels.txt').decode().split()
    # 'run01/test/item01.png run01/training/class08.png', ...
    assert lines[0].endswith('item01.png') and lines[1].endswith('class08.png')
    assert int(runs[0].query_labels[0]) == 7
    with zipfile.ZipFile(osp.join(path, 'all_runs.zip')) as z:
        # The query is item01, the support of its class class08:
        assert torch.equal(runs[0].query[0, 0],
                           decode(z.read('run01/test/item01.png'), 20))
        assert torch.equal(runs[0].support[7, 0],
                           decode(z.read('run01/training/class08.png'), 20))
    for run in runs:
        assert run.support.shape == run.query.shape == (20, 1, 20, 20)
        assert sorted(run.query_labels.tolist()) == list(range(20))
