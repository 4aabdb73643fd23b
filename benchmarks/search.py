"""Chooses the hyper-parameters of COIN and APPNP per data set, with the same
budget for both and by validation accuracy only.

    python benchmarks/search.py                     # Planetoid, paper, 30
    python benchmarks/search.py --datasets Computers CS chameleon_filtered
    python benchmarks/search.py --protocol public --budget 10 --seeds 5

Each model draws a seeded random sample of ``--budget`` configurations from
its grid (the same number for every model), and trains every configuration
on the same runs (``--splits`` x ``--seeds``: the random or fixed splits of
``common.runs``, as ``planetoid.py``; the public split with ``--seeds``
initialisations under ``--protocol public``), all runs of a configuration in
one pass (``stacked.stack``, ``training.fit`` with ``[R, N]`` masks,
features as ``common.stacked_features`` gives them for ``--x-layout``; Adam
``--lr``, the configuration's weight decay, at most ``--epochs`` epochs,
``--patience``, the epoch of best validation accuracy). The configuration of
best mean validation accuracy wins (ties: the lower mean validation loss);
test accuracy is never looked at.

COIN's grid: the diffusion time ``t = K * sigma2`` (``--t``), what is
diffused (``--diffuse``), dropout, weight decay and width. Below
``--implicit-from`` (by default every t) the explicit scheme takes ``K =
ceil(t / sigma2_max)`` steps of ``sigma2 = t / K <= sigma2_max = 2 /
lambda_max`` (the stability limit of ``CoinDiffusionConv``, from the
largest eigenvalue of the data set's Laplacian); from ``--implicit-from``
on, ``K = ceil(t / --implicit-step)`` implicit (backward Euler) steps of
``sigma2 = t / K``. (On Cora, 10 runs in one pass on one CPU thread, an
epoch of 2 implicit steps of 8 took 0.45 s against 0.16 s for the 47
explicit steps of t = 16: fewer steps, but each a conjugate-gradient
solve.)
APPNP's grid: teleport ``--alpha``, propagation steps ``--appnp-K``,
dropout, weight decay and width.

Writes (after each data set) the chosen configuration per (data set,
model) into ``--config``
(default: the committed ``benchmarks/configs/search_<protocol>.json``,
whose other entries are kept) saved as ``--config-out`` (by default the
file of the same name in ``--out-dir``; pass the ``--config`` path to update
the committed one), and each grid as
``--out-dir/search_<protocol>_<dataset>_<models>_<budget>configs_seed<seed>_
<runs>runs.{json,md}`` (*e.g.*,
``search_paper_Cora_COIN-APPNP_30configs_seed0_10runs``).
"""
import itertools
import json
import math
import os
import os.path as osp
import random
import statistics
import sys
import time

import torch
from tqdm import tqdm

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import reporting  # noqa: E402
import stacked  # noqa: E402
from training import fit  # noqa: E402

from torch_geometric_coin.ops import (  # noqa: E402
    ConvergenceError, DiffusionOperator)

MODELS = common.SEARCHED  # ('COIN', 'APPNP')
# The grid dimensions of each model, as (CLI option, config key):
DIMENSIONS = {
    'COIN': (('t', 't'), ('diffuse', 'diffuse'), ('dropout', 'dropout'),
             ('weight_decay', 'weight_decay'),
             ('hidden_channels', 'hidden_channels')),
    'APPNP': (('alpha', 'alpha'), ('appnp_K', 'K'), ('dropout', 'dropout'),
              ('weight_decay', 'weight_decay'),
              ('hidden_channels', 'hidden_channels')),
}


def stability_limit(data) -> float:
    r"""The largest step :math:`\sigma^2_{\max} = 2 / \lambda_{\max}` of
    COIN's explicit scheme on :obj:`data` (its default :obj:`'coin'`
    Laplacian with self-loops, :meth:`DiffusionOperator.lambda_max`)."""
    op = DiffusionOperator.from_graph(data.edge_index, None, data.num_nodes,
                                      'coin', True, torch.float32)
    return 2.0 / op.lambda_max()


