import pytest
import torch

from torch_geometric.data import Data

from torch_geometric_coin.nn import COIN
from torch_geometric_coin.utils import fit_node_classifier


def test_fit_node_classifier_early_stopping():
    torch.manual_seed(0)
    data = Data(x=torch.randn(30, 4), edge_index=torch.empty(2, 0).long(),
                y=torch.randint(2, (30, )))
    mask = torch.rand(30) < 0.5
    model = COIN(4, 2, K=0)
    calls = []
    res = fit_node_classifier(model, data, mask, ~mask, ~mask, epochs=500,
                              patience=5,
                              progress=lambda e, m: calls.append(m))
    assert res['epochs'] < 500 and len(calls) == res['epochs']
    assert 1 <= res['epoch'] <= res['epochs']
    # The reported epoch is the one of best validation accuracy:
    best = max(m['val_acc'] for m in calls)
    assert res['val_acc'] == best
    assert res['time_per_epoch'] > 0
    with pytest.raises(ValueError, match="'epochs' must be positive"):
        fit_node_classifier(model, data, mask, ~mask, ~mask, epochs=0)


def test_fit_node_classifier_regression_selects_lowest_val_loss():
    import torch.nn.functional as F
    torch.manual_seed(0)
    x = torch.randn(40, 3)
    data = Data(x=x, edge_index=torch.empty(2, 0).long(),
                y=x @ torch.tensor([1., -2., .5]) + 0.1 * torch.randn(40))
    mask = torch.arange(40) < 20
    model = torch.nn.Linear(3, 1)
    calls = []
    res = fit_node_classifier(
        model, data, mask, ~mask, ~mask, epochs=60, lr=0.05,
        weight_decay=0., loss_fn=F.mse_loss, accuracy=False,
        forward=lambda m, d: m(d.x).view(-1),
        progress=lambda e, m: calls.append(m))
    assert 'val_acc' not in res and len(calls) == 60
    best = min(range(60), key=lambda i: calls[i]['val_loss'])
    assert res['epoch'] == best + 1
    assert res['val_loss'] == calls[best]['val_loss']
    # The model is restored to the selected epoch:
    with torch.no_grad():
        mse = F.mse_loss(model(x[~mask]).view(-1), data.y[~mask])
    assert abs(float(mse) - res['test_loss']) < 1e-6


def test_fit_node_classifier_without_validation():
    torch.manual_seed(0)
    data = Data(x=torch.randn(30, 4), edge_index=torch.empty(2, 0).long(),
                y=torch.randint(2, (30, )))
    mask = torch.rand(30) < 0.5
    model = COIN(4, 2, K=0, dropout=0.)
    calls = []
    res = fit_node_classifier(model, data, mask, None, ~mask, epochs=7,
                              progress=lambda e, m: calls.append(m))
    assert len(calls) == 7 and res['epochs'] == res['epoch'] == 7
    assert 'val_acc' not in res
    with torch.no_grad():
        pred = model(data.x, data.edge_index).argmax(-1)
    acc = float((pred[~mask] == data.y[~mask]).float().mean())
    assert res['test_acc'] == acc
    with pytest.raises(ValueError, match="'patience' needs a 'val_mask'"):
        fit_node_classifier(model, data, mask, None, ~mask, patience=3)
