import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torch_geometric.utils import coalesce

from torch_geometric_coin.nn import COIN
from torch_geometric_coin.nn.models.residual_convection import (
    dropout as coin_dropout,
)


def two_blobs(n=60, seed=0):
    r"""Two classes on a graph of two communities with noisy features."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = F.one_hot(y, 2).float() + 1.5 * torch.randn(n, 2, generator=gen)
    x = torch.cat([x, torch.randn(n, 6, generator=gen)], dim=1)
    src = torch.randint(n, (6 * n, ), generator=gen)
    dst = torch.randint(n, (6 * n, ), generator=gen)
    keep = (y[src] == y[dst]) & (src != dst)
    edge_index = torch.stack([src[keep], dst[keep]])
    edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    return x, edge_index, y


def test_coin_outputs_log_probabilities():
    x, edge_index, y = two_blobs()
    for diffuse in ['prob', 'logits', 'hidden']:
        model = COIN(8, 2, K=5, sigma2=0.2, diffuse=diffuse)
        out = model(x, edge_index)
        assert out.size() == (60, 2)
        assert torch.allclose(out.exp().sum(-1), torch.ones(60), atol=1e-5)
        F.nll_loss(out, y).backward()
        assert all(p.grad is not None for p in model.parameters())


def test_coin_with_k0_is_the_base_classifier():
    x, edge_index, _ = two_blobs()
    model = COIN(8, 2, K=0).eval()
    assert torch.allclose(model(x, edge_index),
                          model.base(x).log_softmax(-1), atol=1e-6)
    assert str(model) == ("COIN(8, 2, diffuse='prob', diffusion="
                          "CoinDiffusionConv(K=0, sigma2=0.35, "
                          "normalization='coin'))")


def test_coin_diffuses_the_probabilities():
    x, edge_index, _ = two_blobs()
    model = COIN(8, 2, K=3, sigma2=0.2).eval()
    prob = model.base(x).softmax(-1)
    expected = model.diffusion(prob, edge_index).log()
    assert torch.allclose(model(x, edge_index), expected, atol=1e-6)


def test_coin_diffuses_logits_and_hidden_features():
    x, edge_index, _ = two_blobs()
    model = COIN(8, 2, K=3, sigma2=0.2, diffuse='logits').eval()
    expected = model.diffusion(model.base(x), edge_index).log_softmax(-1)
    assert torch.allclose(model(x, edge_index), expected, atol=1e-6)
    assert not torch.allclose(model(x, edge_index),
                              model.base(x).log_softmax(-1), atol=1e-3)

    model = COIN(8, 2, hidden_channels=16, K=3, sigma2=0.2,
                 diffuse='hidden').eval()
    h = model.diffusion(model.base.encode(x), edge_index)
    expected = model.base.lin_out(h).log_softmax(-1)
    assert torch.allclose(model(x, edge_index), expected, atol=1e-6)
    # In training, the hidden path drops out before the output map, as the
    # base classifier does (the same random draws give the same output):
    model.train()
    torch.manual_seed(1)
    out = model(x, edge_index)
    torch.manual_seed(1)
    h = model.diffusion(model.base.encode(x), edge_index)
    h = coin_dropout(h, 0.5, True)
    assert torch.allclose(out, model.base.lin_out(h).log_softmax(-1),
                          atol=1e-6)


def test_diffusion_helps_on_a_homophilous_graph():
    x, edge_index, y = two_blobs(n=200)
    train = torch.zeros(200, dtype=torch.bool)
    train[:20] = True
    val = torch.zeros(200, dtype=torch.bool)
    val[20:60] = True
    test = torch.zeros(200, dtype=torch.bool)
    test[60:] = True
    accs = {}
    for K in [0, 10]:
        torch.manual_seed(0)
        model = COIN(8, 2, K=K, sigma2=0.3, dropout=0.2)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01,
                                     weight_decay=5e-4)
        best_val = -1.0
        for _ in range(60):
            model.train()
            optimizer.zero_grad()
            F.nll_loss(model(x, edge_index)[train], y[train]).backward()
            optimizer.step()
            model.eval()
            pred = model(x, edge_index).argmax(-1)
            val_acc = float((pred[val] == y[val]).float().mean())
            if val_acc > best_val:
                best_val = val_acc
                accs[K] = float((pred[test] == y[test]).float().mean())
    assert accs[10] > accs[0] + 0.1, accs


def test_coin_learned_edge_weights_and_reset_parameters():
    x, edge_index, y = two_blobs()
    edge_index = coalesce(edge_index, num_nodes=60)
    for learn, kwargs in [('kernel', {}),
                          ('per_edge', dict(num_edges=edge_index.size(1)))]:
        torch.manual_seed(0)
        model = COIN(8, 2, K=4, sigma2=0.2, learn_edge_weights=learn,
                     learn_sigma2=True, cached=True, **kwargs).eval()
        out = model(x, edge_index)
        F.nll_loss(out, y).backward()
        params = dict(model.named_parameters())
        assert all(p.grad is not None for p in params.values())
        weight = model.edge_weights(x, edge_index) if learn == 'kernel' \
            else model.edge_weights(edge_index)
        ref = model.diffusion(model.base(x).softmax(-1), edge_index,
                              weight).log()
        assert torch.allclose(out, ref, atol=1e-6)
        # reset_parameters resets every part, the diffusion included:
        init = {k: v.detach().clone() for k, v in params.items()}
        with torch.no_grad():
            for p in params.values():
                p.add_(1.0)
        model.reset_parameters()
        assert model.diffusion._prepare.op is None
        assert abs(float(model.diffusion.sigma2.detach()) - 0.2) < 1e-6
        if learn == 'per_edge':
            assert torch.allclose(model.edge_weights.weight,
                                  init['edge_weights.weight'])
        else:
            assert not torch.allclose(model.edge_weights.lin.weight,
                                      init['edge_weights.lin.weight'] + 1)
    with pytest.raises(ValueError, match="'num_edges' is needed for"):
        COIN(8, 2, learn_edge_weights='per_edge')
    with pytest.raises(ValueError, match="Unknown 'learn_edge_weights'"):
        COIN(8, 2, learn_edge_weights='foo')


def test_coin_errors():
    with pytest.raises(ValueError, match="Unknown 'diffuse'"):
        COIN(8, 2, diffuse='foo')


def layouts(edge_index, weight, n):
    r"""The same weighted graph as an edge_index in several orders and as
    every sparse adjacency (PyG's adj_t: entry (target, source))."""
    from torch_geometric.typing import SparseTensor
    from torch_geometric.utils import (
        to_torch_coo_tensor,
        to_torch_csc_tensor,
        to_torch_csr_tensor,
    )
    gen = torch.Generator().manual_seed(5)
    perm = torch.randperm(edge_index.size(1), generator=gen)
    merged_index, merged = coalesce(edge_index, weight, n)
    adj_t = merged_index.flip(0)
    by_target = torch.argsort(merged_index[1] * n + merged_index[0])
    return {
        'edge_index': (edge_index, weight),
        'shuffled': (edge_index[:, perm], weight[perm]),
        'coalesced': (merged_index, merged),
        'target-major': (merged_index[:, by_target], merged[by_target]),
        'coo': (to_torch_coo_tensor(adj_t, merged, (n, n)), None),
        'csr': (to_torch_csr_tensor(adj_t, merged, (n, n)), None),
        'csc': (to_torch_csc_tensor(adj_t, merged, (n, n)), None),
        'SparseTensor': (SparseTensor(row=adj_t[0], col=adj_t[1],
                                      value=merged, sparse_sizes=(n, n)),
                         None),
    }


def edge_rank(edge_index):
    r"""The rank of each column's (source, target) pair among the sorted
    distinct pairs, in pure Python (the reference of PerEdgeWeight)."""
    pairs = [tuple(p) for p in edge_index.t().tolist()]
    rank = {p: k for k, p in enumerate(sorted(set(pairs)))}
    return torch.tensor([rank[p] for p in pairs], dtype=torch.long)


@pytest.mark.filterwarnings('ignore:Sparse invariant checks')
@pytest.mark.parametrize('learn', ['per_edge', 'kernel'])
def test_learned_edge_weights_do_not_depend_on_the_layout(learn):
    from dense_reference import dense_diffusion, random_graph
    n = 20
    edge_index, weight = random_graph(n, 70, 7, undirected=False)
    # Repeated entries of some edges, unsorted: duplicates add up.
    edge_index = torch.cat([edge_index, edge_index[:, :9]], dim=1)
    weight = torch.cat([weight, torch.rand(9) + 0.1]).double()
    x = torch.randn(n, 5, dtype=torch.float64)
    rank = edge_rank(edge_index)
    num = int(rank.max()) + 1
    torch.manual_seed(0)
    kwargs = dict(num_edges=num) if learn == 'per_edge' else {}
    model = COIN(5, 3, K=3, sigma2=0.3, learn_edge_weights=learn,
                 dropout=0., **kwargs).double()
    theta = torch.randn(num, dtype=torch.float64)
    if learn == 'per_edge':
        with torch.no_grad():
            model.edge_weights.weight.copy_(theta)
        w = weight * F.softplus(theta)[rank]
    else:
        h = x @ model.edge_weights.lin.weight.detach().t()
        w = weight * torch.exp(-(h[edge_index[0]] -
                                 h[edge_index[1]]).square().sum(-1))
    prob = model.base(x).detach().softmax(-1)
    ref = dense_diffusion(prob, edge_index, w, 'coin', 3, 0.3).log()

    grads = {}
    for name, (adj, w_in) in layouts(edge_index, weight, n).items():
        model.zero_grad()
        out = model(x, adj, w_in)
        assert torch.allclose(out, ref, atol=1e-12), name
        out.square().sum().backward()
        grads[name] = [p.grad.clone() for p in model.edge_weights.parameters()]
    for name, grad in grads.items():  # the same gradient per edge
        for g, g0 in zip(grad, grads['edge_index']):
            assert torch.allclose(g, g0, atol=1e-12), name
    # The layer's rule for sparse adjacencies: weights are their values.
    adj = layouts(edge_index, weight, n)['csr'][0]
    with pytest.raises(ValueError, match="values of the sparse tensor"):
        model(x, adj, weight)


@pytest.mark.parametrize('learn', [None, 'kernel', 'per_edge'])
def test_reset_parameters_is_a_fresh_model(learn):
    import copy
    x, edge_index, y = two_blobs(40)
    edge_index = coalesce(edge_index, num_nodes=40)
    relabel = torch.randperm(40, generator=torch.Generator().manual_seed(3))
    other = relabel[edge_index]  # another graph with as many edges
    kwargs = dict(num_edges=edge_index.size(1)) if learn == 'per_edge' \
        else {}
    torch.manual_seed(0)
    model = COIN(8, 2, hidden_channels=6, num_layers=2, K=3, sigma2=0.2,
                 norm='batch_norm', learn_sigma2=True, cached=True,
                 learn_edge_weights=learn, **kwargs)
    fresh = copy.deepcopy(model)  # = a new model of the same seed
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    for _ in range(3):  # changes every parameter, statistic and cache
        optimizer.zero_grad()
        F.nll_loss(model(x, edge_index), y).backward()
        optimizer.step()
    assert abs(float(model.diffusion.sigma2.detach()) - 0.2) > 1e-5
    changed = {k for k, v in model.state_dict().items()
               if not torch.equal(v, fresh.state_dict()[k])}
    learned = {k for k in fresh.state_dict() if k.startswith(
        ('edge_weights.', 'diffusion.', 'base.lin_in.', 'base.lin_out.',
         'base.norms.')) or k.endswith('weight')}
    assert learned <= changed  # (biases before a batch norm get no grad)
    for m in [model, fresh]:
        torch.manual_seed(1)
        m.reset_parameters()
    for k, v in model.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k]), k
    # No cached graph survives the reset: on another graph, the same
    # output as the fresh model (in both modes):
    for train in [False, True]:
        model.train(train)
        fresh.train(train)
        torch.manual_seed(2)
        out = model(x, other)
        torch.manual_seed(2)
        assert torch.equal(out, fresh(x, other))