def coin_steps(t: float, sigma2_max: float, implicit_from: float,
               implicit_step: float):
    r"""COIN's :obj:`(K, sigma2, scheme)` of diffusion time :obj:`t`:
    explicit steps of at most :obj:`sigma2_max` below
    :obj:`implicit_from`, else implicit steps of at most
    :obj:`implicit_step`."""
    if not t > 0:
        raise ValueError(f"The diffusion time 't' must be positive (got {t})")
    if t < implicit_from:
        K = max(1, math.ceil(t / sigma2_max - 1e-9))
        return K, t / K, 'explicit'
    K = max(1, math.ceil(t / implicit_step - 1e-9))
    return K, t / K, 'implicit'


def sample_grid(args, model: str):
    r"""The seeded random sample of :obj:`args.budget` configurations
    (dictionaries of config keys) of :obj:`model`'s grid, in draw order."""
    dims = DIMENSIONS[model]
    grid = list(itertools.product(*(getattr(args, opt) for opt, _ in dims)))
    if args.budget > len(grid):
        raise ValueError(f"--budget {args.budget} exceeds the {len(grid)} "
                         f"configurations of {model}'s grid (the budget is "
                         f"the same for every model)")
    rng = random.Random(f'{args.seed}-{model}')
    return [dict(zip((key for _, key in dims), values))
            for values in rng.sample(grid, args.budget)]


def model_config(model: str, cfg: dict, sigma2_max: float, args) -> dict:
    r"""The full configuration of :func:`common.build_model` from a grid
    point (COIN: steps of its diffusion time)."""
    cfg = dict(cfg)
    if model == 'COIN':
        cfg['K'], cfg['sigma2'], cfg['scheme'] = coin_steps(
            cfg['t'], sigma2_max, args.implicit_from, args.implicit_step)
        cfg['num_layers'] = 1
    return cfg


def fit_stacked(model: str, dataset: str, data, runs, cfg: dict, args):
    r"""Trains the runs :obj:`runs` (tuples of :func:`common.runs`) of one
    configuration in one pass; returns the :func:`training.fit` results
    (one per run) and the seconds it took."""
    models = []
    for _, _, seed, *_ in runs:
        torch.manual_seed(seed)
        m, kw = common.build_model(model, dataset, data.num_features,
                                   data.num_classes, config=cfg)
        models.append(m)
    net = stacked.stack(models).to(args.device)
    masks = stacked.stacked_masks([r[3:] for r in runs])
    start = time.perf_counter()
    res = fit(net, data, *masks, epochs=args.epochs, lr=args.lr,
              weight_decay=kw['weight_decay'], patience=args.patience)
    return res, time.perf_counter() - start


def search_model(args, model: str, name: str, data, runs, sigma2_max, bar):
    r"""Evaluates the sampled configurations of :obj:`model`; returns the
    grid rows (configuration, mean and std of the validation accuracy,
    mean validation loss, median epochs, seconds)."""
    rows = []
    for point in sample_grid(args, model):
        cfg = model_config(model, point, sigma2_max, args)
        try:
            res, seconds = fit_stacked(model, name, data, runs, cfg, args)
            val = [r['val_acc'] for r in res]
            row = dict(val_acc=statistics.fmean(val),
                       val_acc_std=statistics.pstdev(val),
                       val_loss=statistics.fmean(r['val_loss'] for r in res),
                       epochs=statistics.median(r['epochs'] for r in res),
                       seconds=seconds)
        except (FloatingPointError, ConvergenceError) as e:  # diverged
            row = dict(val_acc=float('nan'), val_acc_std=float('nan'),
                       val_loss=float('nan'), epochs=None, seconds=None,
                       error=str(e).split('\n')[0])
        rows.append(dict(config=cfg, **row))
        bar.set_postfix(data=name, model=model,
                        val=f"{row['val_acc']:.3f}")
        bar.update()
    return rows


def choose(rows):
    r"""The row of best mean validation accuracy (ties: lower mean
    validation loss); :obj:`None` if every configuration failed."""
    finite = [r for r in rows if r['val_acc'] == r['val_acc']]
    if not finite:
        return None
    return max(finite, key=lambda r: (r['val_acc'], -r['val_loss']))


