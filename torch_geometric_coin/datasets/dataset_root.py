import os
import os.path as osp
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
