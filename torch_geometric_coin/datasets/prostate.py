from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from torch_geometric_coin.datasets.dataset_root import dataset_file


def load_prostate(root: Optional[str] = None) -> Tuple[Tensor, Tensor]:
    r"""Loads the prostate cancer gene-expression data of `Singh et al. (2002)
    <https://doi.org/10.1016/S1535-6108(02)00030-2>`_ used by the COIN paper:
    102 patients, 5,966 genes, 52 tumours and 50 normal tissues, from
    :obj:`<root>/prostate/Prostate_GE.mat`.

    Args:
        root (str, optional): The data-set folder (see
            :func:`~torch_geometric_coin.datasets.dataset_root`).
            (default: :obj:`None`)

    Returns:
        (torch.Tensor, torch.Tensor): The expression matrix :obj:`x` of shape
        :obj:`[102, 5966]` (float32, as stored) and the labels :obj:`y` of
        shape :obj:`[102]` with :obj:`1` for tumour and :obj:`0` for normal
        (the file's :obj:`2` and :obj:`1`).
    """
    from scipy.io import loadmat
    mat = loadmat(dataset_file(root, 'prostate', 'Prostate_GE.mat'))
    x = torch.from_numpy(np.asarray(mat['X'], dtype=np.float32))
    raw = np.asarray(mat['Y']).reshape(-1)
    if set(np.unique(raw).tolist()) != {1, 2} or raw.shape[0] != x.size(0):
        raise ValueError(f"Unexpected labels in 'Prostate_GE.mat': "
                         f"{np.unique(raw).tolist()}")
    y = torch.from_numpy((raw == 2).astype(np.int64))
    return x, y
