import copy
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dense_reference import random_graph

from torch_geometric.utils import coalesce

import torch_geometric_coin.nn.edge_weights as edge_weights
from torch_geometric_coin.nn import KernelEdgeWeight, PerEdgeWeight


def edge_rank(edge_index):
    r"""The reference numbering of edges: the rank of each column's
    (source, target) pair among the sorted distinct pairs (pure Python)."""
    pairs = [tuple(p) for p in edge_index.t().tolist()]
    rank = {p: k for k, p in enumerate(sorted(set(pairs)))}
    return torch.tensor([rank[p] for p in pairs], dtype=torch.long)


def with_duplicates(seed=0):
    r"""A directed graph with repeated entries of some edges, unsorted."""
    edge_index, weight = random_graph(10, 30, seed, undirected=False)
    gen = torch.Generator().manual_seed(seed)
    rep = torch.randint(edge_index.size(1), (8, ), generator=gen)
    edge_index = torch.cat([edge_index, edge_index[:, rep]], dim=1)
    weight = torch.cat([weight, torch.rand(8, generator=gen) + 0.1])
    perm = torch.randperm(edge_index.size(1), generator=gen)
    return edge_index[:, perm], weight[perm].double()


@pytest.mark.parametrize('duplicates', [False, True])
def test_per_edge_weight_parameters_belong_to_edges(duplicates):
    if duplicates:
        edge_index, weight = with_duplicates()
    else:  # a simple graph, shuffled
        edge_index, weight = random_graph(10, 30, 0, undirected=False)
        edge_index, weight = coalesce(edge_index, weight, 10)
        perm = torch.randperm(edge_index.size(1),
                              generator=torch.Generator().manual_seed(9))
        edge_index, weight = edge_index[:, perm], weight[perm].double()
    rank = edge_rank(edge_index)
    num = int(rank.max()) + 1
    assert (num < edge_index.size(1)) == duplicates  # duplicates share
    module = PerEdgeWeight(num).double()
    theta = torch.randn(num, dtype=torch.float64)
    with torch.no_grad():
        module.weight.copy_(theta)
    out = module(edge_index, weight)
    # weight[k] belongs to the k-th distinct (source, target) pair:
    assert torch.allclose(out, weight * F.softplus(theta)[rank], rtol=0,
                          atol=1e-15)
    grad_out = torch.randn(edge_index.size(1), dtype=torch.float64)
    (out * grad_out).sum().backward()
    grad = module.weight.grad.clone()

    # Any order of the same columns: the same weight per edge, and the same
    # gradient per edge (the parameter does not move with the column).
    for seed in range(3):
        perm = torch.randperm(edge_index.size(1),
                              generator=torch.Generator().manual_seed(seed))
        module.weight.grad = None
        out_p = module(edge_index[:, perm], weight[perm])
        assert torch.equal(out_p, out[perm])
        (out_p * grad_out[perm]).sum().backward()
        assert torch.allclose(module.weight.grad, grad, atol=1e-14)


def test_per_edge_weight_keeps_the_storage_order_of_coalesced_graphs():
    # A coalesced edge_index (PyG's order) is the canonical order itself:
    # weight[k] is the weight of column k, and no gather is needed.
    edge_index, weight = random_graph(12, 40, 3)
    module = PerEdgeWeight(edge_index.size(1))
    with torch.no_grad():
        module.weight.copy_(torch.randn(edge_index.size(1)))
    assert module.edge_ids(edge_index) is None
    assert torch.equal(module(edge_index, weight),
                       weight * F.softplus(module.weight))


def test_per_edge_weight_duplicates_sum_like_the_coalesced_graph():
    edge_index, weight = with_duplicates(1)
    merged_index, merged = coalesce(edge_index, weight, 10)
    module = PerEdgeWeight(merged_index.size(1)).double()
    with torch.no_grad():
        module.weight.copy_(torch.randn(merged_index.size(1)))
    # The weights of an edge's entries add up to its coalesced weight.
    summed = torch.zeros(10, 10, dtype=torch.float64).index_put(
        tuple(edge_index), module(edge_index, weight), accumulate=True)
    ref = torch.zeros(10, 10, dtype=torch.float64).index_put(
        tuple(merged_index), module(merged_index, merged))
    assert torch.allclose(summed, ref, atol=1e-14)
    # num_edges counts distinct edges, with a message saying so:
    with pytest.raises(ValueError, match=f"{merged_index.size(1)} distinct "
                       f"edges \\(in {edge_index.size(1)} columns"):
        PerEdgeWeight(edge_index.size(1))(edge_index)


