import os
import os.path as osp
import shutil

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PLANETOID = osp.join(ROOT, '..', 'shared', 'datasets', 'planetoid')


@pytest.fixture
def cora_root(tmp_path):
    r"""A read-only copy of Cora's raw files in :obj:`tmp_path` (the tests
    never write into the data folder): an example must read a copy of its
    own (PyG writes processed/ beside raw/) and leave this one unchanged."""
    if not osp.isdir(osp.join(PLANETOID, 'Cora', 'raw')):
        pytest.skip(f'{PLANETOID}/Cora is not available')
    root = tmp_path / 'planetoid'
    shutil.copytree(osp.join(PLANETOID, 'Cora', 'raw'), root / 'Cora' / 'raw')
    folders = [root / 'Cora' / 'raw', root / 'Cora', root]
    for folder in folders:
        os.chmod(folder, 0o555)
    yield root
    for folder in folders:
        os.chmod(folder, 0o755)
    assert sorted(p.name for p in (root / 'Cora').iterdir()) == ['raw']
    assert sorted(p.name for p in root.iterdir()) == ['Cora']
