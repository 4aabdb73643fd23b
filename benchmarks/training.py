"""The one training loop of the benchmarks: :func:`fit` trains a node model,
full batch, and evaluates it at its best validation epoch."""
import copy
import math
import numbers
import statistics
import time
from typing import Any, Callable, Dict, Iterable, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def _check_number(name: str, value: Any, integer: bool, low: float,
                  open_low: bool = False) -> None:
    if not (isinstance(value, numbers.Integral if integer else numbers.Real)
            and not isinstance(value, bool) and math.isfinite(value)
            and (value > low or (value == low and not open_low))):
        what = 'an integer' if integer else 'a finite number'
        raise ValueError(f"'{name}' must be {what} "
                         f"{'>' if open_low else '>='} {low} (got {value!r})")


def _nan_error(key: str, epoch: int, run: Optional[int] = None):
    split, what = key.split('_')
    return FloatingPointError(
        f"The {split} {'score' if what == 'acc' else 'loss'} is NaN at epoch "
        f"{epoch}{'' if run is None else f' in run {run}'} (the model output "
        f"NaN on the '{split}_mask' nodes)")


def _check_finite(metrics: Dict[str, float], epoch: int):
    for key, value in metrics.items():
        if math.isnan(value):
            raise _nan_error(key, epoch)


def _got(mask: Any) -> str:
    return (f'{mask.dtype} of shape {tuple(mask.shape)}'
            if isinstance(mask, Tensor) else type(mask).__name__)


def _check_mask(name: str, mask: Any, num_nodes: int) -> None:
    if not isinstance(mask, Tensor) or mask.dtype.is_floating_point \
            or mask.dtype.is_complex or mask.dim() != 1:
        raise TypeError(f"'{name}' must be a boolean mask or a vector of "
                        f"node indices (got {_got(mask)})")
    if mask.dtype == torch.bool:
        if mask.numel() != num_nodes:
            raise ValueError(f"'{name}' must be a boolean mask of the "
                             f"{num_nodes} nodes of 'data.y' (got "
                             f"{mask.numel()} entries)")
        count = int(mask.sum())
    else:
        count = mask.numel()
        if count > 0 and (int(mask.min()) < 0
                          or int(mask.max()) >= num_nodes):
            raise ValueError(f"'{name}' holds node indices outside "
                             f"[0, {num_nodes})")
    if count == 0:
        raise ValueError(f"'{name}' selects no node (its loss and metrics "
                         f"would be NaN)")


def adam(params: Iterable[Any], lr: float = 0.01,
         weight_decay: float = 5e-4) -> torch.optim.Adam:
    r"""Adam, fused (one kernel per step) where all parameters are
    floating-point tensors on the CPU or CUDA."""
    params = [dict(g, params=list(g['params'])) if isinstance(g, dict)
              else g for g in params]
    tensors = [p for group in params for p in (
        group['params'] if isinstance(group, dict) else [group])]
    fused = all(isinstance(p, Tensor) and p.dtype.is_floating_point
                and p.device.type in ('cpu', 'cuda') for p in tensors)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay,
                            fused=fused or None)


def _default_forward(model: torch.nn.Module, data: Any) -> Tensor:
    edge_weight = getattr(data, 'edge_weight', None)
    if edge_weight is None:
        return model(data.x, data.edge_index)
    return model(data.x, data.edge_index, edge_weight)


