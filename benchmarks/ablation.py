"""Ablations of COIN (``models.COIN_RECIPE``) on the public split of a
Planetoid graph, each a table and a plot: ``grid`` (test accuracy over K x
sigma2), ``diffuse`` (what is diffused), ``edges`` and ``sigma2`` (fixed vs
learnable), ``smoothing`` (the output after each diffusion step) and
``cost`` (time per epoch and peak memory against K=0).

    python benchmarks/ablation.py --parts grid cost --seeds 1
"""
import os
import os.path as osp
import statistics
import sys

import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm import tqdm

from torch_geometric_coin.nn import COIN, CoinDiffusionConv
from torch_geometric_coin.ops import DiffusionOperator
from torch_geometric_coin.utils import coin_norm

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import models  # noqa: E402
import reporting  # noqa: E402
from training import fit  # noqa: E402

PARTS = ('grid', 'diffuse', 'edges', 'sigma2', 'smoothing', 'cost')
RECIPE = models.COIN_RECIPE
NAN = float('nan')
VARIANTS = dict(  # part: (title, {variant: COIN options})
    diffuse=('what is diffused', {'prob': {}, 'logits': {'diffuse': 'logits'},
                                  'hidden': {'diffuse': 'hidden'}}),
    edges=('fixed vs learnable edge weights', {'fixed': {}, **{
        w: {'learn_edge_weights': w} for w in ('kernel', 'per_edge')}}),
    sigma2=('fixed vs learnable sigma2', {'fixed': {}, 'learnable': {
        'learn_sigma2': True}}))
TITLES = dict(grid='test accuracy (*: unstable, sigma2 * lambda_max > 2)',
              smoothing='over-smoothing: the output after each step',
              cost='time per epoch and peak tensor memory against K=0',
              **{p: t for p, (t, _) in VARIANTS.items()})


def dirichlet_energy(u, edge_index, adj):
    r""":math:`\mathrm{tr}(\mathbf{U}^\top \mathbf{L} \mathbf{U}) = \frac12
    \sum_{(j, i)} A_{ij} \lVert \mathbf{u}_i - \mathbf{u}_j \rVert^2` of the
    symmetric :obj:`'coin'` Laplacian, per node."""
    src, dst = edge_index
    diff = (u[dst] - u[src]).square().sum(dim=-1)
    return float(0.5 * (adj * diff).sum() / u.size(0))


