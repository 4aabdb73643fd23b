"""Certified robustness on Cora by randomized smoothing (Cohen et al., 2019).

COIN and a two-layer GCN are trained with Gaussian noise of standard deviation
sigma added to the node features, then smoothed with the same sigma and
certified node by node with `torch_geometric_coin.theory.RandomizedSmoothing`:
each noise draw perturbs the whole feature matrix, so a radius r certifies the
node's prediction against every feature perturbation of Frobenius norm < r.
Reports the certified accuracy on the test nodes (correct and certified at
radius >= r) against r, as JSON, a Markdown table and a plot.

    python benchmarks/certify.py
    python benchmarks/certify.py --epochs 2 --n0 5 --n 20  # tiny
"""
import argparse
import os.path as osp
import sys
import time

import matplotlib
import torch
from torch_geometric.datasets import Planetoid
from tqdm import tqdm

from torch_geometric_coin.datasets import writable_copy
from torch_geometric_coin.nn import COIN
from torch_geometric_coin.theory import RandomizedSmoothing
from torch_geometric_coin.utils import fit_node_classifier, write_results

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402

ROOT = osp.join(common.SHARED, 'planetoid')


def load_cora(root):
    if not osp.isdir(osp.join(root, 'Cora', 'raw')):
        raise FileNotFoundError(f'No Cora/raw under {root!r}; pass --root')
    return Planetoid(osp.dirname(writable_copy(osp.join(root, 'Cora'))),
                     'Cora')[0]


def build(args, name, data, num_classes):
    if name == 'GCN':
        return common.GCN(data.num_features, num_classes,
                          hidden_channels=args.hidden)
    return COIN(data.num_features, num_classes, hidden_channels=args.hidden,
                K=args.K, sigma2=args.sigma2)


def train(args, model, data, sigma):
    """Trains on noisy features (fresh noise at every training and
    evaluation pass); returns the best validation accuracy."""
    def noisy_forward(model, data):
        return model(data.x + sigma * torch.randn_like(data.x),
                     data.edge_index)

    with tqdm(total=args.epochs, desc='train', leave=False) as bar:
        res = fit_node_classifier(model, data, data.train_mask,
                                  data.val_mask, data.test_mask,
                                  epochs=args.epochs, lr=args.lr,
                                  weight_decay=args.weight_decay,
                                  forward=noisy_forward,
                                  progress=lambda epoch, m: bar.update(1))
    model.eval()
    return res['val_acc']


def run(args, name, sigma, data, num_classes):
    """Trains one model with noise level sigma and certifies the test
    nodes."""
    test = data.test_mask
    y = data.y[test]
    torch.manual_seed(args.seed)
    model = build(args, name, data, num_classes)
    t0 = time.perf_counter()
    val = train(args, model, data, sigma)
    train_s = time.perf_counter() - t0
    with torch.no_grad():
        clean = model(data.x, data.edge_index).argmax(-1)[test]
    smoothed = RandomizedSmoothing(
        model, num_classes, sigma,
        forward_fn=lambda m, x, edge_index: m(x, edge_index))
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    pred, radius = smoothed.certify(data.x, data.edge_index, n0=args.n0,
                                    n=args.n, alpha=args.alpha,
                                    generator=gen)
    certify_s = time.perf_counter() - t0
    pred, radius = pred[test], radius[test]
    correct = pred == y
    return dict(
        model=name,
        sigma=sigma,
        val_acc_noisy=val,
        clean_acc=float((clean == y).float().mean()),
        abstain_rate=float((pred < 0).float().mean()),
        certified_acc={
            f'{r:g}': float((correct & (radius >= r)).float().mean())
            for r in args.radii
        },
        median_radius_correct=float(radius[correct].median())
        if correct.any() else 0.0,
        train_s=train_s,
        certify_s=certify_s,
        radius_correct=sorted(radius[correct].tolist()),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--root', default=ROOT,
                        help='folder with Cora/raw (copied to a temp dir)')
    parser.add_argument('--models', nargs='+', default=['COIN', 'GCN'],
                        choices=['COIN', 'GCN'])
    parser.add_argument('--sigmas', type=float, nargs='+',
                        default=[0.25, 0.5], help='noise stds, each used for '
                        'training and smoothing')
    parser.add_argument('--epochs', type=int, default=200)
    parser.add_argument('--hidden', type=int, default=64)
    parser.add_argument('--lr', type=float, default=0.01)
    parser.add_argument('--weight-decay', type=float, default=5e-4)
    parser.add_argument('--K', type=int, default=20,
                        help='COIN diffusion steps')
    parser.add_argument('--sigma2', type=float, default=0.35,
                        help='COIN diffusion coefficient')
    parser.add_argument('--n0', type=int, default=100)
    parser.add_argument('--n', type=int, default=1000)
    parser.add_argument('--alpha', type=float, default=0.001)
    parser.add_argument('--radii', type=float, nargs='+',
                        default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0])
    parser.add_argument('--seed', type=int, default=0)
    args, command = common.parse_args(parser, argv, 'certify')
    torch.manual_seed(args.seed)
    data = load_cora(args.root)
    num_classes = int(data.y.max()) + 1
    test = data.test_mask
    results = {}
    for sigma in args.sigmas:
        for name in args.models:
            label = f'{name}, sigma={sigma:g}'
            results[label] = run(args, name, sigma, data, num_classes)
            res = results[label]
            print(f"{label}: clean acc {res['clean_acc']:.3f}, certified "
                  f"acc {res['certified_acc']}, abstain "
                  f"{res['abstain_rate']:.3f}, "
                  f"certify {res['certify_s']:.1f}s")

    num_test = int(test.sum())
    meta = dict(
        command=command,
        settings={
            k: v
            for k, v in vars(args).items() if k not in ('root', 'out_dir')
        },
        num_test_nodes=num_test,
    )
    radii = ' | '.join(f'r={r:g}' for r in args.radii)
    lines = [
        f'Cora test nodes ({num_test}); each model trained with Gaussian '
        f'feature noise of std sigma and smoothed with the same sigma; '
        f'n0={args.n0}, n={args.n}, alpha={args.alpha:g}; certified '
        f'accuracy at radius r; '
        f'radius in Frobenius norm of the whole feature perturbation.', '',
        f'| model | clean acc | abstain | {radii} |',
        '|---' * (len(args.radii) + 3) + '|'
    ]
    for name, res in results.items():
        cells = ' | '.join(f'{v:.3f}' for v in res['certified_acc'].values())
        lines.append(f"| {name} | {res['clean_acc']:.3f} | "
                     f"{res['abstain_rate']:.3f} | {cells} |")
    table = '\n'.join(lines) + '\n'
    write_results(args.out_dir, 'certify', dict(meta, results=results), table)
    print(table)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, res in results.items():
        rs = torch.tensor(res['radius_correct'])
        grid = torch.linspace(0, max(1e-3, float(rs.max()) if len(rs) else 1),
                              200)
        acc = [(rs >= r).sum().item() / num_test for r in grid]
        ax.plot(grid, acc, label=name,
                linestyle='-' if res['model'] == 'COIN' else '--')
    ax.set_xlabel('radius (L2 over all node features)')
    ax.set_ylabel('certified accuracy')
    ax.set_title('Cora, randomized smoothing')
    ax.legend()
    fig.tight_layout()
    fig.savefig(osp.join(args.out_dir, 'certify.png'), dpi=120)
    print(f"Wrote {osp.join(args.out_dir, 'certify.json')}, certify.md, "
          f"certify.png")


if __name__ == '__main__':
    main()
