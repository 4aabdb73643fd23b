import importlib.util
import os.path as osp
import sys
import tempfile

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BENCHMARKS = osp.join(ROOT, 'benchmarks')
# The scripts import their shared modules (common, reporting, training) by
# name, as the tests do.
sys.path.insert(0, BENCHMARKS)

import common  # noqa: E402


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    r"""Puts the writable data cache (:func:`common.writable_copy`) in
    :obj:`tmp_path`."""
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    return tmp_path


@pytest.fixture
def bench(tmp_cache):
    r"""Imports a script of :obj:`benchmarks/` by name, with the writable
    data cache in :obj:`tmp_path`."""
    def load(name):
        spec = importlib.util.spec_from_file_location(
            f'bench_{name}', osp.join(BENCHMARKS, f'{name}.py'))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


def _shared(*path):
    folder = osp.join(common.dataset_root(), *path)
    if not osp.exists(folder):
        pytest.skip(f'{folder} is not available')
    return folder


@pytest.fixture
def shared():
    r"""Returns :obj:`shared(*path)`: :obj:`<dataset root>/<path>` of the
    offline data sets (:func:`common.dataset_root`), or skips the test where
    it is absent."""
    return _shared


@pytest.fixture
def planetoid_root():
    r"""The Planetoid folder (for :func:`common.load_planetoid`), or skips
    the test where Cora is absent."""
    _shared('planetoid', 'Cora')
    return _shared('planetoid')


@pytest.fixture
def datasets_root():
    r"""The datasets folder, every script's :obj:`--root` (it holds
    :obj:`planetoid/`, :obj:`npz/`, ...), or skips the test where
    :obj:`planetoid/Cora` is absent."""
    _shared('planetoid', 'Cora')
    return _shared()
