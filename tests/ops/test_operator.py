import pytest
import torch
from dense_reference import dense_laplacian, random_graph

from torch_geometric_coin.ops import (
    DiffusionOperator,
    SolverStats,
    krylov_solve,
)
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
    # One solve per step from the previous state: the counts of the same
    # solves on the dense matrix.
    counts, u = [], x.detach()
    for _ in range(3):
        u, it = krylov_solve(lambda v: A @ v, u, u, A.diagonal(), symmetric,
                             1e-12)
        counts.append(it)
    assert stats.forward == counts and min(counts) > 1
    assert stats.adjoint == []
    g = torch.randn(40, 3, dtype=torch.float64)
    (out * g).sum().backward()
    counts, lam = [], g
    for _ in range(3):
        lam, it = krylov_solve(lambda v: A.t() @ v, lam, lam, A.diagonal(),
                               symmetric, 1e-12)
        counts.append(it)
    assert stats.adjoint == counts and min(counts) > 1
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
        else:
            radius = float(torch.linalg.eigvals(L).abs().max())
        assert radius <= bound + 1e-9
        lam = op.lambda_max()
        rho = float(torch.linalg.eigvals(L.abs()).abs().max())
        if op.symmetric and n <= 512:  # exact
            true = float(torch.linalg.eigvalsh(L)[-1])
            assert abs(lam - true) <= 1e-9 * true, (lam, true)
        elif op.symmetric:  # the Collatz-Wielandt bound of rho(|L|)
            assert radius * (1 - 1e-9) <= lam <= rho * 1.03, (lam, rho)
        else:  # complex eigenvalues: Gershgorin's discs
            assert lam == bound


def test_lambda_max_on_cora(cora):
    # Cora's 'coin' Laplacian: lambda_max = 5.78 (the Gershgorin bound is
    # 11.48, which made the stable sigma2 = 0.3 look unstable).
    op = DiffusionOperator.from_graph(cora.edge_index, None, cora.num_nodes)
    L = op.matrix().to_dense().double()
    true = float(torch.linalg.eigvalsh(L)[-1])
    assert abs(true - 5.78) < 0.01
    assert true <= op.lambda_max() <= 1e-3 * true + true  # (5.783)
    assert abs(op.gershgorin_bound() - 11.48) < 0.01


def test_reweight_shares_the_layout():
    edge_index, weight = random_graph(20, 60, 7)
    op = DiffusionOperator.from_graph(edge_index, weight, 20, 'sym')
    w = torch.rand(edge_index.size(1)) + 0.5
    op2 = op.reweight(w)
    assert op2.crow is op.crow and op2.col is op.col
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


NEEDS = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1),
         (1, 1, 1)]


