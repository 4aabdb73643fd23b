"""Ablations of COIN on a Planetoid graph, each a table and a plot.

    python benchmarks/ablation.py                 # Cora, public split
    python benchmarks/ablation.py --dataset CiteSeer --seeds 3

Parts (``--parts``): ``grid`` (test accuracy over K x sigma2, and where the
explicit scheme is unstable: sigma2 * lambda_max > 2, or "diverged" when it
overflows), ``diffuse`` (probabilities vs logits vs hidden features),
``edges`` (fixed vs learnable edge weights: ``'kernel'``, ``'per_edge'``),
``sigma2`` (fixed vs learnable), ``smoothing`` (Dirichlet energy and accuracy
of the output after each diffusion step) and ``cost`` (time per epoch and
peak memory against the same base classifier without diffusion, K=0, from
the grid's runs). Writes ``ablation_<dataset>[_<parts>].{json,md}`` and
``ablation_<dataset>_<part>.png`` into ``--out-dir``.
"""
import os
import os.path as osp
import statistics
import sys

import matplotlib
import numpy as np
import torch
from tqdm import tqdm

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import reporting  # noqa: E402
from training import fit  # noqa: E402

from torch_geometric_coin.nn import COIN, CoinDiffusionConv  # noqa: E402
from torch_geometric_coin.ops import DiffusionOperator  # noqa: E402
from torch_geometric_coin.utils import coin_norm  # noqa: E402

PARTS = ('grid', 'diffuse', 'edges', 'sigma2', 'smoothing', 'cost')


def laplacian(data):
    r"""The off-diagonal entries of the :obj:`'coin'` Laplacian as
    :obj:`(edge_index, adj)` (:math:`A_{ij} = -L_{ij}`) and the estimate of
    its largest eigenvalue that :class:`CoinDiffusionConv` checks."""
    n = data.num_nodes
    index, value = coin_norm(data.edge_index, None, n, 'coin')
    lam = DiffusionOperator(index, value, n).lambda_max()
    return index[:, :-n], -value[:-n], lam


def dirichlet_energy(u, edge_index, adj):
    r""":math:`\mathrm{tr}(\mathbf{U}^\top \mathbf{L} \mathbf{U}) = \frac12
    \sum_{(j, i)} A_{ij} \lVert \mathbf{u}_i - \mathbf{u}_j \rVert^2` of the
    symmetric :obj:`'coin'` Laplacian, per node."""
    src, dst = edge_index
    diff = (u[dst] - u[src]).square().sum(dim=-1)
    return float(0.5 * (adj * diff).sum() / u.size(0))


class Runner:
    def __init__(self, args, data, cfg):
        self.args, self.data, self.cfg = args, data, cfg
        self.bar = None
        self.done = {}  # seeded runs are deterministic: train each once

    def fit(self, seed, **coin_kwargs):
        r"""Trains COIN with :obj:`coin_kwargs` over the config; returns the
        result of :func:`training.fit` with :obj:`peak_memory`, or
        :obj:`None` when the explicit scheme diverged. A configuration that
        an earlier part already trained (the base one appears in several)
        is not trained again."""
        key = (seed, tuple(sorted(coin_kwargs.items())))
        if key not in self.done:
            self.done[key] = self._fit(seed, **coin_kwargs)
        if self.bar is not None:
            self.bar.update()
        return self.done[key]

    def _fit(self, seed, **coin_kwargs):
        d, a = self.data, self.args
        kw = dict(hidden_channels=self.cfg.get('hidden_channels'),
                  num_layers=self.cfg.get('num_layers', 1),
                  dropout=self.cfg.get('dropout', 0.5), K=self.cfg['K'],
                  sigma2=self.cfg['sigma2'], cached=True, stability='ignore')
        kw.update(coin_kwargs)
        torch.manual_seed(seed)
        model = COIN(d.num_features, d.num_classes, **kw)
        try:
            res, peak, method = common.measure_peak_memory(
                lambda: fit(
                    model, d, d.train_mask, d.val_mask, d.test_mask,
                    epochs=a.epochs, patience=a.patience), torch.device('cpu'))
            res.update(peak_memory=peak, memory=method, model=model)
        except FloatingPointError:
            res = None
        return res

    def mean(self, **coin_kwargs):
        r"""Test accuracy over :obj:`--seeds` (NaN if any diverged), median
        time per epoch, max peak memory."""
        runs = [self.fit(s, **coin_kwargs) for s in range(self.args.seeds)]
        if any(r is None for r in runs):
            return dict(test_acc=float('nan'), std=float('nan'),
                        diverged=True)
        accs = [r['test_acc'] for r in runs]
        peaks = [r['peak_memory'] for r in runs
                 if r['peak_memory'] is not None]
        return dict(test_acc=statistics.fmean(accs),
                    std=statistics.stdev(accs) if len(accs) > 1 else 0.,
                    val_acc=statistics.fmean(r['val_acc'] for r in runs),
                    time_per_epoch=statistics.median(r['time_per_epoch']
                                                     for r in runs),
                    peak_memory=max(peaks) if peaks else None,
                    diverged=False)


