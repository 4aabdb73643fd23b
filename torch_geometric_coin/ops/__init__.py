r"""The diffusion operator and its solvers."""
from ._krylov import ConvergenceError, krylov_solve
from ._diffusion_operator import DiffusionOperator, SolverStats

__all__ = [
    'DiffusionOperator',
    'SolverStats',
    'ConvergenceError',
    'krylov_solve',
]
