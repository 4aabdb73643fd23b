"""COIN trained in mini-batches over precomputed rows of its diffusion.

    python examples/coin_decoupled.py                  # Cora (downloaded)
    python examples/coin_decoupled.py --root DIR       # DIR/Cora/raw
    python examples/coin_decoupled.py --eps 1e-3       # sparser rows

COIN's diffusion is linear in the base model's class probabilities, so the
loss on a batch of labelled nodes needs only their rows of
``P = (I - sigma2 L)^K`` and the base model on the nodes those rows touch.
The rows of the training nodes are computed once
(``torch_geometric_coin.ops.diffusion_rows``, truncated at ``--eps``), as
PyG's ``examples/sign.py`` precomputes its features; each step then runs the
base model on the support of a batch only. Evaluation runs the whole model
on the full graph. Needs only ``pip install '.[full]'`` (no pyg-lib or
torch-sparse).
"""
import argparse
import os.path as osp
import shutil
import tempfile

import torch
import torch.nn.functional as F
import torch_geometric.transforms as T
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
parser.add_argument('--K', type=int, default=20)
parser.add_argument('--sigma2', type=float, default=0.3)
parser.add_argument('--eps', type=float, default=1e-4,
                    help='drop row entries below eps after each step')
parser.add_argument('--batch-size', type=int, default=32)
parser.add_argument('--epochs', type=int, default=50)


def load(root, name):
    raw = osp.join(root, name, 'raw')
    if osp.isdir(raw):  # (a copy: PyG writes processed/ beside raw/)
        root = tempfile.mkdtemp()
        shutil.copytree(raw, osp.join(root, name, 'raw'))
    return Planetoid(root, name, transform=T.NormalizeFeatures())


def main(argv=None):
    args = parser.parse_args(argv)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    dataset = load(args.root, args.dataset)
    data = dataset[0]
    train_idx = data.train_mask.nonzero().view(-1)

    # The rows of P for the training nodes, once: P_train[i] is the row of
    # train_idx[i]; bound[i] bounds the L1 error its truncation left.
    index, value, bound = diffusion_rows(
        data.edge_index, num_nodes=data.num_nodes, nodes=train_idx, K=args.K,
        sigma2=args.sigma2, eps=args.eps)
    P_train = torch.sparse_coo_tensor(
        index, value, (train_idx.numel(), data.num_nodes),
        check_invariants=True).coalesce()
    print(f'Rows: {train_idx.numel()}, {value.numel() / train_idx.numel():.0f}'
          f' entries per row, max L1 error bound {float(bound.max()):.2e}')

    model = COIN(dataset.num_features, dataset.num_classes, K=args.K,
                 sigma2=args.sigma2).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01,
                                 weight_decay=5e-4)
    x, y = data.x.to(device), data.y.to(device)
    edge_index = data.edge_index.to(device)

    def train():
        model.train()
        total = 0.
        for pos in torch.randperm(train_idx.numel()).split(args.batch_size):
            rows = P_train.index_select(0, pos).coalesce()
            support, col = rows.indices()[1].unique(return_inverse=True)
            P = torch.sparse_coo_tensor(
                torch.stack([rows.indices()[0], col]), rows.values(),
                (pos.numel(), support.numel()), check_invariants=True)
            P = P.to(device)
            prob = model.base(x[support.to(device)]).softmax(dim=-1)
            loss = F.nll_loss(safe_log(torch.sparse.mm(P, prob)),
                              y[train_idx[pos].to(device)])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * pos.numel()
        return total / train_idx.numel()

    @torch.no_grad()
    def test():
        model.eval()
        pred = model(x, edge_index).argmax(dim=-1)
        return [float((pred[mask] == y[mask]).float().mean())
                for mask in (data.train_mask, data.val_mask, data.test_mask)]

    best_val = test_acc = 0.
    for epoch in range(1, args.epochs + 1):
        loss = train()
        train_acc, val_acc, tmp_test_acc = test()
        if val_acc > best_val:
            best_val, test_acc = val_acc, tmp_test_acc
        print(f'Epoch: {epoch:03d}, Loss: {loss:.4f}, Train: {train_acc:.4f}, '
              f'Val: {val_acc:.4f}, Test: {tmp_test_acc:.4f}')
    print(f'Best validation: {best_val:.4f}, test: {test_acc:.4f}')
    return dict(val_acc=best_val, test_acc=test_acc)


if __name__ == '__main__':
    main()
