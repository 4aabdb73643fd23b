"""COIN on data without a graph: scikit-learn's digits (1,797 8x8 images).

A Gaussian kNN graph is built over the pixel features with
``gaussian_knn_graph`` (the COIN authors' construction: k = 6 other
neighbours, bandwidth from the 3rd), a residual base classifier is trained on
10 labels per class (10 more per class for validation, the rest is the test
set), and its class probabilities diffuse over the graph with
``CoinDiffusionConv(normalization=None)``. Compared on the same label draws:

* ``ResNet``: the same base classifier without diffusion (``COIN(K=0)``),
* ``COIN``: the base classifier followed by diffusion over the kNN graph,
* ``LabelPropagation``: PyG's label propagation (Zhou et al., 2004) over
  the same graph, ``F <- alpha D^-1/2 W D^-1/2 F + (1 - alpha) Y``, clamped
  to [0, 1] after each of 50 steps.

    python examples/digits.py                    # 5 label draws, < 1 minute
    python examples/digits.py --runs 2 --epochs 20 --out /tmp/digits

Writes ``digits.json`` and ``digits.md`` to ``--out``
(default: ``benchmarks/results``).
"""
import argparse
import os.path as osp
import time

import torch
from sklearn.datasets import load_digits
from torch_geometric.data import Data
from torch_geometric.nn import LabelPropagation
from tqdm import tqdm

from torch_geometric_coin.nn import COIN
from torch_geometric_coin.utils import (
    fit_node_classifier,
    gaussian_knn_graph,
    summarize,
    write_results,
)

HERE = osp.dirname(osp.abspath(__file__))
RESULTS = osp.join(HERE, '..', 'benchmarks', 'results')


def split(y, num_per_class, generator):
    r"""Draws :obj:`num_per_class` training and as many validation nodes per
    class; the remaining nodes are the test set."""
    train = torch.zeros_like(y, dtype=torch.bool)
    val = torch.zeros_like(y, dtype=torch.bool)
    for c in range(int(y.max()) + 1):
        idx = (y == c).nonzero().view(-1)
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
        train[idx[:num_per_class]] = True
        val[idx[num_per_class:2 * num_per_class]] = True
    return train, val, ~(train | val)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=5,
                        help='random label draws')
    parser.add_argument('--labels-per-class', type=int, default=10)
    parser.add_argument('--k', type=int, default=6)
    parser.add_argument('--bandwidth-k', type=int, default=3)
    parser.add_argument('--K', type=int, default=20)
    parser.add_argument('--sigma2', type=float, default=0.5)
    parser.add_argument('--epochs', type=int, default=100)
    parser.add_argument('--lr', type=float, default=0.01)
    parser.add_argument('--alpha', type=float, default=0.99,
                        help='label propagation')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=1,
                        help='PyTorch threads (a graph this small runs '
                        'fastest on one, much faster on a busy machine)')
    parser.add_argument('--out', default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float) / 16.
    y = torch.tensor(digits.target, dtype=torch.long)
    t = time.perf_counter()
    edge_index, edge_weight = gaussian_knn_graph(x, args.k, args.bandwidth_k)
    graph_s = time.perf_counter() - t
    data = Data(x=x, y=y, edge_index=edge_index, edge_weight=edge_weight)
    num_classes = int(y.max()) + 1
    print(f'digits: {x.size(0)} images, {x.size(1)} features, kNN graph '
          f'with {edge_index.size(1)} edges in {graph_s:.3f} s')

    models = {
        'ResNet': lambda: COIN(x.size(1), num_classes, K=0),
        'COIN': lambda: COIN(x.size(1), num_classes, K=args.K,
                             sigma2=args.sigma2, normalization=None,
                             cached=True),
    }
    acc = {name: [] for name in list(models) + ['LabelPropagation']}
    generator = torch.Generator().manual_seed(args.seed)
    for run in tqdm(range(args.runs), desc='label draws'):
        train, val, test = split(y, args.labels_per_class, generator)
        for name, make_model in models.items():
            torch.manual_seed(args.seed + run)
            res = fit_node_classifier(make_model(), data, train, val, test,
                                      epochs=args.epochs, lr=args.lr)
            acc[name].append(res['test_acc'])
        pred = LabelPropagation(50, args.alpha)(
            y, edge_index, mask=train, edge_weight=edge_weight).argmax(-1)
        acc['LabelPropagation'].append(float((pred[test] == y[test]).float()
                                             .mean()))

    rows = []
    for name, values in acc.items():
        rows.append(dict(method=name, **summarize(values), runs=values))
        print(f'{name:>16}: test accuracy {100 * rows[-1]["mean"]:.2f} '
              f'± {100 * rows[-1]["std"]:.2f} ({len(values)} label draws)')

    def markdown(result):
        lines = [
            f"scikit-learn digits, {args.labels_per_class} labels per class "
            f"(+ as many for validation), {args.runs} label draws, kNN graph "
            f"k={args.k}, bandwidth_k={args.bandwidth_k}; COIN K={args.K}, "
            f"sigma2={args.sigma2}, normalization=None; label propagation "
            f"alpha={args.alpha}; {result['date']}.", '',
            '| method | test accuracy (%) |', '|---|---|'
        ]
        for r in rows:
            lines.append(f"| {r['method']} | {100 * r['mean']:.2f} ± "
                         f"{100 * r['std']:.2f} |")
        return '\n'.join(lines) + '\n'

    result = dict(args=vars(args), num_nodes=x.size(0),
                  num_edges=edge_index.size(1), graph_seconds=graph_s,
                  results=rows)
    write_results(args.out, 'digits', result, markdown)
    return result


if __name__ == '__main__':
    main()
