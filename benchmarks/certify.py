"""Certified robustness on Planetoid by randomized smoothing (Cohen et al.).

COIN and a two-layer GCN are trained with Gaussian noise of standard deviation
sigma added to the node features, then smoothed with the same sigma and
certified node by node with `torch_geometric_coin.theory.RandomizedSmoothing`:
each noise draw perturbs the whole feature matrix, so a radius r certifies the
node's prediction against every feature perturbation of Frobenius norm < r.
Reports the certified accuracy on the test nodes (correct and certified at
radius >= r) against r, as JSON, a Markdown table and a plot.

    python benchmarks/certify.py
    python benchmarks/certify.py --epochs 2 --n0 5 --n 20  # tiny

The features are the raw bag-of-words (not row-normalised), so that the noise
has the same scale on every node.
"""
import os
import os.path as osp
import sys
import time

import matplotlib
import torch
from tqdm import tqdm

from torch_geometric_coin.nn import COIN
from torch_geometric_coin.theory import RandomizedSmoothing

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import reporting  # noqa: E402
from training import fit  # noqa: E402


def build(args, name, data, num_classes):
    if name == 'GCN':
        return common.GCN(data.num_features, num_classes,
                          hidden_channels=args.hidden_channels)
    return COIN(data.num_features, num_classes,
                hidden_channels=args.hidden_channels, K=args.K,
                sigma2=args.sigma2)


def train(args, model, data, sigma):
    """Trains on noisy features (fresh noise at every training and
    evaluation pass); returns the best validation accuracy."""
    def noisy_forward(model, data):
        return model(data.x + sigma * torch.randn_like(data.x),
                     data.edge_index)

    with tqdm(total=args.epochs, desc='train', leave=False) as bar:
        res = fit(model, data, data.train_mask, data.val_mask,
                  data.test_mask, epochs=args.epochs, lr=args.lr,
                  weight_decay=args.weight_decay, forward=noisy_forward,
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
        data = common.load_planetoid(
            osp.join(args.root, 'planetoid'), args.dataset, 'public',
            normalize=False)
    test = data.test_mask
    results = {}
    for sigma in args.sigmas:
        for name in args.models:
            label = f'{name}, sigma={sigma:g}'
            results[label] = res = run(args, name, sigma, data,
                                       data.num_classes)
            print(f"{label}: clean acc {res['clean_acc']:.3f}, certified "
                  f"acc {res['certified_acc']}, abstain "
                  f"{res['abstain_rate']:.3f}, "
                  f"certify {res['certify_s']:.1f}s")

    num_test = int(test.sum())
    result = dict(
        command=command,
        settings={
            k: v
            for k, v in vars(args).items() if k not in ('root', 'out_dir')
        },
        num_test_nodes=num_test,
        results=results,
    )
    rows = [[name, f"{res['clean_acc']:.3f}", f"{res['abstain_rate']:.3f}"]
            + [f'{v:.3f}' for v in res['certified_acc'].values()]
            for name, res in results.items()]
    table = (
        f'{args.dataset} test nodes ({num_test}); each model trained with '
        f'Gaussian feature noise of std sigma and smoothed with the same '
        f'sigma; n0={args.n0}, n={args.n}, alpha={args.alpha:g}; certified '
        f'accuracy at radius r; radius in Frobenius norm of the whole '
        f'feature perturbation.\n\n' + reporting.markdown_table(
            ['model', 'clean acc', 'abstain'] +
            [f'r={r:g}' for r in args.radii], rows))
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
    ax.set_title(f'{args.dataset}, randomized smoothing')
    ax.legend()
    fig.tight_layout()
    png = osp.join(args.out_dir, 'certify.png')
    os.makedirs(args.out_dir, exist_ok=True)
    fig.savefig(png, dpi=120)
    return reporting.save(args.out_dir, 'certify', result, table, png)


if __name__ == '__main__':
    main()