def test_per_edge_weight_orders_each_graph_once(monkeypatch):
    edge_index, _ = with_duplicates(2)
    calls = []
    original = edge_weights.canonical_edge_ids

    def counting(index):
        calls.append(index)
        return original(index)

    monkeypatch.setattr(edge_weights, 'canonical_edge_ids', counting)
    module = PerEdgeWeight(int(edge_rank(edge_index).max()) + 1)
    first = module(edge_index)
    for _ in range(3):
        module(edge_index)
    assert len(calls) == 1  # the hot path does not sort again
    # A new tensor, or the same one modified in place, is ordered again:
    module(edge_index.clone())
    assert len(calls) == 2
    perm = torch.randperm(edge_index.size(1))
    with torch.no_grad():
        module.weight.copy_(torch.randn(module.num_edges))
        first = module(edge_index)  # (back to the first tensor)
        assert len(calls) == 3
        edge_index.copy_(edge_index[:, perm])
        assert torch.equal(module(edge_index), first[perm])
    assert len(calls) == 4
    # Copies of the module do not carry the graph:
    for other in [copy.deepcopy(module), pickle.loads(pickle.dumps(module))]:
        assert other._graph.key == ()
        assert torch.equal(other(edge_index), module(edge_index))


def test_kernel_edge_weight_is_order_equivariant():
    edge_index, weight = with_duplicates(4)
    x = torch.randn(10, 3, dtype=torch.float64)
    module = KernelEdgeWeight(3, 2).double()
    out = module(x, edge_index, weight)
    h = x @ module.lin.weight.t()
    ref = weight * torch.exp(-(h[edge_index[0]] - h[edge_index[1]]).square(
    ).sum(-1))
    assert torch.allclose(out, ref, atol=1e-15)
    perm = torch.randperm(edge_index.size(1))
    assert torch.equal(module(x, edge_index[:, perm], weight[perm]),
                       out[perm])


def test_edge_weight_argument_checks():
    edge_index, weight = random_graph(10, 30, 5)
    x = torch.randn(10, 3)
    per_edge = PerEdgeWeight(np.int64(edge_index.size(1)))  # numpy works
    assert per_edge.num_edges == edge_index.size(1)
    kernel = KernelEdgeWeight(np.int64(3))
    assert kernel.in_channels == 3 and kernel.out_channels == 3
    for module, args in [(per_edge, ()), (kernel, (x, ))]:
        with pytest.raises(TypeError, match="need an 'edge_index' tensor"):
            module(*args, edge_index.t().to_sparse())
        with pytest.raises(TypeError, match="integer tensor"):
            module(*args, edge_index.float())
        with pytest.raises(ValueError, match=r"shape \[2, num_edges\]"):
            module(*args, edge_index.t())
        with pytest.raises(ValueError, match="node indices outside"):
            module(*args, edge_index - 1)
        with pytest.raises(ValueError, match=r"'edge_weight' must have sh"):
            module(*args, edge_index, weight[1:])
        with pytest.raises(ValueError, match="non-negative"):
            module(*args, edge_index, -weight)
        with pytest.raises(ValueError, match="NaN or infinite"):
            module(*args, edge_index, weight * float('nan'))
        with pytest.raises(TypeError, match="'edge_weight' must be a real"):
            module(*args, edge_index, weight > 0.5)
    with pytest.raises(ValueError, match="node indices outside"):
        kernel(x[:5], edge_index)  # indices beyond x's rows
    with pytest.raises(ValueError, match=r"'x' must have shape \[num_nodes"):
        kernel(x[:, :2], edge_index)
    with pytest.raises(TypeError, match="'x' must be a floating point"):
        kernel(x.long(), edge_index)
    with pytest.raises(TypeError, match="'x' has dtype torch.float64"):
        kernel(x.double(), edge_index)
    for name, make in [('num_edges', PerEdgeWeight),
                       ('in_channels', KernelEdgeWeight)]:
        for bad in [True, -1, 2.5, float('nan'), '3']:
            if name == 'num_edges' or bad != -1:
                with pytest.raises(ValueError, match=f"'{name}' must be"):
                    make(bad)
    with pytest.raises(ValueError, match="'in_channels' must be"):
        KernelEdgeWeight(0)
    with pytest.raises(ValueError, match="'out_channels' must be"):
        KernelEdgeWeight(3, True)
