r"""Utilities."""
from .gaussian_knn_graph import gaussian_knn_graph

__all__ = [
    'gaussian_knn_graph',
]