class Ablation:
    r"""The parts and their runs: seeded COIN over :obj:`RECIPE`, each
    trained once (:obj:`None` where the explicit scheme diverged)."""
    def __init__(self, args, data):
        self.args, self.data, self.done, n = args, data, {}, data.num_nodes
        index, value = coin_norm(data.edge_index, None, n, 'coin')
        self.lam = DiffusionOperator(index, value, n).lambda_max()
        self.edges, self.adj = index[:, :-n], -value[:-n]  # A_ij = -L_ij
        self.bar = tqdm(total=args.seeds * sum(dict(
            grid=len(args.K) * len(args.sigma2), diffuse=3, edges=3,
            sigma2=2, smoothing=1).get(p, 0) for p in args.parts), desc='runs')

    def one(self, seed, **kw):
        key = (seed, tuple(sorted(kw.items())))
        if key not in self.done:
            d, a, cfg = self.data, self.args, dict(RECIPE, **kw)
            if cfg.get('learn_edge_weights') == 'per_edge':
                cfg['num_edges'] = d.num_edges
            wd = cfg.pop('weight_decay')
            torch.manual_seed(seed)
            model = COIN(d.num_features, d.num_classes, cached=True,
                         stability='ignore', **cfg)
            try:
                (res, ), peak, _ = common.measure_peak_memory(lambda: fit(
                    model, d, d.train_mask, d.val_mask, d.test_mask,
                    epochs=a.epochs, patience=a.patience, weight_decay=wd),
                    torch.device('cpu'))
                self.done[key] = dict(res, peak_memory=peak, model=model)
            except FloatingPointError:
                self.done[key] = None
        self.bar.update()
        return self.done[key]

    def mean(self, **kw):
        runs = [self.one(s, **kw) for s in range(self.args.seeds)]
        if None in runs:
            return dict(test_acc=NAN, std=NAN, diverged=True)
        acc = [r['test_acc'] for r in runs]
        peaks = [r['peak_memory'] for r in runs if r['peak_memory']]
        return dict(test_acc=statistics.fmean(acc),
                    std=statistics.stdev(acc) if len(acc) > 1 else 0.,
                    val_acc=statistics.fmean(r['val_acc'] for r in runs),
                    time_per_epoch=statistics.median(r['time_per_epoch']
                                                     for r in runs),
                    peak_memory=max(peaks, default=None), diverged=False)

    def grid(self, ax):
        Ks, s2s, lam = self.args.K, self.args.sigma2, self.lam
        self.cells = cells = {  # K=0 (no diffusion): one run for all sigma2
            (K, s): self.mean(K=K, sigma2=s if K else s2s[0])
            for K in Ks for s in s2s}
        bad = {c: c[0] > 0 and c[1] * lam > 2 for c in cells}  # unstable
        ax.figure.set_size_inches(1.2 * len(s2s) + 2, 0.5 * len(Ks) + 2)
        ax.figure.colorbar(ax.imshow([[100 * cells[(K, s)]['test_acc']
                                       for s in s2s] for K in Ks]))
        for (i, K), (j, s) in ((k, t) for k in enumerate(Ks)
                               for t in enumerate(s2s)):
            r = cells[(K, s)]
            ax.text(j, i, 'div.' if r['diverged'] else
                    f"{100 * r['test_acc']:.1f}" + '*' * bad[(K, s)],
                    ha='center', va='center', fontsize=8,
                    color='k' if r['diverged'] else 'w')
        ax.set(xticks=range(len(s2s)), xticklabels=s2s, xlabel='sigma2',
               yticks=range(len(Ks)), yticklabels=Ks, ylabel='K',
               aspect='auto')
        return ([dict(K=K, sigma2=s, **r) for (K, s), r in cells.items()],
                ['K \\ sigma2'] + [str(s) for s in s2s],
                [[K] + [pct(cells[(K, s)]) + ' (unstable)' * bad[(K, s)]
                        for s in s2s] for K in Ks])

    def bars(self, ax, part):
        res = {name: self.mean(**kw) for name, kw in VARIANTS[part][1].items()}
        ok = [100 * r['test_acc'] for r in res.values() if not r['diverged']]
        ax.figure.set_size_inches(1.5 * len(res) + 1.5, 3)
        ax.bar(list(res), [100 * r['test_acc'] for r in res.values()],
               yerr=[100 * r['std'] for r in res.values()], capsize=4)
        ax.set(ylim=(max(0, min(ok, default=10) - 10), 100),
               ylabel='test acc %')
        return res, ['variant', 'test acc %', 'ms / epoch'], [
            [n, pct(r), '-' if r['diverged'] else
             f"{1000 * r['time_per_epoch']:.1f}"] for n, r in res.items()]

    def smoothing(self, ax):  # the trained model's output after each step
        d, K, curves = self.data, RECIPE['K'], []
        for seed in range(self.args.seeds):
            model = self.one(seed)['model'].eval()
            step = CoinDiffusionConv(1, float(model.diffusion.sigma2),
                                     cached=True, stability='ignore')
            with torch.no_grad():
                u, curve = model.base(d.x).softmax(dim=-1), []
                for k in range(2 * K + 1):
                    u = step(u, d.edge_index) if k else u
                    acc = (u.argmax(dim=-1) == d.y)[d.test_mask].float()
                    curve.append((dirichlet_energy(u, self.edges, self.adj),
                                  float(acc.mean())))
            curves.append(curve)
        energy, acc = np.mean(curves, axis=0).T
        ax.semilogy(energy, 'o-', ms=3, label='Dirichlet energy / node')
        ax.axvline(K, color='gray', ls='--', lw=1, label=f'trained K={K}')
        twin = ax.twinx()
        twin.plot(100 * acc, 's-', ms=3, color='C1', label='test acc %')
        twin.set_ylabel('test acc %')
        ax.set(xlabel='diffusion step k', ylabel='energy')
        ax.legend(handles=ax.lines + twin.lines, fontsize=7)
        return (dict(energy=energy.tolist(), test_acc=acc.tolist()),
                ['step k', 'Dirichlet energy / node', 'test acc %'],
                [[k, f'{e:.4g}', f'{100 * a:.2f}']
                 for k, (e, a) in enumerate(zip(energy, acc))])

    def cost(self, ax):
        a = self.args
        s2 = min(a.sigma2, key=lambda s: abs(s - a.cost_sigma2))
        base = self.cells[(0, s2)]
        ok = [(K, r) for K in a.K
              if not (r := self.cells[(K, s2)])['diverged']]
        rt = [r['time_per_epoch'] / base['time_per_epoch'] for _, r in ok]
        rm = [r['peak_memory'] / base['peak_memory'] if r['peak_memory']
              and base['peak_memory'] else NAN for _, r in ok]
        Ks = [K for K, _ in ok]
        ax.plot(Ks, rt, 'o-', label='time / epoch')
        ax.plot(Ks, rm, 's-', label='peak memory')
        ax.axhline(1, color='gray', lw=1)
        ax.set(xlabel='K', ylabel=f'ratio to K=0 (sigma2={s2})')
        ax.legend(fontsize=7)
        return (dict(sigma2=s2, K=Ks, time_ratio=rt, memory_ratio=rm),
                ['K', 'ms / epoch', 'time ratio vs K=0', 'peak MiB',
                 'memory ratio vs K=0'],
                [[K, f"{1000 * r['time_per_epoch']:.1f}", f'{t:.2f}',
                  reporting.fmt_mib(r['peak_memory']), f'{m:.2f}']
                 for (K, r), t, m in zip(ok, rt, rm)])