def dropout_configs():
    for diffuse in ['prob', 'logits', 'hidden']:
        for scheme in ['explicit', 'implicit']:
            for learn in [None, 'kernel', 'per_edge']:
                yield dict(diffuse=diffuse, scheme=scheme,
                           learn_edge_weights=learn)


@pytest.mark.parametrize('config', list(dropout_configs()),
                         ids=lambda c: '-'.join(map(str, c.values())))
def test_dropout_only_in_training_on_every_path(config):
    x, edge_index, _ = two_blobs(30)
    edge_index = coalesce(edge_index, num_nodes=30)
    if config['learn_edge_weights'] == 'per_edge':
        config = dict(config, num_edges=edge_index.size(1))

    def make(dropout, diffusion_dropout, norm='batch_norm'):
        torch.manual_seed(0)
        return COIN(8, 3, hidden_channels=6, num_layers=2, K=3, sigma2=0.2,
                    norm=norm, dropout=dropout,
                    diffusion_dropout=diffusion_dropout, **config)

    model, plain = make(0.5, 0.3), make(0., 0.)
    with torch.no_grad():  # make the running statistics non-trivial
        model.train()
        model(x, edge_index)
    plain.load_state_dict(model.state_dict())
    model.eval()
    plain.eval()
    out = model(x, edge_index)
    assert torch.equal(out, model(x, edge_index))  # deterministic
    assert torch.equal(out, plain(x, edge_index))  # and dropout-free

    # In training, each dropout is applied (different draws, different
    # outputs; the same draws, the same output):
    for dropout, diffusion_dropout in [(0.5, 0.), (0., 0.3)]:
        model = make(dropout, diffusion_dropout).train()
        outs = []
        for seed in [1, 2, 1]:
            torch.manual_seed(seed)
            outs.append(model(x, edge_index))
        assert torch.equal(outs[0], outs[2])
        assert not torch.allclose(outs[0], outs[1], atol=1e-4), (
            dropout, diffusion_dropout)
    # Without dropout (and a normalisation without batch statistics),
    # training and evaluation agree:
    model = make(0., 0., norm='layer_norm')
    assert torch.equal(model.train()(x, edge_index),
                       model.eval()(x, edge_index))


