import os.path as osp
import shutil

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SHARED_DATASETS = osp.join(ROOT, '..', 'shared', 'datasets')


@pytest.fixture
def shared_copy(tmp_path):
    r"""Returns :obj:`copy(folder, *names)`, which copies the files (or
    folders) :obj:`names` of the read-only
    :obj:`../shared/datasets/<folder>` into a fresh writable folder and
    returns it, or skips the test if they are not available."""
    def copy(folder: str, *names: str) -> str:
        src = osp.join(SHARED_DATASETS, folder)
        for name in names:
            if not osp.exists(osp.join(src, name)):
                pytest.skip(f"{osp.join(src, name)} is not available")
        dst = tmp_path / 'shared' / folder
        dst.mkdir(parents=True)
        for name in names:
            if osp.isdir(osp.join(src, name)):
                shutil.copytree(osp.join(src, name), dst / name)
            else:
                shutil.copy(osp.join(src, name), dst / name)
        return str(dst)

    return copy
