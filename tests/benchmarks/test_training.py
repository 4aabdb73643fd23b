import pytest
import torch

from torch_geometric.data import Data

from torch_geometric_coin.nn import COIN

from training import fit


def test_fit_early_stopping():
    torch.manual_seed(0)
    data = Data(x=torch.randn(30, 4), edge_index=torch.empty(2, 0).long(),
                y=torch.randint(2, (30, )))
    mask = torch.rand(30) < 0.5
    model = COIN(4, 2, K=0)
    calls = []
    res = fit(model, data, mask, ~mask, ~mask, epochs=500,
              patience=5,
              progress=lambda e, m: calls.append(m))
    assert res['epochs'] < 500 and len(calls) == res['epochs']
    assert 1 <= res['epoch'] <= res['epochs']
    # The reported epoch is the first one of best validation accuracy, ties
    # broken by the lower validation loss:
    best = max(range(len(calls)),
               key=lambda i: (calls[i]['val_acc'], -calls[i]['val_loss'], -i))
    assert res['epoch'] == best + 1
    assert res['val_acc'] == calls[best]['val_acc']
    assert res['val_loss'] == calls[best]['val_loss']
    # Training stops after `patience` epochs in which neither the validation
    # loss fell nor the validation accuracy rose (the paper's rule):
    best_loss, best_acc, bad = float('inf'), -1.0, 0
    for stop, m in enumerate(calls, 1):
        better = m['val_loss'] < best_loss or m['val_acc'] > best_acc
        bad = 0 if better else bad + 1
        best_loss = min(best_loss, m['val_loss'])
        best_acc = max(best_acc, m['val_acc'])
        if bad >= 5:
            break
    assert res['epochs'] == stop
    # The model is restored to the selected epoch:
    model.eval()
    with torch.no_grad():
        pred = model(data.x, data.edge_index).argmax(-1)
    assert float((pred[~mask] == data.y[~mask]).float().mean()) == \
        pytest.approx(res['test_acc'])
    assert res['time_per_epoch'] > 0
    with pytest.raises(ValueError, match="'epochs' must be positive"):
        fit(model, data, mask, ~mask, ~mask, epochs=0)


class Scripted(torch.nn.Module):
    r"""Evaluates to a scripted probability of the true class on the 4
    validation nodes (labels 0, 0, 1, 1) at each epoch."""
    def __init__(self, script):
        super().__init__()
        self.script, self.calls = script, 0
        self.p = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, edge_index):
        p = torch.full((8, ), 0.5)
        if not self.training:
            p[4:] = torch.tensor(self.script[min(self.calls,
                                                 len(self.script) - 1)])
            self.calls += 1
        correct = torch.stack([p, 1 - p], dim=1)  # class 0 first
        prob = torch.where((torch.arange(8) % 4 < 2).view(-1, 1), correct,
                           correct.flip(1))
        return prob.log() + 0 * self.p


def test_fit_tie_break_and_patience():
    data = Data(x=torch.zeros(8, 1), edge_index=torch.empty(2, 0).long(),
                y=torch.tensor([0, 0, 1, 1, 0, 0, 1, 1]))
    train = torch.arange(8) < 4
    script = [
        [0.9, 0.9, 0.4, 0.4],  # 1: acc 0.50, loss 0.51 (the lowest)
        [0.51, 0.51, 0.51, 0.1],  # 2: acc 0.75, loss 1.08: accuracy rose
        [0.6, 0.6, 0.6, 0.1],  # 3: acc 0.75, loss 0.96: a tie, lower loss
        [0.4, 0.4, 0.9, 0.1],  # 4 on: acc 0.25, loss 1.06
    ]
    res = fit(Scripted(script), data, train, ~train, ~train,
              epochs=50, patience=3)
    assert res['epoch'] == 3  # epoch 2's accuracy, with a lower loss
    assert res['val_acc'] == 0.75
    # Epoch 2 resets the patience (accuracy rose though the loss did not
    # fall); epochs 3, 4, 5 improve on neither: stop after epoch 5.
    assert res['epochs'] == 5


def test_fit_regression_selects_lowest_val_loss():
    import torch.nn.functional as F
    torch.manual_seed(0)
    x = torch.randn(40, 3)
    data = Data(x=x, edge_index=torch.empty(2, 0).long(),
                y=x @ torch.tensor([1., -2., .5]) + 0.1 * torch.randn(40))
    mask = torch.arange(40) < 20
    model = torch.nn.Linear(3, 1)
    calls = []
    res = fit(
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


def test_fit_without_validation():
    torch.manual_seed(0)
    data = Data(x=torch.randn(30, 4), edge_index=torch.empty(2, 0).long(),
                y=torch.randint(2, (30, )))
    mask = torch.rand(30) < 0.5
    model = COIN(4, 2, K=0, dropout=0.)
    calls = []
    res = fit(model, data, mask, None, ~mask, epochs=7,
              progress=lambda e, m: calls.append(m))
    assert len(calls) == 7 and res['epochs'] == res['epoch'] == 7
    assert 'val_acc' not in res
    with torch.no_grad():
        pred = model(data.x, data.edge_index).argmax(-1)
    acc = float((pred[~mask] == data.y[~mask]).float().mean())
    assert res['test_acc'] == acc
    with pytest.raises(ValueError, match="'patience' needs a 'val_mask'"):
        fit(model, data, mask, None, ~mask, patience=3)
