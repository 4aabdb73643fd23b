import io
import re
import zipfile
from typing import List, NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from torch_geometric_coin.datasets.dataset_root import dataset_file

BACKGROUND_ZIPS = ('images_background_small1.zip',
                   'images_background_small2.zip')


class Omniglot(NamedTuple):
    r"""Omniglot drawings (see :func:`load_omniglot`)."""
    images: Tensor  # [M, 1, S, S] float32 in [0, 1], ink = 1
    labels: Tensor  # [M] character class
    alphabets: List[str]  # alphabet of each character class
    characters: List[str]  # 'Alphabet/characterXX' of each class


class OmniglotRun(NamedTuple):
    r"""One official 20-way one-shot run (see :func:`load_omniglot_runs`)."""
    support: Tensor  # [20, 1, S, S], one drawing per class
    query: Tensor  # [20, 1, S, S]
    query_labels: Tensor  # [20], the support index of each query's class


def _read_image(data: bytes, size: int) -> Tensor:
    from PIL import Image
    img = Image.open(io.BytesIO(data)).convert('L')
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    # White background, black ink: ink = 1.
    return torch.from_numpy(1. - np.asarray(img, dtype=np.float32) / 255.)


def load_omniglot(root: Optional[str] = None, size: int = 28) -> Omniglot:
    r"""Loads the Omniglot background drawings of `"Human-level concept
    learning through probabilistic program induction"
    <https://doi.org/10.1126/science.aab3050>`_ from the two "small" archives
    :obj:`<root>/omniglot/images_background_small{1,2}.zip`: 8 alphabets,
    242 character classes with 20 drawings each (alphabets present in both
    archives are read once).

    Args:
        root (str, optional): The data-set folder (see
            :func:`~torch_geometric_coin.datasets.dataset_root`).
            (default: :obj:`None`)
        size (int, optional): Images are resized to :obj:`size x size`.
            (default: :obj:`28`)

    Returns:
        Omniglot: :obj:`images` :obj:`[4840, 1, size, size]` with ink
        :obj:`1` and background :obj:`0`, :obj:`labels` :obj:`[4840]`, and
        per class its alphabet and character name (classes sorted by name).
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"'size' must be a positive integer (got {size!r})")
    files = {}
    for name in BACKGROUND_ZIPS:
        with zipfile.ZipFile(dataset_file(root, 'omniglot', name)) as z:
            for path in z.namelist():
                parts = path.split('/')
                if len(parts) == 4 and parts[3].endswith('.png'):
                    key = (parts[1], parts[2], parts[3])
                    if key not in files:
                        files[key] = _read_image(z.read(path), size)
    keys = sorted(files)
    characters = sorted({f'{a}/{c}' for a, c, _ in keys})
    index = {name: i for i, name in enumerate(characters)}
    images = torch.stack([files[key] for key in keys]).unsqueeze(1)
    labels = torch.tensor([index[f'{a}/{c}'] for a, c, _ in keys])
    alphabets = [name.split('/')[0] for name in characters]
    return Omniglot(images, labels, alphabets, characters)


def load_omniglot_runs(root: Optional[str] = None,
                       size: int = 28) -> List[OmniglotRun]:
    r"""Loads the 20 official 20-way one-shot classification runs of Lake
    et al. from :obj:`<root>/omniglot/all_runs.zip`. Their characters come
    from the Omniglot evaluation alphabets, none of which is in
    :func:`load_omniglot`.

    Args:
        root (str, optional): The data-set folder. (default: :obj:`None`)
        size (int, optional): Images are resized to :obj:`size x size`.
            (default: :obj:`28`)

    Returns:
        List[OmniglotRun]: per run, the 20 support drawings (one per class,
        in the order :obj:`class01` to :obj:`class20`), the 20 query
        drawings and the class of each query.
    """
    runs = []
    with zipfile.ZipFile(dataset_file(root, 'omniglot', 'all_runs.zip')) as z:
        names = sorted({p.split('/')[0] for p in z.namelist()
                        if re.fullmatch(r'run\d+', p.split('/')[0])})
        for run in names:
            pairs = [line.split() for line in
                     z.read(f'{run}/class_labels.txt').decode().splitlines()
                     if line.strip()]
            classes = sorted(p for p in z.namelist()
                             if p.startswith(f'{run}/training/')
                             and p.endswith('.png'))
            index = {p: i for i, p in enumerate(classes)}
            support = torch.stack([_read_image(z.read(p), size)
                                   for p in classes]).unsqueeze(1)
            query = torch.stack([_read_image(z.read(q), size)
                                 for q, _ in pairs]).unsqueeze(1)
            labels = torch.tensor([index[c] for _, c in pairs])
            runs.append(OmniglotRun(support, query, labels))
    return runs
