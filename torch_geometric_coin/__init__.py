r"""Convection-Diffusion Networks (COIN) for PyTorch Geometric."""
import torch_geometric_coin.datasets  # noqa: F401
import torch_geometric_coin.nn  # noqa: F401
import torch_geometric_coin.ops  # noqa: F401
import torch_geometric_coin.theory  # noqa: F401
import torch_geometric_coin.transforms  # noqa: F401
import torch_geometric_coin.utils  # noqa: F401

__version__ = '0.1.0'

__all__ = ['__version__']
