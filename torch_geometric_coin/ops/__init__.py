r"""The diffusion operator and its solvers."""
from ._krylov import ConvergenceError, krylov_solve
from ._operator import DiffusionOperator, SolverStats, validate_graph
from ._diffusion_rows import diffusion_rows

__all__ = [
    'DiffusionOperator',
    'SolverStats',
    'validate_graph',
    'ConvergenceError',
    'krylov_solve',
    'diffusion_rows',
]