def pct(r):
    if r['diverged']:
        return 'diverged'
    return f"{100 * r['test_acc']:.2f} ± {100 * r['std']:.2f}"


def part_grid(run, args, lam, out):
    cells, no_diffusion = {}, None
    for K in args.K:
        for s2 in args.sigma2:
            if K == 0:  # Without diffusion sigma2 plays no role.
                no_diffusion = no_diffusion or run.mean(K=0, sigma2=s2)
                cells[(K, s2)] = no_diffusion
            else:
                cells[(K, s2)] = run.mean(K=K, sigma2=s2)
    acc = np.array([[cells[(K, s)]['test_acc'] for s in args.sigma2]
                    for K in args.K])
    fig, ax = plt.subplots(figsize=(1.2 * len(args.sigma2) + 2,
                                    0.5 * len(args.K) + 2))
    im = ax.imshow(100 * acc, cmap='viridis', aspect='auto')
    for i, K in enumerate(args.K):
        for j, s in enumerate(args.sigma2):
            r = cells[(K, s)]
            text = 'div.' if r['diverged'] else f"{100 * r['test_acc']:.1f}"
            if K > 0 and s * lam > 2 and not r['diverged']:
                text += '*'
            ax.text(j, i, text, ha='center', va='center', fontsize=8,
                    color='k' if r['diverged'] else 'w')
    ax.set_xticks(range(len(args.sigma2)), [str(s) for s in args.sigma2])
    ax.set_yticks(range(len(args.K)), [str(k) for k in args.K])
    ax.set_xlabel('sigma2')
    ax.set_ylabel('K')
    ax.set_title(f'{args.dataset}: test acc %  (* unstable: sigma2 > '
                 f'{2 / lam:.3f})', fontsize=9)
    fig.colorbar(im)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)

    def cell(K, s):
        unstable = K > 0 and s * lam > 2
        return pct(cells[(K, s)]) + (' (unstable)' if unstable else '')

    rows = [[K] + [cell(K, s) for s in args.sigma2] for K in args.K]
    table = reporting.markdown_table(
        ['K \\ sigma2'] + [str(s) for s in args.sigma2], rows)
    return cells, table


def part_bars(run, args, variants, title, out):
    res = {name: run.mean(**kw) for name, kw in variants.items()}
    names = list(res)
    fig, ax = plt.subplots(figsize=(1.5 * len(names) + 1.5, 3))
    ax.bar(names, [100 * res[n]['test_acc'] for n in names],
           yerr=[100 * res[n]['std'] for n in names], capsize=4)
    lo = min(100 * r['test_acc'] for r in res.values()
             if not r['diverged']) if any(not r['diverged']
                                          for r in res.values()) else 0
    ax.set_ylim(max(0, lo - 10), 100)
    ax.set_ylabel('test acc %')
    ax.set_title(f'{args.dataset}: {title}', fontsize=9)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    rows = [[n, pct(r), '-' if r['diverged'] else
             f"{1000 * r['time_per_epoch']:.1f}"] for n, r in res.items()]
    return res, reporting.markdown_table(['variant', 'test acc %',
                                          'ms / epoch'], rows)


