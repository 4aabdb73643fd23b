import os
import os.path as osp
import shutil

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DATASETS = osp.join(ROOT, '..', 'shared', 'datasets')


def copy_dataset(subdir: str, dst: str) -> str:
    r"""Copies the read-only :obj:`../shared/datasets/<subdir>` into
    :obj:`dst` (so PyG can write :obj:`processed/`), or skips the test."""
    src = osp.join(SHARED_DATASETS, subdir)
    if not osp.isdir(src):
        pytest.skip(f'{src} is not available')
    out = osp.join(dst, osp.basename(subdir))
    shutil.copytree(src, out)
    for dirpath, dirnames, _ in os.walk(out):
        os.chmod(dirpath, 0o755)
    return out


@pytest.fixture(scope='session')
def cora(tmp_path_factory):
    from torch_geometric.datasets import Planetoid
    root = tmp_path_factory.mktemp('planetoid')
    copy_dataset('planetoid/Cora', str(root))
    return Planetoid(str(root), 'Cora')[0]


@pytest.fixture
def load_example():
    r"""Imports :obj:`examples/<name>.py` as a module (without running
    :obj:`main`)."""
    import importlib.util

    def load(name: str):
        spec = importlib.util.spec_from_file_location(
            name, osp.join(ROOT, 'examples', f'{name}.py'))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
