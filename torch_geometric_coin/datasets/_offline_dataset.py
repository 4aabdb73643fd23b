import json
import os
import os.path as osp
from typing import Any, Callable, List, Optional

from torch_geometric.data import Data, InMemoryDataset
from torch_geometric_coin._checks import check_bool


class OfflineDataset(InMemoryDataset):
    r"""The base class of this package's data sets: an
    :class:`~torch_geometric.data.InMemoryDataset` whose raw files are
    provided by the user (never downloaded), in :obj:`<folder>/raw/` if that
    exists, else in :obj:`<folder>` (:obj:`root`, or :obj:`root/<name>`);
    the processed data goes to :obj:`<folder>/processed/`. Subclasses set
    :obj:`source` and implement :meth:`process`, whose errors name the file.
    """
    source: str = ''

    def __init__(self, root: str, transform: Optional[Callable] = None,
                 pre_transform: Optional[Callable] = None,
                 pre_filter: Optional[Callable] = None,
                 force_reload: bool = False) -> None:
        try:
            root = os.fsdecode(os.fspath(root))
        except TypeError as err:
            raise TypeError(f"'root' must be a path to the folder of the "
                            f"data set (got {type(root).__name__})") from err
        for name, value in (('transform', transform),
                            ('pre_transform', pre_transform),
                            ('pre_filter', pre_filter)):
            if value is not None and not callable(value):
                raise TypeError(f"'{name}' must be callable or None (got "
                                f"{type(value).__name__})")
        check_bool('force_reload', force_reload)
        try:
            super().__init__(root, transform, pre_transform, pre_filter,
                             force_reload=bool(force_reload))
        except PermissionError as err:
            if not str(err.filename or '').startswith(self.processed_dir):
                raise
            raise PermissionError(
                f"{self.__class__.__name__} writes its processed data to "
                f"'{self.processed_dir}', which is not writable: copy "
                f"'{self.folder}' to a writable place and pass the copy as "
                f"'root'") from err
        self.load(self.processed_paths[0])

    @property
    def folder(self) -> str:
        r"""The folder of this data set (:obj:`root` by default)."""
        return self.root

    @property
    def raw_dir(self) -> str:
        raw_dir = osp.join(self.folder, 'raw')
        return raw_dir if osp.isdir(raw_dir) else self.folder

    @property
    def processed_dir(self) -> str:
        return osp.join(self.folder, 'processed')

    def raw_file(self, name: str) -> str:
        r"""Returns the path of the raw file :obj:`name`."""
        return osp.join(self.raw_dir, name)

    def save_processed(self, data_list: List[Data]) -> None:
        r"""Applies :obj:`pre_transform` and saves :obj:`data_list`."""
        if self.pre_transform is not None:
            data_list = [self.pre_transform(data) for data in data_list]
        self.save(data_list, self.processed_paths[0])

    def load(self, path: str, data_cls=Data) -> None:
        try:
            super().load(path, data_cls)
        except Exception as err:  # torch.load raises many types.
            raise self._damaged(path, err) from err

    def load_json(self, path: str, valid: Callable[[Any], bool]) -> Any:
        r"""Reads the processed JSON file :obj:`path`; a damaged file, or
        content that :obj:`valid` rejects, raises a :class:`ValueError`."""
        try:
            with open(path, encoding='utf-8') as f:
                value = json.load(f)
        except (ValueError, UnicodeDecodeError) as err:
            raise self._damaged(path, err) from err
        if not valid(value):
            raise self._damaged(path, ValueError('unexpected content'))
        return value

    def _damaged(self, path: str, err: Exception) -> ValueError:
        # (The reader's own message, chained, may advise unsafe loading.)
        return ValueError(
            f"The processed file '{path}' of {self.__class__.__name__} is "
            f"damaged ({type(err).__name__} when reading it); process the "
            f"raw files again with 'force_reload=True'")

    def download(self) -> None:
        missing = [name for name in self.raw_file_names
                   if not osp.exists(self.raw_file(name))]
        raise FileNotFoundError(
            f"{self.__class__.__name__} is missing the raw file(s) "
            f"{', '.join(repr(self.raw_file(n)) for n in missing)}. It is "
            f"not downloaded automatically: get {', '.join(missing)} from "
            f"{self.source} and put them into "
            f"'{osp.join(self.folder, 'raw')}' or '{self.folder}'")
