import pytest
import torch
from dense_reference import dense_laplacian, random_graph

from torch_geometric_coin.ops import DiffusionOperator, SolverStats
from torch_geometric_coin.utils import coin_norm


def laplacian(num_nodes, num_edges, seed, symmetric=True):
    r"""A random weighted Laplacian: its entries in the layout of
    :func:`coin_norm`, and the dense matrix."""
    edge_index, weight = random_graph(num_nodes, num_edges, seed, symmetric)
    index, value = coin_norm(edge_index, weight.double(), num_nodes, None)
    L = dense_laplacian(edge_index, weight, num_nodes, None)
    return index, value, L


def dense(index, value, n):
    return torch.zeros(n, n, dtype=value.dtype).index_put(
        (index[1], index[0]), value, accumulate=True)


@pytest.mark.parametrize('symmetric', [True, False])
def test_explicit_matches_dense_powers(symmetric):
    index, value, L = laplacian(40, 120, 0, symmetric)
    op = DiffusionOperator(index, value, 40)
    assert op.symmetric == symmetric
    assert torch.allclose(op.matrix().to_dense(), L, atol=1e-12)
    x = torch.randn(40, 3, dtype=torch.float64)
    M = torch.eye(40, dtype=torch.float64) - 0.1 * L
    for K in [0, 1, 6]:
        ref = torch.linalg.matrix_power(M, K) @ x
        assert torch.allclose(op.explicit(x, K, 0.1), ref, atol=1e-12)
    # The step matrix of a fixed sigma2 is kept; another sigma2 rebuilds it.
    M2 = torch.eye(40, dtype=torch.float64) - 0.3 * L
    assert torch.allclose(op.explicit(x, 3, 0.3),
                          torch.linalg.matrix_power(M2, 3) @ x, atol=1e-12)
    assert torch.allclose(op.explicit(x.float(), 3, 0.3).double(),
                          torch.linalg.matrix_power(M2, 3) @ x, atol=1e-4)


@pytest.mark.parametrize('symmetric', [True, False])
def test_explicit_gradients_match_autograd(symmetric):
    # Against plain autograd on dense matrices, for every combination of
    # inputs that need gradients.
    index, value, _ = laplacian(15, 40, 1, symmetric)
    x0 = torch.randn(15, 2, dtype=torch.float64)
    g = torch.randn(15, 2, dtype=torch.float64)
    for need in [(1, 0, 0), (1, 0, 1), (0, 0, 1), (0, 1, 0), (1, 1, 1)]:
        x = x0.clone().requires_grad_(bool(need[0]))
        v = value.clone().requires_grad_(bool(need[1]))
        s = torch.tensor(0.07, dtype=torch.float64,
                         requires_grad=bool(need[2]))
        out = DiffusionOperator(index, v, 15).explicit(x, 5, s)
        (out * g).sum().backward()

        xr = x0.clone().requires_grad_()
        vr = value.clone().requires_grad_()
        sr = torch.tensor(0.07, dtype=torch.float64, requires_grad=True)
        u = xr
        for _ in range(5):
            u = u - sr * (dense(index, vr, 15) @ u)
        (u * g).sum().backward()
        for t, r, n in [(x, xr, need[0]), (v, vr, need[1]), (s, sr, need[2])]:
            if n:
                assert torch.allclose(t.grad, r.grad, atol=1e-10)
            else:
                assert t.grad is None


def test_explicit_gradcheck_and_zero_steps():
    index, value, _ = laplacian(8, 16, 2, symmetric=False)
    x = torch.randn(8, 2, dtype=torch.float64, requires_grad=True)
    v = value.clone().requires_grad_()
    s = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, v, s: DiffusionOperator(index, v, 8).explicit(x, 4, s),
        (x, v, s), fast_mode=True)
    out = DiffusionOperator(index, value, 8).explicit(x, 0, s)
    assert out is x


@pytest.mark.parametrize('symmetric', [True, False])
def test_implicit_matches_dense_solve_and_counts_iterations(symmetric):
    index, value, L = laplacian(40, 120, 3, symmetric)
    op = DiffusionOperator(index, value, 40)
    x = torch.randn(40, 3, dtype=torch.float64, requires_grad=True)
    A = torch.eye(40, dtype=torch.float64) + 5.0 * L
    ref = x.detach()
    for _ in range(3):
        ref = torch.linalg.solve(A, ref)
    stats = SolverStats()
    out = op.implicit(x, 3, 5.0, tol=1e-12, stats=stats)
    assert torch.allclose(out, ref, atol=1e-9)
    assert len(stats.forward) == 3 and stats.adjoint == []
    assert all(1 <= it <= 200 for it in stats.forward)
    g = torch.randn(40, 3, dtype=torch.float64)
    (out * g).sum().backward()
    assert len(stats.adjoint) == 3 and all(it >= 1 for it in stats.adjoint)
    ref_grad = g
    for _ in range(3):
        ref_grad = torch.linalg.solve(A.t(), ref_grad)
    assert torch.allclose(x.grad, ref_grad, atol=1e-9)
    assert 'forward=' in repr(stats)


