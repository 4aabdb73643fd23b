import pytest
import torch

from torch_geometric_coin.ops import ConvergenceError, krylov_solve


@pytest.mark.parametrize('symmetric', [True, False])
def test_krylov_solve_and_iteration_count(symmetric):
    gen = torch.Generator().manual_seed(0)
    B = torch.rand(30, 30, generator=gen, dtype=torch.float64)
    A = (B + B.t() if symmetric else B) + 30 * torch.eye(30,
                                                         dtype=torch.float64)
    b = torch.randn(30, 3, generator=gen, dtype=torch.float64)
    x, it = krylov_solve(lambda v: A @ v, b, torch.zeros_like(b),
                         A.diagonal(), symmetric, tol=1e-12, max_iter=200)
    assert torch.allclose(A @ x, b, atol=1e-9)
    assert 1 <= it <= 60
    # A start that already meets the tolerance takes no iteration.
    x2, it2 = krylov_solve(lambda v: A @ v, b, x, A.diagonal(), symmetric,
                           tol=1e-8)
    assert it2 == 0 and torch.equal(x2, x)


def test_krylov_solve_errors():
    gen = torch.Generator().manual_seed(1)
    B = torch.rand(40, 40, generator=gen, dtype=torch.float64)
    A = B @ B.t() + 0.01 * torch.eye(40, dtype=torch.float64)
    b = torch.randn(40, 2, generator=gen, dtype=torch.float64)
    with pytest.raises(ConvergenceError, match='did not converge in 1 '):
        krylov_solve(lambda v: A @ v, b, torch.zeros_like(b), A.diagonal(),
                     True, tol=1e-10, max_iter=1)
    # An indefinite system where CG breaks down (p^T A p = 0): an error,
    # not a wrong answer.
    A = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    with pytest.raises(ConvergenceError, match='Conjugate gradients'):
        krylov_solve(lambda v: A @ v, b, torch.zeros_like(b),
                     torch.ones(2, dtype=torch.float64), True, 1e-8, 50)