def markdown(args, name, data, sigma2_max, n_runs, grids, chosen, command):
    parts = [f"**{name}** ({data.num_nodes} nodes, {data.num_edges} edges, "
             f"{data.split_text}): validation accuracy of a random sample "
             f"of {args.budget} configurations per model ({args.protocol} "
             f"protocol, {n_runs} runs per configuration in one pass, Adam "
             f"lr {args.lr}, max {args.epochs} epochs, patience "
             f"{args.patience}); COIN's explicit steps sigma2 <= "
             f"{sigma2_max:.4g} = 2 / lambda_max, implicit from t = "
             f"{args.implicit_from:g} (inf: never).\n\nCommand: `{command}`\n"]
    for model, rows in grids.items():
        keys = [k for _, k in DIMENSIONS[model]]
        if model == 'COIN':
            keys += ['K', 'sigma2', 'scheme']
        table = [[r['config'][k] if not isinstance(r['config'][k], float)
                  else f"{r['config'][k]:.4g}" for k in keys]
                 + (['failed'] * 3 if r['val_acc'] != r['val_acc'] else
                    [f"{100 * r['val_acc']:.2f} ± "
                     f"{100 * r['val_acc_std']:.2f}", f"{r['epochs']:.0f}",
                     f"{r['seconds']:.1f}"]) for r in rows]
        best = chosen[model]
        text = ('every configuration failed' if best is None else
                'chosen: ' + ', '.join(f'{k}={best["config"][k]}'
                                       for k in keys))
        parts.append(f"**{model}** ({text})\n\n" + reporting.markdown_table(
            keys + ['val acc %', 'epochs', 's'], table))
    return '\n'.join(parts)


def load_config(path, protocol):
    if path is not None and osp.isfile(path):
        with open(path) as f:
            config = json.load(f)
        if 'models' not in config:
            raise ValueError(f"{path} is not a configuration of search.py "
                             f"(no 'models'; coin.json's layout is read by "
                             f"common.load_model_config only)")
        return config
    return dict(selection='validation accuracy only', protocol=protocol,
                models={})


