"""COIN on data without a graph: scikit-learn's handwritten digits.

    python examples/coin_knn.py
    python examples/coin_knn.py --k 10 --K 10 --per-class 5

A Gaussian kNN graph over the pixels (GaussianKNNGraph: k neighbours, the
bandwidth from the distance of the bandwidth_k-th) turns the 1,797 images
into the nodes of one graph; COIN's class probabilities diffuse over it
(normalization=None: the transform normalises the weights). A few labels per
class train it, 200 images validate, the rest test. Needs scikit-learn
(pip install '.[bench]').
"""
import argparse

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

import torch_geometric.transforms as T
from torch_geometric.data import Data

from torch_geometric_coin.nn import COIN
from torch_geometric_coin.transforms import GaussianKNNGraph


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--k', type=int, default=6,
                        help='neighbours of each image')
    parser.add_argument('--bandwidth-k', type=int, default=3,
                        help='the neighbour whose distance is the bandwidth')
    parser.add_argument('--per-class', type=int, default=10,
                        help='training labels per class')
    parser.add_argument('--K', type=int, default=20,
                        help='diffusion steps')
    parser.add_argument('--sigma2', type=float, default=0.5,
                        help='diffusion coefficient')
    parser.add_argument('--epochs', type=int, default=100,
                        help='training epochs')
    parser.add_argument('--seed', type=int, default=0,
                        help='random seed')
    args = parser.parse_args(argv)

    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    torch.manual_seed(args.seed)
    digits = load_digits()
    data = Data(x=torch.tensor(digits.data, dtype=torch.float) / 16.,
                y=torch.tensor(digits.target))
    data = T.Compose([
        GaussianKNNGraph(k=args.k, bandwidth_k=args.bandwidth_k),
        T.RandomNodeSplit('test_rest', num_train_per_class=args.per_class,
                          num_val=200),
    ])(data).to(device)
    print(f'Data: {data.num_nodes} digits, {data.num_edges} kNN edges, '
          f'{int(data.train_mask.sum())} training labels')

    model = COIN(data.num_features, 10, K=args.K, sigma2=args.sigma2,
                 normalization=None, cached=True).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01,
                                 weight_decay=5e-4)

    best_val_acc = test_acc = 0.
    for epoch in range(1, args.epochs + 1):
        model.train()
        optimizer.zero_grad()
        out = model(data.x, data.edge_index, data.edge_weight)
        loss = F.nll_loss(out[data.train_mask], data.y[data.train_mask])
        loss.backward()
        optimizer.step()

        model.eval()
        with torch.no_grad():
            pred = model(data.x, data.edge_index, data.edge_weight).argmax(-1)
        correct = pred == data.y
        val_acc = float(correct[data.val_mask].float().mean())
        if val_acc > best_val_acc:
            best_val_acc = val_acc
            test_acc = float(correct[data.test_mask].float().mean())
        print(f'Epoch: {epoch:03d}, Loss: {loss.item():.4f}, '
              f'Val: {val_acc:.4f}, Test: {test_acc:.4f}')
    return dict(val_acc=best_val_acc, test_acc=test_acc)


if __name__ == '__main__':
    main()
