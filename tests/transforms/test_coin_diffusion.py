import pytest
import torch
from dense_reference import dense_laplacian, random_graph
from torch_geometric.data import Data

from torch_geometric_coin.nn import CoinDiffusionConv
from torch_geometric_coin.transforms import CoinDiffusion

N = 25


def graph(**attrs):
    edge_index, weight = random_graph(N, 60, 0, undirected=False)
    edge_index = torch.cat([edge_index, edge_index[:, :4]], dim=1)  # dups
    weight = torch.cat([weight, weight[:4]]).double()
    return Data(x=torch.randn(N, 3, dtype=torch.float64),
                edge_index=edge_index, **attrs), weight


def dense_operator(edge_index, weight, K, sigma2, normalization='coin'):
    L = dense_laplacian(edge_index, weight, N, normalization)
    M = torch.eye(N, dtype=torch.float64) - sigma2 * L
    return torch.linalg.matrix_power(M, K)


def as_dense(data, attr='edge_weight'):
    # Edge (j, i) holds P[i, j].
    return torch.zeros(N, N, dtype=torch.float64).index_put(
        (data.edge_index[1], data.edge_index[0]), data[attr].double(),
        accumulate=True)


@pytest.mark.parametrize('normalization', ['coin', 'sym', 'rw', None])
def test_exact_operator(normalization):
    data, weight = graph()
    data.edge_weight = weight
    num_edges = weight.numel()
    sigma2 = 0.1 if normalization is None else 0.3
    out = CoinDiffusion(K=6, sigma2=sigma2, normalization=normalization,
                        eps=None)(data)
    P = dense_operator(data.edge_index, weight, 6, sigma2, normalization)
    assert torch.allclose(as_dense(out), P, atol=1e-12)
    assert out.diffusion_bound.shape == (N, )
    assert bool((out.diffusion_bound == 0).all())
    assert out.edge_weight.dtype == torch.float64
    assert data.edge_index.size(1) == num_edges  # the input is kept


def test_propagation_matches_the_layer():
    data, weight = graph()
    data.edge_weight = weight
    out = CoinDiffusion(K=5, sigma2=0.35, eps=None)(data)
    conv = CoinDiffusionConv(K=5, sigma2=0.35)
    ref = conv(data.x, data.edge_index, weight)
    # Summing the weighted messages j -> i gives P x.
    src, dst = out.edge_index
    msg = out.edge_weight.view(-1, 1) * out.x[src]
    prop = torch.zeros_like(ref).index_add_(0, dst, msg)
    assert torch.allclose(prop, ref, atol=1e-12)


@pytest.mark.parametrize('options', [dict(), dict(eps=1e-3, topk=4)])
def test_truncation_and_bound(options):
    data, weight = graph()
    data.edge_weight = weight
    out = CoinDiffusion(K=8, **options)(data)
    P = dense_operator(data.edge_index, weight, 8, 0.35)
    err = (as_dense(out) - P).abs().sum(1)
    bound = out.diffusion_bound
    assert float(err.max()) > 0
    assert bool((err <= bound * (1 + 1e-9) + 1e-12).all())
    assert out.edge_index.size(1) < N * N
    eps = options.get('eps', 1e-4)
    assert bool((out.edge_weight.abs() >= eps).all())


def test_weight_attributes():
    # A one-dimensional 'edge_attr' holds the weights (as GDC reads them)
    # and receives the new ones.
    data, weight = graph(edge_attr=None)
    data.edge_attr = weight
    out = CoinDiffusion(K=3, eps=None)(data)
    assert 'edge_weight' not in out
    P = dense_operator(data.edge_index, weight, 3, 0.35)
    assert torch.allclose(as_dense(out, 'edge_attr'), P, atol=1e-12)
    # Edge features of the old edges are removed; no weights: ones.
    data, _ = graph()
    data.edge_attr = torch.randn(data.edge_index.size(1), 4)
    out = CoinDiffusion(K=3, eps=None)(data)
    assert 'edge_attr' not in out
    P = dense_operator(data.edge_index, None, 3, 0.35)
    assert torch.allclose(as_dense(out), P, atol=1e-6)
    assert out.edge_weight.dtype == torch.float32
    # 'edge_weight' comes before a one-dimensional 'edge_attr'.
    data, weight = graph()
    data.edge_weight, data.edge_attr = weight, torch.ones(weight.numel())
    out = CoinDiffusion(K=3, eps=None)(data)
    assert 'edge_attr' not in out
    P = dense_operator(data.edge_index, weight, 3, 0.35)
    assert torch.allclose(as_dense(out), P, atol=1e-12)


def test_repr_and_errors():
    assert str(CoinDiffusion()) == (
        "CoinDiffusion(K=20, sigma2=0.35, normalization='coin', "
        "add_self_loops=True, eps=0.0001, topk=None, max_memory=None)")
    for kwargs, match in [(dict(K=-1), "'K'"), (dict(sigma2=0), "'sigma2'"),
                          (dict(normalization='row'), "'normalization'"),
                          (dict(add_self_loops=1), "'add_self_loops'"),
                          (dict(eps=-1.), "'eps'"), (dict(topk=0), "'topk'"),
                          (dict(max_memory=0.5), "'max_memory'")]:
        with pytest.raises((ValueError, TypeError), match=match):
            CoinDiffusion(**kwargs)
    with pytest.raises(ValueError, match="'data.edge_index'"):
        CoinDiffusion()(Data(x=torch.randn(3, 2)))
    data, weight = graph()
    data.edge_weight = -weight
    with pytest.raises(ValueError, match="'edge_weight'"):
        CoinDiffusion()(data)


def test_other_edge_attributes_are_removed():
    # Attributes of the replaced edges (edge_attr, edge_type, ...) would
    # no longer match the new edges: all of them go, the weights stay.
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    data = Data(edge_index=edge_index, num_nodes=3,
                edge_weight=torch.ones(4), edge_type=torch.arange(4),
                edge_attr=torch.randn(4, 2), x=torch.randn(3, 2))
    out = CoinDiffusion(K=2, sigma2=0.3, eps=None)(data)
    assert out.edge_index.size(1) == 9 == out.edge_weight.numel()
    assert 'edge_type' not in out and 'edge_attr' not in out
    assert out.x.shape == (3, 2)
    for key in out.edge_attrs():
        if key != 'edge_index':
            assert out[key].size(0) == out.edge_index.size(1)
