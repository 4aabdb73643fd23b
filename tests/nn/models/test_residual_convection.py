import pytest
import torch

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


def test_residual_convection_errors():
    with pytest.raises(ValueError, match="'in_channels' must be a positive"):
        ResidualConvection(0, 4, 2)
    with pytest.raises(ValueError, match="'num_layers' must be"):
        ResidualConvection(4, 4, 2, num_layers=-1)
    with pytest.raises(ValueError, match="'dropout' must be in"):
        ResidualConvection(4, 4, 2, dropout=1.5)
    with pytest.raises(ValueError, match=r"'x' must have shape \[N, 4\]"):
        ResidualConvection(4, 4, 2)(torch.randn(3, 5))