@pytest.mark.parametrize('symmetric', [True, False])
def test_implicit_gradients_match_dense_solve(symmetric):
    index, value, _ = laplacian(12, 30, 4, symmetric)
    x0 = torch.randn(12, 2, dtype=torch.float64)
    g = torch.randn(12, 2, dtype=torch.float64)
    for need in [(1, 0, 0), (1, 0, 1), (0, 0, 1), (1, 1, 1)]:
        x = x0.clone().requires_grad_(bool(need[0]))
        v = value.clone().requires_grad_(bool(need[1]))
        s = torch.tensor(2.0, dtype=torch.float64,
                         requires_grad=bool(need[2]))
        out = DiffusionOperator(index, v, 12).implicit(x, 3, s, tol=1e-13)
        (out * g).sum().backward()

        xr = x0.clone().requires_grad_()
        vr = value.clone().requires_grad_()
        sr = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
        u = xr
        for _ in range(3):
            u = torch.linalg.solve(torch.eye(12, dtype=torch.float64) +
                                   sr * dense(index, vr, 12), u)
        (u * g).sum().backward()
        for t, r, n in [(x, xr, need[0]), (v, vr, need[1]), (s, sr, need[2])]:
            if n:
                assert torch.allclose(t.grad, r.grad, atol=1e-8)


def test_implicit_gradcheck():
    for seed, symmetric in [(5, False), (6, True)]:
        index, value, _ = laplacian(8, 16, seed, symmetric)
        x = torch.randn(8, 2, dtype=torch.float64, requires_grad=True)
        v = value.clone().requires_grad_()
        s = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda x, v, s: DiffusionOperator(index, v, 8).implicit(
                x, 2, s, tol=1e-14), (x, v, s), fast_mode=True)


@pytest.mark.parametrize('normalization', ['coin', 'sym', 'rw', None])
@pytest.mark.parametrize('undirected', [True, False])
def test_lambda_max_estimate(normalization, undirected):
    # Exact on small graphs (dense), close on large ones (Lanczos), and the
    # Gershgorin bound always bounds the spectrum.
    for seed, n, e in [(0, 15, 40), (1, 40, 100), (2, 700, 3000)]:
        edge_index, weight = random_graph(n, e, seed, undirected)
        op = DiffusionOperator.from_graph(edge_index, weight.double(), n,
                                          normalization)
        L = dense_laplacian(edge_index, weight, n, normalization)
        bound = op.gershgorin_bound()
        if op.symmetric:
            radius = float(torch.linalg.eigvalsh(L).abs().max())
        elif n > 100:
            continue  # (slow)
        else:
            radius = float(torch.linalg.eigvals(L).abs().max())
        assert radius <= bound + 1e-9
        lam = op.lambda_max()
        if op.symmetric:
            true = float(torch.linalg.eigvalsh(L)[-1])
            assert abs(lam - true) <= 1e-3 * true, (lam, true)
        else:
            assert lam == bound


def test_lambda_max_on_cora(cora):
    # Cora's 'coin' Laplacian: lambda_max = 5.78 (the Gershgorin bound is
    # 11.48, which made the stable sigma2 = 0.3 look unstable).
    op = DiffusionOperator.from_graph(cora.edge_index, None, cora.num_nodes)
    L = op.matrix().to_dense().double()
    true = float(torch.linalg.eigvalsh(L)[-1])
    assert abs(true - 5.78) < 0.01
    assert abs(op.lambda_max() - true) <= 1e-4 * true
    assert abs(op.gershgorin_bound() - 11.48) < 0.01


def test_reweight_shares_the_layout():
    edge_index, weight = random_graph(20, 60, 7)
    op = DiffusionOperator.from_graph(edge_index, weight, 20, 'sym')
    w = torch.rand(edge_index.size(1)) + 0.5
    op2 = op.reweight(w)
    assert op2._layout is op._layout
    ref = DiffusionOperator.from_graph(edge_index, w, 20, 'sym')
    assert torch.allclose(op2.value, ref.value)
    assert torch.allclose(op.reweight(None).value,
                          DiffusionOperator.from_graph(edge_index, None, 20,
                                                       'sym').value)
    with pytest.raises(ValueError, match="'edge_weight' must have shape"):
        op.reweight(w[:-1])
    index, value = coin_norm(edge_index, weight, 20)
    with pytest.raises(ValueError, match="built by"):
        DiffusionOperator(index, value, 20).reweight(w)
    with pytest.raises(ValueError, match='one diagonal entry per node'):
        DiffusionOperator(edge_index, weight, 20)
