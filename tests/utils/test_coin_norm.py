import pytest
import torch
from dense_reference import dense_laplacian, random_graph

from torch_geometric_coin.ops import DiffusionOperator
from torch_geometric_coin.utils import coin_norm

NORMS = ['coin', 'sym', 'rw', None]


def to_dense(edge_index, value, num_nodes):
    return torch.zeros(num_nodes, num_nodes, dtype=value.dtype).index_put(
        (edge_index[1], edge_index[0]), value, accumulate=True)


@pytest.mark.parametrize('normalization', NORMS)
@pytest.mark.parametrize('add_self_loops', [True, False])
@pytest.mark.parametrize('undirected', [True, False])
def test_coin_norm_matches_definition(normalization, add_self_loops,
                                      undirected):
    edge_index, weight = random_graph(20, 60, 0, undirected)
    # Duplicates and self-loops in the input:
    edge_index = torch.cat([edge_index, edge_index[:, :4],
                            torch.tensor([[2, 5], [2, 5]])], dim=1)
    weight = torch.cat([weight, weight[:4], torch.tensor([0.5, 3.0])])
    weight = weight.double()
    index, value = coin_norm(edge_index, weight, 20, normalization,
                             add_self_loops)
    L = dense_laplacian(edge_index, weight, 20, normalization, add_self_loops)
    assert torch.allclose(to_dense(index, value, 20), L, atol=1e-12)

    # The layout: the input's off-diagonal edges in order, then one diagonal
    # entry per node.
    off = edge_index[0] != edge_index[1]
    assert torch.equal(index[:, :int(off.sum())], edge_index[:, off])
    loop = torch.arange(20)
    assert torch.equal(index[:, int(off.sum()):], torch.stack([loop, loop]))

    # The step matrix I - sigma2 L of the operator, in both layouts:
    op = DiffusionOperator.from_graph(edge_index, weight, 20, normalization,
                                      add_self_loops)
    eye = torch.eye(20, dtype=torch.float64)
    step = op.matrix(op.step_matrix(0.3)).to_dense()
    assert torch.allclose(step, eye - 0.3 * L, atol=1e-12)
    index2, step = op.step_matrix(0.3, per_edge=True)
    assert torch.equal(index2, index)
    assert torch.allclose(to_dense(index, step, 20), eye - 0.3 * L,
                          atol=1e-12)


def test_coin_norm_gradients():
    edge_index, weight = random_graph(8, 20, 1)
    w = weight.double().requires_grad_()
    s = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    op = DiffusionOperator.from_graph(edge_index, weight.double(), 8)
    for per_edge in [False, True]:
        assert torch.autograd.gradcheck(
            lambda w, s: op.reweight(w).step_matrix(
                s, per_edge=per_edge)[-1],
            (w, s))


def test_coin_norm_defaults_and_errors():
    edge_index, _ = random_graph(6, 12, 2)
    index, value = coin_norm(edge_index, dtype=torch.float64)
    assert value.dtype == torch.float64
    assert index.size(1) == edge_index.size(1) + 6  # num_nodes inferred
    # The 'coin' Laplacian has zero row sums: constants do not move.
    L = to_dense(index, value, 6)
    assert torch.allclose(L.sum(1), torch.zeros(6, dtype=torch.float64))
    with pytest.raises(ValueError, match="Unknown 'normalization'"):
        coin_norm(edge_index, normalization='foo')
