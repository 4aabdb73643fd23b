r"""Utilities."""
from ._coin_norm import coin_norm
from ._gaussian_knn_graph import gaussian_knn_graph

__all__ = [
    'coin_norm',
    'gaussian_knn_graph',
]
