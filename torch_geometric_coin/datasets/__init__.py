r"""Loaders of the offline data sets of the COIN paper's experiments."""
from .dataset_root import dataset_root, dataset_file, writable_copy
from .omniglot import Omniglot, OmniglotRun, load_omniglot, load_omniglot_runs
from .england_covid import CovidMobility, load_england_covid
from .pandemic_tgnn import load_pandemic_tgnn
from .prostate import load_prostate

__all__ = [
    'dataset_root',
    'dataset_file',
    'writable_copy',
    'Omniglot',
    'OmniglotRun',
    'load_omniglot',
    'load_omniglot_runs',
    'CovidMobility',
    'load_england_covid',
    'load_pandemic_tgnn',
    'load_prostate',
]
