import pytest
import torch

from torch_geometric_coin.ops import ConvergenceError, krylov_solve


def textbook_pcg(A, b, tol, max_iter=1000):
    r"""Jacobi-preconditioned conjugate gradients on one column from
    :math:`\mathbf{x}_0 = \mathbf{0}`, as in Saad, *Iterative Methods for
    Sparse Linear Systems*, Algorithm 9.1; returns the solution and the
    number of iterations."""
    m_inv = 1 / A.diagonal()
    x = torch.zeros_like(b)
    r = b.clone()
    z = m_inv * r
    p = z.clone()
    rz = r @ z
    for it in range(1, max_iter + 1):
        Ap = A @ p
        alpha = rz / (p @ Ap)
        x = x + alpha * p
        r = r - alpha * Ap
        if r.norm() <= tol * b.norm():
            return x, it
        z = m_inv * r
        rz_new = r @ z
        p = z + (rz_new / rz) * p
        rz = rz_new
    raise AssertionError('textbook PCG did not converge')


def textbook_bicgstab(A, b, tol, max_iter=1000):
    r"""Preconditioned BiCGSTAB (van der Vorst, 1992; the preconditioner
    :math:`\mathbf{K} = \mathrm{diag}(\mathbf{A})` applied to the search
    directions) on one column from :math:`\mathbf{x}_0 = \mathbf{0}`."""
    k_inv = 1 / A.diagonal()
    x = torch.zeros_like(b)
    r = b.clone()
    r_hat = r.clone()
    rho = alpha = omega = 1.0
    v = p = torch.zeros_like(b)
    for it in range(1, max_iter + 1):
        rho_new = r_hat @ r
        beta = (rho_new / rho) * (alpha / omega)
        p = r + beta * (p - omega * v)
        y = k_inv * p
        v = A @ y
        alpha = rho_new / (r_hat @ v)
        s = r - alpha * v
        z = k_inv * s
        t = A @ z
        omega = (t @ s) / (t @ t)
        x = x + alpha * y + omega * z
        r = s - omega * t
        rho = rho_new
        if r.norm() <= tol * b.norm():
            return x, it
    raise AssertionError('textbook BiCGSTAB did not converge')


def badly_scaled(n, seed, symmetric):
    r"""A well-conditioned matrix scaled by :math:`\mathbf{D} =
    \mathrm{diag}(d)`, :math:`d_i \in [1, 10^3]`: Jacobi preconditioning
    undoes most of the scaling, so a wrong preconditioner changes the
    iteration count."""
    gen = torch.Generator().manual_seed(seed)
    B = torch.rand(n, n, generator=gen, dtype=torch.float64) / n
    B = (B + B.t() if symmetric else B) + torch.eye(n, dtype=torch.float64)
    d = 10**(3 * torch.rand(n, generator=gen, dtype=torch.float64))
    A = d.sqrt().view(-1, 1) * B * d.sqrt().view(1, -1)
    b = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    return A, b


@pytest.mark.parametrize('symmetric', [True, False])
def test_krylov_solve_counts_match_a_textbook_solver(symmetric):
    textbook = textbook_pcg if symmetric else textbook_bicgstab
    for seed in range(3):
        A, b = badly_scaled(40, seed, symmetric)
        x, it = krylov_solve(lambda v: A @ v, b, torch.zeros_like(b),
                             A.diagonal(), symmetric, tol=1e-10,
                             max_iter=500)
        ref = torch.linalg.solve(A, b)
        assert torch.allclose(x, ref, rtol=1e-7, atol=1e-9)
        # All columns iterate together until the last one converged.
        counts = [textbook(A, b[:, c], 1e-10)[1] for c in range(b.size(1))]
        assert it == max(counts) > 1
        assert (b - A @ x).norm(dim=0).max() <= 1e-10 * b.norm(dim=0).max()
    # A start that already meets the tolerance takes no iteration.
    x2, it2 = krylov_solve(lambda v: A @ v, b, x, A.diagonal(), symmetric,
                           tol=1e-8)
    assert it2 == 0 and torch.equal(x2, x)


@pytest.mark.parametrize('symmetric', [True, False])
def test_jacobi_preconditioner_solves_diagonal_systems_in_one_step(
        symmetric):
    # With the exact inverse as preconditioner both methods finish in one
    # iteration; a wrong (even positive definite) one does not.
    d = torch.logspace(0, 4, 25, dtype=torch.float64)
    A = torch.diag(d)
    b = torch.randn(25, 2, generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)
    x, it = krylov_solve(lambda v: A @ v, b, torch.zeros_like(b), d,
                         symmetric, tol=1e-12, max_iter=100)
    assert it == 1
    assert torch.allclose(x, b / d.view(-1, 1), rtol=1e-14, atol=0)


def dense_problem(sigma2, n=200, seed=0):
    r""":math:`\mathbf{I} + \sigma^2 \mathbf{L}` of a random graph in
    float64 and rounded to float32, and a smooth right-hand side."""
    from dense_reference import dense_laplacian, random_graph
    edge_index, weight = random_graph(n, 5 * n, seed)
    L = dense_laplacian(edge_index, weight, n, 'coin')
    A = torch.eye(n, dtype=torch.float64) + sigma2 * L
    b = torch.randn(n, 3, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)
    return A, torch.linalg.solve(A, b).float()


def test_true_residual_is_verified_and_refined_in_float32():
    # CG's updated residual drifts from the true one by about the rounding
    # unit times the condition number: float32 at sigma2 = 20 stops with a
    # true residual of 1.9e-6 > tol = 1e-6 without the final check.
    A, b = dense_problem(20.)
    A32 = A.float()
    x, it = krylov_solve(lambda v: A32 @ v, b, b, A32.diagonal(), True,
                         1e-6, 1000, matvec64=lambda v: A @ v)
    res = (b.double() - A @ x.double()).norm(dim=0) / b.double().norm(dim=0)
    assert x.dtype == torch.float32
    assert bool((res <= 1e-6).all())
    # Without a float64 product the residual is verified in float32.
    x, _ = krylov_solve(lambda v: A32 @ v, b, b, A32.diagonal(), True,
                        1e-6, 1000)
    res = (b.double() - A @ x.double()).norm(dim=0) / b.double().norm(dim=0)
    assert bool((res <= 1e-6).all())

    # Where float32 cannot represent a solution that meets the tolerance:
    # an error that says what to do.
    A, b = dense_problem(1000.)
    A32 = A.float()
    with pytest.raises(ConvergenceError, match=r"float32 does not meet "
                       r"tol=1e-05.*Use float64.*larger 'tol'"):
        krylov_solve(lambda v: A32 @ v, b, b, A32.diagonal(), True, 1e-5,
                     1000, matvec64=lambda v: A @ v)
    # In float64 it is met.
    b = b.double()
    x, _ = krylov_solve(lambda v: A @ v, b, b, A.diagonal(), True, 1e-10)
    assert bool(((b - A @ x).norm(dim=0) <= 1e-10 * b.norm(dim=0)).all())


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
