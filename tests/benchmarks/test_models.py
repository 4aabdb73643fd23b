import copy

import pytest
import torch

from torch_geometric.data import Data
from torch_geometric.utils import to_undirected

from torch_geometric_coin.nn import COIN

import common
import models as zoo
from training import fit

N, F_IN, C, R = 60, 12, 3, 3


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny graphs: a second thread only waits for a busy core (on a shared
    # 2-core machine the file took 70 s with two threads, 4 s with one).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_graph(seed=0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(N) % C
    # Class-dependent sparse binary features, row-normalised:
    x = (torch.rand(N, F_IN, generator=gen) < 0.2).double()
    x[torch.arange(N), y] = 1.
    x = x / x.sum(1, keepdim=True)
    edge_index = to_undirected(torch.randint(N, (2, 150), generator=gen),
                               num_nodes=N)
    return Data(x=x, edge_index=edge_index, y=y)


def build(name, dropout=0., diffuse='prob'):
    if name == 'COIN':
        return COIN(F_IN, C, hidden_channels=8, K=3, sigma2=0.3,
                    dropout=dropout, diffuse=diffuse, cached=True,
                    stability='ignore')
    if name == 'ResNet-in':  # no input projection: the authors' base
        return COIN(F_IN, C, K=2, sigma2=0.3, dropout=dropout,
                    diffuse=diffuse, cached=True, stability='ignore')
    if name == 'GCN':
        return zoo.GCN(F_IN, C, hidden_channels=8, dropout=dropout)
    if name == 'SGC':
        return zoo.SGC(F_IN, C, K=2)
    if name == 'APPNP':
        return zoo.APPNPNet(F_IN, C, hidden_channels=8, K=3,
                            dropout=dropout)
    return zoo.MLPNet(F_IN, C, hidden_channels=8, dropout=dropout)


def runs(name, dropout=0., diffuse='prob', num_runs=R):
    models = []
    for r in range(num_runs):
        torch.manual_seed(1000 * r)
        models.append(build(name, dropout, diffuse).double())
    splits = [common.random_split(tiny_graph().y, 3, 5, seed=r)
              for r in range(num_runs)]
    return models, splits


CASES = [('COIN', 'prob'), ('COIN', 'logits'), ('COIN', 'hidden'),
         ('ResNet-in', 'prob'), ('GCN', None), ('SGC', None),
         ('APPNP', None), ('MLP', None)]


@pytest.mark.parametrize('name,diffuse', CASES)
def test_stacked_runs_match_separate_runs(name, diffuse):
    data = tiny_graph()
    models, splits = runs(name, diffuse=diffuse or 'prob')
    model = zoo.stack(models)
    kw = dict(epochs=40, lr=0.05, patience=4)
    if name == 'SGC':
        kw.update(epochs=100, lr=0.2, weight_decay=5e-3, patience=3)
    singles = [fit(m, data, *s, **kw)[0] for m, s in zip(models, splits)]
    results = fit(model, data, *zoo.stacked_masks(splits), **kw)
    assert len(results) == R
    # Runs stopped at different epochs (per-run early stopping):
    assert len({r['epochs'] for r in singles}) > 1
    for r, (single, res) in enumerate(zip(singles, results)):
        assert res['runs'] == R
        for key in ['epoch', 'epochs', 'test_acc', 'val_acc', 'train_acc']:
            assert res[key] == single[key], (r, key)
        for key in ['test_loss', 'val_loss', 'train_loss']:
            assert res[key] == pytest.approx(single[key], rel=1e-9)
        params = dict(models[r].named_parameters())
        state = model.run_state_dict(r)
        assert set(state) == set(params)
        for key, value in state.items():
            torch.testing.assert_close(value, params[key].detach(),
                                       rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize('name', ['COIN', 'ResNet-in', 'GCN', 'SGC',
                                  'APPNP', 'MLP'])
def test_sparse_x_matches_dense_x(name):
    data = tiny_graph()
    models, _ = runs(name)
    outs, grads = [], []
    for x in [data.x, data.x.to_sparse()]:
        model = zoo.stack(models)
        out = model(x, data.edge_index)
        assert out.shape == (R, N, C)
        out[:, :5].sum().backward()
        outs.append(out.detach())
        grads.append([p.grad for p in model.parameters()])
    torch.testing.assert_close(outs[0], outs[1])
    for g0, g1 in zip(*grads):
        torch.testing.assert_close(g0, g1)
    # The stacked output of each run is its model's (evaluation):
    model = zoo.stack(models).eval()
    for r, m in enumerate(models):
        torch.testing.assert_close(model(data.x, data.edge_index)[r],
                                   m.eval()(data.x, data.edge_index))


@pytest.mark.parametrize('name', ['COIN', 'ResNet-in', 'GCN', 'APPNP',
                                  'MLP'])
@pytest.mark.parametrize('sparse', [False, True])
def test_dropout_masks_differ_between_runs(name, sparse):
    data = tiny_graph()
    torch.manual_seed(0)
    single = build(name, dropout=0.5).double()
    model = zoo.stack([copy.deepcopy(single) for _ in range(2)])
    x = data.x.to_sparse() if sparse else data.x
    out = model(x, data.edge_index)  # training: independent masks
    assert not torch.allclose(out[0], out[1])
    model.eval()
    out = model(x, data.edge_index)
    torch.testing.assert_close(out[0], out[1])


def test_stack_refuses():
    with pytest.raises(ValueError, match='norm=None only'):
        zoo.stack([COIN(4, 2, num_layers=1, norm='layer_norm')])
    with pytest.raises(ValueError, match='learned sigma2'):
        zoo.stack([COIN(4, 2, learn_sigma2=True)])
    with pytest.raises(ValueError, match='learned edge weights'):
        zoo.stack([COIN(4, 2, learn_edge_weights='kernel')])
    with pytest.raises(ValueError, match='differ in architecture'):
        zoo.stack([COIN(4, 2, dropout=0.5), COIN(4, 2, dropout=0.1)])
    with pytest.raises(TypeError, match='one kind'):
        zoo.stack([COIN(4, 2), zoo.MLPNet(4, 2)])
    with pytest.raises(TypeError, match='Cannot stack GAT'):
        zoo.stack([zoo.GAT(4, 2)])
    model = zoo.stack([COIN(4, 2, K=1) for _ in range(2)])
    with pytest.raises(ValueError, match=r"'x' must have shape \[num_nodes, "
                       r"4\]"):
        model(torch.randn(5, 3), torch.empty(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="'run' must be in"):
        model.run_state_dict(2)


def test_fit_stacked_arguments():
    data = tiny_graph()
    models, splits = runs('MLP', num_runs=2)
    model = zoo.stack(models)
    train, val, test = zoo.stacked_masks(splits)
    with pytest.raises(TypeError, match="'val_mask' of stacked runs must be "
                       r"a boolean mask of shape \[num_runs, num_nodes\] = "
                       r"\[2, 60\]"):
        fit(model, data, train, val[0], test, epochs=2)
    empty = val.clone()
    empty[1] = False
    with pytest.raises(ValueError, match="'val_mask' selects no node in run "
                       "1"):
        fit(model, data, train, empty, test, epochs=2)
    with pytest.raises(TypeError, match="stacked model"):
        fit(models[0], data, train, val, test, epochs=2)
    with pytest.raises(ValueError, match="default 'loss_fn'"):
        fit(model, data, train, val, test, epochs=2, accuracy=False)
    # Without validation: the final model of each run, all epochs.
    res = fit(model, data, train, None, test, epochs=3)
    assert [r['epochs'] for r in res] == [3, 3] and 'val_acc' not in res[0]


def test_fit_stacked_nan():
    data = tiny_graph()
    models, splits = runs('MLP', num_runs=2)
    model = zoo.stack(models)
    with torch.no_grad():
        model.lin2.bias[1] = float('nan')
    with pytest.raises(FloatingPointError, match=r"The training loss is nan "
                       r"at epoch 1 \(run 1\)"):
        fit(model, data, *zoo.stacked_masks(splits), epochs=3)


@pytest.mark.parametrize('name', ['COIN', 'GCN', 'MLP'])
def test_sparse_dropout_path_matches_dense(name, monkeypatch):
    # With a fixed stand-in for the masks, the block-diagonal sparse product
    # of a sparse input under dropout (and its gradient) equals the
    # expanded dense one.
    gen = torch.Generator().manual_seed(0)
    keep = torch.rand(2, N, F_IN, generator=gen) > 0.5

    def fixed(x, p, training):
        if not training or p == 0:
            return x
        if x.dim() == 3 and x.shape[2] == F_IN:  # the dense input
            return x * keep * 2
        if x.dim() == 2 and x.shape[0] == 2:  # the sparse input's values
            return x * keep[:, index[0], index[1]] * 2
        return x

    monkeypatch.setattr(zoo, 'drop_out', fixed)
    data = tiny_graph()
    index = data.x.to_sparse().indices()
    models, _ = runs(name, dropout=0.5, num_runs=2)
    outs, grads = [], []
    for x in [data.x, data.x.to_sparse()]:
        model = zoo.stack(models)
        out = model(x, data.edge_index)
        out[:, :7].sum().backward()
        outs.append(out.detach())
        grads.append([p.grad for p in model.parameters()])
    torch.testing.assert_close(outs[0], outs[1])
    for g0, g1 in zip(*grads):
        torch.testing.assert_close(g0, g1)


@pytest.mark.parametrize('name', ['COIN', 'GCN', 'SGC', 'APPNP', 'MLP'])
def test_second_input_is_not_the_first(name):
    # One stacked model called on two different sparse inputs gives each
    # input's own output (no cached layout or values of the first).
    models, _ = runs(name)
    model = zoo.stack(models).eval()
    data = tiny_graph()
    for x in (data.x, tiny_graph(1).x):
        out = model(x.to_sparse(), data.edge_index)
        fresh = zoo.stack(models).eval()(x, data.edge_index)
        torch.testing.assert_close(out, fresh)


@pytest.mark.parametrize('name', ['COIN', 'GCN', 'SGC', 'APPNP', 'MLP'])
def test_input_edited_in_place_is_read_again(name):
    # SGC propagated its first input once and kept it, also after the
    # same tensor was edited in place.
    models, _ = runs(name)
    model = zoo.stack(models).eval()
    data = tiny_graph()
    for x in (data.x.to_sparse(), data.x.clone()):
        model(x, data.edge_index)
        with torch.no_grad():
            (x.values() if x.is_sparse else x).mul_(2)
        out = model(x, data.edge_index)
        torch.testing.assert_close(
            out, zoo.stack(models).eval()(x, data.edge_index))


def test_build_model_recipe():
    model, kw = zoo.build_model('COIN', 'Cora', 10, 3)
    assert (model.diffusion.K, model.diffusion.sigma2) == (20, 0.3)
    assert model.base.hidden_channels == 64 and kw['weight_decay'] == 5e-4
    wide, _ = zoo.build_model('COIN', 'Cora', 10, 3, config=dict(
        sigma2=0.35, hidden_channels=None))
    assert wide.diffusion.sigma2 == 0.35 and wide.base.lin_in is None
    resnet, _ = zoo.build_model('ResNet', 'Cora', 10, 3)
    assert resnet.diffusion.K == 0
    with pytest.raises(ValueError, match='Unknown COIN options'):
        zoo.build_model('COIN', 'Cora', 10, 3, config=dict(lr=1))
    with pytest.raises(ValueError, match="COIN's options"):
        zoo.build_model('GCN', 'Cora', 10, 3, config=dict(K=1))
    with pytest.raises(ValueError, match='Unknown model'):
        zoo.build_model('GIN', 'Cora', 10, 3)


@pytest.mark.parametrize('name', ['MLP', 'GCN', 'GAT', 'APPNP', 'SGC',
                                  'GCNII', 'COIN', 'ResNet'])
def test_build_model(name):
    model, train = zoo.build_model(name, 'Cora', 12, 3)
    x = torch.rand(10, 12)
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]])
    out = model(x, edge_index)
    assert out.shape == (10, 3)
    assert torch.allclose(out.exp().sum(dim=-1), torch.ones(10), atol=1e-5)
    assert train['lr'] > 0 and train['epochs'] >= 100
    if name == 'ResNet':
        assert model.diffusion.K == 0
    with pytest.raises(ValueError, match='Unknown model'):
        zoo.build_model('GIN', 'Cora', 12, 3)


@pytest.mark.parametrize('num_classes', [3, 40])  # transposed / plain path
@pytest.mark.parametrize('log', [True, False])
def test_softmax_over_classes(num_classes, log):
    h = torch.randn(2, 5, 9, num_classes, dtype=torch.double,
                    requires_grad=True)
    h = h.transpose(1, 2)  # a non-contiguous [.., N, C] input
    grad = torch.randn(h.shape, dtype=torch.double)
    expected = h.log_softmax(-1) if log else h.softmax(-1)
    out = zoo._softmax(h, log=log)
    torch.testing.assert_close(out, expected)
    (g, ) = torch.autograd.grad(out, h, grad)
    (g_exp, ) = torch.autograd.grad(expected, h, grad)
    torch.testing.assert_close(g, g_exp)
