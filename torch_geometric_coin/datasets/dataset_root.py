import hashlib
import os
import os.path as osp
import shutil
import tempfile
from typing import Optional

ENV_VAR = 'TORCH_GEOMETRIC_COIN_DATASETS'


def dataset_root(root: Optional[str] = None) -> str:
    r"""Returns the folder that holds the offline data sets: :obj:`root` if
    given, else the environment variable
    :obj:`TORCH_GEOMETRIC_COIN_DATASETS` if set, else
    :obj:`../shared/datasets` relative to the repository root."""
    if root is not None:
        return str(root)
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    return osp.normpath(osp.join(repo, '..', 'shared', 'datasets'))


def dataset_file(root: Optional[str], *path: str) -> str:
    r"""Returns :obj:`<dataset_root(root)>/<path>`, or raises a
    :class:`FileNotFoundError` that names the missing file."""
    file = osp.join(dataset_root(root), *path)
    if not osp.isfile(file):
        raise FileNotFoundError(
            f"The data file '{file}' does not exist. Pass the folder that "
            f"holds '{osp.join(*path)}' as 'root' (or set {ENV_VAR}).")
    return file


def writable_copy(src: str, cache_dir: Optional[str] = None) -> str:
    r"""Copies the (possibly read-only) data set folder :obj:`src` once into
    a writable cache and returns the copy, so that PyG and OGB can write
    :obj:`processed/` beside :obj:`raw/`. The copy keeps the folder's name
    and lives under :obj:`cache_dir` (default:
    :obj:`$TMPDIR/torch_geometric_coin/<hash of src>`), so data sets from
    different roots never mix.

    Raises a :class:`FileNotFoundError` naming :obj:`src` if it is absent.
    """
    src = osp.abspath(src)
    if not osp.isdir(src):
        raise FileNotFoundError(f"The data set folder '{src}' does not exist")
    if cache_dir is None:
        key = hashlib.sha1(src.encode()).hexdigest()[:12]
        cache_dir = osp.join(tempfile.gettempdir(), 'torch_geometric_coin',
                             key)
    dst = osp.join(cache_dir, osp.basename(src))
    if not osp.isdir(dst):
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f'{dst}.{os.getpid()}.tmp'
        shutil.copytree(src, tmp)
        for dirpath, _, filenames in os.walk(tmp):
            os.chmod(dirpath, 0o755)
            for f in filenames:
                os.chmod(osp.join(dirpath, f), 0o644)
        try:
            os.rename(tmp, dst)
        except OSError:  # Another process made the copy first.
            shutil.rmtree(tmp, ignore_errors=True)
    return dst
