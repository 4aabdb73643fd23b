import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torch_geometric_coin.nn import ResidualConvection


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
    drop = lambda t: F.dropout(t, p=0.4, training=True)  # noqa: E731
    h = model.lin_in(drop(x))
    for lin in model.lins:
        h = h + 0.5 * torch.relu(lin(drop(h)))
    assert torch.equal(out, model.lin_out(drop(h)))
    model.eval()
    h = model.lin_in(x)
    for lin in model.lins:
        h = h + 0.5 * torch.relu(lin(h))
    assert torch.equal(model(x), model.lin_out(h))


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
    with pytest.raises(TypeError, match="'bias' must be a bool"):
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
