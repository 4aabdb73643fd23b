r"""Transforms."""
from .coin_diffusion import CoinDiffusion
from .gaussian_knn_graph import GaussianKNNGraph

__all__ = [
    'CoinDiffusion',
    'GaussianKNNGraph',
]
