"""Chooses COIN's K and sigma2 per data set by validation accuracy only.

    python benchmarks/search.py                         # all three, paper
    python benchmarks/search.py --datasets Cora --K 10 20 --sigma2 0.1 0.35

Trains COIN for every (K, sigma2) of the grid on the same random splits as
``planetoid.py --protocol paper`` (or the public split), keeps the pair of
best mean validation accuracy (test accuracy is never looked at) and writes
``--config`` (``benchmarks/configs/coin.json``) updated with it and this
command to ``--config-out`` (by default a file of the same name in
``--out-dir``; pass the ``--config`` path to update a committed one), and the
grid as ``--out-dir/search_<dataset>.{json,md}``.
"""
import itertools
import json
import os
import os.path as osp
import statistics
import sys

import torch
from tqdm import tqdm

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import reporting  # noqa: E402
from training import fit  # noqa: E402


def main(argv=None):
    parser = common.parser(
        __doc__, datasets=dict(default=list(common.PLANETOID),
                               choices=common.PLANETOID),
        K=[5, 10, 20, 40], sigma2=[0.1, 0.2, 0.35, 0.5], splits=2, seeds=1,
        epochs=1000, patience=50, root=osp.join(common.SHARED, 'planetoid'),
        device='cpu', protocol='paper')
    parser.add_argument('--config', default=osp.join(common.CONFIGS,
                                                     'coin.json'),
                        help='the configuration to start from')
    parser.add_argument('--config-out', default=None,
                        help='where the updated configuration goes (None: '
                        'the name of --config in --out-dir)')
    args, command = common.parse_args(parser, argv, 'search')

    with open(args.config) as f:
        config = json.load(f)
    grid = list(itertools.product(args.K, args.sigma2))
    n_runs = (args.splits if args.protocol == 'paper' else 1) * args.seeds
    bar = tqdm(total=len(args.datasets) * len(grid) * n_runs, desc='search')
    paths = []
    for name in args.datasets:
        device = torch.device(args.device)
        data = common.load_planetoid(args.root, name, args.protocol)
        data = data.to(device)
        scores = {}
        for K, sigma2 in grid:
            cfg = dict(config['defaults'], K=K, sigma2=sigma2)
            vals = []
            for _, _, seed, train, val, test in common.runs(
                    data, args.protocol, args.splits, args.seeds):
                torch.manual_seed(seed)
                model, _ = common.build_model('COIN', name, data.num_features,
                                              data.num_classes, cfg)
                model = model.to(device)
                try:
                    res = fit(model, data, train, val, test,
                              epochs=args.epochs, patience=args.patience)
                    vals.append(res['val_acc'])
                except FloatingPointError:  # Explicit scheme diverged.
                    vals.append(float('nan'))
                bar.update()
            scores[(K, sigma2)] = statistics.fmean(vals)
        finite = {k: v for k, v in scores.items() if v == v}
        if not finite:
            raise RuntimeError(f'Every configuration diverged on {name}')
        # Ties: the smaller K, then the smaller sigma2 (the cheaper model).
        K, sigma2 = max(finite, key=lambda k: (finite[k], -k[0], -k[1]))
        config['datasets'][name] = dict(K=K, sigma2=sigma2,
                                        val_acc=round(finite[(K, sigma2)], 4),
                                        command=command)
        rows = [[K_, s_, 'diverged' if v != v else f'{100 * v:.2f}']
                for (K_, s_), v in scores.items()]
        md = (f'**{name}**: COIN validation accuracy ({args.protocol} '
              f'protocol, {n_runs} runs per cell); chosen K={K}, '
              f'sigma2={sigma2}.\n\nCommand: `{command}`\n\n' +
              reporting.markdown_table(['K', 'sigma2', 'val acc %'], rows))
        paths += reporting.write_results(args.out_dir, f'search_{name}', dict(
            dataset=name, command=command, chosen=dict(K=K, sigma2=sigma2),
            grid=[dict(K=k, sigma2=s, val_acc=v)
                  for (k, s), v in scores.items()]), md)
        tqdm.write(md)
    bar.close()
    config['command'] = 'see each entry'
    path = args.config_out or osp.join(args.out_dir,
                                       osp.basename(args.config))
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(config, f, indent=2)
        f.write('\n')
    reporting.wrote(*paths, path)
    return config


if __name__ == '__main__':
    main()
