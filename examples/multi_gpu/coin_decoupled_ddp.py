"""COIN trained data-parallel over precomputed rows of its diffusion.

    # CPUs: 2 processes (gloo), Cora downloaded or from DIR/Cora/raw
    python examples/multi_gpu/coin_decoupled_ddp.py
    python examples/multi_gpu/coin_decoupled_ddp.py --root DIR --cpu \\
        --world-size 4
    # GPUs: one process per CUDA device (NCCL)
    python examples/multi_gpu/coin_decoupled_ddp.py --root DIR

The data-parallel version of ``examples/coin_decoupled.py``, in the style of
PyG's ``examples/multi_gpu/``: ``torch.multiprocessing.spawn`` starts
``--world-size`` processes (default: one per CUDA device, else 2 CPU
processes with the gloo backend; NCCL on GPUs). Rank ``r`` computes the rows
of ``P = (I - sigma2 L)^K`` for its shard ``train_idx[r::world_size]`` of
the training nodes only (``torch_geometric_coin.ops.diffusion_rows``) and
trains ``model.base`` wrapped in ``DistributedDataParallel``: each step runs
the base model on the support of a batch of its rows and takes the NLL of
the diffused probabilities; DDP averages the gradients over the ranks.

Ranks stay in step by *padding*: a shard shorter than the longest one
(``len(train_idx) % world_size != 0``) repeats its first nodes, so every
rank runs ``ceil(ceil(len(train_idx) / world_size) / batch_size)`` batches
of equal sizes per epoch (those few nodes count twice in that epoch). Each
rank shuffles its shard every epoch (``--no-shuffle``: in order, when the
batches of ``world_size`` ranks at batch size ``B`` are exactly those of one
rank at batch size ``world_size * B``). Rank 0 evaluates the whole model on
the full graph after each epoch (``model.inference``) and prints
``Epoch: 001, Loss: ..., Train: ..., Val: ..., Test: ...`` lines.

Needs only ``pip install '.[full]'`` (no pyg-lib or torch-sparse).
"""
import argparse
import os
import os.path as osp
import shutil
import socket
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
import torch_geometric.transforms as T
from torch.nn.parallel import DistributedDataParallel
from torch_geometric.datasets import Planetoid

from torch_geometric_coin.nn import COIN, safe_log
from torch_geometric_coin.ops import diffusion_rows

parser = argparse.ArgumentParser(
    description=__doc__.splitlines()[0],
    formatter_class=argparse.ArgumentDefaultsHelpFormatter)
parser.add_argument('--dataset', default='Cora',
                    choices=['Cora', 'CiteSeer', 'PubMed'])
parser.add_argument('--root', default=osp.join(tempfile.gettempdir(), 'pyg'),
                    help='the data folder (holding <dataset>/raw)')
parser.add_argument('--world-size', type=int, default=None,
                    help='processes (default: CUDA devices, else 2)')
parser.add_argument('--cpu', action='store_true',
                    help='train on CPUs (gloo) even if CUDA is available')
parser.add_argument('--K', type=int, default=20)
parser.add_argument('--sigma2', type=float, default=0.3)
parser.add_argument('--eps', type=float, default=1e-4,
                    help='drop row entries below eps after each step')
parser.add_argument('--batch-size', type=int, default=32,
                    help='training nodes per batch and rank')
parser.add_argument('--epochs', type=int, default=50)
parser.add_argument('--lr', type=float, default=0.01)
parser.add_argument('--dropout', type=float, default=0.5)
parser.add_argument('--no-shuffle', action='store_true',
                    help='visit each shard in order every epoch')
parser.add_argument('--seed', type=int, default=12345)
parser.add_argument('--save', default=None,
                    help='rank 0 saves the trained model.state_dict() here')


def load(root, name):
    raw = osp.join(root, name, 'raw')
    if not osp.isdir(raw):  # (downloads into root)
        return Planetoid(root, name, transform=T.NormalizeFeatures())
    with tempfile.TemporaryDirectory() as tmp:  # (PyG writes processed/)
        shutil.copytree(raw, osp.join(tmp, name, 'raw'))
        return Planetoid(tmp, name, transform=T.NormalizeFeatures())


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('localhost', 0))
        return sock.getsockname()[1]


