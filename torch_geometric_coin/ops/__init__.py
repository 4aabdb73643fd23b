from .csr_operator import CSROperator, LinearOperator
from .krylov_solve import ConvergenceError, krylov_solve
from .explicit_diffusion import explicit_diffusion
from .implicit_diffusion import implicit_diffusion

__all__ = [
    'CSROperator',
    'LinearOperator',
    'ConvergenceError',
    'krylov_solve',
    'explicit_diffusion',
    'implicit_diffusion',
]
