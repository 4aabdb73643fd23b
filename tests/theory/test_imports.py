import subprocess
import sys

CODE = '''
import sys
import torch_geometric, torch_geometric.nn
print('scipy.stats' in sys.modules)
import torch_geometric_coin, torch_geometric_coin.nn
import torch_geometric_coin.theory
print('scipy.stats' in sys.modules)
from torch_geometric_coin.theory import clopper_pearson_lower
clopper_pearson_lower([3], 10, 0.05)
print('scipy.stats' in sys.modules)
'''


def test_package_import_does_not_load_scipy_stats():
    # The theory modules need scipy.stats only inside the functions that use
    # it; importing the package (or its layers) must not pay for it, unless
    # PyG itself already does. One fresh interpreter checks all three steps.
    out = subprocess.run([sys.executable, '-c', CODE], capture_output=True,
                         text=True, check=True)
    base, ours, used = out.stdout.strip().splitlines()[-3:]
    assert ours == base
    # The lazy import still happens where it is needed:
    assert used == 'True'
