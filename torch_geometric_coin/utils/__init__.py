r"""Utilities."""
from .diffusion_laplacian import diffusion_laplacian, gershgorin_bound
from .experiment_results import machine_info, summarize, write_results
from .fit_node_classifier import fit_node_classifier
from .gaussian_knn_graph import gaussian_knn_graph

__all__ = [
    'diffusion_laplacian',
    'gershgorin_bound',
    'fit_node_classifier',
    'gaussian_knn_graph',
    'summarize',
    'machine_info',
    'write_results',
]
