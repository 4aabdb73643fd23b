import numpy as np
import pytest
import torch

from torch_geometric_coin.nn import ResidualConvection
from torch_geometric_coin.nn.models.residual_convection import dropout


def test_residual_convection_is_euler():
    torch.manual_seed(0)
    model = ResidualConvection(8, 8, 3, num_layers=4, T=2.0)
    assert model.lin_in is None  # the authors' width: the input's
    assert str(model) == 'ResidualConvection(8, 8, 3, num_layers=4, T=2.0)'
    x = torch.randn(5, 8)
    # x <- x + (T / L) * relu(W x + b), then the output map:
    h = x
    for lin in model.lins:
        h = h + 0.5 * torch.relu(h @ lin.weight.t() + lin.bias)
    ref = h @ model.lin_out.weight.t() + model.lin_out.bias
    assert torch.allclose(model(x), ref, atol=1e-6)
    assert torch.allclose(model.encode(x), h, atol=1e-6)


def test_residual_convection_options():
    model = ResidualConvection(8, 16, None, num_layers=2, norm='layer_norm',
                               dropout=0.5)
    assert model.lin_in is not None and model.lin_out is None
    x = torch.randn(5, 8)
    assert model(x).size() == (5, 16)
    model.eval()
    assert torch.equal(model(x), model(x))
    # Projection, then x <- x + (T / L) * act(norm(W x + b)) per block:
    h = x @ model.lin_in.weight.t() + model.lin_in.bias
    for lin, norm in zip(model.lins, model.norms):
        h = h + 0.5 * torch.relu(norm(h @ lin.weight.t() + lin.bias))
    assert torch.allclose(model(x), h, atol=1e-6)
    model.train()
    torch.manual_seed(0)
    first = model(x)
    torch.manual_seed(1)
    assert not torch.allclose(first, model(x))  # dropout in training
    out = model(x)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    # K = 0 blocks: just the projections
    assert ResidualConvection(8, 4, 2, num_layers=0)(x).size() == (5, 2)


def test_residual_convection_dropout_sites_in_training():
    # Dropout on the input of every linear map, and only in training:
    # the same draws reproduce the output by hand.
    torch.manual_seed(0)
    model = ResidualConvection(8, 6, 3, num_layers=2, T=1.0, dropout=0.4)
    x = torch.randn(5, 8)
    torch.manual_seed(7)
    out = model(x)
    torch.manual_seed(7)
    drop = lambda t: dropout(t, 0.4, True)  # noqa: E731
    h = model.lin_in(drop(x))
    for lin in model.lins:
        h = h + 0.5 * torch.relu(lin(drop(h)))
    assert torch.equal(out, model.lin_out(drop(h)))
    model.eval()
    h = model.lin_in(x)
    for lin in model.lins:
        h = h + 0.5 * torch.relu(lin(h))
    assert torch.equal(model(x), model.lin_out(h))


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('p', [0.2, 0.5, 0.8])
def test_dropout_has_the_distribution_of_torch_dropout(p, dtype):
    # Each entry kept with probability 1 - p (binomial count within 5 sd),
    # scaled by 1 / (1 - p); the gradient is the same mask; identity in
    # eval mode or with p = 0; zeros with p = 1.
    torch.manual_seed(0)
    x = torch.rand(400, 250, dtype=dtype) + 1.
    x.requires_grad_()
    out = dropout(x, p, True)
    kept = out != 0
    n = x.numel()
    assert abs(int(kept.sum()) - n * (1 - p)) < 5 * (n * p * (1 - p)) ** .5
    assert torch.allclose(out[kept], x[kept] / (1 - p))
    out.sum().backward()
    assert torch.allclose(x.grad, kept.to(dtype) / (1 - p))
    assert dropout(x, p, False) is x and dropout(x, 0., True) is x
    assert torch.equal(dropout(x, 1., True), torch.zeros_like(x))
    # Independent draws: two calls differ.
    assert not torch.equal(dropout(x, p, True) != 0, kept)