def _inputs(value, need, sigma2, n=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    return [x.requires_grad_(bool(need[0])),
            value.clone().requires_grad_(bool(need[1])),
            torch.tensor(sigma2, dtype=torch.float64,
                         requires_grad=bool(need[2]))]


def _only(fn, args, need):
    r""":obj:`fn` of the arguments that need gradients (the others fixed),
    and those arguments."""
    def f(*free):
        it = iter(free)
        return fn(*[next(it) if n else a for a, n in zip(args, need)])
    return f, [a for a, n in zip(args, need) if n]


@pytest.mark.parametrize('symmetric', [True, False])
def test_explicit_second_order_gradients_are_exact(symmetric):
    # A gradient penalty differentiates the backward pass: exact for every
    # combination of inputs, the step matrix of a fixed sigma2 included.
    index, value, L = laplacian(8, 16, 2, symmetric)
    for need in NEEDS:
        args = _inputs(value, need, 0.1)
        f, free = _only(lambda x, v, s: DiffusionOperator(index, v, 8)
                        .explicit(x, 3, s), args, need)
        assert torch.autograd.gradgradcheck(f, free)
    op = DiffusionOperator(index, value, 8)
    x = args[0].detach().requires_grad_()
    assert torch.autograd.gradgradcheck(lambda x: op.explicit(x, 3, 0.1),
                                        [x])
    # The penalty's gradient against dense autograd.
    v = value.clone().requires_grad_()
    s = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    g, = torch.autograd.grad(DiffusionOperator(index, v, 8).explicit(
        x, 3, s).square().sum(), x, create_graph=True)
    grads = torch.autograd.grad(g.square().sum(), [x, v, s])
    vr, sr = v.detach().requires_grad_(), s.detach().requires_grad_()
    M = torch.eye(8, dtype=torch.float64) - sr * dense(index, vr, 8)
    u = torch.linalg.matrix_power(M, 3) @ x
    gr, = torch.autograd.grad(u.square().sum(), x, create_graph=True)
    ref = torch.autograd.grad(gr.square().sum(), [x, vr, sr])
    for a, b in zip(grads, ref):
        assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize('symmetric', [True, False])
def test_implicit_second_order_gradients_are_exact(symmetric):
    index, value, _ = laplacian(8, 16, 5, symmetric)
    for need in NEEDS:
        args = _inputs(value, need, 0.8)
        f, free = _only(lambda x, v, s: DiffusionOperator(index, v, 8)
                        .implicit(x, 2, s, tol=1e-14), args, need)
        assert torch.autograd.gradgradcheck(f, free, atol=1e-6,
                                            fast_mode=True)


def _true_residual(A, b, x):
    b, x = b.detach().double(), x.detach().double()
    return float(((b - A @ x).norm(dim=0) / b.norm(dim=0)).max())


@pytest.mark.parametrize('symmetric', [True, False])
def test_implicit_float32_meets_the_true_residual_or_raises(symmetric):
    # In float32 the solver's updated residual drifts from the true one at
    # a large sigma2; the solution must meet tol in the true residual
    # (forward and adjoint solves), else raise.
    from torch_geometric_coin.ops import ConvergenceError
    edge_index, weight = random_graph(200, 1000, 0, symmetric)
    op = DiffusionOperator.from_graph(edge_index, weight, 200,
                                      dtype=torch.float32)
    L = op.matrix().to_dense().double()
    x = torch.randn(200, 3, generator=torch.Generator().manual_seed(1))
    g = torch.randn(200, 3, generator=torch.Generator().manual_seed(2))
    for sigma2, tol in [(20., 1e-6), (100., 1e-5)]:
        A = torch.eye(200, dtype=torch.float64) + sigma2 * L
        u = x.requires_grad_()
        for _ in range(2):
            out = op.implicit(u, 1, sigma2, tol=tol)
            assert _true_residual(A, u, out) <= tol
            u = out
        x.grad = None
        torch.autograd.grad(out, x, g)
        lam, = torch.autograd.grad(op.implicit(x, 1, sigma2, tol=tol), x, g)
        assert _true_residual(A.t(), g, lam) <= tol
    with pytest.raises(ConvergenceError, match=r"float32 does not meet "
                       r"tol=1e-05.*Use float64"):
        u = x.detach()
        for _ in range(3):
            u = op.implicit(u, 1, 1000., tol=1e-5)
    # float64 meets it.
    op = DiffusionOperator.from_graph(edge_index, weight.double(), 200)
    A = torch.eye(200, dtype=torch.float64) + 1000. * op.matrix().to_dense()
    u = x.detach().double()
    out = op.implicit(u, 1, 1000., tol=1e-5)
    assert _true_residual(A, u, out) <= 1e-5


@pytest.mark.parametrize('symmetric', [True, False])
def test_explicit_under_torch_func(symmetric):
    # grad, jacrev, jacfwd and vmap (over the input or the values) give the
    # eager results; the implicit scheme refuses with a clear error.
    from torch.func import grad, jacfwd, jacrev, vmap
    index, value, L = laplacian(10, 30, 3, symmetric)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(10, 3, generator=gen, dtype=torch.float64)
    g = torch.randn(10, 3, generator=gen, dtype=torch.float64)
    s = torch.tensor(0.2, dtype=torch.float64)

    def run(x, v, s):
        return DiffusionOperator(index, v, 10).explicit(x, 4, s)

    def loss(x, v, s):
        return (run(x, v, s) * g).sum()

    args = [x.clone().requires_grad_(), value.clone().requires_grad_(),
            s.clone().requires_grad_()]
    loss(*args).backward()
    eager = [a.grad for a in args]
    for got, ref in zip(grad(loss, argnums=(0, 1, 2))(x, value, s), eager):
        assert torch.allclose(got, ref, rtol=0, atol=1e-12)
    # The Jacobian in x is M^4 (times the identity over the channels).
    M4 = torch.linalg.matrix_power(torch.eye(10, dtype=torch.float64) -
                                   0.2 * L, 4)
    ref = torch.einsum('ij,cd->icjd', M4, torch.eye(3, dtype=torch.float64))
    for jac in [jacrev, jacfwd]:
        J = jac(run, argnums=(0, 1, 2))(x, value, s)
        assert torch.allclose(J[0], ref, rtol=0, atol=1e-12)
    Jv = jacrev(run, argnums=1)(x, value, s)
    assert torch.allclose(Jv, jacfwd(run, argnums=1)(x, value, s),
                          rtol=0, atol=1e-12)
    xs = torch.randn(4, 10, 3, generator=gen, dtype=torch.float64)
    out = vmap(run, in_dims=(0, None, None))(xs, value, s)
    assert torch.allclose(out, M4 @ xs, rtol=0, atol=1e-12)
    vs = value * torch.rand(4, 1, generator=gen, dtype=torch.float64)
    out = vmap(run, in_dims=(None, 0, None))(x, vs, s)
    for v, o in zip(vs, out):
        assert torch.allclose(o, run(x, v, s), rtol=0, atol=1e-12)

    op = DiffusionOperator(index, value, 10)
    with pytest.raises(NotImplementedError, match="scheme='implicit' does "
                       "not support torch.func.*scheme='explicit'"):
        grad(lambda x: op.implicit(x, 2, 1.0).sum())(x)
    with pytest.raises(NotImplementedError, match='torch.func'):
        vmap(lambda x: op.implicit(x, 2, 1.0))(xs)


def test_operator_copies_and_pickles_after_use():
    # (A copied model, e.g., the best one of a training run, keeps working.)
    import copy
    import pickle
    index, value, L = laplacian(20, 60, 0)
    op = DiffusionOperator(index, value, 20)
    x = torch.randn(20, 2, dtype=torch.float64)
    out = op.explicit(x, 3, 0.2)
    out_t = op.implicit(x, 2, 1.0, tol=1e-12)
    for other in [copy.deepcopy(op), pickle.loads(pickle.dumps(op))]:
        assert torch.equal(other.explicit(x, 3, 0.2), out)
        assert torch.allclose(other.implicit(x, 2, 1.0, tol=1e-12), out_t,
                              rtol=0, atol=1e-12)


@pytest.mark.parametrize('normalization', ['coin', 'sym', None])
def test_lambda_max_never_below_the_true_value(normalization):
    # Above 512 nodes the estimate is a Collatz-Wielandt bound: never below
    # the largest eigenvalue (an estimate below it would certify an
    # unstable step size), and within a few percent of rho(|L|).
    for seed, n, e in [(3, 600, 1500), (4, 900, 2000), (5, 1500, 6000)]:
        edge_index, weight = random_graph(n, e, seed)
        op = DiffusionOperator.from_graph(edge_index, weight.double(), n,
                                          normalization)
        L = dense_laplacian(edge_index, weight, n, normalization)
        true = float(torch.linalg.eigvalsh(L)[-1])
        rho = float(torch.linalg.eigvalsh(L.abs())[-1])
        assert true <= op.lambda_max() <= rho * 1.03
        assert not op.stable(2 / true * (1 + 1e-9))


@pytest.mark.parametrize('symmetric', [True, False])
def test_implicit_first_order_gradients_with_create_graph(symmetric):
    # create_graph=True recomputes the backward pass differentiably: its
    # first-order gradients are those of the fused adjoint solves.
    index, value, _ = laplacian(20, 60, 9, symmetric)
    x = torch.randn(20, 2, dtype=torch.float64, requires_grad=True)
    v = value.clone().requires_grad_()
    s = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    g = torch.randn(20, 2, dtype=torch.float64)
    grads = []
    for create_graph in [False, True]:
        out = DiffusionOperator(index, v, 20).implicit(x, 3, s, tol=1e-12)
        grads.append(torch.autograd.grad(out, (x, v, s), g,
                                         create_graph=create_graph))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-9)


