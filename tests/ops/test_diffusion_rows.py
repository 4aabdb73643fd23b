import warnings

import pytest
import torch
from dense_reference import dense_laplacian, random_graph
from torch_geometric.typing import SparseTensor

from torch_geometric_coin.nn import CoinDiffusionConv
from torch_geometric_coin.ops import diffusion_rows

N = 30
NORMS = ['coin', 'sym', 'rw', None]


def multigraph(undirected: bool, seed: int = 0):
    r"""A weighted graph with duplicate edges and self-loops (float64)."""
    edge_index, weight = random_graph(N, 70, seed, undirected=undirected)
    extra = torch.tensor([[3, 7, 7], [3, 7, 4]])  # two loops, a duplicate
    edge_index = torch.cat([edge_index, edge_index[:, :6], extra], dim=1)
    weight = torch.cat([weight, weight[:6] * 0.5,
                        torch.tensor([0.5, 2.0, 0.3])]).double()
    return edge_index, weight


def dense_power(edge_index, weight, normalization, K, sigma2,
                add_self_loops=True):
    L = dense_laplacian(edge_index, weight, N, normalization, add_self_loops)
    M = torch.eye(N, dtype=torch.float64) - sigma2 * L
    return torch.linalg.matrix_power(M, K)


def to_dense(index, value, num_rows):
    return torch.sparse_coo_tensor(index, value, (num_rows, N),
                                   check_invariants=True).to_dense()


def check_layout(index, num_rows):
    assert index.dtype == torch.long and index.size(0) == 2
    key = index[0] * N + index[1]
    assert bool((key.diff() > 0).all())  # sorted, no duplicates
    assert int(index[0].min()) >= 0 and int(index[0].max()) < num_rows


@pytest.mark.parametrize('undirected', [True, False])
@pytest.mark.parametrize('normalization', NORMS)
def test_exact_rows_match_dense(undirected, normalization):
    edge_index, weight = multigraph(undirected)
    sigma2 = 0.3 if normalization is not None else 0.1
    P = dense_power(edge_index, weight, normalization, 6, sigma2)
    for nodes in [None, torch.tensor([5, 0, 5, 29, 7])]:
        index, value, bound = diffusion_rows(
            edge_index, weight, N, nodes, K=6, sigma2=sigma2,
            normalization=normalization)
        rows = torch.arange(N) if nodes is None else nodes
        check_layout(index, rows.numel())
        assert value.dtype == torch.float64
        assert torch.allclose(to_dense(index, value, rows.numel()), P[rows],
                              atol=1e-12)
        assert bound.shape == (rows.numel(), )
        assert bool((bound == 0).all())


@pytest.mark.parametrize('add_self_loops', [True, False])
def test_unweighted_and_self_loops(add_self_loops):
    edge_index, _ = multigraph(False, seed=1)
    P = dense_power(edge_index, None, 'sym', 4, 0.4, add_self_loops)
    index, value, bound = diffusion_rows(edge_index, K=4, sigma2=0.4,
                                         normalization='sym',
                                         add_self_loops=add_self_loops)
    assert value.dtype == torch.get_default_dtype()
    assert torch.allclose(to_dense(index, value, N).double(), P, atol=1e-5)
    assert bool((bound == 0).all())


def test_matches_the_layer():
    edge_index, weight = multigraph(True, seed=2)
    x = torch.randn(N, 3, dtype=torch.float64)
    conv = CoinDiffusionConv(K=5, sigma2=0.35)
    index, value, _ = diffusion_rows(edge_index, weight, N, K=5,
                                     sigma2=0.35)
    assert torch.allclose(to_dense(index, value, N) @ x,
                          conv(x, edge_index, weight), atol=1e-12)


def test_sparse_adjacency_inputs():
    edge_index, weight = multigraph(False, seed=3)
    ref = diffusion_rows(edge_index, weight, N, K=3)
    adj_t = SparseTensor(row=edge_index[1], col=edge_index[0], value=weight,
                         sparse_sizes=(N, N))
    coo = torch.sparse_coo_tensor(edge_index.flip(0), weight, (N, N),
                                  check_invariants=True)
    for adj in [adj_t, coo, coo.to_sparse_csr()]:
        index, value, bound = diffusion_rows(adj, K=3)
        assert torch.equal(index, ref[0])
        assert torch.allclose(value, ref[1], atol=1e-12)


def l1_errors(edge_index, weight, normalization, K, sigma2, nodes, **kwargs):
    P = dense_power(edge_index, weight, normalization, K, sigma2)
    index, value, bound = diffusion_rows(
        edge_index, weight, N, nodes, K=K, sigma2=sigma2,
        normalization=normalization, **kwargs)
    check_layout(index, nodes.numel())
    err = (to_dense(index, value, nodes.numel()) - P[nodes]).abs().sum(1)
    return index, value, bound, err