def main(argv=None):
    parser = common.parser(
        __doc__, datasets=dict(default=list(common.PLANETOID),
                               choices=list(common.NODE_DATASETS)),
        models=dict(default=list(MODELS), choices=MODELS),
        splits=dict(default=5, help='splits per configuration (random, or '
                    'the first of the fixed ones; paper protocol)'),
        seeds=dict(default=2, help='initialisations per split'),
        seed=dict(default=0, help='the seed of the random sample of '
                  'configurations'),
        epochs=1000, patience=50, lr=0.01,
        root=dict(default=common.SHARED, help='the data folder (planetoid/, '
                  'amazon/, coauthor/, npz/; or a Planetoid folder)'),
        device='cpu', protocol='paper',
        dropout=dict(default=[0.2, 0.5, 0.8], type=float,
                     help='dropouts of the grids'),
        weight_decay=dict(default=[5e-5, 5e-4, 5e-3], type=float,
                          help='Adam weight decays of the grids'),
        hidden_channels=dict(default=[32, 64, 128], type=int,
                             help='widths of the grids'))
    parser.add_argument('--budget', type=int, default=30,
                        help='configurations per model and data set (the '
                        'same for every model)')
    parser.add_argument('--t', type=float, nargs='+',
                        default=[0.5, 1, 2, 4, 8, 16, 32],
                        help="COIN's diffusion times t = K * sigma2")
    parser.add_argument('--diffuse', nargs='+', choices=('prob', 'logits',
                                                         'hidden'),
                        default=['prob', 'logits', 'hidden'],
                        help='what COIN diffuses')
    parser.add_argument('--implicit-from', type=float, default=math.inf,
                        help="the diffusion time from which COIN takes "
                        "implicit steps (inf: explicit only; on Cora the "
                        "implicit steps cost 1.5-3x the explicit ones of "
                        "the same t)")
    parser.add_argument('--implicit-step', type=float, default=8.,
                        help="the largest implicit step sigma2")
    parser.add_argument('--alpha', type=float, nargs='+',
                        default=[0.05, 0.1, 0.2], help="APPNP's teleport "
                        "probabilities")
    parser.add_argument('--appnp-K', type=int, nargs='+', default=[5, 10, 20],
                        help="APPNP's propagation steps")
    parser.add_argument('--x-layout', choices=common.X_LAYOUTS,
                        default='auto', help='the features of the stacked '
                        'models (auto: sparse below 20%% non-zeros)')
    parser.add_argument('--config', default=None,
                        help='the configuration to update (None: '
                        'benchmarks/configs/search_<protocol>.json)')
    parser.add_argument('--config-out', default=None,
                        help='where the updated configuration goes (None: '
                        'the name of --config in --out-dir)')
    args, command = common.parse_args(parser, argv, 'search')
    if args.budget < 1:
        parser.error(f'--budget must be positive (got {args.budget})')
    if not args.implicit_step > 0:
        parser.error(f'--implicit-step must be positive (got '
                     f'{args.implicit_step})')
    for model in args.models:
        try:
            sample_grid(args, model)
        except ValueError as e:
            parser.error(str(e))
    for t in args.t:
        if not t > 0:
            parser.error(f'--t must be positive (got {t})')

    config_in = args.config or common.config_path(args.protocol)
    config = load_config(config_in, args.protocol)
    path = args.config_out or osp.join(args.out_dir, osp.basename(config_in))
    entries = {}  # (model, data set) -> the chosen configuration
    device = torch.device(args.device)
    datasets = {}
    total = 0
    for name in args.datasets:
        with common.data_errors(parser):
            data = common.load_node_dataset(args.root, name, args.protocol)
        runs = list(common.runs(data, args.protocol, args.splits,
                                args.seeds))
        datasets[name] = (data, runs)
        total += args.budget * len(args.models)
    paths = []
    bar = tqdm(total=total, desc='configurations')
    for name, (data, runs) in datasets.items():
        sigma2_max = stability_limit(data)
        data = common.stacked_features(data, args.x_layout).to(device)
        runs = [r[:3] + tuple(m.to(device) for m in r[3:]) for r in runs]
        grids, chosen = {}, {}
        for model in args.models:
            rows = grids[model] = search_model(args, model, name, data, runs,
                                               sigma2_max, bar)
            best = chosen[model] = choose(rows)
            if best is None:
                tqdm.write(f'Every configuration of {model} failed on {name}')
                continue
            entries[model, name] = dict(
                best['config'], val_acc=round(best['val_acc'], 4),
                runs=len(runs), command=command)
        md = markdown(args, name, data, sigma2_max, len(runs), grids, chosen,
                      command)
        paths += reporting.write_results(
            args.out_dir, f'search_{args.protocol}_{name}_'
            f"{'-'.join(args.models)}_{args.budget}configs_seed{args.seed}_"
            f'{len(runs)}runs', dict(
                dataset=name, protocol=args.protocol, command=command,
                sigma2_max=sigma2_max, runs=len(runs), args=vars(args),
                chosen={m: c and c['config'] for m, c in chosen.items()},
                grid=grids), md)
        tqdm.write(md)
        # After each data set, so that an interrupted search keeps them:
        config = write_config(path, config, entries, args.protocol)
    bar.close()
    reporting.wrote(*paths, path)
    return config


def write_config(path, config, entries, protocol):
    r"""Writes :obj:`config` updated with :obj:`entries` (the chosen
    configurations so far) to :obj:`path`, re-read first if it exists
    (another search may have written it since), so that only the entries
    of this search change."""
    if osp.isfile(path):
        config = load_config(path, protocol)
    for (model, name), entry in entries.items():
        config['models'].setdefault(model, dict(defaults={}, datasets={}))
        config['models'][model]['datasets'][name] = entry
    config.update(protocol=protocol, command='see each entry',
                  selection='validation accuracy only')
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(config, f, indent=2)
        f.write('\n')
    return config


if __name__ == '__main__':
    main()
