"""The one training loop of the benchmarks: :func:`fit` trains a model on the
nodes of one graph, full batch, and evaluates it at its best validation
epoch (classification by accuracy, or regression by a loss)."""
import copy
import statistics
import time
from typing import Any, Callable, Dict, Iterable, List, Optional

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric_coin._checks import check_bool, check_number


@torch.no_grad()
def _evaluate(model: torch.nn.Module, forward: Callable, data: Any,
              y: Tensor, masks: Dict[str, Tensor], loss_fn: Callable,
              accuracy: bool,
              metric: Optional[Callable[[Tensor, Tensor], float]],
              ) -> Dict[str, float]:
    model.eval()
    out = forward(model, data)
    res = {}
    for name, mask in masks.items():
        res[f'{name}_loss'] = float(loss_fn(out[mask], y[mask]))
        if accuracy:
            pred = out[mask].argmax(dim=-1)
            res[f'{name}_acc'] = (
                float((pred == y[mask]).float().mean()) if metric is None
                else float(metric(y[mask], pred)))
    return res


def _check_finite(metrics: Dict[str, float], epoch: int):
    r"""Raises a :class:`FloatingPointError` on a NaN metric (a loss or score
    over an empty or NaN output), instead of selecting or returning it."""
    for key, value in metrics.items():
        if math.isnan(value):
            split, what = key.split('_')
            what = {'acc': 'score', 'loss': 'loss'}[what]
            raise FloatingPointError(
                f"The {split} {what} is NaN at epoch {epoch} (the model "
                f"output NaN on the '{split}_mask' nodes)")


def _check_mask(name: str, mask: Any, num_nodes: int) -> None:
    if not isinstance(mask, Tensor) or mask.dtype.is_floating_point \
            or mask.dtype.is_complex or mask.dim() != 1:
        got = (f'{mask.dtype} of shape {tuple(mask.shape)}'
               if isinstance(mask, Tensor) else type(mask).__name__)
        raise TypeError(f"'{name}' must be a boolean mask or a vector of "
                        f"node indices (got {got})")
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
    r"""The benchmarks' Adam: PyTorch's fused implementation where it runs
    (floating-point parameters on the CPU or CUDA), the same update in one
    kernel per step (on the CPU about 6x faster than the default loop for
    the 2 M parameters of COIN at the authors' width), otherwise the
    default."""
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


