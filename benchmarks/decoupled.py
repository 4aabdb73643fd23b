r"""Decoupled mini-batch training of COIN: the one mini-batch loop of the
benchmarks (:func:`train`), used by :obj:`ogbn.py --mode decoupled`,
:obj:`scale.py` and the data-parallel runs.

COIN's diffusion is linear in the output of its base classifier :math:`f`,

.. math::
    \mathbf{U}_B = \mathbf{P}_B \, \mathrm{softmax}(f(\mathbf{X}_U)),
    \qquad \mathbf{P}_B = \left[(\mathbf{I} - \sigma^2 \mathbf{L})^K
    \right]_{B, U},

so the loss on a batch :math:`B` of labelled nodes needs only the rows
:math:`\mathbf{P}_B` (computed once, before training, by
:func:`torch_geometric_coin.ops.diffusion_rows`, optionally truncated by
:obj:`eps` / :obj:`topk` with a bound on the :math:`L_1` error of each row)
and the base classifier on their support :math:`U`. Without truncation,
with a row-wise base classifier (no batch norm) and one batch of all
training nodes, each step is that of :func:`training.fit` on the full COIN.
Prediction is one full-graph pass: the base classifier on all nodes in
chunks, then the COIN model's own :class:`CoinDiffusionConv` (over channel
chunks when :obj:`max_memory` says the whole does not fit).

Data-parallel training (:class:`~torch.nn.parallel.DistributedDataParallel`,
gloo on CPU, NCCL on GPU): the training seeds are split into
:obj:`num_shards` fixed shards (one per process, whose rows only that
process computes); each step takes the same number of seeds from every
shard (the global batch), and each process scales its summed loss by
:math:`W / |B|` (:math:`W` processes, :math:`|B|` the global batch) so that
the averaged gradients equal those of one process on the global batch (one
process with :obj:`num_shards=W` takes the very same steps). Launch on one
machine with :func:`spawn` (:obj:`mp.spawn`) or with :obj:`torchrun`, *e.g.*
on two machines with 8 GPUs each (run on both, :obj:`--node-rank` 0 and 1)::

    torchrun --nnodes 2 --nproc-per-node 8 --node-rank 0 \
        --master-addr HOST0 --master-port 29500 \
        benchmarks/ogbn.py --mode decoupled --distributed --device cuda \
        --dataset ogbn-products --batch-size 8192 --eps 1e-4

(:func:`init_distributed` reads torchrun's environment; rank 0 writes the
results.)
"""
import copy
import os
import socket
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

import os.path as osp

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from training import _check_finite, _evaluate, _Run, adam  # noqa: E402

from torch_geometric_coin._checks import check_number  # noqa: E402
from torch_geometric_coin.nn import COIN  # noqa: E402
from torch_geometric_coin.nn._diffused_nll_loss import safe_log  # noqa: E402


# Rows of the diffusion #######################################################

