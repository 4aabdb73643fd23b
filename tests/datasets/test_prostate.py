import os.path as osp

import numpy as np
import pytest

from torch_geometric_coin.datasets import dataset_root, load_prostate


def test_load_prostate():
    file = osp.join(dataset_root(), 'prostate', 'Prostate_GE.mat')
    if not osp.isfile(file):
        pytest.skip(f'{file} is not available')
    from scipy.io import loadmat
    x, y = load_prostate()
    assert x.shape == (102, 5966) and y.shape == (102, )
    assert int(y.sum()) == 52 and int((y == 0).sum()) == 50  # 52 tumours.
    mat = loadmat(file)
    np.testing.assert_allclose(x.numpy(), mat['X'], rtol=1e-6)
    assert ((mat['Y'].reshape(-1) == 2) == y.numpy().astype(bool)).all()
