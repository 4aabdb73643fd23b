import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DATASETS = osp.join(ROOT, '..', 'shared', 'datasets')


def copy_dataset(subdir: str, dst: str) -> str:
    r"""Copies the read-only :obj:`../shared/datasets/<subdir>` into
    :obj:`dst` (so PyG can write :obj:`processed/`), or skips the test."""
    from torch_geometric_coin.datasets import writable_copy
    src = osp.join(SHARED_DATASETS, subdir)
    if not osp.isdir(src):
        pytest.skip(f'{src} is not available')
    return writable_copy(src, dst)


@pytest.fixture(scope='session')
def cora(tmp_path_factory):
    from torch_geometric.datasets import Planetoid
    root = tmp_path_factory.mktemp('planetoid')
    copy_dataset('planetoid/Cora', str(root))
    return Planetoid(str(root), 'Cora')[0]


@pytest.fixture
def random_laplacian():
    r"""Returns :obj:`make(num_nodes, num_edges, seed, symmetric)` ->
    :obj:`(op, lap, L)`: a random graph Laplacian :math:`\mathbf{L} =
    \mathrm{diag}(\mathbf{W}\mathbf{1}) - \mathbf{W}` as a
    :class:`CSROperator` with its CSR values and as a dense float64 matrix
    built independently."""
    import torch

    from torch_geometric_coin.ops import CSROperator

    def make(num_nodes, num_edges, seed, symmetric=True):
        gen = torch.Generator().manual_seed(seed)
        W = torch.zeros(num_nodes, num_nodes, dtype=torch.float64)
        idx = torch.randint(num_nodes, (2, num_edges), generator=gen)
        W[idx[0], idx[1]] = torch.rand(num_edges, generator=gen,
                                       dtype=torch.float64) + 0.1
        W.fill_diagonal_(0)
        if symmetric:
            W = W + W.t()
        L = torch.diag(W.sum(1)) - W
        row, col = (W != 0).nonzero().t()
        loop = torch.arange(num_nodes)
        op, perm = CSROperator.from_coo(
            torch.cat([row, loop]), torch.cat([col, loop]), num_nodes,
            row.numel() + loop)
        lap = L[torch.cat([row, loop]), torch.cat([col, loop])][perm]
        return op, lap, L

    return make


@pytest.fixture
def load_script():
    r"""Imports a script of the repository (e.g.
    :obj:`'examples/digits.py'`) as a module, so a test can call its
    :obj:`main(argv)`."""
    import importlib.util

    def load(path: str):
        name = osp.splitext(osp.basename(path))[0] + '_script'
        spec = importlib.util.spec_from_file_location(name,
                                                      osp.join(ROOT, path))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
