import io
import os.path as osp
import zipfile

import numpy as np
import pytest
import torch

from torch_geometric_coin.datasets import Omniglot

PIL = pytest.importorskip('PIL.Image')


def png(grey):
    r"""Encodes a grey-scale image (0 = black ink, 255 = white)."""
    out = io.BytesIO()
    PIL.fromarray(np.asarray(grey, dtype=np.uint8), 'L').save(out, 'PNG')
    return out.getvalue()


def drawing(code, side=6):
    r"""A drawing that encodes the integer :obj:`code` in its pixels."""
    grey = np.full((side, side), 255, dtype=np.uint8)
    grey[0, 0] = code
    grey[1 + code % (side - 1), code % side] = 0
    return grey


def ink(grey):
    return torch.from_numpy(1 - np.asarray(grey, dtype=np.float32) / 255)


def decode(data, size):
    r"""An independent decoder: ink = 1 - grey / 255 after a bilinear
    resize."""
    img = PIL.open(io.BytesIO(data)).convert('L').resize((size, size),
                                                         PIL.BILINEAR)
    return ink(img)


def write_zip(file, members, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(file, 'w', compression) as z:
        for name, content in members.items():
            z.writestr(name, content)


# (archive, alphabet, character, file) -> code of the drawing.
BACKGROUND = {
    (1, 'Beta', 'character01', '0201_01.png'): 50,
    (1, 'Beta', 'character01', '0201_02.png'): 60,
    (1, 'Alpha', 'character02', '0102_01.png'): 30,
    (1, 'Alpha', 'character02', '0102_02.png'): 40,
    (1, 'Alpha', 'character01', '0101_01.png'): 10,
    (1, 'Alpha', 'character01', '0101_02.png'): 20,
    # Beta is in both archives: its drawings are read once, from the first.
    (2, 'Beta', 'character01', '0201_01.png'): 250,
    (2, 'Gamma', 'character01', '0301_01.png'): 70,
    (2, 'Gamma', 'character01', '0301_02.png'): 80,
}


def write_background(root, background=BACKGROUND):
    for k in (1, 2):
        folder = f'images_background_small{k}'
        members = {f'{folder}/': b'', f'{folder}/notes.txt': b'not a drawing'}
        for (a, alphabet, character, name), code in background.items():
            if a == k:
                members[f'{folder}/{alphabet}/{character}/{name}'] = png(
                    drawing(code))
        write_zip(osp.join(str(root), f'{folder}.zip'), members)


def test_omniglot_background(tmp_path):
    write_background(tmp_path)
    dataset = Omniglot(str(tmp_path), size=6)
    assert len(dataset) == 1
    data = dataset[0]
    assert data.characters == ['Alpha/character01', 'Alpha/character02',
                               'Beta/character01', 'Gamma/character01']
    assert data.alphabets == ['Alpha', 'Alpha', 'Beta', 'Gamma']
    # Drawings sorted by alphabet, character and file, paired with the class
    # of their folder:
    codes = [10, 20, 30, 40, 50, 60, 70, 80]
    assert data.x.shape == (8, 1, 6, 6)
    assert data.y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    for i, code in enumerate(codes):
        assert torch.equal(data.x[i, 0], ink(drawing(code)))
    assert osp.isfile(osp.join(str(tmp_path), 'processed',
                               'background_6.pt'))


def with_folders(file, keep=lambda name: True):
    r"""Rewrites the zip :obj:`file` as the official archives are laid out,
    with an entry for every folder, keeping the files :obj:`keep` accepts."""
    with zipfile.ZipFile(file) as z:
        members = {n: z.read(n) for n in z.namelist() if keep(n)}
        folders = {'/'.join(n.split('/')[:i]) + '/' for n in z.namelist()
                   for i in range(1, n.count('/') + 1)}
    write_zip(file, {**{f: b'' for f in sorted(folders)}, **members})


@pytest.mark.parametrize('missing,match', [
    # A valid zip whose images are all missing (the other archive alone
    # would give a partial data set):
    ('.png', "small1.zip' holds no drawing"),
    ('/character02/', "small1.zip' lists the folder 'images_background_"
     "small1/Alpha/character02/' but holds no drawing in it"),
    ('0101_02.png', r"small1.zip' holds 1 drawing\(s\) of 'Alpha/"
     "character01' but 2 of other characters"),
])
def test_omniglot_missing_images(tmp_path, missing, match):
    write_background(tmp_path)
    with_folders(osp.join(str(tmp_path), 'images_background_small1.zip'),
                 lambda name: missing not in name)
    with pytest.raises(ValueError, match=match):
        Omniglot(str(tmp_path))
    # Complete archives laid out with folder entries load:
    write_background(tmp_path)
    for k in (1, 2):
        with_folders(osp.join(str(tmp_path),
                              f'images_background_small{k}.zip'))
    assert Omniglot(str(tmp_path), size=6)[0].x.shape == (8, 1, 6, 6)


def test_omniglot_resize(tmp_path):
    code = 77
    write_background(tmp_path, {(1, 'A', 'character01', 'a.png'): code,
                                (2, 'B', 'character01', 'b.png'): 9})
    data = Omniglot(str(tmp_path), size=4)[0]
    assert data.x.shape == (2, 1, 4, 4)
    assert torch.equal(data.x[0, 0], decode(png(drawing(code)), 4))
    # Each size is processed on its own:
    assert Omniglot(str(tmp_path), size=3)[0].x.shape == (2, 1, 3, 3)
    assert Omniglot(str(tmp_path), size=4)[0].x.shape == (2, 1, 4, 4)


def write_runs(root, labels=None):
    members = {}
    for run, perm in (('run01', [2, 0, 1]), ('run02', [1, 2, 0])):
        for c in range(3):
            members[f'{run}/training/class{c + 1:02d}.png'] = png(
                drawing(100 + 10 * int(run[-1]) + c))
            members[f'{run}/test/item{c + 1:02d}.png'] = png(
                drawing(200 + 10 * int(run[-1]) + c))
        members[f'{run}/class_labels.txt'] = (labels or '\n'.join(
            f'{run}/test/item{q + 1:02d}.png '
            f'{run}/training/class{perm[q] + 1:02d}.png'
            for q in range(3)) + '\n').encode()
    write_zip(osp.join(str(root), 'all_runs.zip'), members)


def test_omniglot_runs(tmp_path):
    write_runs(tmp_path)
    dataset = Omniglot(str(tmp_path), split='runs', size=6)
    assert len(dataset) == 2
    for r, perm in ((1, [2, 0, 1]), (2, [1, 2, 0])):
        data = dataset[r - 1]
        assert data.x.shape == (6, 1, 6, 6)
        # Support class01..class03, then the queries item01..item03:
        for c in range(3):
            assert torch.equal(data.x[c, 0], ink(drawing(100 + 10 * r + c)))
            assert torch.equal(data.x[3 + c, 0],
                               ink(drawing(200 + 10 * r + c)))
        assert data.y.tolist() == [0, 1, 2] + perm
        assert data.train_mask.tolist() == [True] * 3 + [False] * 3
        assert data.test_mask.tolist() == [False] * 3 + [True] * 3


@pytest.mark.parametrize('split,size,match', [
    ('evaluation', 28, "'split'"),
    ('background', 0, "'size'"),
    ('background', 2.5, "'size'"),
])
def test_omniglot_arguments(tmp_path, split, size, match):
    with pytest.raises(ValueError, match=match):
        Omniglot(str(tmp_path), split=split, size=size)


def test_omniglot_truncated_zip(tmp_path):
    write_background(tmp_path)
    file = osp.join(str(tmp_path), 'images_background_small2.zip')
    with open(file, 'rb') as f:
        content = f.read()
    with open(file, 'wb') as f:
        f.write(content[:len(content) // 2])
    with pytest.raises(ValueError, match='small2.zip.*not a readable zip'):
        Omniglot(str(tmp_path))


def test_omniglot_corrupt_member(tmp_path):
    file = osp.join(str(tmp_path), 'all_runs.zip')
    write_runs(tmp_path)
    with zipfile.ZipFile(file) as z:
        members = {name: z.read(name) for name in z.namelist()}
    write_zip(file, members, zipfile.ZIP_STORED)
    with open(file, 'rb') as f:
        content = bytearray(f.read())
    at = content.index(members['run02/test/item02.png'])
    content[at + 40] ^= 0xFF  # A flipped byte: the CRC does not match.
    with open(file, 'wb') as f:
        f.write(bytes(content))
    with pytest.raises(ValueError, match="all_runs.zip' is corrupt.*item02"):
        Omniglot(str(tmp_path), split='runs')


def test_omniglot_not_an_image(tmp_path):
    write_background(tmp_path, {(1, 'A', 'character01', 'a.png'): 1})
    write_zip(osp.join(str(tmp_path), 'images_background_small2.zip'),
              {'images_background_small2/B/character01/b.png': b'garbage'})
    with pytest.raises(ValueError, match="small2.zip': .*b.png' is not a "
                       "readable image"):
        Omniglot(str(tmp_path))


def test_omniglot_no_drawing(tmp_path):
    write_background(tmp_path, {})
    with pytest.raises(ValueError, match='small1.zip.*small2.zip.*no draw'):
        Omniglot(str(tmp_path))


@pytest.mark.parametrize('labels,match', [
    ('run01/test/item01.png run01/training/class09.png\n', "'run01/training"
     "/class09.png', which is not a support drawing of run01"),
    ('run01/test/item01.png\n', "line 1 of 'run01/class_labels.txt'"),
    ('\n', 'lists no query'),
])
def test_omniglot_invalid_class_labels(tmp_path, labels, match):
    write_runs(tmp_path, labels)
    with pytest.raises(ValueError, match=match) as info:
        Omniglot(str(tmp_path), split='runs')
    assert 'all_runs.zip' in str(info.value)


def test_omniglot_missing_class_labels(tmp_path):
    write_zip(osp.join(str(tmp_path), 'all_runs.zip'),
              {'run01/training/class01.png': png(drawing(1))})
    with pytest.raises(ValueError, match="all_runs.zip' has no member "
                       "'run01/class_labels.txt'"):
        Omniglot(str(tmp_path), split='runs')
    write_zip(osp.join(str(tmp_path), 'all_runs.zip'),
              {'run01/training/class01.png': png(drawing(1)),
               'run01/class_labels.txt': b'\xff\xfe\xfa'})
    with pytest.raises(ValueError, match="all_runs.zip': 'run01/class_labels"
                       ".txt' is not a text file"):
        Omniglot(str(tmp_path), split='runs')
    write_zip(osp.join(str(tmp_path), 'all_runs.zip'), {'x/y.png': b''})
    with pytest.raises(ValueError, match='all_runs.zip.*no run folder'):
        Omniglot(str(tmp_path), split='runs')


def test_omniglot_needs_pillow(tmp_path, monkeypatch):
    import sys
    write_background(tmp_path)
    monkeypatch.setitem(sys.modules, 'PIL', None)
    with pytest.raises(ImportError, match='pip install pillow'):
        Omniglot(str(tmp_path))


def test_omniglot_background_lake(shared_copy):
    root = shared_copy('omniglot', 'images_background_small1.zip',
                       'images_background_small2.zip')
    data = Omniglot(root, size=14)[0]
    assert data.x.shape == (4840, 1, 14, 14)
    assert len(data.characters) == 242 and len(set(data.alphabets)) == 8
    assert torch.bincount(data.y).eq(20).all()
    # Ink is 1 on a background of 0: strokes cover a minority of pixels.
    assert 0.02 < float(data.x.mean()) < 0.3
    assert float(data.x.min()) >= 0 and float(data.x.max()) <= 1
    # Images and labels stay paired: the first drawing of the last class is
    # the file of that character, decoded independently.
    c = len(data.characters) - 1
    alphabet, character = data.characters[c].split('/')
    first = int((data.y == c).nonzero()[0])
    assert float(data.x[first].sum()) > 0
    for name in ['images_background_small1.zip',
                 'images_background_small2.zip']:
        with zipfile.ZipFile(osp.join(root, name)) as z:
            files = sorted(p for p in z.namelist() if p.endswith('.png') and
                           p.split('/')[1:3] == [alphabet, character])
            if files:
                assert torch.equal(data.x[first, 0],
                                   decode(z.read(files[0]), 14))
                break
    else:
        raise AssertionError(f'{data.characters[c]} not found')


def test_omniglot_runs_lake(shared_copy):
    root = shared_copy('omniglot', 'all_runs.zip')
    runs = Omniglot(root, split='runs', size=20)
    assert len(runs) == 20
    with zipfile.ZipFile(osp.join(root, 'all_runs.zip')) as z:
        lines = z.read('run01/class_labels.txt').decode().split()
        # 'run01/test/item01.png run01/training/class08.png', ...
        assert lines[0].endswith('item01.png')
        assert lines[1].endswith('class08.png')
        # The query is item01, the support of its class class08:
        assert int(runs[0].y[20]) == 7
        assert torch.equal(runs[0].x[20, 0],
                           decode(z.read('run01/test/item01.png'), 20))
        assert torch.equal(runs[0].x[7, 0],
                           decode(z.read('run01/training/class08.png'), 20))
    for run in runs:
        assert run.x.shape == (40, 1, 20, 20)
        assert run.y[:20].tolist() == list(range(20))
        assert sorted(run.y[20:].tolist()) == list(range(20))
        assert int(run.train_mask.sum()) == int(run.test_mask.sum()) == 20


def test_omniglot_numpy_size(tmp_path):
    write_runs(tmp_path)
    dataset = Omniglot(str(tmp_path), split='runs', size=np.int64(6))
    assert dataset.size == 6 and type(dataset.size) is int
    assert dataset[0].x.shape == (6, 1, 6, 6)
    for size in [True, np.int64(0), 6.0]:
        with pytest.raises(ValueError, match="'size' must be an integer"):
            Omniglot(str(tmp_path), split='runs', size=size)


def restore(file, compression):
    with zipfile.ZipFile(file) as z:
        members = {name: z.read(name) for name in z.namelist()}
    write_zip(file, members, compression)
    with open(file, 'rb') as f:
        return members, bytearray(f.read())


def test_omniglot_unsupported_compression_method(tmp_path):
    # zipfile raises NotImplementedError for an unknown method (99 here):
    import struct
    file = osp.join(str(tmp_path), 'all_runs.zip')
    write_runs(tmp_path)
    _, content = restore(file, zipfile.ZIP_STORED)
    for signature, at in ((b'PK\x03\x04', 8), (b'PK\x01\x02', 10)):
        i = content.find(signature)
        while i >= 0:
            content[i + at:i + at + 2] = struct.pack('<H', 99)
            i = content.find(signature, i + 4)
    with open(file, 'wb') as f:
        f.write(bytes(content))
    with pytest.raises(ValueError, match="all_runs.zip' is corrupt: cannot "
                       "read 'run01/.*NotImplementedError"):
        Omniglot(str(tmp_path), split='runs')


def test_omniglot_corrupt_lzma_member(tmp_path):
    # lzma raises its own LZMAError:
    file = osp.join(str(tmp_path), 'all_runs.zip')
    write_runs(tmp_path)
    members, content = restore(file, zipfile.ZIP_LZMA)
    with zipfile.ZipFile(file) as z:
        info = z.getinfo('run01/class_labels.txt')
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    content[start + 9:start + 19] = b'\xff' * 10  # Inside the LZMA stream.
    with open(file, 'wb') as f:
        f.write(bytes(content))
    with pytest.raises(ValueError, match="all_runs.zip' is corrupt: cannot "
                       "read 'run01/class_labels.txt'"):
        Omniglot(str(tmp_path), split='runs')


@pytest.mark.parametrize('damage', ['truncate', 'garbage'])
def test_omniglot_damaged_processed_file(tmp_path, damage):
    write_runs(tmp_path)
    ref = Omniglot(str(tmp_path), split='runs', size=6)[1]
    path = osp.join(str(tmp_path), 'processed', 'runs_6.pt')
    with open(path, 'rb') as f:
        content = f.read()
    with open(path, 'wb') as f:
        f.write(content[:len(content) // 2] if damage == 'truncate' else
                b'garbage' * 10)
    with pytest.raises(ValueError, match="processed file '.*runs_6.pt' of "
                       "Omniglot is damaged.*force_reload=True"):
        Omniglot(str(tmp_path), split='runs', size=6)
    data = Omniglot(str(tmp_path), split='runs', size=6,
                    force_reload=True)[1]
    assert torch.equal(data.x, ref.x) and torch.equal(data.y, ref.y)