class Rows:
    r"""Rows :math:`\mathbf{P}_S` of the diffusion
    :math:`(\mathbf{I} - \sigma^2 \mathbf{L})^K` for seeds :math:`S`, in CSR
    form on the CPU (:obj:`rowptr`, :obj:`col` global node indices,
    :obj:`value`), with :obj:`bound`, the upper bound on the :math:`L_1`
    error of each row left by truncation (zero without)."""
    def __init__(self, seeds: Tensor, rowptr: Tensor, col: Tensor,
                 value: Tensor, bound: Tensor):
        self.seeds, self.rowptr, self.col = seeds, rowptr, col
        self.value, self.bound = value, bound

    @classmethod
    def from_coo(cls, seeds: Tensor, index: Tensor, value: Tensor,
                 bound: Tensor) -> 'Rows':
        index, value = index.cpu(), value.cpu()
        if index.size(1) > 1 and bool((index[0, 1:] < index[0, :-1]).any()):
            perm = torch.argsort(index[0], stable=True)
            index, value = index[:, perm], value[perm]
        count = torch.bincount(index[0], minlength=seeds.numel())
        rowptr = torch.cat([count.new_zeros(1), count.cumsum(0)])
        return cls(seeds.cpu(), rowptr, index[1], value, bound.cpu())

    def __len__(self) -> int:
        return self.seeds.numel()

    @property
    def nnz(self) -> int:
        return self.col.numel()

    def batch(self, positions: Tensor
              ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        r"""The rows at :obj:`positions` as :obj:`(row, support, col,
        value)`: the support :math:`U` (sorted node indices) and the
        entries (:obj:`row` in :obj:`positions`, :obj:`col` in
        :obj:`support`)."""
        start = self.rowptr[positions]
        count = self.rowptr[positions + 1] - start
        row = torch.repeat_interleave(torch.arange(positions.numel()), count)
        first = torch.repeat_interleave(count.cumsum(0) - count, count)
        idx = start[row] + torch.arange(row.numel()) - first
        support, col = torch.unique(self.col[idx], return_inverse=True)
        return row, support, col, self.value[idx]


def _check_model(model: Any) -> None:
    if not isinstance(model, COIN):
        raise TypeError(f"'model' must be a COIN model (got "
                        f"{type(model).__name__})")
    conv = model.diffusion
    why = [what for what, bad in [
        ("diffuse='prob'", model.diffuse != 'prob'),
        ('no learned edge weights', model.edge_weights is not None),
        ('a fixed sigma2 (learn_sigma2=False)', conv.learn_sigma2),
        ("scheme='explicit'", conv.scheme != 'explicit'),
        ('diffusion_dropout=0', conv.dropout > 0)] if bad]
    if why:
        raise ValueError(f"Decoupled training needs a diffusion that is a "
                         f"fixed linear map of the probabilities: 'model' "
                         f"needs {', '.join(why)}")


def graph_of(data: Any) -> Tuple[Tensor, Optional[Tensor]]:
    r"""The graph of :obj:`data` as :obj:`(edge_index, edge_weight)`: its
    :obj:`edge_index` (and :obj:`edge_weight`), or its :obj:`adj_t`
    (a :class:`torch_sparse.SparseTensor`, read as PyG's transposed
    adjacency)."""
    edge_index = getattr(data, 'edge_index', None)
    if edge_index is not None:
        return edge_index, getattr(data, 'edge_weight', None)
    adj_t = getattr(data, 'adj_t', None)
    if adj_t is None:
        raise ValueError("'data' needs an 'edge_index' or an 'adj_t'")
    row, col, value = adj_t.coo()
    return torch.stack([col, row]), value


def preprocess(model: COIN, edge_index: Tensor, num_nodes: int,
               seeds: Tensor, edge_weight: Optional[Tensor] = None,
               eps: Optional[float] = None, topk: Optional[int] = None,
               max_memory: Optional[int] = None) -> Rows:
    r"""The rows of :obj:`model`'s diffusion (its :obj:`K`, :obj:`sigma2`,
    :obj:`normalization`, :obj:`add_self_loops`) for :obj:`seeds`, by
    :func:`~torch_geometric_coin.ops.diffusion_rows` (truncated by
    :obj:`eps` / :obj:`topk`, within :obj:`max_memory` bytes)."""
    from torch_geometric_coin.ops import diffusion_rows
    _check_model(model)
    conv = model.diffusion
    index, value, bound = diffusion_rows(
        edge_index, edge_weight, num_nodes, seeds, K=conv.K,
        sigma2=conv.sigma2_init, normalization=conv.normalization,
        add_self_loops=conv.add_self_loops, eps=eps, topk=topk,
        max_memory=max_memory)
    return Rows.from_coo(seeds, index, value, bound)


def batch_log_prob(base: torch.nn.Module, x: Tensor, rows: Rows,
                   positions: Tensor) -> Tensor:
    r"""COIN's log-probabilities :math:`\log(\mathbf{P}_B\,
    \mathrm{softmax}(f(\mathbf{X}_U)))` of the seeds at :obj:`positions`
    of :obj:`rows`, with the base classifier :obj:`base` run on their
    support only (differentiable in its parameters)."""
    row, support, col, value = rows.batch(positions)
    dev = x.device
    prob = base(x[support.to(dev)]).softmax(dim=-1)
    mat = torch.sparse_coo_tensor(
        torch.stack([row, col]).to(dev), value.to(dev, prob.dtype),
        (positions.numel(), support.numel()), is_coalesced=True,
        check_invariants=False)
    return safe_log(torch.sparse.mm(mat, prob))


@torch.no_grad()
def predict(model: COIN, x: Tensor, edge_index: Tensor,
            edge_weight: Optional[Tensor] = None, chunk_size: int = 65536,
            max_memory: Optional[int] = None) -> Tensor:
    r"""COIN's log-probabilities on all nodes, in evaluation mode: the base
    classifier on chunks of :obj:`chunk_size` nodes, then one fused
    diffusion of the whole graph by :obj:`model.diffusion`, over as many
    class columns at a time as fit in :obj:`max_memory` bytes (three
    :math:`N`-vectors per column)."""
    check_number('chunk_size', chunk_size, integer=True, low=1)
    model.eval()
    n = x.size(0)
    prob = torch.cat([model.base(x[i:i + chunk_size]).softmax(dim=-1)
                      for i in range(0, n, chunk_size)])
    c = prob.size(1)
    step = c if max_memory is None else max(
        1, min(c, int(max_memory) // (3 * n * prob.element_size())))
    if step == c:
        return safe_log(model.diffusion(prob, edge_index, edge_weight))
    for i in range(0, c, step):  # in place: one N x C buffer
        prob[:, i:i + step] = model.diffusion(
            prob[:, i:i + step].contiguous(), edge_index, edge_weight)
    return safe_log(prob)


# Batches #####################################################################

def shards(num_seeds: int, num_shards: int, seed: int) -> List[Tensor]:
    r"""The fixed shards of the training positions :math:`0..S-1`: a seeded
    permutation dealt round-robin (sizes differ by at most one)."""
    perm = torch.randperm(num_seeds,
                          generator=torch.Generator().manual_seed(seed))
    return [perm[r::num_shards] for r in range(num_shards)]


def epoch_batches(sizes: List[int], batch_size: int, epoch: int,
                  seed: int) -> List[List[Tensor]]:
    r"""The steps of an epoch: for each step, per shard (of :obj:`sizes`),
    the positions in that shard of its part of the global batch of
    :obj:`batch_size` seeds (:math:`\lceil B / W \rceil` per shard). The
    same on every process: seeded by :obj:`(seed, epoch)` only."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perms = [torch.randperm(s, generator=gen) for s in sizes]
    local = -(-batch_size // len(sizes))
    steps = max(-(-s // local) for s in sizes)
    return [[p[t * local:(t + 1) * local] for p in perms]
            for t in range(steps)]


# Distributed #################################################################

def _dist():
    import torch.distributed as dist
    return dist if dist.is_available() and dist.is_initialized() else None


def init_distributed(device: str = 'cpu') -> Tuple[int, int, torch.device]:
    r"""Joins the process group of :obj:`torchrun`'s environment
    (:obj:`RANK`, :obj:`WORLD_SIZE`, :obj:`LOCAL_RANK`,
    :obj:`MASTER_ADDR`, :obj:`MASTER_PORT`): NCCL on :obj:`'cuda'` (device
    :obj:`cuda:LOCAL_RANK`), gloo on the CPU. Returns :obj:`(rank,
    world_size, device)`."""
    import torch.distributed as dist
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR',
                           'MASTER_PORT') if k not in os.environ]
    if missing:
        raise RuntimeError(f"Distributed runs are launched by torchrun "
                           f"(missing environment variables {missing})")
    device = torch.device(device)
    if device.type == 'cuda':
        device = torch.device('cuda', int(os.environ.get('LOCAL_RANK', 0)))
        torch.cuda.set_device(device)
    dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo')
    return dist.get_rank(), dist.get_world_size(), device


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _spawned(rank: int, world_size: int, port: int, args: tuple,
             kwargs: dict, path: str) -> None:
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=world_size)
    try:
        # The arguments came in shared memory: train a private copy.
        model = copy.deepcopy(args[0])
        res = train(model, *args[1:], **kwargs)
        if rank == 0:
            torch.save((res, model.state_dict()), path)
    finally:
        dist.destroy_process_group()


def spawn(world_size: int, model: COIN, *args, timeout: float = 600.,
          start_method: str = 'spawn', **kwargs) -> Dict[str, float]:
    r"""Runs :func:`train` in :obj:`world_size` CPU processes on this
    machine (:obj:`torch.multiprocessing.start_processes` with
    :obj:`start_method` :obj:`'spawn'`, as :obj:`mp.spawn`, or
    :obj:`'fork'`, which starts faster; gloo on a free local port), loads
    the trained parameters into :obj:`model` and returns the result of
    rank 0. The processes are ended after :obj:`timeout` seconds
    (:class:`TimeoutError`)."""
    import torch.multiprocessing as mp
    check_number('world_size', world_size, integer=True, low=1)
    if start_method not in ('spawn', 'fork', 'forkserver'):
        raise ValueError(f"Unknown 'start_method' {start_method!r}: "
                         f"expected 'spawn', 'fork' or 'forkserver'")
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'rank0.pt')
        ctx = mp.start_processes(
            _spawned, nprocs=world_size, join=False,
            start_method=start_method, args=(
                world_size, _free_port(), (model, ) + args, kwargs, path))
        deadline = time.monotonic() + timeout
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                for p in ctx.processes:
                    if p.is_alive():
                        p.terminate()
                raise TimeoutError(f'The {world_size} training processes '
                                   f'did not finish in {timeout} s')
        res, state = torch.load(path, weights_only=False)
    model.load_state_dict(state)
    return res


# Training ####################################################################

def _indices(mask: Tensor) -> Tensor:
    return (mask.nonzero().view(-1) if mask.dtype == torch.bool
            else mask.view(-1)).cpu()


def train(
    model: COIN,
    data: Any,
    train_mask: Tensor,
    val_mask: Optional[Tensor],
    test_mask: Tensor,
    epochs: int = 200,
    lr: float = 0.01,
    weight_decay: float = 5e-4,
    batch_size: int = 1024,
    patience: Optional[int] = None,
    seed: int = 0,
    eps: Optional[float] = None,
    topk: Optional[int] = None,
    max_memory: Optional[int] = None,
    chunk_size: int = 65536,
    num_shards: Optional[int] = None,
    metric: Optional[Callable[[Tensor, Tensor], float]] = None,
    progress: Optional[Callable[[int, Dict[str, float]], None]] = None,
) -> Dict[str, float]:
    r"""Trains the base classifier of a COIN model by mini-batches of
    labelled seeds over their supports (Adam), selects the epoch of best
    validation accuracy (ties: lower validation loss; early stopping by
    :obj:`patience` as in :func:`training.fit`) on the precomputed rows of
    the validation nodes, and scores the selected model with one
    full-graph prediction (:func:`predict`).

    Inside a :obj:`torch.distributed` process group (see
    :func:`init_distributed`, :func:`spawn`), each process trains on its
    shard of every global batch through
    :class:`~torch.nn.parallel.DistributedDataParallel` and rank 0 makes the
    final prediction.

    Args:
        model (COIN): The model (:obj:`diffuse='prob'`, fixed graph
            weights and :obj:`sigma2`, explicit scheme); its :obj:`base`
            is trained, the whole model predicts.
        data (torch_geometric.data.Data): The graph: :obj:`x`, :obj:`y`,
            :obj:`edge_index` (and :obj:`edge_weight`) or :obj:`adj_t`.
        train_mask (torch.Tensor): Training nodes (mask or indices).
        val_mask (torch.Tensor, optional): Validation nodes, or
            :obj:`None` (no selection: the final model).
        test_mask (torch.Tensor): Test nodes.
        epochs (int, optional): (Maximum) epochs. (default: :obj:`200`)
        lr (float, optional): Learning rate. (default: :obj:`0.01`)
        weight_decay (float, optional): Weight decay.
            (default: :obj:`5e-4`)
        batch_size (int, optional): Seeds per (global) step.
            (default: :obj:`1024`)
        patience (int, optional): Early-stopping patience.
            (default: :obj:`None`)
        seed (int, optional): Seed of the shards and of the shuffling.
            (default: :obj:`0`)
        eps (float, optional): Drop row entries below it (see
            :func:`~torch_geometric_coin.ops.diffusion_rows`).
            (default: :obj:`None`)
        topk (int, optional): Keep the largest :obj:`topk` entries per
            row. (default: :obj:`None`)
        max_memory (int, optional): Bytes for the row computation and the
            full-graph diffusion. (default: :obj:`None`)
        chunk_size (int, optional): Nodes per chunk of the base classifier
            at prediction. (default: :obj:`65536`)
        num_shards (int, optional): Shards of the training seeds; by default
            the number of processes (which it must equal in a process
            group). One process with :obj:`num_shards=W` takes the steps of
            :obj:`W` processes. (default: :obj:`None`)
        metric (Callable, optional): The score :obj:`metric(y_true,
            y_pred)` reported as :obj:`*_acc`, as in :func:`training.fit`.
        progress (Callable, optional): :obj:`progress(epoch, metrics)`
            after each epoch.

    Returns:
        The keys of :func:`training.fit` (:obj:`train_acc`, :obj:`val_acc`,
        :obj:`test_acc` and losses from the full-graph prediction,
        :obj:`epoch`, :obj:`epochs`, :obj:`time_per_epoch`: the median
        seconds of an epoch over all training seeds), plus
        :obj:`preprocess_time` (seconds to compute the rows),
        :obj:`predict_time` (seconds of the full-graph prediction),
        :obj:`bound` (the largest truncation bound of a training row) and
        :obj:`nnz` (entries of this process's training rows).
    """
    _check_model(model)
    check_number('epochs', epochs, integer=True, low=1)
    check_number('lr', lr, low=0, open_low=True)
    check_number('weight_decay', weight_decay, low=0)
    check_number('batch_size', batch_size, integer=True, low=1)
    check_number('seed', seed, integer=True)
    if patience is not None:
        check_number('patience', patience, integer=True, low=1)
    if val_mask is None and patience is not None:
        raise ValueError("'patience' needs a 'val_mask'")
    dist = _dist()
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist else (0, 1)
    if num_shards is None:
        num_shards = world
    check_number('num_shards', num_shards, integer=True, low=1)
    if dist and num_shards != world:
        raise ValueError(f"'num_shards' must be the number of processes "
                         f"({world}) in a process group (got {num_shards})")
    y = data.y.view(-1)
    # fit's bookkeeping (mask checks, best-epoch selection, early stopping):
    run = _Run(y, train_mask, val_mask, test_mask, F.nll_loss, True, metric,
               patience)
    x = data.x
    edge_index, edge_weight = graph_of(data)
    n = x.size(0)
    train_idx = _indices(train_mask)
    if num_shards > train_idx.numel():
        raise ValueError(f"'num_shards' ({num_shards}) exceeds the "
                         f"{train_idx.numel()} training nodes")
    parts = shards(train_idx.numel(), num_shards, seed)
    own = [rank] if dist else list(range(num_shards))
    offsets = [0]
    for r in own:
        offsets.append(offsets[-1] + parts[r].numel())
    own_pos = torch.cat([parts[r] for r in own])

    start = time.perf_counter()
    rows = preprocess(model, edge_index, n, train_idx[own_pos], edge_weight,
                      eps, topk, max_memory)
    val_rows = None
    if val_mask is not None:
        val_idx = _indices(val_mask)[rank::world]
        val_rows = preprocess(model, edge_index, n, val_idx, edge_weight,
                              eps, topk, max_memory)
    preprocess_time = time.perf_counter() - start
    y_train = y[rows.seeds.to(y.device)]

    base = model.base
    step_base = base
    if dist:
        from torch.nn.parallel import DistributedDataParallel
        step_base = DistributedDataParallel(
            base, device_ids=[x.device] if x.is_cuda else None)
    optimizer = adam(base.parameters(), lr=lr, weight_decay=weight_decay)
    sizes = [p.numel() for p in parts]
    times = []
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        total = x.new_zeros(())
        for step in epoch_batches(sizes, batch_size, epoch, seed):
            positions = torch.cat([offsets[i] + step[r]
                                   for i, r in enumerate(own)])
            global_size = sum(p.numel() for p in step)
            optimizer.zero_grad()
            out = batch_log_prob(step_base, x, rows, positions)
            loss = F.nll_loss(out, y_train[positions.to(y.device)],
                              reduction='sum')
            (loss * (world / global_size)).backward()
            optimizer.step()
            total = total + loss.detach()
        if x.is_cuda:
            torch.cuda.synchronize(x.device)
        times.append(time.perf_counter() - start)
        if not bool(torch.isfinite(total)):
            raise FloatingPointError(f"The training loss is "
                                     f"{float(total)} at epoch {epoch}")
        metrics = {'train_loss': float(total) / rows.seeds.numel()}
        if dist:  # The mean over all training seeds.
            t = torch.stack([total.detach(),  # on the device: NCCL's too
                             total.new_tensor(float(rows.seeds.numel()))])
            dist.all_reduce(t)
            metrics['train_loss'] = float(t[0] / t[1])
        if val_rows is None:
            if progress is not None:
                progress(epoch, metrics)
            continue
        metrics.update(_val_metrics(model, x, y, val_rows, batch_size,
                                    metric, dist, world))
        if progress is not None:
            progress(epoch, metrics)
        if run.select(model, epoch, metrics):
            break
    selected = epoch if run.best_state is None else run.best['epoch']
    if run.best_state is not None:
        model.load_state_dict(run.best_state)

    res = None
    if rank == 0:
        start = time.perf_counter()
        out = predict(model, x, edge_index, edge_weight, chunk_size,
                      max_memory)
        if x.is_cuda:
            torch.cuda.synchronize(x.device)
        predict_time = time.perf_counter() - start
        res = _evaluate(model, lambda m, d: out, data, y, run.masks,
                        F.nll_loss, True, metric)
        _check_finite(res, selected)
        res.update(epoch=selected, epochs=epoch,
                   time_per_epoch=statistics.median(times),
                   preprocess_time=preprocess_time, predict_time=predict_time,
                   bound=float(rows.bound.max()) if len(rows) else 0.,
                   nnz=rows.nnz)
    if dist:
        box = [res]
        dist.broadcast_object_list(box, src=0)
        res = box[0]
    return res


@torch.no_grad()
def _val_metrics(model: COIN, x: Tensor, y: Tensor, rows: Rows,
                 batch_size: int, metric: Optional[Callable], dist: Any,
                 world: int) -> Dict[str, float]:
    r"""Loss and score on the validation rows (of every process)."""
    model.eval()
    outs = [batch_log_prob(model.base, x, rows, torch.arange(
        i, min(i + batch_size, len(rows))))
        for i in range(0, len(rows), batch_size)]
    y_val = y[rows.seeds.to(y.device)]
    out = torch.cat(outs) if outs else x.new_zeros(0, 1)
    loss = float(F.nll_loss(out, y_val, reduction='sum')) if outs else 0.
    pred = out.argmax(dim=-1).cpu()
    y_val = y_val.cpu()
    if dist:
        box = [None] * world
        dist.all_gather_object(box, (loss, y_val, pred))
        loss = sum(b[0] for b in box)
        y_val = torch.cat([b[1] for b in box])
        pred = torch.cat([b[2] for b in box])
    acc = (float((pred == y_val).float().mean()) if metric is None
           else float(metric(y_val, pred)))
    return {'val_loss': loss / max(y_val.numel(), 1), 'val_acc': acc}


# Command line ################################################################

def add_arguments(parser: Any) -> Any:
    r"""Adds the options of :func:`train` that the scripts share
    (:obj:`--batch-size`, :obj:`--eps`, :obj:`--topk`,
    :obj:`--max-memory`) to an :mod:`argparse` parser (see
    :func:`options`)."""
    parser.add_argument('--batch-size', type=int, default=1024,
                        help='decoupled mode: labelled seeds per step '
                        '(global over all processes)')
    parser.add_argument('--eps', type=float, default=None,
                        help='decoupled mode: drop diffusion row entries '
                        'below eps (None: exact rows)')
    parser.add_argument('--topk', type=int, default=None,
                        help='decoupled mode: keep the topk largest entries '
                        'of each diffusion row (None: all)')
    parser.add_argument('--max-memory', type=float, default=None,
                        help='decoupled mode: MiB for the row computation '
                        'and the full-graph diffusion (None: no limit)')
    return parser


def options(parser: Any, args: Any) -> Dict[str, Any]:
    r"""The keyword arguments of :func:`train` from the options of
    :func:`add_arguments` (:obj:`--max-memory` in MiB to bytes), or a
    :obj:`parser.error` on a value out of range."""
    for name in ('batch_size', 'topk'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive "
                         f"(got {value})")
    for name in ('eps', 'max_memory'):
        value = getattr(args, name)
        if value is not None and not value > 0:
            parser.error(f"--{name.replace('_', '-')} must be positive "
                         f"(got {value})")
    return dict(batch_size=args.batch_size, eps=args.eps, topk=args.topk,
                max_memory=None if args.max_memory is None
                else int(args.max_memory * 2**20))


if __name__ == '__main__':
    import common
    common.module_main(
        __doc__, 'decoupled',
        'benchmarks/ogbn.py --mode decoupled or benchmarks/scale.py')