def fit(
    model: torch.nn.Module,
    data: Any,
    train_mask: Tensor,
    val_mask: Optional[Tensor],
    test_mask: Tensor,
    epochs: int = 200,
    lr: float = 0.01,
    weight_decay: float = 5e-4,
    patience: Optional[int] = None,
    forward: Optional[Callable[[torch.nn.Module, Any], Tensor]] = None,
    progress: Optional[Callable[[int, Dict[str, float]], None]] = None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.nll_loss,
    accuracy: bool = True,
    param_groups: Optional[Iterable[Dict[str, Any]]] = None,
    metric: Optional[Callable[[Tensor, Tensor], float]] = None,
) -> List[Dict[str, float]]:
    r"""Trains a transductive node model with Adam, full batch: by default a
    classifier that returns log-probabilities, with the negative
    log-likelihood, evaluated at the epoch of best validation accuracy (ties:
    lower validation loss). The one training loop of the benchmarks.

    With :obj:`patience`, training stops once neither the validation loss
    fell nor the validation accuracy rose for :obj:`patience` epochs (the
    protocol of GAT and of the COIN paper).

    Without a validation set (:obj:`val_mask=None`, *e.g.*, few-shot
    episodes), it trains for :obj:`epochs` epochs and evaluates the final
    model once. With :obj:`accuracy=False` and another :obj:`loss_fn`
    (*e.g.*, :obj:`F.mse_loss` for node regression), the best epoch is the
    one of lowest validation loss and early stopping watches the validation
    loss only.

    **Stacked runs.** With boolean masks of shape :obj:`[R, N]` and a
    stacked model (:func:`models.stack`: a :obj:`num_runs` attribute R, every
    parameter with a leading dimension R, output :obj:`[R, N, C]`
    log-probabilities), it trains R independent runs at once, each on its
    own masks: the loss is the sum over the runs of each run's mean
    negative log-likelihood on its training nodes, so that each run gets the
    gradient it would get alone (Adam and its weight decay act element by
    element). Evaluation, best-epoch selection and early stopping are per
    run, as tensors read from the device once per epoch: a run that stopped
    keeps being computed, but its selection is frozen, and training ends
    when all runs stopped (or after :obj:`epochs`). Each run's parameters
    (rows of the stacked ones) are restored to its selected epoch. Only the
    default :obj:`loss_fn`, :obj:`accuracy=True` and no :obj:`metric`;
    :obj:`progress` gets tensors of R values.

    Empty masks are refused (:class:`ValueError`), and a NaN loss or score
    stops training with a :class:`FloatingPointError` that names the epoch
    (never a selection among NaN, or NaN metrics).

    Args:
        model (torch.nn.Module): The model, called as
            :obj:`forward(model, data)`.
        data (torch_geometric.data.Data): The graph, with :obj:`x`,
            :obj:`edge_index` and :obj:`y`.
        train_mask (torch.Tensor): Training nodes (boolean mask or indices),
            at least one; :obj:`[R, N]` boolean masks for stacked runs
            (then also :obj:`val_mask` and :obj:`test_mask`).
        val_mask (torch.Tensor, optional): Validation nodes (at least one),
            or :obj:`None` for no model selection.
        test_mask (torch.Tensor): Test nodes, at least one.
        epochs (int, optional): Maximum number of epochs, :obj:`>= 1`.
            (default: :obj:`200`)
        lr (float, optional): Learning rate, :obj:`> 0`.
            (default: :obj:`0.01`)
        weight_decay (float, optional): Weight decay, :obj:`>= 0`.
            (default: :obj:`5e-4`)
        patience (int, optional): Early-stopping patience, :obj:`>= 1`
            (needs :obj:`val_mask`). (default: :obj:`None`)
        forward (Callable, optional): How to call the model; by default
            :obj:`model(data.x, data.edge_index[, data.edge_weight])`.
        progress (Callable, optional): Called as :obj:`progress(epoch,
            metrics)` after each epoch.
        loss_fn (Callable, optional): The training and evaluation loss,
            called as :obj:`loss_fn(out[mask], data.y[mask])`.
            (default: :obj:`F.nll_loss`)
        accuracy (bool, optional): Whether the outputs are class scores
            whose :obj:`argmax` is scored by accuracy (and selects the best
            epoch). (default: :obj:`True`)
        param_groups (Iterable[dict], optional): Parameter groups of Adam
            with their own options (*e.g.*, GCNII's per-layer weight decay);
            :obj:`lr` and :obj:`weight_decay` are their defaults. By default,
            all of :obj:`model.parameters()`. (default: :obj:`None`)
        metric (Callable, optional): The accuracy-like score, called as
            :obj:`metric(y_true, y_pred)` on the nodes of each split with
            predicted class indices (*e.g.*, an OGB :obj:`Evaluator`), and
            reported as :obj:`*_acc`; by default the accuracy (only with
            :obj:`accuracy=True`). (default: :obj:`None`)

    Returns:
        A list with one dictionary per run (one for a single model, R for
        stacked runs): :obj:`train_acc`, :obj:`val_acc`, :obj:`test_acc`
        (with :obj:`accuracy=True`), the matching losses, :obj:`epoch` (the
        selected epoch, the last one without :obj:`val_mask`),
        :obj:`epochs` (the number run), :obj:`time_per_epoch` (the median
        seconds of a training step, of all runs together) and :obj:`runs`
        (R, 1 for a single model).
    """
    check_number('epochs', epochs, integer=True, low=1)
    check_number('lr', lr, low=0, open_low=True)
    check_number('weight_decay', weight_decay, low=0)
    if patience is not None:
        check_number('patience', patience, integer=True, low=1)
    if val_mask is None and patience is not None:
        raise ValueError("'patience' needs a 'val_mask'")
    check_bool('accuracy', accuracy)
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

        if val_mask is None:
            metrics = runs.train_metrics(loss, epoch)
            if progress is not None:
                progress(epoch, metrics)
            continue
        metrics = runs.evaluate(model, forward, data)
        if progress is not None:
            progress(epoch, metrics)
        if runs.select(model, epoch, metrics):
            break
    return runs.result(model, forward, data, epoch,
                       statistics.median(times))


