import numpy as np
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
    res, = fit(model, data, mask, ~mask, ~mask, epochs=500,
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
    with pytest.raises(ValueError, match="'epochs' must be an integer >= 1"):
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
    res, = fit(Scripted(script), data, train, ~train, ~train,
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
    res, = fit(
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
    res, = fit(model, data, mask, None, ~mask, epochs=7,
               progress=lambda e, m: calls.append(m))
    assert len(calls) == 7 and res['epochs'] == res['epoch'] == 7
    assert 'val_acc' not in res
    with torch.no_grad():
        pred = model(data.x, data.edge_index).argmax(-1)
    acc = float((pred[~mask] == data.y[~mask]).float().mean())
    assert res['test_acc'] == acc
    with pytest.raises(ValueError, match="'patience' needs a 'val_mask'"):
        fit(model, data, mask, None, ~mask, patience=3)


def toy():
    torch.manual_seed(0)
    data = Data(x=torch.randn(30, 4), edge_index=torch.empty(2, 0).long(),
                y=torch.randint(2, (30, )))
    return data, torch.arange(30) < 15


@pytest.mark.parametrize('name', ['train_mask', 'val_mask', 'test_mask'])
@pytest.mark.parametrize('empty', [torch.zeros(30, dtype=torch.bool),
                                   torch.empty(0, dtype=torch.long)])
def test_fit_empty_masks(name, empty):
    # An empty validation mask made every epoch's metrics NaN: no epoch was
    # selected and the result had no test metrics at all.
    data, mask = toy()
    masks = dict(train_mask=mask, val_mask=~mask, test_mask=~mask)
    masks[name] = empty
    with pytest.raises(ValueError, match=f"'{name}' selects no node"):
        fit(COIN(4, 2, K=0), data, epochs=3, **masks)


@pytest.mark.parametrize('mask,error,match', [
    (torch.ones(29, dtype=torch.bool), ValueError, 'mask of the 30 nodes'),
    (torch.tensor([0, 30]), ValueError, r'indices outside \[0, 30\)'),
    (torch.tensor([-1, 2]), ValueError, r'indices outside \[0, 30\)'),
    (torch.ones(30), TypeError, 'boolean mask or a vector of node indices'),
    (torch.ones(30, 1, dtype=torch.bool), TypeError, 'boolean mask'),
    ([0, 1], TypeError, 'boolean mask'),
])
def test_fit_invalid_masks(mask, error, match):
    data, train = toy()
    with pytest.raises(error, match=f"'val_mask' .*{match}"):
        fit(COIN(4, 2, K=0), data, train, mask, ~train, epochs=2)


def test_fit_index_masks_match_boolean_masks():
    data, mask = toy()
    results = []
    for m in [mask, mask.nonzero().view(-1)]:
        torch.manual_seed(1)
        model = COIN(4, 2, K=0, dropout=0.)
        results.append(fit(model, data, m, ~mask, ~mask, epochs=5)[0])
    for key in ['train_acc', 'val_acc', 'test_acc', 'train_loss', 'epoch']:
        assert results[0][key] == results[1][key]


@pytest.mark.parametrize('kwargs,match', [
    (dict(epochs=2.5), "'epochs' must be an integer"),
    (dict(epochs=True), "'epochs' must be an integer"),
    (dict(lr=0.), "'lr' must be a finite number > 0"),
    (dict(lr=float('nan')), "'lr' must be a finite number"),
    (dict(weight_decay=-1e-3), "'weight_decay' must be a finite number >= "
     "0"),
    # patience=0 stopped after the first epoch, whatever it gave:
    (dict(patience=0), "'patience' must be an integer >= 1"),
    # 'metric' would be ignored without accuracy:
    (dict(accuracy=False, metric=lambda y, p: 1.0), "'metric' scores class "
     "predictions: it needs 'accuracy=True'"),
])
def test_fit_arguments(kwargs, match):
    data, mask = toy()
    with pytest.raises(ValueError, match=match):
        fit(COIN(4, 2, K=0), data, mask, ~mask, ~mask, **kwargs)
    with pytest.raises(TypeError, match="'accuracy' must be True or False"):
        fit(COIN(4, 2, K=0), data, mask, ~mask, ~mask, accuracy='yes')
    # numpy scalars are numbers:
    res, = fit(COIN(4, 2, K=0), data, mask, ~mask, ~mask, epochs=np.int64(3),
               lr=np.float32(0.01), patience=np.int64(2))
    assert res['epochs'] <= 3


class NaNOn(torch.nn.Module):
    r"""Outputs NaN log-probabilities on the given nodes in evaluation from
    epoch :obj:`at` on (or in training, with :obj:`train=True`)."""
    def __init__(self, nodes, at, train=False):
        super().__init__()
        self.lin = torch.nn.Linear(4, 2)
        self.nodes, self.at, self.train_nan = nodes, at, train
        self.evals = self.steps = 0

    def forward(self, x, edge_index):
        out = self.lin(x).log_softmax(-1)
        if self.training:
            self.steps += 1
        else:
            self.evals += 1
        count = self.steps if self.train_nan else self.evals
        if count >= self.at and self.training == self.train_nan:
            out = out.clone()
            out[self.nodes] = float('nan')
        return out


@pytest.mark.parametrize('nodes,split', [(slice(15, 30), 'test'),
                                         (slice(0, 30), 'train')])
def test_fit_nan_in_evaluation(nodes, split):
    # NaN validation metrics were never selected (or, from the first epoch,
    # nothing was, and no metric came back); NaN metrics must stop training,
    # naming the split and the epoch (val and test are nodes 15..29 here):
    data, mask = toy()
    for at in [1, 3]:
        with pytest.raises(FloatingPointError, match=f"The {split} loss is "
                           f"NaN at epoch {at}"):
            fit(NaNOn(nodes, at=at), data, mask, ~mask, ~mask, epochs=10)
    # Without validation, at the final evaluation:
    with pytest.raises(FloatingPointError, match=f"The {split} loss is NaN "
                       f"at epoch 4"):
        fit(NaNOn(nodes, at=1), data, mask, None, ~mask, epochs=4)
    # Only the validation nodes:
    with pytest.raises(FloatingPointError, match="The val loss is NaN at "
                       "epoch 2 .*'val_mask'"):
        fit(NaNOn(slice(20, 25), at=2), data, mask, torch.arange(20, 25),
            torch.arange(25, 30), epochs=10)


def test_fit_nan_training_loss():
    data, mask = toy()
    with pytest.raises(FloatingPointError, match="The training loss is nan "
                       "at epoch 2"):
        fit(NaNOn(slice(0, 30), at=2, train=True), data, mask, ~mask, ~mask,
            epochs=10)


class StackedScripted(torch.nn.Module):
    r"""R :class:`Scripted` models as one stacked model (output
    :obj:`[R, 8, 2]`, one parameter row per run)."""
    def __init__(self, scripts):
        super().__init__()
        self.runs = [Scripted(s) for s in scripts]
        self.num_runs = len(scripts)
        self.p = torch.nn.Parameter(torch.zeros(self.num_runs))

    def forward(self, x, edge_index):
        outs = []
        for run in self.runs:
            run.train(self.training)
            outs.append(run(x, edge_index))
        return torch.stack(outs) + 0 * self.p.view(-1, 1, 1)


def test_fit_stacked_selection_and_patience_per_run():
    # Each run of a stacked model is selected and stopped by the rule of a
    # single run, on its own script: different selected epochs and stops.
    data = Data(x=torch.zeros(8, 1), edge_index=torch.empty(2, 0).long(),
                y=torch.tensor([0, 0, 1, 1, 0, 0, 1, 1]))
    scripts = [
        [[0.9, 0.9, 0.4, 0.4], [0.51, 0.51, 0.51, 0.1],
         [0.6, 0.6, 0.6, 0.1], [0.4, 0.4, 0.9, 0.1]],
        [[0.4, 0.4, 0.4, 0.4], [0.6, 0.4, 0.4, 0.4], [0.6, 0.6, 0.4, 0.4],
         [0.6, 0.6, 0.6, 0.4], [0.6, 0.6, 0.6, 0.6], [0.7, 0.7, 0.7, 0.7],
         [0.3, 0.3, 0.3, 0.3]],
    ]
    train = torch.arange(8) < 4
    singles = [fit(Scripted(s), data, train, ~train, ~train, epochs=50,
                   patience=3)[0] for s in scripts]
    assert [r['epochs'] for r in singles] == [5, 9]
    calls = []
    masks = train.expand(2, 8)
    results = fit(StackedScripted(scripts), data, masks, ~masks, ~masks,
                  epochs=50, patience=3,
                  progress=lambda e, m: calls.append(m))
    assert len(calls) == 9 and calls[0]['val_acc'].shape == (2, )
    for single, res in zip(singles, results):
        assert res['runs'] == 2
        for key in single:
            if key not in ('time_per_epoch', 'runs'):
                assert res[key] == pytest.approx(single[key]), key
