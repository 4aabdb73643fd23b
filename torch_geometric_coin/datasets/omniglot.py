import io
import re
import zipfile
from collections import Counter
from contextlib import ExitStack
from typing import Callable, List, Optional

import numpy as np
import torch
from torch import Tensor

from torch_geometric.data import Data
from torch_geometric_coin._checks import check_choice, check_number
from torch_geometric_coin.datasets._offline_dataset import OfflineDataset

RUN = re.compile(r'run\d+')


class Omniglot(OfflineDataset):
    r"""The Omniglot handwritten characters of the `"Human-level concept
    learning through probabilistic program induction"
    <https://doi.org/10.1126/science.aab3050>`_ paper, as in the COIN
    paper's few-shot experiments, resized to :obj:`size x size` with ink
    :obj:`1` on a background of :obj:`0`. The raw files (needing `Pillow
    <https://python-pillow.org>`_) come from the folder :obj:`python/` of
    `brendenlake/omniglot <https://github.com/brendenlake/omniglot>`_.

    * :obj:`split="background"`: the drawings of
      :obj:`images_background_small{1,2}.zip` (8 alphabets, 242 characters
      of 20 drawings). :obj:`dataset[0]` has :obj:`x`
      (:obj:`[4840, 1, size, size]`), :obj:`y` (:obj:`[4840]`) the class,
      and per class :obj:`characters` (:obj:`"Alphabet/characterXX"`,
      sorted) and :obj:`alphabets`. Missing drawings raise a
      :class:`ValueError`: the data set is never loaded in part.
    * :obj:`split="runs"`: the 20 official 20-way one-shot runs of
      :obj:`all_runs.zip`. :obj:`dataset[i]` is run :obj:`i`: :obj:`x`
      (:obj:`[40, 1, size, size]`) the 20 support drawings, then the 20
      queries of :obj:`class_labels.txt`, :obj:`y` their class in
      :obj:`0..19`, and :obj:`train_mask` / :obj:`test_mask`.

    Args:
        root (str): Root directory where the dataset should be saved.
        split (str, optional): :obj:`"background"` or :obj:`"runs"`.
            (default: :obj:`"background"`)
        size (int, optional): The side length of the images, resized
            bilinearly from 105 x 105. (default: :obj:`28`)
        transform, pre_transform, force_reload (optional): As in
            :class:`~torch_geometric.data.InMemoryDataset`.
    """
    source = 'https://github.com/brendenlake/omniglot (folder python/)'
    splits = ('background', 'runs')

    def __init__(self, root: str, split: str = 'background', size: int = 28,
                 transform: Optional[Callable] = None,
                 pre_transform: Optional[Callable] = None,
                 force_reload: bool = False) -> None:
        check_choice('split', split, self.splits)
        check_number('size', size, integer=True, low=1)
        self.split = split
        self.size = int(size)
        super().__init__(root, transform, pre_transform,
                         force_reload=force_reload)

    @property
    def raw_file_names(self) -> List[str]:
        if self.split == 'background':
            return [f'images_background_small{k}.zip' for k in (1, 2)]
        return ['all_runs.zip']

    @property
    def processed_file_names(self) -> str:
        return f'{self.split}_{self.size}.pt'

    def process(self) -> None:
        self.save_processed([self.process_background()]
                            if self.split == 'background' else
                            self.process_runs())

    def process_background(self) -> Data:
        with ExitStack() as stack:
            archives = [stack.enter_context(_Archive(self.raw_file(name)))
                        for name in self.raw_file_names]
            where = {}  # (alphabet, character, file) -> (archive, member)
            for archive in archives:
                for path in archive.drawings:
                    where.setdefault(tuple(path.split('/')[1:]),
                                     (archive, path))
            _check_complete(archives, where)
            keys = sorted(where)
            x = torch.stack([archive.image(path, self.size)
                             for archive, path in map(where.get, keys)])
        characters = sorted({f'{a}/{c}' for a, c, _ in keys})
        index = {name: i for i, name in enumerate(characters)}
        return Data(x=x.unsqueeze(1),
                    y=torch.tensor([index[f'{a}/{c}'] for a, c, _ in keys]),
                    characters=characters,
                    alphabets=[name.split('/')[0] for name in characters])

    def process_runs(self) -> List[Data]:
        with _Archive(self.raw_file('all_runs.zip')) as archive:
            runs = sorted({p.split('/')[0] for p in archive.names
                           if RUN.fullmatch(p.split('/')[0])})
            if not runs:
                raise ValueError(f"'{archive.file}' holds no run folder "
                                 f"(runXX/)")
            return [self.process_run(archive, run) for run in runs]

    def process_run(self, archive: '_Archive', run: str) -> Data:
        support = sorted(p for p in archive.names
                         if p.startswith(f'{run}/training/')
                         and p.endswith('.png'))
        if not support:
            raise ValueError(f"'{archive.file}' has no support drawing "
                             f"{run}/training/*.png")
        index = {p: i for i, p in enumerate(support)}
        member = f'{run}/class_labels.txt'
        try:
            lines = archive.read(member).decode('utf-8').splitlines()
        except UnicodeDecodeError as err:
            raise ValueError(f"'{archive.file}': '{member}' is not a text "
                             f"file") from err
        queries, labels = [], []
        for i, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"'{archive.file}': line {i} of '{member}'"
            if len(fields) != 2:
                raise ValueError(f"{where} is not '<query.png> "
                                 f"<support.png>'")
            if fields[1] not in index:
                raise ValueError(f"{where} names {fields[1]!r}, which is "
                                 f"not a support drawing of {run}")
            queries.append(fields[0])
            labels.append(index[fields[1]])
        if not queries:
            raise ValueError(f"'{archive.file}': '{member}' lists no query")
        x = torch.stack([archive.image(p, self.size)
                         for p in support + queries]).unsqueeze(1)
        is_support = torch.arange(x.size(0)) < len(support)
        return Data(x=x, y=torch.tensor(list(range(len(support))) + labels),
                    train_mask=is_support, test_mask=~is_support)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({len(self)}, split={self.split}, '
                f'size={self.size})')


