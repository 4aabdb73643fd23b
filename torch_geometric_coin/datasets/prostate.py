from typing import Callable, List, Optional

import numpy as np
import torch

from torch_geometric.data import Data
from torch_geometric_coin.datasets._offline_dataset import OfflineDataset


class Prostate(OfflineDataset):
    r"""The prostate cancer gene-expression data of `Singh et al. (2002)
    <https://doi.org/10.1016/S1535-6108(02)00030-2>`_: 102 patients (52
    tumour and 50 normal tissues), 5,966 genes. It is the data of this
    package's :obj:`benchmarks/prostate.py --dataset singh2002`, *not* of
    the COIN paper's prostate cancer experiment (see
    :class:`~torch_geometric_coin.datasets.P1000`).

    The raw file is :obj:`Prostate_GE.mat` of `scikit-feature
    <https://jundongl.github.io/scikit-feature/datasets.html>`_ (:obj:`X`
    patients x genes, :obj:`Y` :obj:`2` = tumour, :obj:`1` = normal).
    :obj:`dataset[0]` has no edges: :obj:`x` (:obj:`[102, 5966]`, float32)
    and :obj:`y` (:obj:`[102]`, :obj:`1` = tumour).

    Args:
        root (str): Root directory where the dataset should be saved.
        transform, pre_transform, force_reload (optional): As in
            :class:`~torch_geometric.data.InMemoryDataset`.
    """
    source = ('scikit-feature (https://jundongl.github.io/scikit-feature/'
              'datasets.html), e.g. via the repository '
              'Zhang-ZeSheng/Feature-Selection-Datasets')

    def __init__(self, root: str, transform: Optional[Callable] = None,
                 pre_transform: Optional[Callable] = None,
                 force_reload: bool = False) -> None:
        super().__init__(root, transform, pre_transform,
                         force_reload=force_reload)

    @property
    def raw_file_names(self) -> List[str]:
        return ['Prostate_GE.mat']

    @property
    def processed_file_names(self) -> str:
        return 'data.pt'

    def process(self) -> None:
        from scipy.io import loadmat

        file = self.raw_file(self.raw_file_names[0])
        try:
            mat = loadmat(file)
        except Exception as err:  # scipy raises many types on a bad file.
            raise ValueError(f"'{file}' is not a readable MATLAB file: "
                             f"{err}") from err
        for key in ('X', 'Y'):
            if key not in mat:
                raise ValueError(f"'{file}' has no variable '{key}'")
        x, y = mat['X'], np.asarray(mat['Y'])
        if (not isinstance(x, np.ndarray) or x.ndim != 2
                or x.dtype.kind not in 'biuf' or x.size == 0):
            raise ValueError(f"'X' in '{file}' is not a numeric matrix")
        if not np.isfinite(x).all():
            raise ValueError(f"'X' in '{file}' has NaN or infinite values")
        if np.abs(x).max() > np.finfo(np.float32).max:
            raise ValueError(f"'X' in '{file}' has values beyond the range "
                             f"of float32 (up to {np.abs(x).max():g})")
        if (y.dtype.kind not in 'biuf' or y.size != x.shape[0]
                or y.ndim > 2 or (y.ndim == 2 and min(y.shape) != 1)):
            raise ValueError(f"'Y' in '{file}' must be a vector of one label "
                             f"per row of 'X' ({x.shape[0]}), got shape "
                             f"{y.shape}")
        y = y.reshape(-1)
        if not np.isin(y, (1, 2)).all():
            raise ValueError(f"'Y' in '{file}' must hold 1 (normal) or 2 "
                             f"(tumour), got {np.unique(y).tolist()}")
        self.save_processed([Data(
            x=torch.from_numpy(x.astype(np.float32)),
            y=torch.from_numpy((y == 2).astype(np.int64)))])
