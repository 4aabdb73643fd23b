"""COIN trained in mini-batches with PyG's NeighborLoader (or ClusterLoader)
on Coauthor-Physics.

    python examples/coin_minibatch.py                       # NeighborLoader
    python examples/coin_minibatch.py --loader cluster      # needs METIS
    python examples/coin_minibatch.py --max-nodes 3000 --epochs 1   # smoke

Each mini-batch diffuses over its sampled subgraph (K steps need K + 1 hops
of neighbours for exact degrees; fewer sampled neighbours trade accuracy for
memory), with the loss on the batch's seed nodes only. Evaluation runs full
batch. The data is read from ``../shared/datasets/coauthor`` (``--root``)
and copied to a temporary folder first. Split: 20 training and 30
validation nodes per class, the rest for testing.
"""
import argparse
import os.path as osp
import tempfile
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

import torch_geometric
from torch_geometric.datasets import Coauthor
from torch_geometric.loader import ClusterData, ClusterLoader, NeighborLoader

from torch_geometric_coin.datasets import dataset_root, writable_copy
from torch_geometric_coin.nn import COIN

SHARED = osp.join(dataset_root(), 'coauthor')


def load_physics(root, tmp):
    src = osp.join(root, 'Physics')
    if not osp.isdir(src):
        raise FileNotFoundError(f"Coauthor-Physics not found under {root!r} "
                                f"(pass --root)")
    return Coauthor(osp.dirname(writable_copy(src, tmp)), 'Physics')[0]


def split(y, num_classes, gen):
    train = torch.zeros(y.numel(), dtype=torch.bool)
    val = torch.zeros_like(train)
    for c in range(num_classes):
        idx = (y == c).nonzero().view(-1)
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        train[idx[:20]] = True
        val[idx[20:50]] = True
    return train, val, ~(train | val)


def make_loader(args, data):
    if args.loader == 'neighbor':
        return NeighborLoader(data, num_neighbors=[args.neighbors] *
                              (args.K + 1), batch_size=args.batch_size,
                              input_nodes=data.train_mask, shuffle=True)
    if not torch_geometric.typing.WITH_METIS:
        raise RuntimeError("ClusterLoader needs METIS (pyg-lib or "
                           "torch-sparse built with METIS), which this "
                           "installation lacks; use --loader neighbor")
    cluster = ClusterData(data, num_parts=args.num_parts, save_dir=None)
    return ClusterLoader(cluster, batch_size=args.clusters_per_batch,
                         shuffle=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--root', default=SHARED)
    parser.add_argument('--loader', choices=['neighbor', 'cluster'],
                        default='neighbor')
    parser.add_argument('--K', type=int, default=4)
    parser.add_argument('--sigma2', type=float, default=0.35)
    parser.add_argument('--scheme', default='explicit')
    parser.add_argument('--neighbors', type=int, default=10)
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--num-parts', type=int, default=64)
    parser.add_argument('--clusters-per-batch', type=int, default=8)
    parser.add_argument('--epochs', type=int, default=50)
    parser.add_argument('--lr', type=float, default=0.01)
    parser.add_argument('--max-nodes', type=int, default=None,
                        help='train on the subgraph of the first nodes '
                        '(smoke runs)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        data = load_physics(args.root, tmp)
    if args.max_nodes is not None:
        data = data.subgraph(torch.arange(min(args.max_nodes,
                                              data.num_nodes)))
    num_classes = int(data.y.max()) + 1
    gen = torch.Generator().manual_seed(args.seed)
    data.train_mask, data.val_mask, data.test_mask = split(
        data.y, num_classes, gen)
    print(f'Coauthor-Physics: {data.num_nodes} nodes, {data.num_edges} '
          f'edges, {args.loader} loader')

    model = COIN(data.num_features, num_classes, hidden_channels=64, K=args.K,
                 sigma2=args.sigma2, scheme=args.scheme, stability='ignore')
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr,
                                 weight_decay=5e-4)
    loader = make_loader(args, data)

    best = dict(val_acc=-1.0)
    for epoch in range(1, args.epochs + 1):
        model.train()
        start, total = time.perf_counter(), 0.0
        for batch in tqdm(loader, desc=f'epoch {epoch}', leave=False):
            optimizer.zero_grad()
            out = model(batch.x, batch.edge_index)
            if args.loader == 'neighbor':  # seed nodes come first
                mask = torch.arange(batch.num_nodes) < batch.batch_size
            else:
                mask = batch.train_mask
            if not bool(mask.any()):
                continue
            loss = F.nll_loss(out[mask], batch.y[mask])
            loss.backward()
            optimizer.step()
            total += float(loss)
        seconds = time.perf_counter() - start

        model.eval()
        with torch.no_grad():
            pred = model(data.x, data.edge_index).argmax(dim=-1)
        acc = {k: float((pred[m] == data.y[m]).float().mean())
               for k, m in [('train', data.train_mask),
                            ('val', data.val_mask), ('test', data.test_mask)]}
        if acc['val'] > best['val_acc']:
            best = dict(epoch=epoch, val_acc=acc['val'], test_acc=acc['test'])
        print(f"Epoch {epoch:03d}: loss {total:.4f}, "
              f"train {acc['train']:.4f}, "
              f"val {acc['val']:.4f}, test {acc['test']:.4f}, "
              f"{seconds:.2f} s")
    print(f"Best: epoch {best['epoch']}, val {best['val_acc']:.4f}, test "
          f"accuracy {best['test_acc']:.4f}")
    return best


if __name__ == '__main__':
    main()