def run(rank, world_size, port, args, data, num_features, num_classes,
        queue):
    os.environ['MASTER_ADDR'] = 'localhost'
    os.environ['MASTER_PORT'] = str(port)
    cuda = torch.cuda.is_available() and not args.cpu
    dist.init_process_group('nccl' if cuda else 'gloo', rank=rank,
                            world_size=world_size)
    if cuda:
        device = torch.device(f'cuda:{rank}')
        torch.cuda.set_device(device)
    else:
        device = torch.device('cpu')
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))

    # The rows of P for this rank's shard: P_shard[i] is the row of
    # shard[i]. Padding (the first nodes again) evens out the shards.
    train_idx = data.train_mask.nonzero().view(-1)
    shard = train_idx[rank::world_size]
    index, value, bound = diffusion_rows(
        data.edge_index, num_nodes=data.num_nodes, nodes=shard, K=args.K,
        sigma2=args.sigma2, eps=args.eps)
    P_shard = torch.sparse_coo_tensor(
        index, value, (shard.numel(), data.num_nodes),
        check_invariants=True).coalesce()
    per_rank = -(-train_idx.numel() // world_size)
    positions = torch.arange(per_rank) % shard.numel()
    if rank == 0:
        print(f'Ranks: {world_size} ({device.type}), rows per rank: '
              f'{per_rank}, {value.numel() / shard.numel():.0f} entries per '
              f'row, max L1 error bound {float(bound.max()):.2e}',
              flush=True)

    torch.manual_seed(args.seed)  # (the same model on every rank)
    model = COIN(num_features, num_classes, K=args.K, sigma2=args.sigma2,
                 dropout=args.dropout).to(device)
    base = DistributedDataParallel(
        model.base, device_ids=[rank] if cuda else None)
    optimizer = torch.optim.Adam(base.parameters(), lr=args.lr,
                                 weight_decay=5e-4)
    torch.manual_seed(args.seed + rank)  # (dropout differs by rank)
    x, y = data.x.to(device), data.y.to(device)
    edge_index = data.edge_index.to(device)
    gen = torch.Generator().manual_seed(args.seed * 1000 + rank)

    def train():
        model.train()
        total = torch.zeros(2, dtype=torch.double, device=device)
        order = positions
        if not args.no_shuffle:
            order = positions[torch.randperm(per_rank, generator=gen)]
        for pos in order.split(args.batch_size):
            rows = P_shard.index_select(0, pos).coalesce()
            support, col = rows.indices()[1].unique(return_inverse=True)
            P = torch.sparse_coo_tensor(
                torch.stack([rows.indices()[0], col]), rows.values(),
                (pos.numel(), support.numel()), check_invariants=True)
            prob = base(x[support.to(device)]).softmax(dim=-1)
            loss = F.nll_loss(safe_log(torch.sparse.mm(P.to(device), prob)),
                              y[shard[pos].to(device)])
            optimizer.zero_grad()
            loss.backward()  # (DDP averages the gradients of the ranks)
            optimizer.step()
            total[0] += loss.detach().double() * pos.numel()
            total[1] += pos.numel()
        dist.all_reduce(total)  # (the mean loss over all ranks)
        return float(total[0] / total[1])

    @torch.no_grad()
    def test():
        model.eval()
        pred = model.inference(x, edge_index).argmax(dim=-1)
        return [float((pred[mask] == y[mask]).float().mean())
                for mask in (data.train_mask, data.val_mask, data.test_mask)]

    best_val = test_acc = 0.
    for epoch in range(1, args.epochs + 1):
        loss = train()
        if rank == 0:
            train_acc, val_acc, tmp_test_acc = test()
            if val_acc > best_val:
                best_val, test_acc = val_acc, tmp_test_acc
            print(f'Epoch: {epoch:03d}, Loss: {loss:.4f}, Train: '
                  f'{train_acc:.4f}, Val: {val_acc:.4f}, Test: '
                  f'{tmp_test_acc:.4f}', flush=True)
        dist.barrier()
    if rank == 0:
        print(f'Best validation: {best_val:.4f}, test: {test_acc:.4f}',
              flush=True)
        if args.save is not None:
            torch.save({k: v.cpu() for k, v in model.state_dict().items()},
                       args.save)
        queue.put(dict(val_acc=best_val, test_acc=test_acc))
    dist.destroy_process_group()


def main(argv=None):
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.cpu
    world_size = args.world_size
    if world_size is None:
        world_size = torch.cuda.device_count() if cuda else 2
    if cuda and world_size > torch.cuda.device_count():
        parser.error(f'--world-size {world_size}: only '
                     f'{torch.cuda.device_count()} CUDA devices (--cpu?)')
    dataset = load(args.root, args.dataset)
    data = dataset[0]
    if not 1 <= world_size <= int(data.train_mask.sum()):
        parser.error(f'--world-size {world_size}: needs 1 to '
                     f'{int(data.train_mask.sum())} (training nodes)')
    print(f'Data: {args.dataset}, spawning {world_size} processes',
          flush=True)

    # The spawned processes unpickle 'run' by its module's name: import
    # this file as a module they can import too (main may have been called
    # from a copy loaded by path, as the tests do).
    here = osp.dirname(osp.abspath(__file__))
    sys.path.insert(0, here)
    try:
        from coin_decoupled_ddp import run as target
        ctx = mp.get_context('spawn')
        queue = ctx.SimpleQueue()
        mp.spawn(target, nprocs=world_size, join=True,
                 args=(world_size, free_port(), args, data,
                       dataset.num_features, dataset.num_classes, queue))
    finally:
        sys.path.remove(here)
    return queue.get()


if __name__ == '__main__':
    main()
