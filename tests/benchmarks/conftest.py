import importlib.util
import os.path as osp
import sys
import tempfile

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BENCHMARKS = osp.join(ROOT, 'benchmarks')
PLANETOID = osp.join(ROOT, '..', 'shared', 'datasets', 'planetoid')


@pytest.fixture
def bench(tmp_path, monkeypatch):
    r"""Imports a script of :obj:`benchmarks/` by name, with the writable
    data cache in :obj:`tmp_path`."""
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    monkeypatch.syspath_prepend(BENCHMARKS)

    def load(name):
        spec = importlib.util.spec_from_file_location(
            f'bench_{name}', osp.join(BENCHMARKS, f'{name}.py'))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def planetoid_root():
    if not osp.isdir(osp.join(PLANETOID, 'Cora')):
        pytest.skip(f'{PLANETOID} is not available')
    return PLANETOID


@pytest.fixture
def common(bench):
    sys.modules.pop('common', None)
    return bench('common')
