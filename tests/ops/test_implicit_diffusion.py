import pytest
import torch

from torch_geometric_coin.ops import (
    ConvergenceError,
    implicit_diffusion,
    krylov_solve,
)


@pytest.mark.parametrize('symmetric', [True, False])
def test_matches_dense_solve(random_laplacian, symmetric):
    op, lap, L = random_laplacian(40, 120, 0, symmetric)
    x = torch.randn(40, 3, dtype=torch.float64)
    A = torch.eye(40, dtype=torch.float64) + 5.0 * L
    ref = x
    for _ in range(3):
        ref = torch.linalg.solve(A, ref)
    out = implicit_diffusion(x, lap, 5.0, op, 3, tol=1e-12)
    assert torch.allclose(out, ref, atol=1e-9)


@pytest.mark.parametrize('symmetric', [True, False])
def test_gradients_match_dense_solve(random_laplacian, symmetric):
    op, lap, L = random_laplacian(12, 30, 1, symmetric)
    x0 = torch.randn(12, 2, dtype=torch.float64)
    g = torch.randn(12, 2, dtype=torch.float64)
    for need in [(1, 0, 0), (1, 0, 1), (0, 0, 1), (1, 1, 1)]:
        x = x0.clone().requires_grad_(bool(need[0]))
        v = lap.clone().requires_grad_(bool(need[1]))
        s = torch.tensor(2.0, dtype=torch.float64,
                         requires_grad=bool(need[2]))
        (implicit_diffusion(x, v, s, op, 3, tol=1e-13) * g).sum().backward()

        xr = x0.clone().requires_grad_()
        vr = lap.clone().requires_grad_()
        sr = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
        Ld = torch.zeros(12, 12, dtype=torch.float64).index_put(
            (op.row, op.col), vr, accumulate=True)
        u = xr
        for _ in range(3):
            u = torch.linalg.solve(torch.eye(12, dtype=torch.float64) +
                                   sr * Ld, u)
        (u * g).sum().backward()
        for t, r, n in [(x, xr, need[0]), (v, vr, need[1]), (s, sr, need[2])]:
            if n:
                assert torch.allclose(t.grad, r.grad, atol=1e-8)


def test_gradcheck(random_laplacian):
    op, lap, _ = random_laplacian(8, 16, 2, symmetric=False)
    x = torch.randn(8, 2, dtype=torch.float64, requires_grad=True)
    v = lap.clone().requires_grad_()
    s = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, v, s: implicit_diffusion(x, v, s, op, 2, tol=1e-14),
        (x, v, s))
    op, lap, _ = random_laplacian(8, 16, 3, symmetric=True)
    assert torch.autograd.gradcheck(
        lambda x, s: implicit_diffusion(x, lap, s, op, 2, tol=1e-14), (x, s))


def test_not_converging_raises(random_laplacian):
    op, lap, _ = random_laplacian(60, 200, 4)
    x = torch.randn(60, 2, dtype=torch.float64)
    with pytest.raises(ConvergenceError, match='did not converge in 1 '):
        implicit_diffusion(x, lap, 100.0, op, 1, tol=1e-10, max_iter=1)
    # An indefinite system where CG breaks down (p^T A p = 0): an error,
    # not a wrong answer.
    A = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    with pytest.raises(ConvergenceError, match='Conjugate gradients'):
        krylov_solve(lambda v: A @ v, b, torch.zeros_like(b),
                     torch.ones(2, dtype=torch.float64), True, 1e-8, 50)
