"""COIN on a Planetoid graph (Cora by default), like PyG's examples/gcn.py.

    python examples/coin.py
    python examples/coin.py --dataset CiteSeer --root DIR  # DIR/CiteSeer/raw

The data set is read from ``<root>/<dataset>`` (a read-only folder is copied
to a temporary one first, since PyG writes ``processed/`` beside ``raw/``) or
downloaded there. Without the data and without a network, it runs on a
synthetic graph instead (a Gaussian mixture of 7 classes with a Gaussian kNN
graph over its features) and says so.
"""
import argparse
import os
import os.path as osp
import shutil
import stat
import tempfile
import time

import torch
import torch.nn.functional as F

import torch_geometric.transforms as T
from torch_geometric.data import Data
from torch_geometric.datasets import Planetoid

from torch_geometric_coin.nn import COIN
from torch_geometric_coin.transforms import GaussianKNNGraph


def load_planetoid(root, name):
    folder = osp.join(root, name)
    with tempfile.TemporaryDirectory() as tmp:
        if osp.isdir(folder) and not (os.access(folder, os.W_OK) and
                                      os.stat(folder).st_mode & stat.S_IWUSR):
            # Read-only: PyG writes processed/ beside raw/, so use a copy.
            shutil.copytree(osp.join(folder, 'raw'),
                            osp.join(tmp, name, 'raw'))
            root = tmp
        dataset = Planetoid(root, name, transform=T.NormalizeFeatures())
        return dataset[0], dataset.num_classes


def synthetic(num_nodes=2000, num_classes=7, num_features=32):
    y = torch.arange(num_nodes) % num_classes
    x = torch.randn(num_classes, num_features)[y] + 2.5 * torch.randn(
        num_nodes, num_features)
    transform = T.Compose([
        GaussianKNNGraph(k=6, bandwidth_k=3),  # Normalised edge weights.
        T.RandomNodeSplit('random', num_val=500, num_test=1000),
    ])
    return transform(Data(x=x, y=y)), num_classes


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--dataset', default='Cora',
                        choices=['Cora', 'CiteSeer', 'PubMed'])
    parser.add_argument('--root', help='the data folder', default=osp.join(
        osp.dirname(osp.realpath(__file__)), '..', 'data', 'Planetoid'))
    parser.add_argument('--hidden-channels', type=int, default=64,
                        help='hidden width')
    parser.add_argument('--K', type=int, default=20,
                        help='diffusion steps')
    parser.add_argument('--sigma2', type=float, default=0.3,
                        help='diffusion coefficient')
    parser.add_argument('--lr', type=float, default=0.01,
                        help='Adam learning rate')
    parser.add_argument('--epochs', type=int, default=200,
                        help='training epochs')
    parser.add_argument('--seed', type=int, default=0,
                        help='random seed')
    args = parser.parse_args(argv)

    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    torch.manual_seed(args.seed)
    try:
        data, num_classes = load_planetoid(args.root, args.dataset)
        print(f'Data: {args.dataset} from {args.root}')
    except OSError as e:  # Not there, and no network to download it.
        data, num_classes = synthetic()
        print(f'Data: {args.dataset} is not in {args.root} and could not be '
              f'downloaded ({type(e).__name__}); using a synthetic graph '
              f'instead: {data.num_nodes} nodes in {num_classes} Gaussian '
              f'clusters, a Gaussian kNN graph (pass --root to a folder '
              f'with {args.dataset}/raw for the real data).')
    data = data.to(device)

    model = COIN(
        data.num_features, num_classes,
        hidden_channels=args.hidden_channels, K=args.K, sigma2=args.sigma2,
        # The kNN graph's weights are normalised already:
        normalization='coin' if data.edge_weight is None else None,
        cached=True).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr,
                                 weight_decay=5e-4)

    def train():
        model.train()
        optimizer.zero_grad()
        out = model(data.x, data.edge_index, data.edge_weight)
        loss = F.nll_loss(out[data.train_mask], data.y[data.train_mask])
        loss.backward()
        optimizer.step()
        return loss.item()

    @torch.no_grad()
    def test():
        model.eval()
        pred = model(data.x, data.edge_index, data.edge_weight).argmax(-1)
        return [float((pred[mask] == data.y[mask]).float().mean())
                for mask in [data.train_mask, data.val_mask, data.test_mask]]

    best_val_acc = test_acc = 0.
    times = []
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        loss = train()
        times.append(time.perf_counter() - start)
        train_acc, val_acc, tmp_test_acc = test()
        if val_acc > best_val_acc:
            best_val_acc, test_acc = val_acc, tmp_test_acc
        print(f'Epoch: {epoch:03d}, Loss: {loss:.4f}, Train: {train_acc:.4f}, '
              f'Val: {val_acc:.4f}, Test: {test_acc:.4f}')
    print(f'Median time per epoch: {torch.tensor(times).median():.4f}s')
    return dict(val_acc=best_val_acc, test_acc=test_acc)


if __name__ == '__main__':
    main()