class _Run:
    r"""The bookkeeping of :func:`fit` for one model: its training loss,
    evaluation, best-epoch selection, early stopping and result."""
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
        self.best_loss, self.best_acc, self.bad_epochs = (float('inf'), -1.0,
                                                          0)

    def train_loss(self, out: Tensor, epoch: int) -> Tensor:
        y, mask = self.y, self.train_mask
        loss = self.loss_fn(out[mask], y[mask])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"The training loss is {loss.item()} "
                                     f"at epoch {epoch}")
        return loss

    def train_metrics(self, loss: Tensor, epoch: int) -> Dict[str, float]:
        return {'train_loss': loss.item()}

    def evaluate(self, model, forward, data) -> Dict[str, float]:
        return _evaluate(model, forward, data, self.y, self.masks,
                         self.loss_fn, self.accuracy, self.metric)

    def select(self, model, epoch: int, metrics: Dict[str, float]) -> bool:
        r"""Keeps the epoch if it is the best so far; returns whether
        training stops (early stopping)."""
        _check_finite(metrics, epoch)
        val_loss = metrics['val_loss']
        val_acc = metrics['val_acc'] if self.accuracy else -val_loss
        best = self.best
        if (val_acc > best.get('_score', -float('inf'))
                or (val_acc == best.get('_score')
                    and val_loss < best['val_loss'])):
            self.best = dict(metrics, epoch=epoch, _score=val_acc)
            self.best_state = copy.deepcopy(model.state_dict())
        if val_loss < self.best_loss or (self.accuracy
                                         and val_acc > self.best_acc):
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
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
        got = (f'{mask.dtype} of shape {tuple(mask.shape)}'
               if isinstance(mask, Tensor) else type(mask).__name__)
        raise TypeError(f"'{name}' of stacked runs must be a boolean mask of "
                        f"shape [num_runs, num_nodes] = [{num_runs}, "
                        f"{num_nodes}] (got {got})")
    count = mask.sum(dim=1)
    empty = (count == 0).nonzero().view(-1).tolist()
    if empty:
        raise ValueError(f"'{name}' selects no node in run {empty[0]} (its "
                         f"loss and metrics would be NaN)")
    return count