def part_smoothing(run, args, data, edges, adj, out):
    r"""Trains COIN (diffusing probabilities) once per seed and follows its
    output through :obj:`2 K` explicit steps."""
    steps = 2 * run.cfg['K']
    curves = []
    for seed in range(args.seeds):
        r = run.fit(seed)
        if r is None:
            raise FloatingPointError('The configured COIN diverged')
        model = r['model'].eval()
        step = CoinDiffusionConv(K=1, sigma2=float(model.diffusion.sigma2),
                                 normalization='coin', cached=True,
                                 stability='ignore')
        energy, acc = [], []
        with torch.no_grad():
            u = model.base(data.x).softmax(dim=-1)
            for k in range(steps + 1):
                energy.append(dirichlet_energy(u, edges, adj))
                pred = u.argmax(dim=-1)
                acc.append(float((pred[data.test_mask] ==
                                  data.y[data.test_mask]).float().mean()))
                if k < steps:
                    u = step(u, data.edge_index)
        curves.append((energy, acc))
    energy = np.mean([c[0] for c in curves], axis=0)
    acc = np.mean([c[1] for c in curves], axis=0)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.semilogy(energy, 'o-', ms=3, label='Dirichlet energy / node')
    ax.axvline(run.cfg['K'], color='gray', ls='--', lw=1,
               label=f"trained K={run.cfg['K']}")
    ax.set_xlabel('diffusion step k')
    ax.set_ylabel('energy')
    ax2 = ax.twinx()
    ax2.plot(100 * acc, 's-', ms=3, color='C1', label='test acc %')
    ax2.set_ylabel('test acc %')
    ax.legend(loc='upper right', fontsize=7)
    ax2.legend(loc='center right', fontsize=7)
    ax.set_title(f"{args.dataset}: output after each step "
                 f"(sigma2={run.cfg['sigma2']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    rows = [[k, f'{energy[k]:.4g}', f'{100 * acc[k]:.2f}']
            for k in range(steps + 1)]
    return dict(energy=energy.tolist(), test_acc=acc.tolist()), \
        reporting.markdown_table(['step k', 'Dirichlet energy / node',
                                  'test acc %'], rows)