@pytest.mark.parametrize('symmetric', [True, False])
def test_learned_sigma2_alone(symmetric):
    # A learned sigma2 on fixed values takes its own gradient path (one
    # product, no stored states): first and second order against autograd.
    index, value, _ = laplacian(10, 30, 11, symmetric)
    op = DiffusionOperator(index, value, 10)
    x = torch.randn(10, 2, dtype=torch.float64, requires_grad=True)
    s = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    runs = [lambda x, s: op.explicit(x, 4, s),
            lambda x, s: op.implicit(x, 3, s, tol=1e-13)]
    for run in runs:
        assert torch.autograd.gradcheck(run, (x, s))
        assert torch.autograd.gradgradcheck(run, (x, s), atol=1e-5)
        g = torch.randn(10, 2, dtype=torch.float64)
        ds, = torch.autograd.grad(run(x.detach(), s), s, g)
        v = value.clone().requires_grad_()  # the general path
        op_v = DiffusionOperator(index, v, 10)
        ref = op_v.explicit if run is runs[0] else op_v.implicit
        out = ref(x.detach(), 4, s) if run is runs[0] else ref(
            x.detach(), 3, s, tol=1e-13)
        assert torch.allclose(ds, torch.autograd.grad(out, s, g)[0],
                              atol=1e-8)
