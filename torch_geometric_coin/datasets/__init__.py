r"""The offline data sets of the COIN paper's experiments, as PyG
:class:`~torch_geometric.data.InMemoryDataset` classes."""
from .omniglot import Omniglot
from .p1000 import P1000
from .pandemic_tgnn import PandemicTGNN
from .prostate import Prostate

__all__ = [
    'Omniglot',
    'P1000',
    'PandemicTGNN',
    'Prostate',
]