def test_residual_convection_numpy_scalars_and_options():
    torch.manual_seed(0)
    ref = ResidualConvection(8, 6, 3, num_layers=2, T=2.0, dropout=0.5)
    torch.manual_seed(0)
    model = ResidualConvection(np.int64(8), np.int32(6), np.int64(3),
                               num_layers=np.int64(2), T=np.float32(2.0),
                               dropout=np.float32(0.5))
    assert (model.num_layers, model.T, model.dropout) == (2, 2.0, 0.5)
    assert type(model.num_layers) is int and type(model.T) is float
    x = torch.randn(4, 8)
    assert torch.equal(model.eval()(x), ref.eval()(x))
    # act=None: linear blocks (the identity as non-linearity):
    model = ResidualConvection(4, 4, None, num_layers=1, act=None)
    x = torch.randn(3, 4)
    lin = model.lins[0]
    assert torch.allclose(model(x), x + lin(x), atol=1e-6)
    # A learnable non-linearity is reset with the rest:
    model = ResidualConvection(4, 4, 2, act='prelu')
    with torch.no_grad():
        model.act.weight.fill_(0.9)
    model.reset_parameters()
    assert float(model.act.weight.detach()) == 0.25
    # Defaults given explicitly are fine without blocks:
    ResidualConvection(4, 4, 2, num_layers=0, T=np.float32(1), act='relu')
    # The identity module (no linear map) takes any floating point dtype:
    x = torch.randn(3, 4, dtype=torch.float64)
    assert torch.equal(ResidualConvection(4, num_layers=0)(x), x)


def test_residual_convection_errors():
    for name, bad in [('in_channels', 0), ('in_channels', True),
                      ('in_channels', 2.0), ('hidden_channels', 0),
                      ('hidden_channels', True), ('out_channels', 0),
                      ('num_layers', -1), ('num_layers', True),
                      ('num_layers', 1.5), ('T', float('inf')),
                      ('T', float('nan')), ('T', 0.0), ('T', True),
                      ('dropout', 1.5), ('dropout', 1.0), ('dropout', True),
                      ('dropout', False), ('dropout', float('nan'))]:
        kwargs = dict(in_channels=4, hidden_channels=4, out_channels=2)
        kwargs[name] = bad
        with pytest.raises(ValueError, match=f"'{name}' must be"):
            ResidualConvection(**kwargs)
    with pytest.raises(TypeError, match="'bias' must be True or False"):
        ResidualConvection(4, 4, 2, bias=1)
    # Unknown or unusable names, with the argument's name:
    for kwargs, match in [(dict(act='foo'), "act='foo'"),
                          (dict(act='glu'), "act='glu' must map"),
                          (dict(act='softmax2d'), "act='softmax2d'"),
                          (dict(norm='foo'), "norm='foo'"),
                          (dict(norm='message_norm'), "norm='message_norm'"),
                          (dict(norm='diff_group_norm'),
                           "norm='diff_group_norm'")]:
        with pytest.raises(ValueError, match=match):
            ResidualConvection(4, 4, 2, **kwargs)
    # Options accepted and ignored:
    for kwargs, match in [
        (dict(num_layers=0, norm='batch_norm'), "'norm' has no effect"),
        (dict(num_layers=0, act_kwargs={}), "'act_kwargs' has no effect"),
        (dict(num_layers=0, T=2.0), "'T' has no effect"),
        (dict(num_layers=0, act='tanh'), "'act' has no effect"),
        (dict(act=torch.nn.ReLU(), act_kwargs=dict(inplace=True)),
         "'act_kwargs' is only used"),
        (dict(norm_kwargs=dict(eps=1e-3)), "'norm_kwargs' is only used"),
    ]:
        with pytest.raises(ValueError, match=match):
            ResidualConvection(4, 4, 2, **kwargs)
    with pytest.raises(ValueError, match="'dropout' has no effect"):
        ResidualConvection(4, 4, None, num_layers=0, dropout=0.5)
    model = ResidualConvection(4, 4, 2)
    for bad in [torch.randn(3, 5), torch.randn(4), torch.randn(1, 3, 4)]:
        with pytest.raises(ValueError, match=r"'x' must have shape \[num_"):
            model(bad)
    with pytest.raises(TypeError, match="'x' must be a floating point"):
        model(torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="'x' has dtype torch.float64"):
        model(torch.randn(3, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="'x' must be a tensor"):
        model([[0.0] * 4])


# Sparse input features #######################################################

def sparse_features(n=12, f=8, density=0.4, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, f, generator=gen, dtype=dtype)
    return x * (torch.rand(n, f, generator=gen) < density)


def as_layout(x, layout):
    if layout == 'csr':
        return x.to_sparse_csr()
    if layout == 'coo':
        return x.to_sparse()
    # An uncoalesced COO tensor: every stored value split in two entries.
    coo = x.to_sparse()
    idx, val = coo.indices(), coo.values()
    return torch.sparse_coo_tensor(torch.cat([idx, idx], 1),
                                   torch.cat([0.25 * val, 0.75 * val]),
                                   x.size(), check_invariants=True)


@pytest.mark.parametrize('layout', ['coo', 'csr', 'coo_uncoalesced'])
@pytest.mark.parametrize('hidden,num_layers', [(8, 0), (8, 1), (8, 2),
                                               (5, 0), (5, 1), (5, 2)])
@pytest.mark.parametrize('out_channels', [3, None])
@pytest.mark.parametrize('training', [True, False])
def test_sparse_input_equals_dense_input(layout, hidden, num_layers,
                                         out_channels, training):
    if num_layers == 0 and hidden == 8 and out_channels is None:
        return  # the identity (tested below)
    torch.manual_seed(0)
    # Dropout only in evaluation (where it is off): training draws differ.
    model = ResidualConvection(
        8, hidden, out_channels, num_layers=num_layers,
        T=1.5 if num_layers else 1.,
        norm='batch_norm' if num_layers else None,
        dropout=0. if training else 0.5).double().train(training)
    x = sparse_features()
    grad = torch.randn(12, out_channels or hidden, dtype=torch.float64)
    out = model(x)
    out.backward(grad)
    ref = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    xs = as_layout(x, layout)
    out_sparse = model(xs)
    assert out_sparse.layout == torch.strided
    assert torch.allclose(out_sparse, out, atol=1e-12)
    out_sparse.backward(grad)
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, ref[name], atol=1e-12), name
    assert torch.allclose(model.encode(xs), model.encode(x), atol=1e-12)


