"""The one training loop of the benchmarks: :func:`fit` trains a model on the
nodes of one graph, full batch, and evaluates it at its best validation
epoch (classification by accuracy, or regression by a loss)."""
import copy
import statistics
import time
from typing import Any, Callable, Dict, Iterable, Optional

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
) -> Dict[str, float]:
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

    Empty masks are refused (:class:`ValueError`), and a NaN loss or score
    stops training with a :class:`FloatingPointError` that names the epoch
    (never a selection among NaN, or NaN metrics).

    Args:
        model (torch.nn.Module): The model, called as
            :obj:`forward(model, data)`.
        data (torch_geometric.data.Data): The graph, with :obj:`x`,
            :obj:`edge_index` and :obj:`y`.
        train_mask (torch.Tensor): Training nodes (boolean mask or indices),
            at least one.
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
        A dictionary with :obj:`train_acc`, :obj:`val_acc`, :obj:`test_acc`
        (with :obj:`accuracy=True`), the matching losses, :obj:`epoch`
        (the selected epoch, the last one without :obj:`val_mask`),
        :obj:`epochs` (the number run) and :obj:`time_per_epoch` (the median
        seconds of a training step).
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
    for name, mask in (('train_mask', train_mask), ('val_mask', val_mask),
                       ('test_mask', test_mask)):
        if mask is not None or name != 'val_mask':
            _check_mask(name, mask, y.size(0))
    masks = {'train': train_mask, 'test': test_mask}
    if val_mask is not None:
        masks['val'] = val_mask
    params = model.parameters() if param_groups is None else param_groups
    optimizer = torch.optim.Adam(params, lr=lr,
                                 weight_decay=weight_decay)
    best: Dict[str, float] = {}
    best_state = None
    best_loss, best_acc, bad_epochs = float('inf'), -1.0, 0
    times = []
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        optimizer.zero_grad()
        out = forward(model, data)
        loss = loss_fn(out[train_mask], y[train_mask])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"The training loss is {loss.item()} "
                                     f"at epoch {epoch}")
        loss.backward()
        optimizer.step()
        if loss.is_cuda:  # the backward pass and the step run asynchronously
            torch.cuda.synchronize(loss.device)
        times.append(time.perf_counter() - start)

        if val_mask is None:
            if progress is not None:
                progress(epoch, {'train_loss': loss.item()})
            continue
        metrics = _evaluate(model, forward, data, y, masks, loss_fn,
                            accuracy, metric)
        if progress is not None:
            progress(epoch, metrics)
        _check_finite(metrics, epoch)
        val_loss = metrics['val_loss']
        val_acc = metrics['val_acc'] if accuracy else -val_loss
        if (val_acc > best.get('_score', -float('inf'))
                or (val_acc == best.get('_score')
                    and val_loss < best['val_loss'])):
            best = dict(metrics, epoch=epoch, _score=val_acc)
            best_state = copy.deepcopy(model.state_dict())
        if val_loss < best_loss or (accuracy and val_acc > best_acc):
            bad_epochs = 0
        else:
            bad_epochs += 1
        best_loss, best_acc = min(best_loss, val_loss), max(best_acc, val_acc)
        if patience is not None and bad_epochs >= patience:
            break

    if val_mask is None:
        best = _evaluate(model, forward, data, y, masks, loss_fn, accuracy,
                         metric)
        _check_finite(best, epoch)
        best['epoch'] = epoch
    else:  # (Every epoch has finite metrics: one was selected.)
        model.load_state_dict(best_state)
        del best['_score']
    best['epochs'] = epoch
    best['time_per_epoch'] = statistics.median(times)
    return best