@pytest.mark.parametrize('undirected', [True, False])
@pytest.mark.parametrize('normalization', NORMS)
@pytest.mark.parametrize('options', [dict(eps=2e-3), dict(topk=4),
                                     dict(eps=1e-3, topk=3)])
def test_truncation_error_within_bound(undirected, normalization, options):
    edge_index, weight = multigraph(undirected)
    nodes = torch.tensor([0, 5, 5, 17, 29])
    sigma2 = 0.3 if normalization is not None else 0.1
    index, value, bound, err = l1_errors(edge_index, weight, normalization,
                                         8, sigma2, nodes, **options)
    assert bool((err <= bound * (1 + 1e-9) + 1e-12).all())
    assert bool((bound > 0).all())  # something was dropped in each row
    assert float(err.max()) > 1e-4  # (the test sees truncation)
    if 'eps' in options:
        assert bool((value.abs() >= options['eps']).all())
    if 'topk' in options:
        counts = torch.bincount(index[0], minlength=nodes.numel())
        assert int(counts.max()) <= options['topk']


def test_bound_with_negative_step_matrix_and_scalar_norm():
    # sigma2 * lambda_max close to 2: I - sigma2 L has negative entries, so
    # the dropped mass grows through the steps.
    edge_index, weight = random_graph(N, 70, 4)
    weight = weight.double()
    L = dense_laplacian(edge_index, weight, N, 'sym')
    sigma2 = 1.9 / float(torch.linalg.eigvalsh(L)[-1])
    M = torch.eye(N, dtype=torch.float64) - sigma2 * L
    assert float(M.min()) < 0
    nodes = torch.tensor([1, 2, 3])
    _, _, bound, err = l1_errors(edge_index, weight, 'sym', 6, sigma2, nodes,
                                 topk=2)
    assert bool((err <= bound * (1 + 1e-9) + 1e-12).all())
    # A budget below the per-node weights (5 * 30 * 8 bytes) falls back to
    # the scalar norm ||M||_inf^m: a true, looser bound.
    _, _, scalar, err2 = l1_errors(edge_index, weight, 'sym', 6, sigma2,
                                   nodes, topk=2, max_memory=1100)
    assert torch.allclose(err2, err, atol=1e-12)
    assert bool((err <= scalar * (1 + 1e-9)).all())
    assert bool((scalar >= bound * (1 - 1e-9)).all())
    assert float((scalar - bound).max()) > 0


