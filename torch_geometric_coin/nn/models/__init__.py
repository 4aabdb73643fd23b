from .residual_convection import ResidualConvection
from .coin import COIN

__all__ = [
    'ResidualConvection',
    'COIN',
]
