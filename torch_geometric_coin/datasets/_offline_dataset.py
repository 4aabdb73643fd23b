import json
import os
import os.path as osp
from typing import Any, Callable, List, Optional

from torch_geometric.data import Data, InMemoryDataset
from torch_geometric_coin._checks import check_bool


class OfflineDataset(InMemoryDataset):
    r"""The base class of the data sets of this package: a PyG
    :class:`~torch_geometric.data.InMemoryDataset` whose raw files are not
    downloaded but must be provided by the user.

    The raw files are looked up in :obj:`<folder>/raw/` (PyG's layout) if
    that folder exists, else directly in :obj:`<folder>` (the layout of a
    plain copy of the data), where :obj:`folder` is :obj:`root` (or
    :obj:`root/<name>` for data sets with several members). The processed
    data is written to :obj:`<folder>/processed/`, so :obj:`folder` must be
    writable: copy a read-only data folder first.

    Subclasses set :obj:`source` (where the raw files can be obtained) and
    implement :meth:`process`, in which every problem of a raw file raises a
    :class:`ValueError` that names the file. A damaged processed file (*e.g.*,
    truncated by an interrupted run) raises a :class:`ValueError` that names
    it too, and asks for :obj:`force_reload=True`.
    """
    source: str = ''

    def __init__(
        self,
        root: str,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        pre_filter: Optional[Callable] = None,
        force_reload: bool = False,
    ) -> None:
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

    def load(self, path: str, data_cls=Data) -> None:
        r"""Loads the processed data from :obj:`path`; a damaged file raises
        a :class:`ValueError` that names it."""
        try:
            super().load(path, data_cls)
        except Exception as err:  # torch.load raises many types.
            raise self._damaged(path, err) from err

    def load_json(self, path: str) -> Any:
        r"""Reads the processed JSON file :obj:`path`; a damaged file raises
        a :class:`ValueError` that names it."""
        try:
            with open(path, encoding='utf-8') as f:
                return json.load(f)
        except (ValueError, UnicodeDecodeError) as err:
            raise self._damaged(path, err) from err

    def _damaged(self, path: str, err: Exception) -> ValueError:
        # (The reader's own message, chained, may advise unsafe loading.)
        return ValueError(
            f"The processed file '{path}' of {self.__class__.__name__} is "
            f"damaged ({type(err).__name__} when reading it); process the "
            f"raw files again with 'force_reload=True'")

    def raw_file(self, name: str) -> str:
        r"""Returns the path of the raw file :obj:`name`."""
        return osp.join(self.raw_dir, name)

    def download(self) -> None:
        missing: List[str] = [
            name for name in self.raw_file_names
            if not osp.exists(self.raw_file(name))
        ]
        raise FileNotFoundError(
            f"{self.__class__.__name__} is missing the raw file(s) "
            f"{', '.join(repr(self.raw_file(n)) for n in missing)}. It is "
            f"not downloaded automatically: get {', '.join(missing)} from "
            f"{self.source} and put them into "
            f"'{osp.join(self.folder, 'raw')}' or '{self.folder}'")
