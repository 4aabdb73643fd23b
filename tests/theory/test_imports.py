import subprocess
import sys


def imported(code: str, module: str) -> bool:
    r"""Whether :obj:`module` is in :obj:`sys.modules` after running
    :obj:`code` in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, '-c', f'{code}\nimport sys\n'
         f'print({module!r} in sys.modules)'], capture_output=True,
        text=True, check=True)
    return out.stdout.strip().splitlines()[-1] == 'True'


def test_package_import_does_not_load_scipy_stats():
    # The theory modules need scipy.stats only inside the functions that use
    # it; importing the package (or its layers) must not pay for it, unless
    # PyG itself already does.
    base = imported('import torch_geometric, torch_geometric.nn',
                    'scipy.stats')
    ours = imported(
        'import torch_geometric_coin, torch_geometric_coin.nn, '
        'torch_geometric_coin.theory', 'scipy.stats')
    assert ours == base
    # The lazy import still happens where it is needed:
    assert imported(
        'from torch_geometric_coin.theory import clopper_pearson_lower\n'
        'clopper_pearson_lower([3], 10, 0.05)', 'scipy.stats')
