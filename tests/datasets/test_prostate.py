import os.path as osp

import numpy as np
import pytest
import torch
from scipy.io import loadmat, savemat

from torch_geometric_coin.datasets import Prostate

X = np.array([[1.5, 2.0, 3.25], [0.5, 4.0, 1.0], [2.0, 2.0, 2.0],
              [3.0, 1.0, 0.0]])
Y = np.array([[2], [1], [1], [2]], dtype=np.uint8)


def write_mat(root, **variables):
    variables = {'X': X, 'Y': Y, **variables}
    file = osp.join(str(root), 'Prostate_GE.mat')
    savemat(file, {k: v for k, v in variables.items() if v is not None})
    return file


def test_prostate(tmp_path):
    write_mat(tmp_path)
    dataset = Prostate(str(tmp_path))
    assert len(dataset) == 1
    data = dataset[0]
    assert data.x.dtype == torch.float and data.x.tolist() == X.tolist()
    assert data.y.tolist() == [1, 0, 0, 1]  # 2 = tumour -> 1, 1 -> 0.
    assert data.edge_index is None
    assert dataset.num_classes == 2
    assert osp.isfile(osp.join(str(tmp_path), 'processed', 'data.pt'))


def test_prostate_pre_transform(tmp_path):
    write_mat(tmp_path)

    def pre_transform(data):
        data.x = data.x * 2
        return data

    data = Prostate(str(tmp_path), pre_transform=pre_transform)[0]
    assert data.x.tolist() == (2 * X).tolist()


@pytest.mark.parametrize('variables,match', [
    (dict(X=None), "no variable 'X'"),
    (dict(Y=None), "no variable 'Y'"),
    (dict(X=np.where(X == 0, np.nan, X)), 'NaN'),
    (dict(X=np.array(['abc'])), 'numeric matrix'),
    (dict(Y=np.array([[2], [1], [3], [2]])), r'\[1, 2, 3\]'),
    (dict(Y=np.array([[2], [1], [1]])), 'one label per row'),
    # float32 (the stored dtype) would make it inf:
    (dict(X=np.where(X == 0, 1e300, X)), 'beyond the range of float32'),
    # A matrix of labels (row or column order?), not a vector:
    (dict(Y=np.array([[2, 1], [1, 2]])), r'vector .* got shape \(2, 2\)'),
])
def test_prostate_invalid_file(tmp_path, variables, match):
    write_mat(tmp_path, **variables)
    with pytest.raises(ValueError, match=match) as info:
        Prostate(str(tmp_path))
    assert 'Prostate_GE.mat' in str(info.value)


@pytest.mark.parametrize('damage', ['truncate', 'garbage'])
def test_prostate_unreadable_file(tmp_path, damage):
    file = write_mat(tmp_path)
    with open(file, 'rb') as f:
        content = f.read()
    with open(file, 'wb') as f:
        f.write(content[:len(content) // 2] if damage == 'truncate' else
                b'not a MATLAB file' * 20)
    with pytest.raises(ValueError, match='Prostate_GE.mat.*not a readable'):
        Prostate(str(tmp_path))


def test_prostate_singh(shared_copy):
    root = shared_copy('prostate', 'Prostate_GE.mat')
    data = Prostate(root)[0]
    assert data.x.shape == (102, 5966) and data.y.shape == (102, )
    assert int(data.y.sum()) == 52 and int((data.y == 0).sum()) == 50
    mat = loadmat(osp.join(root, 'Prostate_GE.mat'))
    np.testing.assert_allclose(data.x.numpy(), mat['X'], rtol=1e-6)
    assert ((mat['Y'].reshape(-1) == 2) == data.y.numpy().astype(bool)).all()