def fit(model: torch.nn.Module, data: Any, train_mask: Tensor,
        val_mask: Optional[Tensor], test_mask: Tensor, epochs: int = 200,
        lr: float = 0.01, weight_decay: float = 5e-4,
        patience: Optional[int] = None, forward: Optional[Callable] = None,
        progress: Optional[Callable[[int, Dict], None]] = None,
        loss_fn: Callable[[Tensor, Tensor], Tensor] = F.nll_loss,
        accuracy: bool = True, param_groups: Optional[Iterable[Dict]] = None,
        metric: Optional[Callable[[Tensor, Tensor], float]] = None,
        ) -> List[Dict[str, float]]:
    r"""Trains a transductive node model with Adam, full batch, on the
    nodes of :obj:`train_mask` (a boolean mask or node indices), calling
    :obj:`forward(model, data)` (default: :obj:`model(x, edge_index[,
    edge_weight])`) and :obj:`progress(epoch, metrics)` after each epoch,
    and returns the metrics of the epoch of best validation accuracy (ties:
    lower validation loss), with the model restored to that epoch.

    With :obj:`patience`, training stops once neither the validation loss
    fell nor the validation accuracy rose for :obj:`patience` epochs.
    Without :obj:`val_mask`, the final model is evaluated. With
    :obj:`accuracy=False` (*e.g.*, :obj:`loss_fn=F.mse_loss`), selection
    and early stopping watch the validation loss only. :obj:`metric(y_true,
    y_pred)` replaces the accuracy (*e.g.*, an OGB :obj:`Evaluator`);
    :obj:`param_groups` replaces :obj:`model.parameters()` in Adam.

    **Stacked runs.** With :obj:`[R, N]` boolean masks and a stacked model
    (:func:`models.stack`), it trains R runs at once: the loss is the sum of
    each run's mean NLL on its own nodes; selection and early stopping are
    per run (a stopped run is frozen), and each run's parameters are
    restored to its selected epoch. Default :obj:`loss_fn` and
    :obj:`accuracy` only; :obj:`progress` gets tensors of R values.
    Empty masks raise a :class:`ValueError`, a NaN loss or score a
    :class:`FloatingPointError`.

    Returns one dictionary per run: :obj:`train/val/test_acc` and
    :obj:`_loss`, :obj:`epoch` (selected), :obj:`epochs` (run), the median
    :obj:`time_per_epoch` and :obj:`runs`.
    """
    _check_number('epochs', epochs, integer=True, low=1)
    _check_number('lr', lr, integer=False, low=0, open_low=True)
    _check_number('weight_decay', weight_decay, integer=False, low=0)
    if patience is not None:
        _check_number('patience', patience, integer=True, low=1)
    if val_mask is None and patience is not None:
        raise ValueError("'patience' needs a 'val_mask'")
    if not isinstance(accuracy, (bool, np.bool_)):
        raise TypeError(f"'accuracy' must be True or False (got "
                        f"{accuracy!r})")
    if metric is not None and not accuracy:
        raise ValueError("'metric' scores class predictions: it needs "
                         "'accuracy=True'")
    forward = forward or _default_forward
    y = data.y.view(-1) if accuracy else data.y
    if isinstance(train_mask, Tensor) and train_mask.dim() == 2:
        runs = _StackedRuns(model, y, train_mask, val_mask, test_mask,
                            loss_fn, accuracy, metric, patience)
    else:
        runs = _Run(y, train_mask, val_mask, test_mask, loss_fn, accuracy,
                    metric, patience)
    params = model.parameters() if param_groups is None else param_groups
    optimizer = adam(params, lr=lr, weight_decay=weight_decay)
    times = []
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        optimizer.zero_grad()
        out = forward(model, data)
        loss = runs.train_loss(out, epoch)
        loss.backward()
        optimizer.step()
        if loss.is_cuda:  # the backward pass and the step run asynchronously
            torch.cuda.synchronize(loss.device)
        times.append(time.perf_counter() - start)

        metrics = (runs.train_metrics(loss, epoch) if val_mask is None
                   else runs.evaluate(model, forward, data))
        if progress is not None:
            progress(epoch, metrics)
        if val_mask is not None and runs.select(model, epoch, metrics):
            break
    return runs.result(model, forward, data, epoch,
                       statistics.median(times))


class _Run:
    r"""The bookkeeping of :func:`fit` for one model."""
    def __init__(self, y, train_mask, val_mask, test_mask, loss_fn,
                 accuracy, metric, patience):
        for name, mask in (('train_mask', train_mask), ('val_mask', val_mask),
                           ('test_mask', test_mask)):
            if mask is not None or name != 'val_mask':
                _check_mask(name, mask, y.size(0))
        self.y, self.train_mask, self.loss_fn = y, train_mask, loss_fn
        self.accuracy, self.metric, self.patience = accuracy, metric, patience
        self.masks = {'train': train_mask, 'test': test_mask}
        if val_mask is not None:
            self.masks['val'] = val_mask
        self.has_val = val_mask is not None
        self.best: Dict[str, float] = {}
        self.best_state = None
        self.best_loss, self.best_acc, self.bad_epochs = float('inf'), -1., 0

    def train_loss(self, out: Tensor, epoch: int) -> Tensor:
        loss = self.loss_fn(out[self.train_mask], self.y[self.train_mask])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"The training loss is {loss.item()} "
                                     f"at epoch {epoch}")
        return loss

    def train_metrics(self, loss: Tensor, epoch: int) -> Dict[str, float]:
        return {'train_loss': loss.item()}

    @torch.no_grad()
    def evaluate(self, model, forward, data) -> Dict[str, float]:
        model.eval()
        out, y = forward(model, data), self.y
        res = {}
        for name, mask in self.masks.items():
            res[f'{name}_loss'] = float(self.loss_fn(out[mask], y[mask]))
            if self.accuracy:
                pred = out[mask].argmax(dim=-1)
                res[f'{name}_acc'] = (
                    float((pred == y[mask]).float().mean())
                    if self.metric is None
                    else float(self.metric(y[mask], pred)))
        return res

    def select(self, model, epoch: int, metrics: Dict[str, float]) -> bool:
        r"""Keeps the epoch if it is the best so far; returns whether
        training stops."""
        _check_finite(metrics, epoch)
        val_loss = metrics['val_loss']
        val_acc = metrics['val_acc'] if self.accuracy else -val_loss
        best = self.best
        if (val_acc > best.get('_score', -float('inf'))
                or (val_acc == best.get('_score')
                    and val_loss < best['val_loss'])):
            self.best = dict(metrics, epoch=epoch, _score=val_acc)
            self.best_state = copy.deepcopy(model.state_dict())
        better = val_loss < self.best_loss or (self.accuracy
                                               and val_acc > self.best_acc)
        self.bad_epochs = 0 if better else self.bad_epochs + 1
        self.best_loss = min(self.best_loss, val_loss)
        self.best_acc = max(self.best_acc, val_acc)
        return self.patience is not None and \
            self.bad_epochs >= self.patience

    def result(self, model, forward, data, epoch: int,
               time_per_epoch: float) -> List[Dict[str, float]]:
        if not self.has_val:
            best = self.evaluate(model, forward, data)
            _check_finite(best, epoch)
            best['epoch'] = epoch
        else:  # (Every epoch has finite metrics: one was selected.)
            best = self.best
            model.load_state_dict(self.best_state)
            del best['_score']
        best.update(epochs=epoch, time_per_epoch=time_per_epoch, runs=1)
        return [best]


