"""Certified robustness on Planetoid by randomized smoothing (Cohen et al.).

COIN and a two-layer GCN train with Gaussian noise of std sigma on the raw
node features, then are smoothed with the same sigma and certified with
`torch_geometric_coin.theory.RandomizedSmoothing`: a radius r certifies a
prediction against every perturbation of the whole feature matrix of
Frobenius norm < r. Reports the certified accuracy of the test nodes.

    python benchmarks/certify.py
    python benchmarks/certify.py --epochs 2 --n0 5 --n 20  # tiny
"""
import os
import os.path as osp
import sys
import time

import torch
from tqdm import tqdm

from torch_geometric_coin.nn import COIN
from torch_geometric_coin.theory import RandomizedSmoothing

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import models  # noqa: E402
import reporting  # noqa: E402
from training import fit  # noqa: E402


def run(args, name, sigma, data):
    """Trains one model on noisy features (fresh noise at every pass) and
    certifies the test nodes."""
    torch.manual_seed(args.seed)
    C, F, test = data.num_classes, data.num_features, data.test_mask
    model = (models.GCN(F, C, args.hidden_channels) if name == 'GCN' else
             COIN(F, C, args.hidden_channels, K=args.K, sigma2=args.sigma2))
    t0 = time.perf_counter()
    with tqdm(total=args.epochs, desc=f'{name}, sigma={sigma:g}',
              leave=False) as bar:
        res, = fit(model, data, data.train_mask, data.val_mask, test,
                   epochs=args.epochs, lr=args.lr,
                   weight_decay=args.weight_decay,
                   forward=lambda m, d: m(d.x + sigma * torch.randn_like(
                       d.x), d.edge_index),
                   progress=lambda epoch, metrics: bar.update(1))
    train_s, t0 = time.perf_counter() - t0, time.perf_counter()
    model.eval()
    with torch.no_grad():
        clean = model(data.x, data.edge_index).argmax(-1)[test]
    pred, radius = RandomizedSmoothing(
        model, C, sigma, forward_fn=lambda m, x, ei: m(x, ei)).certify(
        data.x, data.edge_index, n0=args.n0, n=args.n, alpha=args.alpha,
        generator=torch.Generator().manual_seed(args.seed))
    pred, radius, y = pred[test], radius[test], data.y[test]
    correct = pred == y
    return dict(
        model=name, sigma=sigma, val_acc_noisy=res['val_acc'],
        clean_acc=float((clean == y).float().mean()),
        abstain_rate=float((pred < 0).float().mean()),
        certified_acc={f'{r:g}': float((correct & (radius >= r)).float()
                                       .mean()) for r in args.radii},
        train_s=train_s, certify_s=time.perf_counter() - t0,
        radius_correct=sorted(radius[correct].tolist()))


def plot(args, results, num_test, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, res in results.items():
        rs = torch.tensor(res['radius_correct'])
        grid = torch.linspace(0, max(1e-3, float(rs.max()) if len(rs) else 1),
                              200)
        ax.plot(grid, [(rs >= r).sum().item() / num_test for r in grid],
                label=name, linestyle='-' if res['model'] == 'COIN' else '--')
    ax.set(xlabel='radius (L2 over all node features)',
           ylabel='certified accuracy',
           title=f'{args.dataset}, randomized smoothing')
    ax.legend()
    fig.tight_layout()
    os.makedirs(args.out_dir, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def main(argv=None):
    parser = common.parser(
        __doc__, dataset=dict(default='Cora', choices=common.PLANETOID),
        root=common.SHARED,
        models=dict(default=['COIN', 'GCN'], choices=['COIN', 'GCN']),
        epochs=200, hidden_channels=64, lr=0.01, weight_decay=5e-4, K=20,
        sigma2=0.35, seed=0)
    parser.add_argument('--sigmas', type=float, nargs='+',
                        default=[0.25, 0.5], help='noise stds, each used for '
                        'training and smoothing')
    parser.add_argument('--n0', type=int, default=100,
                        help='noise draws that choose the class')
    parser.add_argument('--n', type=int, default=1000,
                        help='noise draws that estimate its probability')
    parser.add_argument('--alpha', type=float, default=0.001,
                        help='failure probability of a certificate')
    parser.add_argument('--radii', type=float, nargs='+',
                        default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0])
    args, command = common.parse_args(parser, argv, 'certify')
    torch.manual_seed(args.seed)
    with common.data_errors(parser):
        data = common.load_planetoid(osp.join(args.root, 'planetoid'),
                                     args.dataset, 'public', normalize=False)
    results = {}
    for sigma in args.sigmas:
        for name in args.models:
            label = f'{name}, sigma={sigma:g}'
            results[label] = res = run(args, name, sigma, data)
            print(f"{label}: clean acc {res['clean_acc']:.3f}, certified "
                  f"acc {res['certified_acc']}")

    num_test = int(data.test_mask.sum())
    table = (
        f'{args.dataset} test nodes ({num_test}); each model trained with '
        f'Gaussian feature noise of std sigma and smoothed with the same '
        f'sigma; n0={args.n0}, n={args.n}, alpha={args.alpha:g}; certified '
        f'accuracy at radius r; radius in Frobenius norm of the whole '
        f'feature perturbation.\n\n' + reporting.markdown_table(
            ['model', 'clean acc', 'abstain'] +
            [f'r={r:g}' for r in args.radii],
            [[name, f"{res['clean_acc']:.3f}", f"{res['abstain_rate']:.3f}"]
             + [f'{v:.3f}' for v in res['certified_acc'].values()]
             for name, res in results.items()]))
    print(table)
    settings = {k: v for k, v in vars(args).items() if k != 'root'}
    return reporting.save(
        args.out_dir, 'certify', dict(command=command, settings=settings,
                                      num_test_nodes=num_test,
                                      results=results), table,
        plot(args, results, num_test, osp.join(args.out_dir, 'certify.png')))


if __name__ == '__main__':
    main()