def test_bound_zero_when_nothing_dropped():
    edge_index, weight = multigraph(True)
    nodes = torch.tensor([2, 9])
    P = dense_power(edge_index, weight, 'coin', 5, 0.35)
    index, value, bound = diffusion_rows(edge_index, weight, N, nodes, K=5,
                                         topk=N, eps=1e-300)
    assert torch.equal(bound, torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(to_dense(index, value, 2), P[nodes], atol=1e-12)


@pytest.mark.parametrize('options', [dict(), dict(eps=1e-3),
                                     dict(topk=5, eps=1e-4)])
def test_chunking_gives_the_same_result(options):
    edge_index, weight = multigraph(False)
    ref = diffusion_rows(edge_index, weight, N, K=7, **options)
    out = diffusion_rows(edge_index, weight, N, K=7, max_memory=30000,
                         **options)
    assert torch.equal(out[0], ref[0])
    assert torch.allclose(out[1], ref[1], rtol=1e-12, atol=0)
    assert torch.allclose(out[2], ref[2], rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="'max_memory'"):
        diffusion_rows(edge_index, weight, N, K=7, max_memory=500, **options)


def test_trivial_cases():
    edge_index, weight = multigraph(True)
    nodes = torch.tensor([4, 1, 4])
    index, value, bound = diffusion_rows(edge_index, weight, N, nodes, K=0,
                                         eps=0.5)
    assert torch.equal(index, torch.stack([torch.arange(3), nodes]))
    assert torch.equal(value, torch.ones(3, dtype=torch.float64))
    assert torch.equal(bound, torch.zeros(3, dtype=torch.float64))
    index, value, bound = diffusion_rows(edge_index, weight, N,
                                         torch.tensor([], dtype=torch.long))
    assert index.shape == (2, 0) and value.numel() == bound.numel() == 0
    # A graph without edges: every row stays a unit row; 'num_nodes' is
    # inferred from 'edge_index' when not given.
    empty = torch.empty(2, 0, dtype=torch.long)
    index, value, _ = diffusion_rows(empty, None, 3, K=4)
    assert torch.equal(index, torch.arange(3).repeat(2, 1))
    assert torch.allclose(value, torch.ones(3))
    index, _, _ = diffusion_rows(torch.tensor([[0], [4]]), K=1)
    assert int(index[0].max()) == 4


def test_stability_rule_of_the_layer():
    edge_index, weight = multigraph(True)
    with pytest.warns(UserWarning, match='unstable'):
        diffusion_rows(edge_index, weight, N, K=2, sigma2=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        diffusion_rows(edge_index, weight, N, K=2, sigma2=0.35)
    with pytest.warns(UserWarning, match='unstable'), \
            pytest.raises(FloatingPointError, match='sigma2'):
        diffusion_rows(edge_index, weight.float(), N, K=40, sigma2=50.0)
    # Truncation keeps an overflowed (NaN) entry, for the check to see it:
    from torch_geometric_coin.ops._diffusion_rows import _truncate
    crow, col = torch.tensor([0, 3]), torch.tensor([0, 1, 2])
    val = torch.tensor([float('nan'), 1e-9, 0.5])
    for eps, topk in ((1e-4, None), (None, 1), (1e-4, 1)):
        _, _, kept, _ = _truncate(crow, col, val.clone(), eps, topk)
        assert bool(kept.isnan().any()), (eps, topk)


@pytest.mark.parametrize('kwargs, match', [
    (dict(K=-1), "'K'"), (dict(K=2.5), "'K'"), (dict(sigma2=0.), "'sigma2'"),
    (dict(sigma2=float('nan')), "'sigma2'"),
    (dict(normalization='col'), "'normalization'"),
    (dict(add_self_loops='no'), "'add_self_loops'"),
    (dict(eps=0.), "'eps'"), (dict(eps=-1e-3), "'eps'"),
    (dict(topk=0), "'topk'"), (dict(topk=2.0), "'topk'"),
    (dict(max_memory=0), "'max_memory'"), (dict(num_nodes=-1), "'num_nodes'"),
    (dict(num_nodes=5), "'edge_index'"),
    (dict(nodes=torch.tensor([0, N])), "'nodes'"),
    (dict(nodes=torch.tensor([-1])), "'nodes'"),
    (dict(nodes=torch.tensor([0.5])), "'nodes'"),
    (dict(nodes=torch.zeros(2, 2, dtype=torch.long)), "'nodes'"),
    (dict(nodes='all'), "'nodes'"),
    (dict(edge_weight=-torch.ones(1)), "'edge_weight'"),
])
def test_argument_errors(kwargs, match):
    edge_index, weight = multigraph(True)
    args = dict(edge_index=edge_index, edge_weight=weight, num_nodes=N)
    if 'edge_weight' in kwargs:
        kwargs = dict(kwargs, edge_weight=kwargs['edge_weight'].expand(
            edge_index.size(1)).double())
    with pytest.raises((ValueError, TypeError), match=match):
        diffusion_rows(**{**args, **kwargs})


def test_edge_index_errors():
    with pytest.raises(ValueError, match="'edge_index'"):
        diffusion_rows(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="'edge_index'"):
        diffusion_rows(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="'edge_index'"):
        diffusion_rows(torch.tensor([[0, -1], [1, 0]]))
    with pytest.raises(ValueError, match="'edge_weight'"):
        diffusion_rows(torch.tensor([[0, 1], [1, 0]]), torch.ones(3))


def test_float32_rows_and_bound():
    edge_index, weight = multigraph(False, seed=5)
    nodes = torch.tensor([3, 11])
    P = dense_power(edge_index, weight, 'coin', 8, 0.35)
    index, value, bound = diffusion_rows(edge_index, weight.float(), N,
                                         nodes, K=8, eps=1e-3)
    assert value.dtype == bound.dtype == torch.float32
    err = (to_dense(index, value, 2).double() - P[nodes]).abs().sum(1)
    assert bool((err <= bound.double() + 1e-6).all())
    assert float(err.max()) > 1e-4


@pytest.mark.parametrize('options', [dict(eps=2e-3), dict(topk=3),
                                     dict(eps=1e-3, topk=4)])
def test_bound_holds_per_row_in_blocks_with_sym(options):
    # A 'sym' Laplacian (rows of |M| of unequal sums: per-node weights), a
    # budget that splits every product into blocks of a few rows and is
    # below the per-node weights (the scalar norm instead), and truncation:
    # the bound holds for every row, and each row's bound is its own.
    edge_index, weight = multigraph(True, seed=3)
    nodes = torch.tensor([0, 2, 5, 5, 9, 13, 17, 21, 25, 29])
    _, _, bound, err = l1_errors(edge_index, weight, 'sym', 40, 0.4, nodes,
                                 **options)
    _, _, small, err2 = l1_errors(edge_index, weight, 'sym', 40, 0.4, nodes,
                                  max_memory=9000, **options)
    assert torch.allclose(err2, err, atol=1e-12)
    for b in [bound, small]:
        assert bool((err <= b * (1 + 1e-9) + 1e-12).all())
    assert bool((small >= bound * (1 - 1e-9)).all())
    assert float(err.max()) > 1e-4
    # Row by row: the bound of a row does not depend on the other rows.
    for i in [0, 4, 9]:
        _, _, one = diffusion_rows(edge_index, weight, N, nodes[i:i + 1],
                                   K=40, sigma2=0.4, normalization='sym',
                                   max_memory=9000, **options)
        assert torch.allclose(one, small[i:i + 1], rtol=1e-12)
