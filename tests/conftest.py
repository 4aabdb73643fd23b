import os
import os.path as osp
import shutil
import sys

import pytest
from hypothesis import settings

# Hypothesis draws the same examples in every run (CI is reproducible);
# HYPOTHESIS_PROFILE=random draws new ones (see tests/README.md).
settings.register_profile('ci', derandomize=True, deadline=None,
                          database=None)
settings.register_profile('thorough', derandomize=True, deadline=None,
                          database=None)
settings.register_profile('random', deadline=None)
settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'ci'))

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DATASETS = osp.join(ROOT, '..', 'shared', 'datasets')
# `dense_reference` (the operators written from their definitions) is a
# module of the tests, imported by name.
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))


def copy_dataset(subdir: str, dst: str) -> str:
    r"""Copies the read-only :obj:`../shared/datasets/<subdir>` into
    :obj:`dst` (so PyG can write :obj:`processed/`), or skips the test."""
    src = osp.join(SHARED_DATASETS, subdir)
    if not osp.isdir(src):
        pytest.skip(f'{src} is not available')
    dst = osp.join(dst, osp.basename(src))
    shutil.copytree(src, dst, copy_function=shutil.copyfile)
    return dst


@pytest.fixture(scope='session')
def cora(tmp_path_factory):
    from torch_geometric.datasets import Planetoid
    root = tmp_path_factory.mktemp('planetoid')
    copy_dataset('planetoid/Cora', str(root))
    return Planetoid(str(root), 'Cora')[0]


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
