r"""The theory of convection-diffusion networks, executable: an axiom checker
for propagation operators, regularisation as diffusion (Gaussian noise,
dropout) and certified robustness by randomized smoothing."""
from ._check_axioms import (AxiomReport, AxiomResult, check_axioms,
                            format_axiom_table)
from ._gaussian_smoothing import MonteCarloEstimate, gaussian_smoothing
from .dropout_diffusion import DropoutDiffusion, dropout_diffusion_term
from .randomized_smoothing import (RandomizedSmoothing, binomial_test_half,
                                   clopper_pearson_lower)

__all__ = [
    'check_axioms',
    'AxiomReport',
    'AxiomResult',
    'format_axiom_table',
    'gaussian_smoothing',
    'MonteCarloEstimate',
    'dropout_diffusion_term',
    'DropoutDiffusion',
    'RandomizedSmoothing',
    'clopper_pearson_lower',
    'binomial_test_half',
]