def pct(r):
    return ('diverged' if r['diverged'] else
            f"{100 * r['test_acc']:.2f} ± {100 * r['std']:.2f}")


def main(argv=None):
    parser = common.parser(
        __doc__, dataset=dict(default='Cora', choices=common.PLANETOID),
        root=common.SHARED, K=[0, 1, 2, 5, 10, 20, 40],
        sigma2=[0.05, 0.1, 0.2, 0.35, 0.5, 1.0, 2.0], seeds=2, epochs=200,
        patience=50)
    parser.add_argument('--parts', nargs='+', default=list(PARTS),
                        choices=PARTS)
    parser.add_argument('--cost-sigma2', type=float, default=0.1,
                        help='the grid column used for the cost part')
    args, command = common.parse_args(parser, argv, 'ablation')
    if 'cost' in args.parts and ('grid' not in args.parts or 0 not in args.K):
        parser.error("'cost' reuses the runs of 'grid' with K=0")
    with common.data_errors(parser):
        data = common.load_planetoid(
            osp.join(args.root, 'planetoid'), args.dataset, 'public')
    abl = Ablation(args, data)
    parts = [p for p in PARTS if p in args.parts]
    stem = f'ablation_{args.dataset}' + (
        '' if len(parts) == len(PARTS) else '_' + '_'.join(parts))
    png = {p: osp.join(args.out_dir, f'{stem}_{p}.png') for p in parts}
    os.makedirs(args.out_dir, exist_ok=True)
    plt.switch_backend('Agg')
    results, md = {}, (
        f"**{args.dataset}**, public split, COIN {RECIPE}, {args.seeds} "
        f"seeds, max {args.epochs} epochs, patience {args.patience}; "
        f"lambda_max of the 'coin' Laplacian = {abl.lam:.3f}, so the "
        f"explicit scheme is stable for sigma2 <= {2 / abl.lam:.4f}.\n\n"
        f"Command: `{command}`\n")
    for part in parts:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        results[part], head, rows = (abl.bars(ax, part) if part in VARIANTS
                                     else getattr(abl, part)(ax))
        ax.set_title(f'{args.dataset}: {TITLES[part]}', fontsize=9)
        fig.tight_layout()
        fig.savefig(png[part])
        plt.close(fig)
        md += (f'\n*{TITLES[part]}* (`{osp.basename(png[part])}`)\n\n'
               + reporting.markdown_table(head, rows))
    abl.bar.close()
    print(md)
    reporting.save(args.out_dir, stem, dict(
        dataset=args.dataset, command=command, config=RECIPE,
        lambda_max=abl.lam, args=vars(args), results=results), md,
        *png.values())
    return results


if __name__ == '__main__':
    main()