def _check_stacked_mask(name: str, mask: Any, num_runs: int,
                        num_nodes: int) -> Tensor:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool \
            or mask.shape != (num_runs, num_nodes):
        raise TypeError(f"'{name}' of stacked runs must be a boolean mask of "
                        f"shape [num_runs, num_nodes] = [{num_runs}, "
                        f"{num_nodes}] (got {_got(mask)})")
    count = mask.sum(dim=1)
    empty = (count == 0).nonzero().view(-1).tolist()
    if empty:
        raise ValueError(f"'{name}' selects no node in run {empty[0]} (its "
                         f"loss and metrics would be NaN)")
    return count


class _StackedRuns:
    r"""The bookkeeping of :func:`fit` for R stacked runs, as tensors of R
    entries read from the device once per epoch."""
    def __init__(self, model, y, train_mask, val_mask, test_mask, loss_fn,
                 accuracy, metric, patience):
        if not accuracy or metric is not None or loss_fn is not F.nll_loss:
            raise ValueError("Stacked runs (masks of shape [num_runs, "
                             "num_nodes]) train classifiers with the default "
                             "'loss_fn' (F.nll_loss), 'accuracy=True' and no "
                             "'metric'")
        R = getattr(model, 'num_runs', None)
        if R is None:
            raise TypeError(f"Masks of shape [num_runs, num_nodes] train the "
                            f"runs of a stacked model (with 'num_runs', see "
                            f"models.stack), not {type(model).__name__}")
        self.params = list(model.parameters())
        for name, p in model.named_parameters():
            if p.dim() == 0 or p.size(0) != R:
                raise ValueError(f"Every parameter of a stacked model must "
                                 f"have a leading dimension of num_runs={R} "
                                 f"('{name}' has shape {list(p.shape)})")
        N, device = y.size(0), y.device
        self.y, self.R, self.patience = y, R, patience
        self.masks, self.counts = {}, {}
        for name, mask in (('train', train_mask), ('test', test_mask),
                           ('val', val_mask)):
            if mask is not None or name != 'val':
                self.counts[name] = _check_stacked_mask(
                    f'{name}_mask', mask, R, N).to(device)
                self.masks[name] = mask.to(device)
        self.has_val = val_mask is not None
        self.active = torch.ones(R, dtype=torch.bool, device=device)
        self.stopped_at = torch.zeros(R, dtype=torch.long, device=device)
        self.best_epoch = torch.zeros(R, dtype=torch.long, device=device)
        self.best: Dict[str, Tensor] = {}
        self.best_params = [p.detach().clone() for p in self.params]
        self.best_loss = self.best_acc = None  # early stopping
        self.bad_epochs = torch.zeros(R, dtype=torch.long, device=device)
        self.train_losses = None

    def _nll(self, out: Tensor) -> Tensor:
        R, N = self.R, self.y.size(0)
        if out.dim() != 3 or out.shape[:2] != (R, N):
            raise ValueError(f"A stacked model must output [num_runs, "
                             f"num_nodes, num_classes] = [{R}, {N}, C] "
                             f"log-probabilities (got {list(out.shape)})")
        index = self.y.view(1, N, 1).expand(R, N, 1)
        return -out.gather(2, index).squeeze(2)

    def _mean(self, values: Tensor, split: str) -> Tensor:
        zero = values.new_zeros(())
        return torch.where(self.masks[split], values, zero).sum(1) / \
            self.counts[split]

    def train_loss(self, out: Tensor, epoch: int) -> Tensor:
        losses = self._mean(self._nll(out), 'train')
        self.train_losses = losses.detach()  # checked with the epoch's read
        return losses.sum()

    def _check_train(self, bad: bool, epoch: int):
        if bad:
            losses = self.train_losses
            run = int((~torch.isfinite(losses) & self.active).nonzero()[0])
            raise FloatingPointError(f"The training loss is "
                                     f"{float(losses[run])} at epoch {epoch} "
                                     f"(run {run})")

    def train_metrics(self, loss: Tensor, epoch: int) -> Dict[str, Tensor]:
        self._check_train(not bool(torch.isfinite(self.train_losses).all()),
                          epoch)
        return {'train_loss': self.train_losses}

    @torch.no_grad()
    def evaluate(self, model, forward, data) -> Dict[str, Tensor]:
        model.eval()
        out = forward(model, data)
        nll = self._nll(out)
        correct = (out.argmax(dim=-1) == self.y.view(1, -1)).float()
        res = {}
        for name in self.masks:
            res[f'{name}_loss'] = self._mean(nll, name)
            res[f'{name}_acc'] = self._mean(correct, name)
        return res

    @torch.no_grad()
    def select(self, model, epoch: int, metrics: Dict[str, Tensor]) -> bool:
        r"""Per run: keeps the epoch if it is the best so far and stops the
        run after :obj:`patience` epochs without progress. Returns whether
        all runs stopped."""
        active, R = self.active, self.R
        val_loss, val_acc = metrics['val_loss'], metrics['val_acc']
        if not self.best:
            self.best = {k: torch.full_like(v, float('nan'))
                         for k, v in metrics.items()}
            self.best_loss = torch.full_like(val_loss, float('inf'))
            self.best_acc = torch.full_like(val_acc, -1.0)
        best_score, best_val_loss = self.best['val_acc'], self.best['val_loss']
        first = self.best_epoch == 0
        improved = active & (first | (val_acc > best_score) | (
            (val_acc == best_score) & (val_loss < best_val_loss)))
        for key, value in metrics.items():
            self.best[key] = torch.where(improved, value, self.best[key])
        self.best_epoch = torch.where(improved, epoch, self.best_epoch)
        for p, b in zip(self.params, self.best_params):
            b.copy_(torch.where(improved.view((R, ) + (1, ) * (p.dim() - 1)),
                                p, b))
        better = (val_loss < self.best_loss) | (val_acc > self.best_acc)
        self.bad_epochs = torch.where(active & ~better, self.bad_epochs + 1,
                                      torch.where(active, 0, self.bad_epochs))
        self.best_loss = torch.where(
            active, torch.minimum(self.best_loss, val_loss), self.best_loss)
        self.best_acc = torch.where(
            active, torch.maximum(self.best_acc, val_acc), self.best_acc)
        stop = active & (self.bad_epochs >= self.patience) \
            if self.patience is not None else torch.zeros_like(active)
        self.stopped_at = torch.where(stop, epoch, self.stopped_at)
        # The one read of the epoch: NaN metrics or training losses of the
        # active runs, and whether any run is still active.
        keys = list(metrics)
        flags = torch.cat([
            torch.stack([(torch.isnan(metrics[k]) & active).any()
                         for k in keys]),
            (~torch.isfinite(self.train_losses) & active).any().view(1),
            (active & ~stop).any().view(1)]).tolist()
        self._check_train(flags[-2], epoch)
        for key, nan in zip(keys, flags):
            if nan:
                run = int((torch.isnan(metrics[key]) & active).nonzero()[0])
                raise _nan_error(key, epoch, run)
        self.active = active & ~stop
        return not flags[-1]

    @torch.no_grad()
    def result(self, model, forward, data, epoch: int,
               time_per_epoch: float) -> List[Dict[str, float]]:
        if not self.has_val:
            best = self.evaluate(model, forward, data)
            chosen = epochs = torch.full((self.R, ), epoch, dtype=torch.long)
        else:
            best = self.best
            for p, b in zip(self.params, self.best_params):
                p.copy_(b)
            epochs = torch.where(self.stopped_at > 0, self.stopped_at, epoch)
            chosen = self.best_epoch
        keys = list(best)
        values = torch.stack([best[k].double().cpu() for k in keys]).t()
        if not self.has_val and bool(torch.isnan(values).any()):
            raise _nan_error(
                keys[int(torch.isnan(values).any(0).nonzero()[0])], epoch)
        out = []
        for row, e, n in zip(values.tolist(), chosen.tolist(),
                             epochs.tolist()):
            res = dict(zip(keys, row))
            res.update(epoch=e, epochs=n, time_per_epoch=time_per_epoch,
                       runs=self.R)
            out.append(res)
        return out
