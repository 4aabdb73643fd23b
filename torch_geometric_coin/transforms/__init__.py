r"""Transforms."""
from .gaussian_knn_graph import GaussianKNNGraph

__all__ = [
    'GaussianKNNGraph',
]
