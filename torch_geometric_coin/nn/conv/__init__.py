from .coin_diffusion_conv import CoinDiffusionConv

__all__ = [
    'CoinDiffusionConv',
]
