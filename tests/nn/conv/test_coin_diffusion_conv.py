import copy
import warnings

import numpy as np
import pytest
import torch
from dense_reference import (
    dense_diffusion,
    dense_implicit,
    dense_laplacian,
    random_graph,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from torch_geometric.typing import SparseTensor
from torch_geometric.utils import coalesce, to_torch_coo_tensor

from torch_geometric_coin.nn import (
    CoinDiffusionConv,
    KernelEdgeWeight,
    PerEdgeWeight,
)

NORMS = ['coin', 'sym', 'rw', None]


@pytest.mark.parametrize('normalization', NORMS)
@pytest.mark.parametrize('add_self_loops', [True, False])
@pytest.mark.parametrize('undirected', [True, False])
def test_matches_dense_reference(normalization, add_self_loops, undirected):
    edge_index, weight = random_graph(30, 80, 0, undirected)
    x = torch.randn(30, 4, dtype=torch.float64)
    for K, sigma2, w in [(0, 0.3, weight), (1, 0.3, None), (7, 0.2, weight)]:
        conv = CoinDiffusionConv(K, sigma2, normalization,
                                 add_self_loops=add_self_loops,
                                 stability='ignore')
        out = conv(x, edge_index, w)
        ref = dense_diffusion(x, edge_index, w, normalization, K, sigma2,
                              add_self_loops)
        assert out.dtype == torch.float64 and out.size() == (30, 4)
        assert torch.allclose(out, ref, atol=1e-10)

    # float32 against the float64 reference:
    conv = CoinDiffusionConv(10, 0.3, normalization,
                             add_self_loops=add_self_loops,
                             stability='ignore')
    out = conv(x.float(), edge_index, weight)
    ref = dense_diffusion(x, edge_index, weight, normalization, 10, 0.3,
                          add_self_loops)
    assert (out.double() - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_paper_per_node_update():
    # u_i += sigma2 * sum_j A_hat_ij (u_j - u_i) with the GCN normalisation.
    edge_index, _ = random_graph(12, 30, 1)
    u = torch.randn(12, 3, dtype=torch.float64)
    deg = torch.bincount(edge_index[1], minlength=12).double() + 1
    expected = u.clone()
    for e in range(edge_index.size(1)):
        j, i = edge_index[0, e], edge_index[1, e]
        a = 1 / (deg[i] * deg[j]).sqrt()
        expected[i] += 0.35 * a * (u[j] - u[i])
    out = CoinDiffusionConv(1, 0.35, stability='ignore')(u, edge_index)
    assert torch.allclose(out, expected, atol=1e-12)


@pytest.mark.parametrize('normalization', ['coin', 'sym'])
def test_cora_matches_dense_reference(cora, normalization):
    x = torch.softmax(torch.randn(cora.num_nodes, 7), dim=-1)
    conv = CoinDiffusionConv(K=20, sigma2=0.35, normalization=normalization,
                             stability='ignore')
    out = conv(x, cora.edge_index)
    ref = dense_diffusion(x, cora.edge_index, None, normalization, 20, 0.35)
    assert (out.double() - ref).abs().max() <= 1e-5


@pytest.mark.parametrize('normalization', NORMS)
def test_sparse_layouts(normalization):
    edge_index, weight = random_graph(20, 60, 2, undirected=False)
    x = torch.randn(20, 5)
    conv = CoinDiffusionConv(5, 0.3, normalization, stability='ignore')
    out = conv(x, edge_index, weight)

    adj_t = to_torch_coo_tensor(edge_index.flip(0), weight, (20, 20))
    assert torch.allclose(conv(x, adj_t), out, atol=1e-6)
    assert torch.allclose(conv(x, adj_t.to_sparse_csr()), out, atol=1e-6)
    assert torch.allclose(conv(x, adj_t.to_sparse_csc()), out, atol=1e-6)
    if SparseTensor is not None and hasattr(SparseTensor, 'from_edge_index'):
        try:
            adj = SparseTensor(row=edge_index[1], col=edge_index[0],
                               value=weight, sparse_sizes=(20, 20))
        except ImportError:  # torch-sparse is not installed
            return
        assert torch.allclose(conv(x, adj), out, atol=1e-6)


def test_mini_batch_of_disjoint_graphs():
    ei1, w1 = random_graph(10, 30, 3)
    ei2, w2 = random_graph(15, 40, 4)
    x1, x2 = torch.randn(10, 3), torch.randn(15, 3)
    conv = CoinDiffusionConv(6, 0.3)
    out = conv(torch.cat([x1, x2]), torch.cat([ei1, ei2 + 10], 1),
               torch.cat([w1, w2]))
    assert torch.allclose(out[:10], conv(x1, ei1, w1), atol=1e-6)
    assert torch.allclose(out[10:], conv(x2, ei2, w2), atol=1e-6)


# The axioms of the paper, as property tests #################################

graphs = st.tuples(st.integers(2, 25), st.integers(0, 80),
                   st.integers(0, 10**6))


def _graph(params):
    num_nodes, num_edges, seed = params
    edge_index, weight = random_graph(num_nodes, num_edges, seed)
    return num_nodes, edge_index, weight, seed


@settings(max_examples=25, deadline=None)
@given(graphs, st.sampled_from(['coin', 'rw', None]), st.integers(0, 8),
       st.floats(0.01, 1.0))
def test_preserves_constants(params, normalization, K, sigma2):
    num_nodes, edge_index, weight, _ = _graph(params)
    if normalization is None and weight is not None:
        weight = weight / (weight.sum() + 1)  # keep sigma2 * L small
    x = torch.full((num_nodes, 2), 3.0, dtype=torch.float64)
    x[:, 1] = -1.5
    conv = CoinDiffusionConv(K, sigma2, normalization, stability='ignore')
    assert torch.allclose(conv(x, edge_index, weight), x, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(graphs, st.sampled_from(['coin', 'rw']), st.integers(0, 8),
       st.floats(0.01, 1.0))
def test_comparison_principle(params, normalization, K, sigma2):
    num_nodes, edge_index, weight, seed = _graph(params)
    conv = CoinDiffusionConv(K, sigma2, normalization, stability='ignore')
    if normalization == 'coin':
        # Monotone when every diagonal entry of I - sigma2 L is >= 0.
        L = dense_laplacian(edge_index, weight, num_nodes, 'coin')
        off_row_sum = L.diagonal()
        if float(sigma2 * off_row_sum.max()) > 1:
            sigma2 = float(1 / off_row_sum.max())
            conv = CoinDiffusionConv(K, sigma2, 'coin', stability='ignore')
    gen = torch.Generator().manual_seed(seed)
    u0 = torch.randn(num_nodes, 3, generator=gen, dtype=torch.float64)
    v0 = u0 + torch.rand(num_nodes, 3, generator=gen, dtype=torch.float64)
    uK, vK = conv(u0, edge_index, weight), conv(v0, edge_index, weight)
    assert bool((uK <= vK + 1e-12).all())


def test_comparison_principle_fails_when_unstable():
    # The test above can fail: past the bound, the order is not kept.
    edge_index = torch.tensor([[0, 1], [1, 0]])
    conv = CoinDiffusionConv(1, 1.5, 'rw', add_self_loops=False,
                             stability='ignore')
    u0 = torch.tensor([[0.0], [0.0]])
    v0 = torch.tensor([[1.0], [0.0]])
    assert not bool((conv(u0, edge_index) <= conv(v0, edge_index)).all())


@settings(max_examples=25, deadline=None)
@given(graphs, st.sampled_from(NORMS), st.integers(0, 6),
       st.floats(0.01, 0.5), st.floats(-3, 3))
def test_linearity(params, normalization, K, sigma2, alpha):
    num_nodes, edge_index, weight, seed = _graph(params)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_nodes, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(num_nodes, 3, generator=gen, dtype=torch.float64)
    conv = CoinDiffusionConv(K, sigma2, normalization, stability='ignore')
    lhs = conv(alpha * x + y, edge_index, weight)
    rhs = alpha * conv(x, edge_index, weight) + conv(y, edge_index, weight)
    assert torch.allclose(lhs, rhs, atol=1e-8)


@settings(max_examples=25, deadline=None)
@given(graphs, st.sampled_from(NORMS), st.integers(0, 5),
       st.integers(0, 5), st.floats(0.01, 0.5))
def test_semigroup(params, normalization, K1, K2, sigma2):
    num_nodes, edge_index, weight, seed = _graph(params)
    x = torch.randn(num_nodes, 2, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(seed))

    def conv(K):
        return CoinDiffusionConv(K, sigma2, normalization, stability='ignore')

    both = conv(K2)(conv(K1)(x, edge_index, weight), edge_index, weight)
    assert torch.allclose(both, conv(K1 + K2)(x, edge_index, weight),
                          atol=1e-8)


@settings(max_examples=25, deadline=None)
@given(graphs, st.sampled_from(['coin', 'rw']), st.integers(0, 10),
       st.floats(0.01, 1.0))
def test_probability_rows_sum_to_one(params, normalization, K, sigma2):
    num_nodes, edge_index, weight, seed = _graph(params)
    gen = torch.Generator().manual_seed(seed)
    prob = torch.randn(num_nodes, 4, generator=gen).softmax(dim=-1)
    conv = CoinDiffusionConv(K, sigma2, normalization, stability='ignore')
    out = conv(prob, edge_index, weight)
    assert torch.allclose(out.sum(dim=-1), torch.ones(num_nodes), atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(graphs, st.sampled_from(['coin', 'sym', None]), st.integers(1, 5),
       st.floats(0.01, 0.5))
def test_symmetric_operators_are_self_adjoint(params, normalization, K,
                                              sigma2):
    num_nodes, edge_index, weight, seed = _graph(params)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_nodes, 1, generator=gen, dtype=torch.float64)
    y = torch.randn(num_nodes, 1, generator=gen, dtype=torch.float64)
    conv = CoinDiffusionConv(K, sigma2, normalization, stability='ignore')
    Mx, My = conv(x, edge_index, weight), conv(y, edge_index, weight)
    lhs, rhs = (Mx * y).sum(), (x * My).sum()
    # Relative to the terms that cancel (unstable steps grow them); the
    # float32 weights of both directions of an edge, summed over duplicates
    # in another order, differ by a rounding of float32:
    scale = float(Mx.norm() * y.norm() + x.norm() * My.norm())
    assert abs(float(lhs - rhs)) <= 1e-6 * scale


# Gradients, learnable weights, caching ######################################


def test_gradcheck_x_and_sigma2():
    edge_index, weight = random_graph(8, 20, 5)
    x = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    conv = CoinDiffusionConv(4, 0.3, learn_sigma2=True).double()
    assert torch.autograd.gradcheck(
        lambda x, raw: _with_param(conv, 'sigma2_raw', raw, x, edge_index,
                                   weight), (x, conv.sigma2_raw.detach()
                                             .clone().requires_grad_()))


def _with_param(conv, name, value, *args, **kwargs):
    conv = copy.deepcopy(conv)
    delattr(conv, name)
    setattr(conv, name, value)
    return conv(*args, **kwargs)


@pytest.mark.parametrize('normalization', NORMS)
@pytest.mark.parametrize('cached', [False, True])
def test_gradcheck_edge_weights_through_the_normalisation(normalization,
                                                          cached):
    edge_index, weight = random_graph(8, 20, 6)
    x = torch.randn(8, 3, dtype=torch.float64)
    conv = CoinDiffusionConv(3, 0.2, normalization, cached=cached,
                             stability='ignore')
    w = weight.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda w: conv(x, edge_index, w), (w, ))
    # Against autograd through the dense definition:
    g = torch.randn(8, 3, dtype=torch.float64)
    w.grad = None
    (conv(x, edge_index, w) * g).sum().backward()
    wr = weight.double().requires_grad_()
    (dense_diffusion(x, edge_index, wr, normalization, 3, 0.2) *
     g).sum().backward()
    assert torch.allclose(w.grad, wr.grad, atol=1e-10)


def test_learned_edge_weights_compose_with_the_layer():
    edge_index, weight = random_graph(10, 30, 8)
    x = torch.randn(10, 3, dtype=torch.float64)
    per_edge = PerEdgeWeight(edge_index.size(1)).double()  # no duplicates
    conv = CoinDiffusionConv(4, 0.3, cached=True)
    ref = CoinDiffusionConv(4, 0.3)(x, edge_index, weight)
    # Initialised to the input weights:
    out = conv(x, edge_index, per_edge(edge_index, weight))
    assert torch.allclose(out, ref, atol=1e-12)
    # Trained weights change the output and receive gradients, also from
    # the cached layout:
    for _ in range(2):
        out = conv(x, edge_index, per_edge(edge_index, weight))
        out.square().sum().backward()
        assert per_edge.weight.grad.abs().sum() > 0
        with torch.no_grad():
            per_edge.weight.add_(per_edge.weight.grad)
        per_edge.zero_grad()
    new = per_edge(edge_index, weight).detach()
    assert torch.allclose(conv(x, edge_index, new),
                          CoinDiffusionConv(4, 0.3)(x, edge_index, new),
                          atol=1e-12)
    assert not torch.allclose(conv(x, edge_index, new), ref)
    # The cached operator holds no autograd graph of the learned weights:
    assert not conv._prepare.op.value.requires_grad
    assert torch.allclose(conv(x, edge_index), CoinDiffusionConv(4, 0.3)(
        x, edge_index), atol=1e-12)

    kernel = KernelEdgeWeight(3).double()
    with torch.no_grad():
        kernel.lin.weight.zero_()  # exp(0) = 1: the input weights
    assert torch.allclose(conv(x, edge_index, kernel(x, edge_index, weight)),
                          ref, atol=1e-12)


def test_learn_sigma2_is_positive_and_trains():
    edge_index, _ = random_graph(10, 30, 9)
    conv = CoinDiffusionConv(2, 0.3, learn_sigma2=True)
    assert abs(float(conv.sigma2) - 0.3) < 1e-6
    with torch.no_grad():
        conv.sigma2_raw.fill_(-30.)
    assert float(conv.sigma2) > 0
    conv.reset_parameters()
    x = torch.randn(10, 2)
    conv(x, edge_index).square().sum().backward()
    assert conv.sigma2_raw.grad is not None
    assert float(conv.sigma2_raw.grad) != 0


def test_caching():
    edge_index, weight = random_graph(10, 30, 10)
    x = torch.randn(10, 3)
    conv = CoinDiffusionConv(3, 0.3, cached=True)
    out = conv(x, edge_index, weight)
    assert conv._prepare.op is not None
    # The same edges in a new tensor (a copy, a sparse layout) are fine;
    # another graph, or the same edges in another order, would silently get
    # the cached operator, so they are refused:
    assert torch.equal(conv(x, edge_index.clone(), weight), out)
    perm = torch.randperm(edge_index.size(1))
    for other, w in [(edge_index[:, :2], weight[:2]),
                     (edge_index[:, perm], weight[perm])]:
        with pytest.raises(ValueError, match='but was given another graph'):
            conv(x, other, w)
    conv.reset_parameters()
    assert conv._prepare.op is None

    # Tensors edited in place are another graph (or new weights) for every
    # layer: the cached one refuses edited edges and takes edited weights,
    # the uncached one prepares them again.
    for cached in [True, False]:
        conv = CoinDiffusionConv(3, 0.3, cached=cached)
        index, w = edge_index.clone(), weight.clone()
        conv(x, index, w)
        w.mul_(2.0)
        ref = CoinDiffusionConv(3, 0.3)(x, index.clone(), w.clone())
        assert torch.allclose(conv(x, index, w), ref, atol=1e-6)
        index[1, 0] = (index[1, 0] + 1) % 10
        ref = CoinDiffusionConv(3, 0.3)(x, index.clone(), w.clone())
        if cached:
            with pytest.raises(ValueError, match='edited in place'):
                conv(x, index, w)
        else:
            assert torch.allclose(conv(x, index, w), ref, atol=1e-6)

    # Parameters are never cached:
    conv = CoinDiffusionConv(3, 0.3, cached=True, learn_sigma2=True)
    out1 = conv(x, edge_index, weight)
    with torch.no_grad():
        conv.sigma2_raw.add_(0.5)
    out2 = conv(x, edge_index, weight)
    fresh = CoinDiffusionConv(3, 0.3, learn_sigma2=True)
    fresh.load_state_dict(conv.state_dict())
    assert not torch.allclose(out1, out2)
    assert torch.allclose(out2, fresh(x, edge_index, weight), atol=1e-6)

    with pytest.raises(ValueError, match='cached graph has 10 nodes'):
        conv(torch.randn(11, 3), edge_index, weight)


def test_repr_and_state_dict():
    conv = CoinDiffusionConv()
    assert str(conv) == ("CoinDiffusionConv(K=20, sigma2=0.35, "
                         "normalization='coin')")
    conv = CoinDiffusionConv(5, 0.1, 'rw', learn_sigma2=True, dropout=0.2,
                             scheme='implicit')
    assert str(conv) == ("CoinDiffusionConv(K=5, sigma2=0.1, "
                         "normalization='rw', dropout=0.2, "
                         "learn_sigma2=True, scheme='implicit')")
    with torch.no_grad():
        conv.sigma2_raw.fill_(1.0)
    other = CoinDiffusionConv(5, 0.1, 'rw', learn_sigma2=True, dropout=0.2,
                              scheme='implicit').eval()
    other.load_state_dict(conv.state_dict())
    conv.eval()
    edge_index, _ = random_graph(10, 30, 11)
    x = torch.randn(10, 4)
    assert torch.equal(conv(x, edge_index), other(x, edge_index))
    assert not torch.equal(conv(x, edge_index), CoinDiffusionConv(
        5, 0.1, 'rw', scheme='implicit')(x, edge_index))


def test_dropout_before_each_step():
    edge_index, _ = random_graph(10, 30, 12)
    x = torch.rand(10, 3) + 1
    conv = CoinDiffusionConv(3, 0.3, dropout=0.5)
    conv.eval()
    assert torch.allclose(conv(x, edge_index),
                          CoinDiffusionConv(3, 0.3)(x, edge_index))
    conv.train()
    torch.manual_seed(0)
    out = conv(x, edge_index)
    assert not torch.allclose(out, conv.eval()(x, edge_index))


def test_torch_compile():
    # The diffusion is one graph break; compiled and eager agree, for every
    # learned part, cached or not.
    import torch._dynamo as dynamo
    edge_index, weight = random_graph(10, 30, 13)
    x = torch.randn(10, 3)
    per_edge = PerEdgeWeight(edge_index.size(1))
    for kwargs, learned in [(dict(), False), (dict(cached=True), False),
                            (dict(learn_sigma2=True), False),
                            (dict(cached=True), True),
                            (dict(scheme='implicit'), True)]:
        dynamo.reset()
        conv = CoinDiffusionConv(5, 0.3, **kwargs)

        def run(module, conv=conv, learned=learned):
            w = per_edge(edge_index, weight) if learned else weight
            x_ = x.clone().requires_grad_()
            out = module(x_, edge_index, w)
            out.square().sum().backward()
            return out, x_.grad

        ref, ref_grad = run(conv)
        out, grad = run(torch.compile(conv, backend='aot_eager'))
        assert torch.allclose(out, ref, atol=1e-6)
        assert torch.allclose(grad, ref_grad, atol=1e-6)


def test_explainer():
    from torch_geometric.explain import Explainer, GNNExplainer

    from torch_geometric_coin.nn import COIN
    edge_index, _ = random_graph(12, 40, 14)
    x = torch.randn(12, 6)
    model = COIN(6, 3, K=4)
    explainer = Explainer(
        model, GNNExplainer(epochs=3), explanation_type='model',
        node_mask_type='attributes', edge_mask_type='object',
        model_config=dict(mode='multiclass_classification',
                          task_level='node', return_type='log_probs'))
    explanation = explainer(x, edge_index, index=0)
    assert explanation.edge_mask.size() == (edge_index.size(1), )
    assert bool(torch.isfinite(explanation.edge_mask).all())
    assert float(explanation.edge_mask.abs().sum()) > 0
    # Explain mode runs the same operator through `message`:
    from torch_geometric.explain.algorithm.utils import clear_masks, set_masks
    conv = model.diffusion
    p = torch.rand(12, 3)
    set_masks(conv, torch.nn.Parameter(torch.full((edge_index.size(1), ),
                                                  1e4)), edge_index)
    assert conv.explain
    explained = conv(p, edge_index)
    clear_masks(conv)
    assert torch.allclose(explained, conv(p, edge_index), atol=1e-6)
    # A zero mask removes the edges: nothing is diffused.
    set_masks(conv, torch.nn.Parameter(torch.full((edge_index.size(1), ),
                                                  -1e4)), edge_index)
    assert torch.allclose(conv(p, edge_index), p, atol=1e-6)
    clear_masks(conv)


def test_explainer_mask_with_self_loops():
    # N unit self-loops leave the operator unchanged when normalization=None;
    # masking the same edge must then give the same output, also when the
    # graph has exactly as many loops as nodes, interleaved (coalesced).
    from torch_geometric.explain.algorithm.utils import clear_masks, set_masks
    from torch_geometric.utils import add_self_loops, coalesce
    edge_index, _ = random_graph(10, 30, 16)
    looped = coalesce(add_self_loops(edge_index, num_nodes=10)[0])
    assert looped.size(1) == edge_index.size(1) + 10
    x = torch.rand(10, 3)
    conv = CoinDiffusionConv(4, 0.2, normalization=None)
    outs = []
    for ei in [edge_index, looped]:
        off = ei[0] != ei[1]
        mask = torch.full((ei.size(1), ), 1e4)
        first = int(off.nonzero()[0])  # the first off-diagonal edge
        mask[first] = -1e4
        set_masks(conv, torch.nn.Parameter(mask), ei)
        outs.append(conv(x, ei))
        clear_masks(conv)
    assert not torch.allclose(outs[0], conv(x, edge_index), atol=1e-4)
    assert torch.allclose(outs[0], outs[1], atol=1e-5)


# Stability and bad input ####################################################


def test_paper_setting_on_cora_warns_at_the_callers_line(cora):
    # Cora's 'coin' Laplacian has lambda_max = 5.78: sigma2 = 0.35 is just
    # past the explicit scheme's limit (2.02 > 2), 0.3 is within it.
    from torch_geometric_coin.nn import COIN
    x = torch.rand(cora.num_nodes, 7)
    with pytest.warns(UserWarning, match='0.35 \\* 5.78') as record:
        CoinDiffusionConv(20, 0.35)(x, cora.edge_index)
    assert record[0].filename == __file__
    model = COIN(cora.num_features, 7, K=20, sigma2=0.35)
    with pytest.warns(UserWarning, match='unstable') as record:
        for _ in range(3):
            model(cora.x, cora.edge_index)  # through COIN.forward
    assert record[0].filename == __file__
    assert len(record) == 1  # once per layer, not at every call
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        for sigma2 in [0.2, 0.3]:
            CoinDiffusionConv(20, sigma2, stability='raise')(
                x, cora.edge_index)


def test_stability_check():
    edge_index, _ = random_graph(20, 60, 15)
    x = torch.randn(20, 2)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        CoinDiffusionConv(3, 0.1, 'rw')(x, edge_index)  # 0.1 * 2 <= 2
    with pytest.warns(UserWarning,
                      match=r'sigma2 \* lambda_max = 1.5 \* 1.8 = 2.7 > 2'):
        CoinDiffusionConv(3, 1.5, 'rw')(x, edge_index)
    with pytest.raises(ValueError, match='unstable'):
        CoinDiffusionConv(3, 1.5, 'sym', stability='raise')(x, edge_index)

    # The warning is right: the explicit scheme blows up past the limit.
    big = CoinDiffusionConv(15, 10., 'coin', stability='ignore')
    assert big(x, edge_index).abs().max() > 1e6 * x.abs().max()
    # ... and it never returns a silent inf or NaN, cached or not:
    for cached in [False, True]:
        with pytest.raises(FloatingPointError, match='overflowed after 200'):
            CoinDiffusionConv(200, 10., 'coin', cached=cached,
                              stability='ignore')(x, edge_index)
    # NaN that came in goes out, without a misleading error:
    nan = x.clone()
    nan[0, 0] = float('nan')
    out = CoinDiffusionConv(3, 0.3, 'coin', stability='ignore')(nan,
                                                                edge_index)
    assert bool(out.isnan().any()) and bool(torch.isfinite(out[:, 1]).all())


def test_bad_input():
    edge_index, weight = random_graph(10, 30, 16)
    x = torch.randn(10, 3)
    conv = CoinDiffusionConv(3, 0.3)
    with pytest.raises(ValueError, match="'x' must be a 2-D floating"):
        conv(torch.randn(10), edge_index)
    with pytest.raises(ValueError, match="'x' must be a 2-D floating"):
        conv(torch.ones(10, 3, dtype=torch.long), edge_index)
    with pytest.raises(ValueError, match=r"shape \[2, num_edges\]"):
        conv(x, edge_index.t())
    with pytest.raises(TypeError, match="'edge_index' must be an integer"):
        conv(x, edge_index.float())
    with pytest.raises(ValueError, match=r"outside \[0, 9\]"):
        conv(x, edge_index + 1)
    with pytest.raises(ValueError, match=r"outside \[0, 9\]"):
        conv(x, edge_index - 1)
    with pytest.raises(ValueError, match="'edge_weight' must be non-neg"):
        conv(x, edge_index, -weight)
    with pytest.raises(ValueError, match="'edge_weight' contains NaN"):
        conv(x, edge_index, weight * float('nan'))
    with pytest.raises(ValueError, match="'edge_weight' must have shape"):
        conv(x, edge_index, weight[:-1])
    with pytest.raises(ValueError, match=r'shape \[10, 10\]'):
        conv(x, to_torch_coo_tensor(edge_index, size=(12, 12)))
    with pytest.raises(TypeError, match='Unsupported adjacency type'):
        conv(x, edge_index.tolist())
    for bad in [0., -1., float('nan'), float('inf'), True, '0.3']:
        with pytest.raises(ValueError, match="'sigma2' must be a finite"):
            CoinDiffusionConv(3, bad)
    for bad in [-1, 2.5, True]:
        with pytest.raises(ValueError, match="'K' must be an integer >= 0"):
            CoinDiffusionConv(bad)
    with pytest.raises(ValueError, match="Unknown 'normalization'"):
        CoinDiffusionConv(normalization='foo')
    with pytest.raises(ValueError, match="'dropout' must be"):
        CoinDiffusionConv(dropout=1.0)
    with pytest.raises(ValueError, match="Unknown 'stability'"):
        CoinDiffusionConv(stability='loud')
    with pytest.raises(ValueError, match="aggr='add'"):
        CoinDiffusionConv(aggr='mean')  # would be accepted and ignored
    with pytest.raises(ValueError, match="flow='source_to_target'"):
        CoinDiffusionConv(flow='target_to_source')
    # MessagePassing options that the fused operator would ignore:
    for name, value in [('node_dim', 0), ('decomposed_layers', 2),
                        ('aggr_kwargs', {'semi_grad': True})]:
        with pytest.raises(ValueError, match=f"only supports {name}="):
            CoinDiffusionConv(**{name: value})
    CoinDiffusionConv(node_dim=-2, decomposed_layers=1)  # the defaults
    # Solver options are refused by the explicit scheme, which has none:
    for kwargs in [dict(tol=1e-8), dict(max_iter=10)]:
        with pytest.raises(ValueError, match="scheme='implicit' only"):
            CoinDiffusionConv(**kwargs)
    assert CoinDiffusionConv(scheme='implicit').tol == 1e-5
    # A flag given as a string would count as True:
    for name in ['add_self_loops', 'cached', 'learn_sigma2']:
        with pytest.raises(TypeError, match=f"'{name}' must be True or"):
            CoinDiffusionConv(**{name: 'False'})
    assert not CoinDiffusionConv(cached=np.bool_(False)).cached
    assert CoinDiffusionConv(scheme='implicit', max_iter=7).max_iter == 7
    # numpy scalars are numbers:
    conv = CoinDiffusionConv(np.int64(3), np.float32(0.25))
    assert conv.K == 3 and conv.sigma2 == 0.25
    assert torch.allclose(conv(x, edge_index),
                          CoinDiffusionConv(3, 0.25)(x, edge_index))


@pytest.mark.parametrize('normalization', NORMS)
def test_degenerate_graphs(normalization):
    x = torch.randn(6, 3)
    conv = CoinDiffusionConv(5, 0.3, normalization, stability='ignore')
    # No edges at all: nothing moves.
    empty = torch.empty(2, 0, dtype=torch.long)
    assert torch.allclose(conv(x, empty), x)
    # Isolated nodes keep their values; self-loops and duplicates work.
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 2, 3], [1, 0, 0, 2, 1, 1, 3]])
    out = conv(x, edge_index)
    assert bool(torch.isfinite(out).all())
    assert torch.allclose(out[4:], x[4:])
    ref = dense_diffusion(x, edge_index, None, normalization, 5, 0.3)
    assert torch.allclose(out.double(), ref, atol=1e-5)
    # Zero-weight edges are no edges: nothing moves.
    out = conv(x, edge_index, torch.zeros(edge_index.size(1)))
    assert torch.allclose(out, x)


