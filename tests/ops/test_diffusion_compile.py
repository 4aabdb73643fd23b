r"""The fused schemes under :func:`torch.compile` (custom operators, no
graph break): the eager results and gradients, exactly."""
import pytest
import torch
import torch.nn.functional as F
from dense_reference import random_graph

from torch_geometric_coin.ops import (
    ConvergenceError,
    DiffusionOperator,
    SolverStats,
)


def graph(symmetric, n=30):
    edge_index, weight = random_graph(n, 90, 4, symmetric)
    return DiffusionOperator.from_graph(edge_index, weight.double(), n)


def explicit_learned(op, x, rho, value):
    # Learned sigma2 and learned values of L on the operator's layout.
    learned = DiffusionOperator(op.graph[0], value, op.num_nodes, op._layout)
    return learned.explicit(x, 5, F.softplus(rho))


def implicit_learned(op, x, rho, value, stats=None):
    learned = DiffusionOperator(op.graph[0], value, op.num_nodes, op._layout)
    return learned.implicit(x, 3, 10 * F.softplus(rho), tol=1e-12,
                            stats=stats)


def explicit_fixed(op, x, rho, value):
    return op.explicit(x, 5, 0.3)


def implicit_fixed(op, x, rho, value):
    return op.implicit(x, 3, 4.0, tol=1e-12)


def run(fn, op, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(op.num_nodes, 3, generator=gen, dtype=torch.float64)
    g = torch.randn(op.num_nodes, 3, generator=gen, dtype=torch.float64)
    rho = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    # The values in the operator's COO order (DiffusionOperator permutes).
    value = torch.empty_like(op.value)
    value[op._layout.perm] = op.value
    value.requires_grad_()
    x.requires_grad_()
    out = fn(op, x, rho, value)
    (out * g).sum().backward()
    return [out.detach(), x.grad, rho.grad, value.grad]


@pytest.mark.parametrize('symmetric', [True, False])
def test_compiled_schemes_match_eager(symmetric):
    torch._dynamo.reset()
    op = graph(symmetric)
    cases = [explicit_learned, implicit_learned, explicit_fixed,
             implicit_fixed]
    for fn in cases:
        eager = run(fn, op)  # (also the warm-up)
        # Inductor once (the custom operators are opaque to it; its C++
        # code generation is what takes the time).
        backend = 'inductor' if fn is explicit_learned else 'aot_eager'
        compiled = run(torch.compile(fn, fullgraph=True, backend=backend),
                       op)
        for a, b in zip(eager, compiled):
            if a is None:
                assert b is None
            else:
                assert torch.allclose(a, b, rtol=0, atol=1e-12), fn.__name__
    # Solver statistics under torch.compile.
    stats = SolverStats()
    f = torch.compile(implicit_learned, fullgraph=True, backend='aot_eager')
    x = torch.randn(op.num_nodes, 3, dtype=torch.float64, requires_grad=True)
    rho = torch.tensor(-1.0, dtype=torch.float64)
    f(op, x, rho, op.value[op._layout.perm.argsort()], stats).sum().backward()
    assert len(stats.forward) == 3 and len(stats.adjoint) == 3


def test_compiled_without_warm_up_and_no_graph_break():
    torch._dynamo.reset()
    op = graph(True)
    x = torch.randn(op.num_nodes, 3, dtype=torch.float64)
    # A fresh operator: its symmetry and step matrix are not known yet.
    fresh = graph(True)
    out = torch.compile(lambda x: fresh.explicit(x, 5, 0.3),
                        fullgraph=True, backend='aot_eager')(x)
    assert torch.allclose(out, op.explicit(x, 5, 0.3), rtol=0, atol=1e-12)
    for fn in [explicit_fixed, explicit_learned, implicit_learned]:
        args = (op, x.clone().requires_grad_(),
                torch.tensor(-1.0, dtype=torch.float64, requires_grad=True),
                op.value.clone().requires_grad_())
        explanation = torch._dynamo.explain(fn)(*args)
        assert explanation.graph_break_count == 0
        assert explanation.graph_count == 1


def test_compiled_implicit_raises_convergence_error():
    torch._dynamo.reset()
    op = graph(False)
    x = torch.randn(op.num_nodes, 3, dtype=torch.float64)
    f = torch.compile(lambda x: op.implicit(x, 2, 50.0, tol=1e-12,
                                            max_iter=2), fullgraph=True,
                      backend='aot_eager')
    with pytest.raises(ConvergenceError, match='did not converge in 2 '):
        f(x)
