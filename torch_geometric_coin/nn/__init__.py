r"""Layers, models and losses."""
from .conv import *  # noqa: F401,F403
from .models import *  # noqa: F401,F403
from .edge_weights import KernelEdgeWeight, PerEdgeWeight
from ._diffused_nll_loss import diffused_nll_loss, safe_log
from .conv import __all__ as conv_all
from .models import __all__ as models_all

__all__ = conv_all + models_all + [
    'KernelEdgeWeight',
    'PerEdgeWeight',
    'diffused_nll_loss',
    'safe_log',
]
