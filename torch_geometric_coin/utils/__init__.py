from .diffusion_laplacian import diffusion_laplacian, gershgorin_bound
from .fit_node_classifier import fit_node_classifier

__all__ = [
    'diffusion_laplacian',
    'gershgorin_bound',
    'fit_node_classifier',
]
