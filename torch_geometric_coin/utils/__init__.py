r"""Utilities."""
from ._coin_norm import coin_norm
from ._gaussian_knn_graph import gaussian_knn_graph
from ._knn_search import knn_search

__all__ = [
    'coin_norm',
    'gaussian_knn_graph',
    'knn_search',
]