def test_numpy_scalars_work_and_equal_python_scalars():
    x, edge_index, _ = two_blobs(30)
    edge_index = coalesce(edge_index, num_nodes=30)
    E = edge_index.size(1)
    outs = []
    for cast_int, cast_float in [(int, float), (np.int64, np.float32)]:
        torch.manual_seed(0)
        model = COIN(cast_int(8), cast_int(3), hidden_channels=cast_int(6),
                     num_layers=cast_int(2), K=cast_int(3),
                     sigma2=cast_float(0.25), dropout=cast_float(0.5),
                     T=cast_float(2.0), diffusion_dropout=cast_float(0.25),
                     learn_edge_weights='per_edge', num_edges=cast_int(E),
                     scheme='implicit', tol=cast_float(1e-6),
                     max_iter=cast_int(50)).eval()
        outs.append(model(x, edge_index))
        assert type(model.base.num_layers) is int
        assert type(model.base.T) is float
    assert torch.allclose(outs[0], outs[1], atol=1e-6)


def test_hostile_arguments_are_refused_clearly():
    ok = dict(in_channels=8, out_channels=2)
    for name, bad in [('T', float('inf')), ('T', float('nan')), ('T', 0),
                      ('T', True), ('sigma2', True), ('dropout', True),
                      ('dropout', False), ('dropout', 1.0),
                      ('diffusion_dropout', True),
                      ('diffusion_dropout', 1.5), ('K', True),
                      ('K', 2.5), ('num_layers', True),
                      ('num_layers', np.float32(2)), ('in_channels', True),
                      ('in_channels', 0), ('out_channels', 1),
                      ('out_channels', None), ('hidden_channels', 0),
                      ('hidden_channels', True)]:
        with pytest.raises(ValueError, match=f"'{name}' must be"):
            COIN(**dict(ok, **{name: bad}))
    # Options that would be accepted and ignored:
    for kwargs in [dict(foo=1), dict(node_dim=0), dict(aggr='add'),
                   dict(decomposed_layers=2)]:
        with pytest.raises(TypeError, match="unexpected keyword"):
            COIN(8, 2, **kwargs)
    with pytest.raises(ValueError, match="'norm' has no effect with "
                       "num_layers=0"):
        COIN(8, 2, num_layers=0, norm='batch_norm')
    with pytest.raises(ValueError, match="act='foo'"):
        COIN(8, 2, act='foo')
    with pytest.raises(ValueError, match="norm='foo'"):
        COIN(8, 2, norm='foo')
    with pytest.raises(ValueError, match="Unknown 'diffuse'"):
        COIN(8, 2, diffuse=['prob'])
    with pytest.raises(ValueError, match="Unknown 'learn_edge_weights'"):
        COIN(8, 2, learn_edge_weights=['kernel'])
    with pytest.raises(ValueError, match="'num_edges' must be"):
        COIN(8, 2, learn_edge_weights='per_edge', num_edges=True)