def _check_complete(archives: List['_Archive'], where: dict) -> None:
    r"""Raises a :class:`ValueError` if an archive, a folder it lists or a
    character lacks drawings."""
    empty = [f"'{a.file}'" for a in archives if not a.drawings]
    if empty:
        raise ValueError(f"{' and '.join(empty)} hold"
                         f"{'s' if len(empty) == 1 else ''} no drawing "
                         f"<folder>/<Alphabet>/<character>/<file>.png")
    found = {key[:i] for key in where for i in (1, 2)}
    for archive in archives:
        for path in archive.names:
            parts = path.split('/')
            if (path.endswith('/') and len(parts) in (3, 4)
                    and tuple(parts[1:-1]) not in found):
                raise ValueError(f"'{archive.file}' lists the folder "
                                 f"'{path}' but holds no drawing in it")
    counts = Counter(key[:2] for key in where)
    most = max(counts.values())
    for (a, c, _), (archive, _) in sorted(where.items()):
        if counts[a, c] < most:
            raise ValueError(f"'{archive.file}' holds {counts[a, c]} "
                             f"drawing(s) of '{a}/{c}' but {most} of other "
                             f"characters: drawings are missing")


class _Archive(zipfile.ZipFile):
    r"""A zip file whose read errors name the file and the member."""
    def __init__(self, file: str):
        self.file = file
        try:
            super().__init__(file)
        except Exception as err:  # BadZipFile, OSError, ValueError, ...
            raise ValueError(f"'{file}' is not a readable zip file: "
                             f"{err}") from err
        self.names = self.namelist()
        # The drawings <folder>/<Alphabet>/<character>/<file>.png:
        self.drawings = [p for p in self.names
                         if p.count('/') == 3 and p.endswith('.png')]

    def read(self, member: str) -> bytes:
        try:
            return super().read(member)
        except KeyError as err:
            raise ValueError(f"'{self.file}' has no member "
                             f"'{member}'") from err
        except Exception as err:  # BadZipFile, zlib.error, LZMAError,
            # NotImplementedError (an unknown compression method), ...
            raise ValueError(f"'{self.file}' is corrupt: cannot read "
                             f"'{member}': {type(err).__name__}: "
                             f"{err}") from err

    def image(self, member: str, size: int) -> Tensor:
        r"""Decodes a drawing into a :obj:`[size, size]` tensor with ink
        :obj:`1` (a dark pixel) and background :obj:`0`."""
        try:
            from PIL import Image
        except ImportError as err:
            raise ImportError(
                "Omniglot needs Pillow to read its images: pip install "
                "pillow (or torch-geometric-coin[bench])") from err
        data = self.read(member)
        try:
            img = Image.open(io.BytesIO(data)).convert('L')
            if img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            grey = np.asarray(img, dtype=np.float32)
        except Exception as err:  # PIL raises many types on a bad image.
            raise ValueError(f"'{self.file}': '{member}' is not a readable "
                             f"image: {err}") from err
        return torch.from_numpy(1. - grey / 255.)
