r"""The diffusion operator and its solvers."""
from ._krylov import ConvergenceError, krylov_solve
from ._diffusion_operator import DiffusionOperator, SolverStats
from ._diffusion_rows import diffusion_rows

__all__ = [
    'DiffusionOperator',
    'SolverStats',
    'ConvergenceError',
    'krylov_solve',
    'diffusion_rows',
]