def test_sparse_input_of_the_identity_and_in_place_changes():
    model = ResidualConvection(8, num_layers=0).double()
    x = sparse_features()
    for layout in ['coo', 'csr']:
        assert torch.equal(model(as_layout(x, layout)), x)
    # The prepared structure follows in-place changes of the input:
    model = ResidualConvection(8, 8, 3).double().eval()
    xs = x.to_sparse_csr()
    assert torch.allclose(model(xs), model(x))
    xs.mul_(2.)
    assert torch.allclose(model(xs), model(2. * x))


@pytest.mark.parametrize('layout', ['coo', 'csr'])
def test_sparse_dropout_is_dropout_on_the_stored_values(layout):
    # The first map is lin_in = [I; 0] without bias: the output shows the
    # dropped input.
    p = 0.3
    model = ResidualConvection(6, 7, None, num_layers=0, dropout=p,
                               bias=False).double()
    with torch.no_grad():
        model.lin_in.weight.copy_(torch.eye(7, 6))
    x = sparse_features(3000, 6, density=0.5, seed=1) + 0.  # no -0.
    xs = as_layout(x, layout)
    torch.manual_seed(0)
    out = model(xs)[:, :6]
    nonzero = x != 0
    kept = out != 0
    assert not bool((kept & ~nonzero).any())  # zeros stay zeros
    assert torch.allclose(out[kept], x[kept] / (1 - p))  # scaled by 1/(1-p)
    frac = kept.sum() / nonzero.sum()  # ~ Binomial(9000, 0.7) / 9000
    assert abs(float(frac) - (1 - p)) < 0.02
    torch.manual_seed(1)
    assert not torch.equal(model(xs)[:, :6], out)  # fresh draws
    model.eval()
    assert torch.allclose(model(xs)[:, :6], x)
    # The residual adds the input itself, not its dropped copy:
    model = ResidualConvection(6, dropout=0.5).double()
    with torch.no_grad():
        model.lins[0].weight.zero_()
        model.lins[0].bias.zero_()
    assert torch.equal(model(xs), x)


def test_sparse_input_errors():
    model = ResidualConvection(8, 8, 3)
    x = sparse_features(dtype=torch.float32)
    with pytest.raises(TypeError, match="torch.sparse_coo or torch.sparse_"
                       "csr tensor.*layout torch.sparse_csc"):
        model(x.to_sparse_csc())
    with pytest.raises(TypeError, match='layout torch.sparse_bsr'):
        model(x.to_sparse_bsr((2, 2)))
    with pytest.raises(ValueError, match="2-D .* without dense or batch"):
        model(x.unsqueeze(-1).to_sparse(2))  # a hybrid COO tensor
    with pytest.raises(ValueError, match="2-D .* without dense or batch"):
        model(x.unsqueeze(0).to_sparse_csr())  # a batch of CSR
    with pytest.raises(ValueError, match=r"'x' must have shape \[num_"):
        model(x[:, :5].to_sparse_csr())
    with pytest.raises(TypeError, match="'x' has dtype torch.float64"):
        model(x.double().to_sparse_csr())
    with pytest.raises(TypeError, match="'x' must be a floating point"):
        model(x.long().to_sparse())
    with pytest.raises(ValueError, match="Gradients with respect to a "
                       "sparse 'x'"):
        model(x.to_sparse().requires_grad_())
    for dtype in [torch.float16, torch.bfloat16]:
        with pytest.raises(TypeError, match="sparse 'x' on the CPU must be "
                           "float32 or float64"):
            model.to(dtype)(x.to(dtype).to_sparse_csr())
    assert model(x.to(torch.bfloat16)).dtype == torch.bfloat16  # dense
