r"""Convection-Diffusion Networks (COIN) for PyTorch Geometric."""
import torch_geometric_coin.nn  # noqa: F401

__version__ = '0.1.0'

__all__ = ['__version__']
