import json
import math

import numpy as np
import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.nn import APPNP, GCNConv
from torch_geometric.utils import erdos_renyi_graph, to_dense_adj

from torch_geometric_coin.theory import (AxiomReport, check_axioms,
                                         format_axiom_table)

N = 12


def laplacian() -> torch.Tensor:
    torch.manual_seed(1)
    adj = to_dense_adj(erdos_renyi_graph(N, 0.3), max_num_nodes=N)[0]
    return torch.diag(adj.sum(1)) - adj.double()


def matrix_operator(mat):
    return lambda x: mat @ x


def test_heat_matrix_satisfies_all_axioms():
    lap = laplacian()
    step = torch.eye(N, dtype=torch.float64) - 0.5 / lap.diag().max() * lap
    report = check_axioms(matrix_operator(step), N,
                          make_operator=lambda k: matrix_operator(
                              torch.linalg.matrix_power(step, k)))
    assert isinstance(report, AxiomReport)
    assert {k: r.holds for k, r in report.results.items()} == {
        'comparison': True,
        'constants': True,
        'linearity': True,
        'semigroup': True,
        'symmetry': True,
    }
    assert report['linearity'].violation < 1e-12


def test_negative_entry_breaks_comparison_principle():
    lap = laplacian()
    # sigma2 * L_ii > 1 makes the explicit step's diagonal negative.
    step = torch.eye(N, dtype=torch.float64) - 2.0 / lap.diag().max() * lap
    report = check_axioms(matrix_operator(step), N)
    assert report['comparison'].holds is False
    assert report['comparison'].violation > 0.1
    assert report['constants'].holds and report['linearity'].holds
    # Only a negative entry hit by an impulse reveals a subtle violation:
    mat = torch.eye(N, dtype=torch.float64)
    mat[3, 7] = -1e-3
    report = check_axioms(matrix_operator(mat), N, trials=64)
    assert report['comparison'].holds is False
    assert report['symmetry'].holds is False


def test_nonlinear_and_asymmetric_operators():
    report = check_axioms(lambda x: x + 0.1 * x**2, N)
    assert report['linearity'].holds is False
    assert report['semigroup'].holds is None
    assert math.isnan(report['semigroup'].violation)

    mat = torch.rand(N, N, dtype=torch.float64, generator=torch.Generator()
                     .manual_seed(0))
    mat = mat / mat.sum(1, keepdim=True)  # row-stochastic, not symmetric
    report = check_axioms(matrix_operator(mat), N)
    assert report['comparison'].holds and report['constants'].holds
    assert report['symmetry'].holds is False


def test_pyg_operators():
    edge_index = erdos_renyi_graph(N, 0.3)
    report = check_axioms(APPNP(5, 0.2), edge_index,
                          make_operator=lambda k: APPNP(k, 0.2))
    # The teleport term alpha * x0 breaks the semigroup property:
    assert report['semigroup'].holds is False
    assert report['linearity'].holds and report['symmetry'].holds

    conv = GCNConv(4, 4, bias=False)
    with torch.no_grad():
        conv.lin.weight.copy_(torch.eye(4))
    data = Data(edge_index=edge_index, num_nodes=N,
                edge_weight=torch.rand(edge_index.size(1)))
    report = check_axioms(conv, data)
    assert report['comparison'].holds and report['linearity'].holds
    assert report['constants'].holds is False  # D^-1/2 A D^-1/2 1 != 1
    assert conv.lin.weight.dtype == torch.float32  # original untouched

    # A float32 function is probed in float32 with a float32 tolerance:
    report = check_axioms(lambda x: conv(x, edge_index), N,
                          dtype=torch.float32)
    assert report.atol == 1e-4 and report['linearity'].holds
    with pytest.raises(TypeError, match='dtype'):
        check_axioms(lambda x: conv(x, edge_index), N)


def test_unstable_operator_is_reported_as_infinite_violation():
    report = check_axioms(lambda x: x * float('inf'), N)
    assert report['linearity'].holds is False
    assert report['linearity'].violation == math.inf


def test_report_rendering():
    report = check_axioms(lambda x: 0.5 * x, N)
    json.dumps(report.to_dict())
    table = format_axiom_table({'half': report, 'id': check_axioms(
        lambda x: x, N)})
    assert table.splitlines()[2].startswith('| half | yes')
    assert ' NO (' in table.splitlines()[2]  # does not preserve constants
    assert len(table.splitlines()) == 4


