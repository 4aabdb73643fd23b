"""COIN on data without a graph: scikit-learn's digits (1,797 8x8 images).

A Gaussian kNN graph over the pixels (``gaussian_knn_graph``, the COIN
authors' construction), a residual base classifier trained on ``--per-class``
labels per class (as many for validation, the rest for testing), and three
methods on the same label draws: ``ResNet`` (the base classifier,
``COIN(K=0)``), ``COIN`` (its probabilities diffused over the graph with
``normalization=None``) and PyG's ``LabelPropagation`` (50 steps).

    python benchmarks/digits.py
    python benchmarks/digits.py --splits 2 --epochs 20  # tiny
"""
import os.path as osp
import sys

import torch
from sklearn.datasets import load_digits
from torch_geometric.data import Data
from torch_geometric.nn import LabelPropagation
from tqdm import tqdm

from torch_geometric_coin.nn import COIN
from torch_geometric_coin.utils import gaussian_knn_graph

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import reporting  # noqa: E402
from training import fit  # noqa: E402


def main(argv=None):
    parser = common.parser(
        __doc__, splits=dict(default=5, help='random label draws'), k=6,
        bandwidth_k=3, K=20, sigma2=0.5, epochs=100, lr=0.01, seed=0,
        per_class=dict(default=10, help='training (and as many validation) '
                       'images per class'))
    parser.add_argument('--alpha', type=float, default=0.99,
                        help='label propagation')
    parser.set_defaults(threads=1)  # (A graph this small: one is fastest.)
    args, command = common.parse_args(parser, argv, 'digits')

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float) / 16.
    y = torch.tensor(digits.target, dtype=torch.long)
    edge_index, edge_weight = gaussian_knn_graph(x, args.k, args.bandwidth_k)
    data = Data(x=x, y=y, edge_index=edge_index, edge_weight=edge_weight)
    C = int(y.max()) + 1
    models = {
        'ResNet': lambda: COIN(x.size(1), C, None, K=0),
        'COIN': lambda: COIN(x.size(1), C, None, K=args.K, sigma2=args.sigma2,
                             normalization=None, cached=True),
    }
    acc = {name: [] for name in list(models) + ['LabelPropagation']}
    generator = torch.Generator().manual_seed(args.seed)
    for run in tqdm(range(args.splits), desc='label draws'):
        train, val, test = common.random_split(
            y, args.per_class, args.per_class, generator=generator)
        for name, make_model in models.items():
            torch.manual_seed(args.seed + run)
            res, = fit(make_model(), data, train, val, test,
                       epochs=args.epochs, lr=args.lr)
            acc[name].append(res['test_acc'])
        pred = LabelPropagation(50, args.alpha)(
            y, edge_index, mask=train, edge_weight=edge_weight).argmax(-1)
        acc['LabelPropagation'].append(float((pred[test] == y[test]).float()
                                             .mean()))

    rows = [dict(method=name, **reporting.summarize(v), runs=v)
            for name, v in acc.items()]
    for r in rows:
        print(f"{r['method']:>16}: test accuracy {100 * r['mean']:.2f} ± "
              f"{100 * r['std']:.2f} ({r['n']} label draws)")
    return reporting.save(args.out_dir, 'digits', dict(
        command=command, args=vars(args), num_nodes=x.size(0),
        num_edges=edge_index.size(1), results=rows), lambda result: (
            f"scikit-learn digits, {args.per_class} labels per class (+ as "
            f"many for validation), {args.splits} label draws, kNN graph "
            f"k={args.k}, bandwidth_k={args.bandwidth_k}; COIN K={args.K}, "
            f"sigma2={args.sigma2}, normalization=None; label propagation "
            f"alpha={args.alpha}; {result['date']}.\n\n"
            + reporting.markdown_table(
                ['method', 'test accuracy (%)'],
                [[r['method'], reporting.fmt_mean(r, scale=100, digits=2)]
                 for r in rows])))


if __name__ == '__main__':
    main()
