import pytest
import torch

from torch_geometric_coin.ops import explicit_diffusion


@pytest.mark.parametrize('symmetric', [True, False])
def test_matches_dense_powers(random_laplacian, symmetric):
    op, lap, L = random_laplacian(40, 120, 0, symmetric)
    assert op.is_symmetric(lap) == symmetric
    x = torch.randn(40, 3, dtype=torch.float64)
    M = torch.eye(40, dtype=torch.float64) - 0.1 * L
    for K in [0, 1, 6]:
        out = explicit_diffusion(x, lap, 0.1, op, K)
        ref = torch.linalg.matrix_power(M, K) @ x
        assert torch.allclose(out, ref, atol=1e-12)


@pytest.mark.parametrize('symmetric', [True, False])
@pytest.mark.parametrize('checkpoint', [False, True])
def test_gradients_match_autograd(random_laplacian, symmetric, checkpoint):
    # Against plain autograd on dense matrices, for every combination of
    # inputs that need gradients.
    op, lap, L = random_laplacian(15, 40, 1, symmetric)
    x0 = torch.randn(15, 2, dtype=torch.float64)
    g = torch.randn(15, 2, dtype=torch.float64)
    row, col = op.row, op.col
    for need in [(1, 0, 0), (1, 0, 1), (0, 0, 1), (0, 1, 0), (1, 1, 1)]:
        x = x0.clone().requires_grad_(bool(need[0]))
        v = lap.clone().requires_grad_(bool(need[1]))
        s = torch.tensor(0.07, dtype=torch.float64,
                         requires_grad=bool(need[2]))
        (explicit_diffusion(x, v, s, op, 5, checkpoint=checkpoint) *
         g).sum().backward()

        xr = x0.clone().requires_grad_()
        vr = lap.clone().requires_grad_()
        sr = torch.tensor(0.07, dtype=torch.float64, requires_grad=True)
        Ld = torch.zeros(15, 15, dtype=torch.float64).index_put(
            (row, col), vr, accumulate=True)
        u = xr
        for _ in range(5):
            u = u - sr * (Ld @ u)
        (u * g).sum().backward()
        for t, r, n in [(x, xr, need[0]), (v, vr, need[1]), (s, sr, need[2])]:
            if n:
                assert torch.allclose(t.grad, r.grad, atol=1e-10)
            else:
                assert t.grad is None


def test_zero_steps_with_learnable_sigma2(random_laplacian):
    op, lap, _ = random_laplacian(10, 20, 3, symmetric=True)
    x = torch.randn(10, 2, dtype=torch.float64, requires_grad=True)
    s = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    out = explicit_diffusion(x, lap, s, op, 0)
    assert torch.equal(out, x)
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x)) and s.grad is None


def test_gradcheck(random_laplacian):
    op, lap, _ = random_laplacian(8, 16, 2, symmetric=False)
    x = torch.randn(8, 2, dtype=torch.float64, requires_grad=True)
    v = lap.clone().requires_grad_()
    s = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, v, s: explicit_diffusion(x, v, s, op, 4, checkpoint=True),
        (x, v, s))
    assert torch.autograd.gradcheck(
        lambda x, s: explicit_diffusion(x, lap, s, op, 4), (x, s))