def test_dtypes():
    edge_index, weight = random_graph(20, 60, 17)
    x = torch.randn(20, 3, dtype=torch.float64)
    conv = CoinDiffusionConv(10, 0.3)
    out64 = conv(x, edge_index, weight)
    assert out64.dtype == torch.float64
    for dtype in [torch.float32, torch.bfloat16, torch.float16]:
        out = conv(x.to(dtype), edge_index, weight)
        assert out.dtype == dtype
        assert bool(torch.isfinite(out).all())
        assert torch.allclose(out.double(), out64, atol=5e-2)


# Fused, unfused, implicit and mini-batch paths ##############################


def _grads(fn, x, weight, params, g):
    x = x.clone().requires_grad_()
    weight = weight.clone().requires_grad_()
    out = fn(x, weight)
    (out * g).sum().backward()
    grads = [x.grad, weight.grad] + [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    return out, grads


@pytest.mark.parametrize('normalization', NORMS)
@pytest.mark.parametrize('undirected', [True, False])
def test_fused_operator_matches_the_propagate_definition(normalization,
                                                         undirected):
    # The forward pass is K `propagate` steps (`_propagate_steps`, what
    # PyG's explainers run), computed by the fused operator: outputs and
    # gradients of x, sigma2 and edge weights agree.
    edge_index, weight = random_graph(25, 70, 20, undirected)
    # With duplicate edges and self-loops, which both must sum:
    edge_index = torch.cat([edge_index, edge_index[:, :5],
                            torch.tensor([[3, 4], [3, 4]])], dim=1)
    weight = torch.cat([weight, weight[:5], torch.tensor([0.5, 2.0])])
    weight = weight.double()
    x = torch.randn(25, 3, dtype=torch.float64)
    g = torch.randn(25, 3, dtype=torch.float64)
    for kwargs in [dict(), dict(learn_sigma2=True), dict(dropout=0.3)]:
        conv = CoinDiffusionConv(6, 0.2, normalization, stability='ignore',
                                 **kwargs).double()
        params = list(conv.parameters())

        def definition(x, w):
            op = conv._prepare(edge_index, w, x.size(0), x.dtype)
            return conv._propagate_steps(x, op, conv.sigma2)

        torch.manual_seed(1)  # the same dropout masks in both
        out1, g1 = _grads(lambda x, w: conv(x, edge_index, w), x, weight,
                          params, g)
        torch.manual_seed(1)
        out2, g2 = _grads(definition, x, weight, params, g)
        assert torch.allclose(out1, out2, atol=1e-12)
        assert len(g1) == 2 + len(params)
        for a, b in zip(g1, g2):
            assert torch.allclose(a, b, atol=1e-10)
    ref = dense_diffusion(x, edge_index, weight, normalization, 6, 0.2)
    out = CoinDiffusionConv(6, 0.2, normalization,
                            stability='ignore')(x, edge_index, weight)
    assert torch.allclose(out, ref, atol=1e-12)


@pytest.mark.parametrize('normalization', NORMS)
@pytest.mark.parametrize('undirected', [True, False])
def test_implicit_matches_dense_solve(normalization, undirected):
    edge_index, weight = random_graph(30, 80, 21, undirected)
    # One learned weight per distinct edge (see PerEdgeWeight):
    edge_index, weight = coalesce(edge_index, weight, 30)
    x = torch.randn(30, 3, dtype=torch.float64)
    L = dense_laplacian(edge_index, weight, 30, normalization)
    ref = dense_implicit(x, L, 4, 2.0)
    conv = CoinDiffusionConv(4, 2.0, normalization, scheme='implicit',
                             tol=1e-12)
    assert torch.allclose(conv(x, edge_index, weight), ref, atol=1e-9)
    # Learnable sigma2 and edge weights: gradients against dense autograd.
    conv = CoinDiffusionConv(2, 2.0, normalization, scheme='implicit',
                             tol=1e-13, learn_sigma2=True).double()
    per_edge = PerEdgeWeight(edge_index.size(1)).double()
    theta = torch.randn(edge_index.size(1), dtype=torch.float64) * 0.3
    with torch.no_grad():
        per_edge.weight.copy_(theta)
    (conv(x, edge_index, per_edge(edge_index, weight)) ** 2).sum().backward()
    t = theta.clone().requires_grad_()
    s = torch.tensor(2.0, dtype=torch.float64).requires_grad_()
    L = dense_laplacian(edge_index, weight.double() *
                        torch.nn.functional.softplus(t), 30, normalization)
    (dense_implicit(x, L, 2, s) ** 2).sum().backward()
    assert torch.allclose(per_edge.weight.grad, t.grad, atol=1e-8)
    sig = torch.nn.functional.softplus(conv.sigma2_raw.detach())
    assert torch.allclose(conv.sigma2_raw.grad,
                          s.grad * torch.sigmoid(conv.sigma2_raw.detach()),
                          atol=1e-8) and abs(float(sig) - 2.0) < 1e-6


@pytest.mark.parametrize('normalization', ['coin', 'rw'])
def test_implicit_is_unconditionally_stable(normalization):
    edge_index, _ = random_graph(40, 120, 22)
    x = torch.randn(40, 3)
    explicit = CoinDiffusionConv(10, 100., normalization, stability='ignore')
    with pytest.raises(FloatingPointError, match='overflowed'):
        CoinDiffusionConv(200, 100., normalization,
                          stability='ignore')(x, edge_index)
    assert explicit(x, edge_index).abs().max() > 1e6 * x.abs().max()
    implicit = CoinDiffusionConv(10, 100., normalization, scheme='implicit')
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no stability warning
        out = implicit(x, edge_index)
    # A maximum principle: the values stay within those of the input.
    assert float(out.abs().max()) <= float(x.abs().max()) * (1 + 1e-4)
    assert "scheme='implicit'" in str(implicit)


def test_implicit_errors():
    from torch_geometric_coin.ops import ConvergenceError
    edge_index, _ = random_graph(30, 90, 23)
    x = torch.randn(30, 2)
    with pytest.raises(ConvergenceError, match='did not converge in 2 '):
        CoinDiffusionConv(3, 100., scheme='implicit', max_iter=2,
                          tol=1e-6)(x, edge_index)
    with pytest.raises(ValueError, match="Unknown 'scheme'"):
        CoinDiffusionConv(scheme='crank')
    with pytest.raises(ValueError, match="'tol' must be a finite number"):
        CoinDiffusionConv(scheme='implicit', tol=0.)
    with pytest.raises(ValueError, match="'max_iter' must be an integer"):
        CoinDiffusionConv(scheme='implicit', max_iter=0)


def test_neighbor_loader_matches_full_graph():
    # With all neighbours over K + 1 hops, the sampled subgraph holds every
    # edge and degree that the K steps at the seed nodes depend on.
    from torch_geometric.data import Data
    from torch_geometric.loader import NeighborLoader
    edge_index, weight = random_graph(60, 150, 24)
    # float64: the implicit solves' tol=1e-10 is below float32's rounding.
    data = Data(x=torch.randn(60, 4, dtype=torch.float64),
                edge_index=edge_index, edge_weight=weight.double())
    for scheme_kwargs in [dict(), dict(scheme='implicit', tol=1e-10)]:
        conv = CoinDiffusionConv(3, 0.3, stability='ignore', **scheme_kwargs)
        full = conv(data.x, edge_index, data.edge_weight)
        loader = NeighborLoader(data, num_neighbors=[-1] * 4, batch_size=16)
        seen = 0
        for batch in loader:
            out = conv(batch.x, batch.edge_index, batch.edge_weight)
            n = batch.batch_size
            assert torch.allclose(out[:n], full[batch.n_id[:n]], atol=1e-5)
            seen += n
        assert seen == 60


def test_no_host_sync_on_the_hot_path():
    # A cached layer in the stable regime reads nothing back from the device
    # in its forward and backward passes: no `.item()`, `bool()`, `float()`
    # of a tensor (all of which dispatch `aten._local_scalar_dense`).
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountSyncs(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default:
                self.count += 1
            return func(*args, **(kwargs or {}))

    edge_index, weight = random_graph(50, 200, 30)
    x = torch.randn(50, 4, requires_grad=True)
    for kwargs in [dict(), dict(normalization='rw'), dict(dropout=0.2)]:
        conv = CoinDiffusionConv(10, 0.3, cached=True, **kwargs)
        conv(x, edge_index, weight).sum().backward()  # prepares the graph
        with CountSyncs() as mode:
            conv(x, edge_index, weight).sum().backward()
        assert mode.count == 0, (kwargs, mode.count)
    # Past the stability limit the output is checked (one read-back):
    conv = CoinDiffusionConv(10, 5.0, cached=True, stability='ignore')
    conv(x, edge_index, weight)
    with CountSyncs() as mode:
        conv(x, edge_index, weight)
    assert mode.count >= 1


def test_to_hetero_refuses_bipartite_input_clearly():
    from torch_geometric.data import HeteroData
    from torch_geometric.nn import to_hetero

    class Net(torch.nn.Module):
        def __init__(self, **kwargs):
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)
            self.conv = CoinDiffusionConv(2, 0.2, **kwargs)

        def forward(self, x, edge_index):
            return self.conv(self.lin(x), edge_index)

    data = HeteroData()
    data['paper'].x = torch.randn(10, 4)
    data['author'].x = torch.randn(6, 4)
    data['paper', 'cites', 'paper'].edge_index = torch.randint(0, 10, (2, 20))
    writes = torch.stack([torch.randint(0, 6, (15, )),
                          torch.randint(0, 10, (15, ))])
    data['author', 'writes', 'paper'].edge_index = writes
    data['paper', 'rev_writes', 'author'].edge_index = writes.flip(0)
    # PyG's own check refuses the default (self-loops on bipartite types):
    with pytest.raises(ValueError, match="'add_self_loops'"):
        to_hetero(Net(), data.metadata())
    model = to_hetero(Net(add_self_loops=False), data.metadata())
    with pytest.raises(ValueError, match='to_homogeneous'):
        model(data.x_dict, data.edge_index_dict)
    # What to do instead: diffuse over the homogeneous graph.
    homo = data.to_homogeneous()
    out = Net()(homo.x, homo.edge_index)
    assert out.shape == (16, 3)


def test_torch_func_on_an_uncached_layer():
    # jacrev, vmap and grad run the definition (gathers), with the graph
    # prepared (and its stability estimated) inside the transform.
    from torch.func import grad, jacrev, vmap
    edge_index, weight = random_graph(600, 1500, 21)
    weight = weight.double()
    x = torch.randn(600, 2, dtype=torch.float64)
    conv = CoinDiffusionConv(3, 0.3)
    L = dense_laplacian(edge_index, weight, 600, 'coin')
    P = torch.linalg.matrix_power(torch.eye(600, dtype=torch.float64) -
                                  0.3 * L, 3)
    J = jacrev(lambda x: conv(x, edge_index, weight)[:, 0])(x)
    assert torch.allclose(J[:, :, 0], P, atol=1e-12)
    assert torch.allclose(J[:, :, 1], torch.zeros_like(P))
    out = vmap(lambda x: conv(x, edge_index, weight))(x.expand(2, -1, -1))
    assert torch.allclose(out[1], P @ x, atol=1e-12)
    g = grad(lambda x: conv(x, edge_index, weight).sum())(x)
    assert torch.allclose(g, P.t() @ torch.ones_like(x), atol=1e-12)


def test_no_stability_check_without_steps():
    # K=0 takes no explicit step: nothing to certify, no warning, no error
    # (hypothesis found such a case).
    edge_index = torch.tensor([[4, 3, 0, 0, 2, 1, 4, 4],
                               [3, 4, 1, 4, 4, 0, 2, 0]])
    x = torch.randn(5, 2)
    for stability in ('warn', 'raise'):
        conv = CoinDiffusionConv(K=0, sigma2=5., stability=stability)
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            torch.testing.assert_close(conv(x, edge_index), x)
    with pytest.warns(UserWarning, match='unstable'):
        CoinDiffusionConv(K=1, sigma2=5.)(x, edge_index)
