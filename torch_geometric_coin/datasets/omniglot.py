import io
import re
import zipfile
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from torch_geometric.data import Data
from torch_geometric_coin._checks import check_number
from torch_geometric_coin.datasets._offline_dataset import OfflineDataset

RUN = re.compile(r'run\d+')


class Omniglot(OfflineDataset):
    r"""The Omniglot handwritten characters of the `"Human-level concept
    learning through probabilistic program induction"
    <https://doi.org/10.1126/science.aab3050>`_ paper, as used in the COIN
    paper's few-shot experiments. Images are resized to
    :obj:`size x size`, with ink :obj:`1` on a background of :obj:`0`.

    * :obj:`split="background"`: the drawings of the two "small" background
      archives, 8 alphabets with 242 character classes of 20 drawings each
      (alphabets present in both archives are read once). :obj:`dataset[0]`
      holds all of them: :obj:`x` (:obj:`[4840, 1, size, size]`), :obj:`y`
      (:obj:`[4840]`) the class of each drawing, and per class
      :obj:`characters` (:obj:`"Alphabet/characterXX"`, sorted) and
      :obj:`alphabets`.
    * :obj:`split="runs"`: the 20 official 20-way one-shot classification
      runs, whose characters come from evaluation alphabets (none of them is
      in :obj:`"background"`). :obj:`dataset[i]` is run :obj:`i`: :obj:`x`
      (:obj:`[40, 1, size, size]`) the 20 support drawings (:obj:`class01`
      to :obj:`class20`) followed by the 20 query drawings (in the order of
      :obj:`class_labels.txt`), :obj:`y` (:obj:`[40]`) their class in
      :obj:`0..19` (support drawing :obj:`c` has class :obj:`c`), and
      :obj:`train_mask` / :obj:`test_mask` marking support and query.

    The raw files are :obj:`images_background_small1.zip` and
    :obj:`images_background_small2.zip` (for :obj:`"background"`) and
    :obj:`all_runs.zip` (for :obj:`"runs"`) from the folder :obj:`python/`
    of the `omniglot repository <https://github.com/brendenlake/omniglot>`_,
    expected in :obj:`<root>/` (or :obj:`<root>/raw/`). Processed data is
    written to :obj:`<root>/processed/`. Reading the images requires
    `Pillow <https://python-pillow.org>`_.

    Args:
        root (str): Root directory where the dataset should be saved.
        split (str, optional): :obj:`"background"` or :obj:`"runs"`.
            (default: :obj:`"background"`)
        size (int, optional): The side length of the resized images
            (the drawings are 105 x 105, resized bilinearly).
            (default: :obj:`28`)
        transform (callable, optional): A function/transform that takes in
            the :class:`~torch_geometric.data.Data` of the drawings (or of a
            run) and returns a transformed version, at every access.
            (default: :obj:`None`)
        pre_transform (callable, optional): A function/transform applied to
            the :class:`~torch_geometric.data.Data` of the drawings (or of
            each run) before it is saved to disk. (default: :obj:`None`)
        force_reload (bool, optional): Whether to re-process the dataset.
            (default: :obj:`False`)

    **STATS:**

    .. list-table::
        :widths: 10 10 10
        :header-rows: 1

        * - Split
          - #drawings
          - #classes
        * - background
          - 4,840
          - 242
        * - runs
          - 20 x 40
          - 20 x 20
    """
    source = 'https://github.com/brendenlake/omniglot (folder python/)'
    splits = ('background', 'runs')

    def __init__(
        self,
        root: str,
        split: str = 'background',
        size: int = 28,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        force_reload: bool = False,
    ) -> None:
        if split not in self.splits:
            raise ValueError(f"Unknown 'split' {split!r}: expected one of "
                             f"{self.splits}")
        check_number('size', size, integer=True, low=1)
        self.split = split
        self.size = int(size)
        super().__init__(root, transform, pre_transform,
                         force_reload=force_reload)
        self.load(self.processed_paths[0])

    @property
    def raw_file_names(self) -> List[str]:
        if self.split == 'background':
            return [
                'images_background_small1.zip',
                'images_background_small2.zip',
            ]
        return ['all_runs.zip']

    @property
    def processed_file_names(self) -> str:
        return f'{self.split}_{self.size}.pt'

    def process(self) -> None:
        if self.split == 'background':
            data_list = [self.process_background()]
        else:
            data_list = self.process_runs()
        if self.pre_transform is not None:
            data_list = [self.pre_transform(data) for data in data_list]
        self.save(data_list, self.processed_paths[0])

    def process_background(self) -> Data:
        images: Dict[Tuple[str, str, str], Tensor] = {}
        for name in self.raw_file_names:
            with _Archive(self.raw_file(name)) as archive:
                for path in archive.names:
                    parts = path.split('/')
                    if len(parts) != 4 or not parts[3].endswith('.png'):
                        continue
                    key = (parts[1], parts[2], parts[3])
                    if key not in images:
                        images[key] = archive.image(path, self.size)
        if not images:
            files = ' and '.join(f"'{self.raw_file(name)}'"
                                 for name in self.raw_file_names)
            raise ValueError(f"{files} hold no drawing "
                             f"<folder>/<Alphabet>/<character>/<file>.png")
        keys = sorted(images)
        characters = sorted({f'{a}/{c}' for a, c, _ in keys})
        index = {name: i for i, name in enumerate(characters)}
        return Data(
            x=torch.stack([images[key] for key in keys]).unsqueeze(1),
            y=torch.tensor([index[f'{a}/{c}'] for a, c, _ in keys]),
            characters=characters,
            alphabets=[name.split('/')[0] for name in characters],
        )

    def process_runs(self) -> List[Data]:
        data_list = []
        with _Archive(self.raw_file('all_runs.zip')) as archive:
            runs = sorted({p.split('/')[0] for p in archive.names
                           if RUN.fullmatch(p.split('/')[0])})
            if not runs:
                raise ValueError(f"'{archive.file}' holds no run folder "
                                 f"(runXX/)")
            for run in runs:
                data_list.append(self.process_run(archive, run))
        return data_list

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
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 2:
                raise ValueError(f"'{archive.file}': line {i} of '{member}' "
                                 f"is not '<query.png> <support.png>'")
            query, cls = fields
            if cls not in index:
                raise ValueError(f"'{archive.file}': line {i} of '{member}' "
                                 f"names {cls!r}, which is not a support "
                                 f"drawing of {run}")
            queries.append(query)
            labels.append(index[cls])
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


class _Archive:
    r"""A zip file whose read errors name the file and the member."""
    def __init__(self, file: str):
        self.file = file
        try:
            self.zip = zipfile.ZipFile(file)
        except Exception as err:  # BadZipFile, OSError, ValueError, ...
            raise ValueError(f"'{file}' is not a readable zip file: "
                             f"{err}") from err
        self.names = self.zip.namelist()

    def __enter__(self) -> '_Archive':
        return self

    def __exit__(self, *args) -> None:
        self.zip.close()

    def read(self, member: str) -> bytes:
        try:
            return self.zip.read(member)
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