@pytest.mark.parametrize('diffuse', ['prob', 'logits', 'hidden'])
@pytest.mark.parametrize('learn', [None, 'kernel', 'per_edge'])
def test_hostile_features_are_refused_clearly(diffuse, learn):
    x, edge_index, _ = two_blobs(30)
    edge_index = coalesce(edge_index, num_nodes=30)
    kwargs = dict(num_edges=edge_index.size(1)) if learn == 'per_edge' \
        else {}
    model = COIN(8, 2, K=2, diffuse=diffuse, learn_edge_weights=learn,
                 **kwargs)
    for bad in [x[:, 0], x[:, :5], x.unsqueeze(0)]:
        with pytest.raises(ValueError, match=r"'x' must have shape \[num_"):
            model(bad, edge_index)
    with pytest.raises(TypeError, match="'x' must be a floating point"):
        model(x.long(), edge_index)
    with pytest.raises(TypeError, match="'x' has dtype torch.float64"):
        model(x.double(), edge_index)
    with pytest.raises(TypeError, match="'x' must be a tensor"):
        model(x.numpy(), edge_index)
    # The model in float64 takes float64 features:
    assert model.double()(x.double(), edge_index).dtype == torch.float64


def test_to_hetero_is_refused_at_construction():
    from torch_geometric.nn import to_hetero
    metadata = (['paper', 'author'], [('paper', 'cites', 'paper'),
                                      ('author', 'writes', 'paper')])
    with pytest.raises(ValueError, match="to_homogeneous"):
        to_hetero(COIN(4, 2, K=2), metadata)
    x, edge_index, _ = two_blobs(20)
    with pytest.raises(ValueError, match="to_homogeneous"):
        COIN(8, 2, K=2)({'paper': x}, edge_index)