def part_cost(cells, args, out):
    s2 = min(args.sigma2, key=lambda s: abs(s - args.cost_sigma2))
    base = cells.get((0, s2))
    if base is None or base['diverged']:
        raise ValueError('The cost part needs K=0 in --K')
    rows, Ks, ratios_t, ratios_m = [], [], [], []
    for K in args.K:
        r = cells[(K, s2)]
        if r['diverged']:
            continue
        rt = r['time_per_epoch'] / base['time_per_epoch']
        mem, bmem = r['peak_memory'], base['peak_memory']
        rm = mem / bmem if mem and bmem else float('nan')
        Ks.append(K)
        ratios_t.append(rt)
        ratios_m.append(rm)
        rows.append([K, f"{1000 * r['time_per_epoch']:.1f}", f'{rt:.2f}',
                     '-' if mem is None else f'{mem / 2**20:.1f}',
                     f'{rm:.2f}'])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(Ks, ratios_t, 'o-', label='time / epoch')
    ax.plot(Ks, ratios_m, 's-', label='peak memory')
    ax.axhline(1, color='gray', lw=1)
    ax.set_xlabel('K')
    ax.set_ylabel('ratio to K=0 (ResNet)')
    ax.set_title(f'{args.dataset}: cost of diffusion (sigma2={s2})',
                 fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return dict(sigma2=s2, K=Ks, time_ratio=ratios_t, memory_ratio=ratios_m), \
        reporting.markdown_table(['K', 'ms / epoch', 'time ratio vs K=0',
                                  'peak MiB', 'memory ratio vs K=0'], rows)


def main(argv=None):
    parser = common.parser(
        __doc__, dataset=dict(default='Cora', choices=common.PLANETOID),
        root=common.SHARED,
        K=[0, 1, 2, 5, 10, 20, 40],
        sigma2=[0.05, 0.1, 0.2, 0.35, 0.5, 1.0, 2.0], seeds=2, epochs=200,
        patience=50, coin_config=None)
    parser.add_argument('--parts', nargs='+', default=list(PARTS),
                        choices=PARTS)
    parser.add_argument('--cost-sigma2', type=float, default=0.1,
                        help='the grid column used for the cost part')
    args, command = common.parse_args(parser, argv, 'ablation')
    if 'cost' in args.parts and 'grid' not in args.parts:
        parser.error("'cost' reuses the runs of 'grid'")

    with common.data_errors(parser):
        data = common.load_planetoid(
            osp.join(args.root, 'planetoid'), args.dataset, 'public')
    cfg = common.load_coin_config(args.dataset, args.coin_config)
    edges, adj, lam = laplacian(data)
    run = Runner(args, data, cfg)
    stem = f'ablation_{args.dataset}'
    if set(args.parts) != set(PARTS):
        stem += '_' + '_'.join(p for p in PARTS if p in args.parts)
    png = {p: osp.join(args.out_dir, f'{stem}_{p}.png') for p in PARTS}
    os.makedirs(args.out_dir, exist_ok=True)

    grid_runs = len(args.sigma2) * (len(args.K) - (0 in args.K)) + (
        0 in args.K)
    n = args.seeds * ((grid_runs if 'grid' in args.parts else 0) +
                      3 * ('diffuse' in args.parts) +
                      3 * ('edges' in args.parts) +
                      2 * ('sigma2' in args.parts) +
                      ('smoothing' in args.parts))
    run.bar = tqdm(total=n, desc='runs')
    results, sections = {}, []
    head = (f"**{args.dataset}**, public split, COIN {cfg}, {args.seeds} "
            f"seeds, max {args.epochs} epochs, patience {args.patience}; "
            f"lambda_max of the 'coin' Laplacian = {lam:.3f}, so the explicit "
            f"scheme is stable for sigma2 <= {2 / lam:.4f}.\n\nCommand: "
            f"`{command}`\n")
    if 'grid' in args.parts:
        cells, table = part_grid(run, args, lam, png['grid'])
        results['grid'] = [dict(K=K, sigma2=s, **r)
                           for (K, s), r in cells.items()]
        sections.append(('K x sigma2: test accuracy (unstable: sigma2 * '
                         'lambda_max > 2; diverged: overflow)', table,
                         'grid'))
    variants = {
        'diffuse': ({'prob': {}, 'logits': dict(diffuse='logits'),
                     'hidden': dict(diffuse='hidden')},
                    'what is diffused'),
        'edges': ({'fixed': {}, 'kernel': dict(learn_edge_weights='kernel'),
                   'per_edge': dict(learn_edge_weights='per_edge',
                                    num_edges=data.num_edges)},
                  'fixed vs learnable edge weights'),
        'sigma2': ({'fixed': {}, 'learnable': dict(learn_sigma2=True)},
                   'fixed vs learnable sigma2'),
    }
    for part, (var, title) in variants.items():
        if part not in args.parts:
            continue
        res, table = part_bars(run, args, var, title, png[part])
        results[part] = res
        sections.append((title, table, part))
    if 'smoothing' in args.parts:
        results['smoothing'], table = part_smoothing(
            run, args, data, edges, adj, png['smoothing'])
        sections.append(('over-smoothing: the output after each step', table,
                         'smoothing'))
    if 'cost' in args.parts:
        results['cost'], table = part_cost(cells, args, png['cost'])
        sections.append(('cost against the base classifier without '
                         'diffusion (K=0); memory: peak of the tensor memory '
                         'during training (`common.measure_peak_memory`)',
                         table, 'cost'))
    run.bar.close()
    md = head + ''.join(f'\n*{t}* (`{osp.basename(png[p])}`)\n\n{tab}'
                        for t, tab, p in sections)
    print(md)
    reporting.save(args.out_dir, stem, dict(
        dataset=args.dataset, command=command, config=cfg, lambda_max=lam,
        args=vars(args), results=results), md,
        *(png[p] for p in PARTS if p in args.parts))
    return results


if __name__ == '__main__':
    main()