def test_bad_input():
    with pytest.raises(ValueError, match='num_channels'):
        check_axioms(lambda x: x, N, num_channels=0)
    with pytest.raises(ValueError, match='steps'):
        check_axioms(lambda x: x, N, make_operator=lambda k: (lambda x: x),
                     steps=(0, 1))
    with pytest.raises(TypeError, match='graph'):
        check_axioms(lambda x: x, 'cora')
    with pytest.raises(ValueError, match='edge_index'):
        check_axioms(lambda x, e: x, torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match='same shape'):
        check_axioms(lambda x: x.sum(0), N)
    with pytest.raises(TypeError, match='operator'):
        check_axioms(3, N)


def test_numeric_arguments():
    ident = lambda x: x  # noqa: E731
    # numpy scalars are numbers and give the same report as Python ints:
    ref = check_axioms(ident, N, trials=3, seed=4, atol=1e-6)
    rep = check_axioms(ident, np.int64(N), trials=np.int64(3),
                       seed=np.int64(4), atol=np.float64(1e-6),
                       num_channels=np.int32(4))
    assert rep.to_dict() == ref.to_dict()
    assert check_axioms(ident, N, make_operator=lambda k: ident,
                        steps=(np.int64(1), 2))['semigroup'].note == 'K=1+2'
    for atol in (float('nan'), float('inf'), True, -1e-3):
        with pytest.raises(ValueError, match="'atol'"):
            check_axioms(ident, N, atol=atol)
    for seed in (1.5, True, 'a'):
        with pytest.raises(ValueError, match="'seed'"):
            check_axioms(ident, N, seed=seed)
    for steps in ((True, 2), (1, 2.0), 3, (1, 2, 3)):
        with pytest.raises(ValueError, match="'steps'"):
            check_axioms(ident, N, make_operator=lambda k: ident,
                         steps=steps)
    # steps without make_operator would be ignored:
    with pytest.raises(ValueError, match="'steps'.*make_operator"):
        check_axioms(ident, N, steps=(1, 2))
    for dtype in ('float32', np.float32, torch.long):
        with pytest.raises(TypeError, match="'dtype'"):
            check_axioms(ident, N, dtype=dtype)
    for graph in (True, 0, np.int64(-2)):
        with pytest.raises((TypeError, ValueError), match="'graph'"):
            check_axioms(ident, graph)
    with pytest.raises(TypeError, match=r'make_operator\(2\)'):
        check_axioms(ident, N, make_operator=lambda k: 3)


def test_graphs_are_validated():
    op = lambda x, edge_index, *w: x  # noqa: E731
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
    with pytest.raises(ValueError, match='negative'):
        check_axioms(op, torch.tensor([[0, -1], [1, 0]]))
    with pytest.raises(ValueError, match="'graph.edge_index'.*node 5"):
        check_axioms(op, Data(edge_index=torch.tensor([[0, 5], [1, 0]]),
                              num_nodes=3))
    with pytest.raises(ValueError, match="'graph.edge_index'"):
        check_axioms(op, Data(edge_index=edge_index.float(), num_nodes=3))
    with pytest.raises(ValueError, match='at least one node'):
        check_axioms(op, Data(edge_index=torch.zeros(2, 0, dtype=torch.long),
                              num_nodes=0))
    for weight in (torch.tensor([1.0, float('nan'), 1.0]), torch.ones(2),
                   torch.ones(3, dtype=torch.long)):
        with pytest.raises(ValueError, match="'graph.edge_weight'"):
            check_axioms(op, Data(edge_index=edge_index, num_nodes=3,
                                  edge_weight=weight))
    # A graph with isolated nodes beyond the largest index is fine as Data:
    report = check_axioms(op, Data(edge_index=edge_index, num_nodes=5))
    assert report.num_nodes == 5 and report['linearity'].holds


def test_shape_is_checked_on_every_call():
    # Changes the shape only on a constant input (the third call):
    def op(x):
        return x[:1] if bool((x == x[0]).all()) else x

    with pytest.raises(ValueError, match='same shape'):
        check_axioms(op, N)