class _StackedRuns:
    r"""The bookkeeping of :func:`fit` for R runs stacked in one model
    (:func:`models.stack`): per-run losses, metrics, selection and early
    stopping as tensors of R entries, read from the device once per epoch."""
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
                            f"models.stack), not "
                            f"{type(model).__name__}")
        self.params = list(model.parameters())
        for name, p in model.named_parameters():
            if p.dim() == 0 or p.size(0) != R:
                raise ValueError(f"Every parameter of a stacked model must "
                                 f"have a leading dimension of num_runs={R} "
                                 f"('{name}' has shape {list(p.shape)})")
        N = y.size(0)
        self.y, self.R, self.patience = y, R, patience
        self.masks, self.counts = {}, {}
        for name, mask in (('train', train_mask), ('test', test_mask),
                           ('val', val_mask)):
            if mask is not None or name != 'val':
                self.counts[name] = _check_stacked_mask(
                    f'{name}_mask', mask, R, N).to(y.device)
                self.masks[name] = mask.to(y.device)
        self.has_val = val_mask is not None
        device = y.device
        self.active = torch.ones(R, dtype=torch.bool, device=device)
        self.stopped_at = torch.zeros(R, dtype=torch.long, device=device)
        self.best_epoch = torch.zeros(R, dtype=torch.long, device=device)
        self.best: Dict[str, Tensor] = {}
        self.best_params = [p.detach().clone() for p in self.params]
        self.best_loss = self.best_acc = None  # early stopping
        self.bad_epochs = torch.zeros(R, dtype=torch.long, device=device)
        self._train_losses = None

    def _nll(self, out: Tensor) -> Tensor:
        R, N = self.R, self.y.size(0)
        if out.dim() != 3 or out.shape[:2] != (R, N):
            raise ValueError(f"A stacked model must output [num_runs, "
                             f"num_nodes, num_classes] = [{R}, {N}, C] "
                             f"log-probabilities (got {list(out.shape)})")
        index = self.y.view(1, N, 1).expand(R, N, 1)
        return -out.gather(2, index).squeeze(2)

    def _mean(self, values: Tensor, split: str) -> Tensor:
        mask = self.masks[split]
        zero = values.new_zeros(())
        return torch.where(mask, values, zero).sum(1) / self.counts[split]

    def train_loss(self, out: Tensor, epoch: int) -> Tensor:
        r"""The sum over the runs of each run's mean loss on its own
        training nodes (each run gets its own gradient). Its finiteness is
        checked with the epoch's one read."""
        losses = self._mean(self._nll(out), 'train')
        self._train_losses = losses.detach()
        return losses.sum()

    def _check_train(self, bad: bool, epoch: int):
        if bad:
            losses = self._train_losses
            run = int((~torch.isfinite(losses) & self.active).nonzero()[0])
            raise FloatingPointError(f"The training loss is "
                                     f"{float(losses[run])} at epoch {epoch} "
                                     f"(run {run})")

    def train_metrics(self, loss: Tensor, epoch: int) -> Dict[str, Tensor]:
        self._check_train(not bool(torch.isfinite(self._train_losses).all()),
                          epoch)
        return {'train_loss': self._train_losses}

    @torch.no_grad()
    def evaluate(self, model, forward, data) -> Dict[str, Tensor]:
        r"""Per-run losses and accuracies, tensors of R entries (on the
        device)."""
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
        r"""Per run: keeps the epoch (metrics and parameters) if it is the
        best so far, and stops the run after :obj:`patience` epochs without
        progress (a stopped run keeps being computed, but its selection is
        frozen). Returns whether all runs stopped."""
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
        # runs still active, and whether any run is.
        keys = list(metrics)
        flags = torch.cat([
            torch.stack([(torch.isnan(metrics[k]) & active).any()
                         for k in keys]),
            (~torch.isfinite(self._train_losses) & active).any().view(1),
            (active & ~stop).any().view(1)]).tolist()
        self._check_train(flags[-2], epoch)
        for key, nan in zip(keys, flags):
            if nan:
                run = int((torch.isnan(metrics[key]) & active).nonzero()[0])
                split, what = key.split('_')
                what = {'acc': 'score', 'loss': 'loss'}[what]
                raise FloatingPointError(
                    f"The {split} {what} is NaN at epoch {epoch} in run "
                    f"{run} (the model output NaN on the '{split}_mask' "
                    f"nodes)")
        self.active = active & ~stop
        return not flags[-1]

    @torch.no_grad()
    def result(self, model, forward, data, epoch: int,
               time_per_epoch: float) -> List[Dict[str, float]]:
        if not self.has_val:
            best = self.evaluate(model, forward, data)
            epochs = torch.full((self.R, ), epoch, dtype=torch.long)
            chosen = epochs
        else:
            best = self.best
            for p, b in zip(self.params, self.best_params):
                p.copy_(b)
            epochs = torch.where(self.stopped_at > 0, self.stopped_at, epoch)
            chosen = self.best_epoch
        keys = list(best)
        values = torch.stack([best[k].double().cpu() for k in keys]).t()
        if not self.has_val and bool(torch.isnan(values).any()):
            key = keys[int(torch.isnan(values).any(0).nonzero()[0])]
            split, what = key.split('_')
            raise FloatingPointError(
                f"The {split} {'score' if what == 'acc' else 'loss'} is NaN "
                f"at epoch {epoch} (the model output NaN on the "
                f"'{split}_mask' nodes)")
        out = []
        for row, e, n in zip(values.tolist(), chosen.tolist(),
                             epochs.tolist()):
            res = dict(zip(keys, row))
            res.update(epoch=e, epochs=n, time_per_epoch=time_per_epoch,
                       runs=self.R)
            out.append(res)
        return out