@pytest.mark.parametrize('learn', [None, 'kernel', 'per_edge'])
def test_compiled_matches_eager(learn):
    import torch._dynamo as dynamo
    dynamo.reset()
    gen = torch.Generator().manual_seed(3)
    edge_index = coalesce(torch.randint(12, (2, 40), generator=gen))
    x = torch.randn(12, 5, generator=gen)
    y = torch.randint(3, (12, ), generator=gen)
    kwargs = dict(num_edges=edge_index.size(1)) if learn == 'per_edge' \
        else {}
    model = COIN(5, 3, hidden_channels=8, K=4, sigma2=0.2, cached=True,
                 learn_sigma2=True, learn_edge_weights=learn, **kwargs)

    def step(module):
        model.zero_grad()
        loss = F.nll_loss(module(x, edge_index), y)
        loss.backward()
        return loss, [p.grad.clone() for p in model.parameters()]

    model.eval()  # no dropout draws, which differ between the modes
    ref, ref_grads = step(model)
    loss, grads = step(torch.compile(model, backend='aot_eager'))
    assert torch.allclose(loss, ref, atol=1e-6)
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g, r, atol=1e-6)


# Sparse input features #######################################################

def sparse_blobs(n=30, seed=0):
    x, edge_index, y = two_blobs(n, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    x = (x * (torch.rand(x.size(), generator=gen) < 0.4)).double()
    return x, coalesce(edge_index, num_nodes=n), y


@pytest.mark.parametrize('diffuse', ['prob', 'logits', 'hidden'])
@pytest.mark.parametrize('hidden,num_layers', [(None, 0), (None, 1),
                                               (None, 2), (16, 0), (16, 1),
                                               (16, 2)])
@pytest.mark.parametrize('training', [True, False])
def test_sparse_features_equal_dense_features(diffuse, hidden, num_layers,
                                              training):
    x, edge_index, y = sparse_blobs()
    torch.manual_seed(0)
    # Dropout only in evaluation (where it is off): training draws differ.
    model = COIN(8, 2, hidden_channels=hidden, num_layers=num_layers, K=3,
                 sigma2=0.3, diffuse=diffuse, learn_sigma2=True,
                 dropout=0. if training else 0.5).double().train(training)
    out = model(x, edge_index)
    F.nll_loss(out, y).backward()
    ref = {name: p.grad.clone() for name, p in model.named_parameters()}
    for xs in [x.to_sparse(), x.to_sparse_csr()]:
        model.zero_grad()
        out_sparse = model(xs, edge_index)
        assert torch.allclose(out_sparse, out, atol=1e-12)
        F.nll_loss(out_sparse, y).backward()
        for name, p in model.named_parameters():
            assert torch.allclose(p.grad, ref[name], atol=1e-12), name


def test_sparse_features_with_learned_edge_weights():
    x, edge_index, y = sparse_blobs()
    model = COIN(8, 2, K=3, learn_edge_weights='per_edge',
                 num_edges=edge_index.size(1), dropout=0.).double()
    out = model(x, edge_index)
    assert torch.allclose(model(x.to_sparse_csr(), edge_index), out)
    model = COIN(8, 2, K=3, learn_edge_weights='kernel').double()
    model(x, edge_index)
    for xs in [x.to_sparse(), x.to_sparse_csr()]:
        with pytest.raises(ValueError, match="learn_edge_weights='kernel' "
                           "needs dense node features 'x'"):
            model(xs, edge_index)
    with pytest.raises(TypeError, match="'x' must be a dense tensor"):
        model.edge_weights(x.to_sparse_csr(), edge_index)


@pytest.mark.parametrize('learn', [None, 'per_edge'])
def test_sparse_features_errors(learn):
    x, edge_index, _ = sparse_blobs()
    kwargs = dict(num_edges=edge_index.size(1)) if learn else {}
    model = COIN(8, 2, K=2, learn_edge_weights=learn, **kwargs)
    with pytest.raises(TypeError, match='layout torch.sparse_csc'):
        model(x.float().to_sparse_csc(), edge_index)
    with pytest.raises(TypeError, match="'x' has dtype torch.float64"):
        model(x.to_sparse_csr(), edge_index)
    with pytest.raises(ValueError, match=r"'x' must have shape \[num_"):
        model(x[:, :5].float().to_sparse(), edge_index)
    with pytest.raises(ValueError, match="2-D .* without dense or batch"):
        model(x.float().unsqueeze(-1).to_sparse(2), edge_index)


@pytest.mark.parametrize('diffuse', ['prob', 'logits', 'hidden'])
def test_inference_in_chunks_equals_forward(diffuse):
    gen = torch.Generator().manual_seed(5)
    edge_index = coalesce(torch.randint(23, (2, 80), generator=gen))
    x = (torch.rand(23, 9, generator=gen) < 0.3).double()
    model = COIN(9, 3, hidden_channels=6, K=4, sigma2=0.2,
                 diffuse=diffuse).double().eval()
    ref = model(x, edge_index)
    for xs in [x, x.to_sparse(), x.to_sparse_csr()]:
        for chunk_size in [1, 7, 23, 100]:
            out = model.inference(xs, edge_index, chunk_size=chunk_size)
            assert torch.allclose(out, ref, atol=1e-12)
    with pytest.raises(ValueError, match="'chunk_size'"):
        model.inference(x, edge_index, chunk_size=0)
    with pytest.raises(ValueError, match=r"model.eval\(\)"):
        model.train().inference(x, edge_index)
