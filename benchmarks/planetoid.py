"""COIN against PyG's baselines on Cora, CiteSeer and PubMed (and the other
node classification data sets of ``common.load_node_dataset``).

    python benchmarks/planetoid.py                          # paper, 10 x 2
    python benchmarks/planetoid.py --splits 100 --seeds 20  # the full paper
    python benchmarks/planetoid.py --protocol public        # 10 seeds
    python benchmarks/planetoid.py --setting authors ours   # side by side
    python benchmarks/planetoid.py --datasets Computers CS chameleon_filtered

Settings: ``ours`` (the default) and ``authors``. ``authors`` follows the
COIN authors' code step by step (``benchmarks/authors_planetoid.py``): the
gnn-benchmark ``.npz`` files (``--npz-root``), their largest component,
their seeded 20/30/rest splits, their COIN (base block without dropout, K=20,
sigma2=0.35 unless ``--K``/``--sigma2``), Adam 0.01 / 5e-4, at most 10,000
epochs, patience 50, the last epoch whose validation loss fell or accuracy
rose, and their baselines with their own settings (GCN 64 hidden, dropout
0.8; APPNP with weight decay on its first layer only; MLP; GAT). It writes
``planetoid_authors_<dataset>_<models>_<runs>.{json,md}``; with both
settings also
``planetoid_authors_vs_<protocol>_<dataset>_<models>_<runs>.{json,md}``, the
two side by
side with the difference (ours - authors) and its 95% interval (Cora and
CiteSeer only).

``ours`` has two protocols: ``paper`` (our version of the paper's protocol:
PyG's Planetoid files, their largest connected component, binary features
row-normalised, random splits of 20 train / 30 validation nodes per class and
the rest as test, S splits x I initialisations, every model with Adam lr
0.01, weight decay 5e-4 (COIN, ResNet and APPNP: the searched one), at most
1,000 epochs, patience 50, the epoch of best validation accuracy; PyG's
example models) and ``public`` (the standard Planetoid split, each model
with its published optimiser settings, 10 seeds). Every model runs on the
same splits and seeds. The other data sets have one protocol each
(``common.load_node_dataset``): Amazon Computers/Photo and Coauthor
CS/Physics the paper protocol (largest component, random 20/30/rest
splits), the heterophilous graphs (chameleon_filtered, squirrel_filtered,
...) their 10 fixed splits (``--splits`` at most 10); the optimiser settings
follow ``--protocol``. COIN's, ResNet's and APPNP's hyper-parameters per
data set come from ``--config`` (by default the committed
``benchmarks/configs/search_<protocol>.json``, which ``benchmarks/search.py``
writes by validation accuracy); the other models keep the published ones.

COIN, ResNet, MLP, GCN, SGC and APPNP train all their runs in one pass
(``stacked.stack``; ``--runs-per-pass`` splits them into chunks), with
bag-of-words features as ``torch.sparse`` (``--x-layout``, by default sparse
below 20% non-zeros: all but Amazon's); their time per epoch is that
of the pass divided by its runs. GAT and GCNII train run by run. Writes
``planetoid_<protocol>_<dataset>_<models>_<runs>.{json,md}`` (*e.g.*,
``planetoid_public_Cora_COIN-GCN_10seeds``,
``planetoid_paper_Cora_COIN-GCN_10splits_2seeds``) into ``--out-dir``
(``runs/`` by default), so that runs of other models or seeds keep their own
files.
"""
import copy
import math
import os.path as osp
import sys

import torch
from tqdm import tqdm

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import authors_planetoid as authors  # noqa: E402
import common  # noqa: E402
import reporting  # noqa: E402
import stacked  # noqa: E402
from training import fit  # noqa: E402

PROTOCOL_TEXT = {
    'paper': ('paper protocol: largest connected component, binary features '
              'row-normalised, random splits 20 train / 30 val per class / '
              'rest test, {splits} splits x {seeds} seeds, Adam lr 0.01 '
              'wd 5e-4 (searched models: their own weight_decay below), '
              'max {epochs} epochs, patience {patience}'),
    'public': ('public protocol: standard Planetoid split, row-normalised '
               'features, {seeds} seeds, published optimiser settings per '
               'model'),
}
SETTINGS = ('ours', 'authors')
# The models that train all runs in one pass (stacked.stack):
STACKED = ('COIN', 'ResNet', 'MLP', 'GCN', 'SGC', 'APPNP')
AUTHORS_TEXT = (
    "the COIN authors' setting (graph/ of shwangtangjun/COIN): gnn-benchmark "
    "npz file, largest connected component, binary features row-normalised, "
    "their seeded splits 20 train / 30 val per class / rest test, {splits} "
    "splits x {seeds} inits, their models (COIN base block without dropout, "
    "K={K}, sigma2={sigma2}; baselines with their own settings), Adam, max "
    "{epochs} epochs, patience {patience}, the last epoch whose validation "
    "loss fell or accuracy rose")


def model_configs(args, name):
    r"""The searched hyper-parameters of :obj:`args.models` on :obj:`name`
    (:func:`common.load_model_config` of :obj:`args.config`; :obj:`None`:
    the published ones)."""
    configs = {}
    for model in args.models:
        if model in ('COIN', 'ResNet', 'APPNP'):
            configs[model] = common.load_model_config(model, name,
                                                      args.config)
            if configs[model] is None and model != 'APPNP':
                raise ValueError(f'{args.config} has no COIN entry (run '
                                 f'benchmarks/search.py)')
    return configs


def train_kwargs(args, kw, config):
    r"""The optimiser settings of a model: for the paper protocol, and for
    a model whose configuration :obj:`search.py` chose (it has a
    :obj:`weight_decay`), those of the search: Adam lr 0.01, weight decay
    5e-4 or the searched one, :obj:`--epochs` (None: 1000) and
    :obj:`--patience`; otherwise (public protocol) the published ones
    (:func:`common.build_model`, capped by :obj:`--epochs`)."""
    if args.protocol == 'paper' or 'weight_decay' in (config or {}):
        return dict(lr=0.01, weight_decay=(config or {}).get(
            'weight_decay', 5e-4), epochs=args.epochs or 1000,
            patience=args.patience)
    kw = dict(kw)
    if args.epochs is not None:
        kw['epochs'] = min(kw['epochs'], args.epochs)
    return kw


def _chunks(items, size):
    size = size or len(items)
    return [items[i:i + size] for i in range(0, len(items), size)]


def run_dataset(args, name, bar, write):
    r"""Trains every model on every run of :obj:`name`: the models of
    :obj:`STACKED` all runs in one pass (or :obj:`--runs-per-pass` at a
    time), the others run by run (an inner bar shows the epochs); calls
    :obj:`write(result)` after each pass or run, so that an interrupted
    benchmark keeps the runs it finished."""
    device = torch.device(args.device)
    data = common.load_node_dataset(args.root, name, args.protocol)
    configs = model_configs(args, name)
    runs = [r[:3] + tuple(m.to(device) for m in r[3:]) for r in common.runs(
        data, args.protocol, args.splits, args.seeds)]
    data = data.to(device)
    sparse = common.stacked_features(data, args.x_layout)
    records = {m: [] for m in args.models}
    result = dict(dataset=name, num_nodes=data.num_nodes,
                  num_edges=data.num_edges, split_text=data.split_text,
                  coin=configs.get('COIN') or configs.get('ResNet'),
                  configs=configs, runs=records)

    def done(model_name, res):
        records[model_name].append(res)
        bar.set_postfix(data=name, model=model_name,
                        acc=f"{res['test_acc']:.3f}")
        bar.update()

    def finish():
        result['summary'] = reporting.summarize_runs(
            {m: r for m, r in records.items() if r})
        result['completed_runs'] = min(len(r) for r in records.values())
        write(result)

    for model_name in args.models:
        config = configs.get(model_name)
        if model_name in STACKED:
            for chunk in _chunks(runs, args.runs_per_pass):
                models = []
                for _, _, seed, *_ in chunk:
                    torch.manual_seed(seed)
                    model, kw = common.build_model(
                        model_name, name, data.num_features,
                        data.num_classes, config=config)
                    models.append(model)
                model = stacked.stack(models).to(device)
                kw = train_kwargs(args, kw, config)
                masks = stacked.stacked_masks([r[3:] for r in chunk])
                with tqdm(total=kw['epochs'], leave=False,
                          desc=f'{model_name} x {len(chunk)} epochs') as ep:
                    res, peak, result['memory'] = \
                        common.measure_peak_memory(
                            lambda: fit(model, sparse, *masks,
                                        progress=lambda *_: ep.update(),
                                        **kw), device)
                for (split, init, seed, *_), r in zip(chunk, res):
                    r.update(split=split, init=init, seed=seed,
                             peak_memory=peak, runs_per_pass=len(chunk),
                             pass_time_per_epoch=r['time_per_epoch'],
                             time_per_epoch=r['time_per_epoch'] / len(chunk))
                    done(model_name, r)
                finish()
            continue
        for split, init, seed, train, val, test in runs:
            torch.manual_seed(seed)
            model, kw = common.build_model(model_name, name,
                                           data.num_features,
                                           data.num_classes, config=config)
            model = model.to(device)
            kw = train_kwargs(args, kw, config)
            epochs = tqdm(total=kw['epochs'], leave=False,
                          desc=f'{model_name} epochs')

            def progress(epoch, metrics):
                epochs.set_postfix(val=f"{metrics['val_acc']:.3f}",
                                   test=f"{metrics['test_acc']:.3f}",
                                   refresh=False)
                epochs.update()

            res, peak, result['memory'] = common.measure_peak_memory(
                lambda: fit(model, data, train, val, test, progress=progress,
                            **kw), device)
            epochs.close()
            res.update(split=split, init=init, seed=seed, peak_memory=peak)
            done(model_name, res)
            finish()
    return result


def run_authors(args, name, bar, write):
    r"""The authors' setting (:mod:`authors_planetoid`) on :obj:`name`:
    every model of :obj:`args.models` that they ran, on their runs; calls
    :obj:`write(result)` after each run."""
    device = torch.device(args.device)
    data = authors.load_authors(args.npz_root, name).to(device)
    models = [m for m in args.models if m in authors.MODELS]
    result = dict(dataset=name, num_nodes=data.num_nodes,
                  num_edges=data.num_edges, models=models,
                  K=args.authors_K, sigma2=args.authors_sigma2,
                  epochs=args.authors_epochs, patience=args.patience,
                  memory='not measured')
    records = result['runs'] = {m: [] for m in models}

    def after_run(model_name, res):
        records[model_name].append(res)
        bar.set_postfix(data=name, model=f'{model_name} (authors)',
                        acc=f"{res['test_acc']:.3f}")
        bar.update()
        if model_name == models[-1]:
            result['summary'] = reporting.summarize_runs(records)
            result['completed_runs'] = len(records[models[0]])
            result['nan_runs'] = {m: sum(r['nan_epoch'] is not None
                                         for r in recs)
                                  for m, recs in records.items()}
            write(result)

    authors.records_of(fit, data, models, args.splits, args.seeds,
                       epochs=args.authors_epochs, patience=args.patience,
                       K=args.authors_K, sigma2=args.authors_sigma2,
                       after_run=after_run)
    return result


def authors_markdown(args, result, command):
    text = AUTHORS_TEXT.format(splits=args.splits, seeds=args.seeds,
                               K=result['K'], sigma2=result['sigma2'],
                               epochs=result['epochs'],
                               patience=result['patience'])
    nan = ', '.join(f'{m} {n}' for m, n in result['nan_runs'].items() if n)
    head = (f"**{result['dataset']}** ({result['num_nodes']} nodes, "
            f"{result['num_edges']} edges), {text}; "
            f"{result['completed_runs']} runs; runs stopped by a NaN (the "
            f"kept model is reported, as the authors do): "
            f"{nan or 'none'}.\n\nCommand: `{command}`\n\n")
    return head + reporting.runs_table(result['summary'])


def welch(a, b):
    r"""The difference of means :obj:`mean(b) - mean(a)` and its 95%
    Welch interval, as :obj:`(diff, low, high)` (:obj:`nan` bounds with
    fewer than two values on a side or no spread)."""
    from scipy.stats import t

    na, nb = len(a), len(b)
    ma, mb = sum(a) / na, sum(b) / nb
    if na < 2 or nb < 2:
        return mb - ma, float('nan'), float('nan')
    va = sum((x - ma) ** 2 for x in a) / (na - 1) / na
    vb = sum((x - mb) ** 2 for x in b) / (nb - 1) / nb
    se = math.sqrt(va + vb)
    if se == 0:
        return mb - ma, float('nan'), float('nan')
    dof = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
    half = float(t.ppf(0.975, dof)) * se
    return mb - ma, mb - ma - half, mb - ma + half


def side_by_side(theirs, ours, protocol, command):
    r"""Markdown of the authors' setting and ours on one data set: per
    model both test accuracies and the difference (ours - authors, Welch
    95% interval, percentage points)."""
    rows, payload = [], {}
    for m in theirs['runs']:
        a = [r['test_acc'] for r in theirs['runs'][m]]
        b = [r['test_acc'] for r in ours['runs'].get(m, [])]
        cells = [m, reporting.fmt_acc(reporting.summarize(a))]
        if b:
            d, lo, hi = welch(a, b)
            cells += [reporting.fmt_acc(reporting.summarize(b)),
                      f'{100 * d:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]']
            payload[m] = dict(diff=d, ci_low=lo, ci_high=hi)
        else:
            cells += ['-', '-']
        rows.append(cells)
    md = (f"**{theirs['dataset']}**: the authors' setting "
          f"({theirs['num_nodes']} nodes) against ours ({protocol} "
          f"protocol, {ours['num_nodes']} nodes); test accuracy in %, "
          f"mean ± std [95% CI] over each setting's own runs; difference "
          f"ours - authors in points [Welch 95% CI].\n\n"
          f"Command: `{command}`\n\n" + reporting.markdown_table(
              ['model', 'authors', f'ours ({protocol})',
               'ours - authors'], rows))
    return md, payload


def _config_text(result):
    parts = []
    for model, cfg in result['configs'].items():
        if cfg is None:
            continue
        keys = (('K', 'sigma2', 'scheme', 'diffuse', 'hidden_channels',
                 'dropout', 'weight_decay') if model != 'APPNP' else
                ('K', 'alpha', 'hidden_channels', 'dropout', 'weight_decay'))
        if model == 'ResNet':
            keys = ('hidden_channels', 'dropout', 'weight_decay')
        parts.append(f'{model} ' + ', '.join(
            f'{k}={cfg[k]:.4g}' if isinstance(cfg[k], float)
            else f'{k}={cfg[k]}' for k in keys if k in cfg))
    return '; '.join(parts) or 'published hyper-parameters'


def markdown(args, result, command):
    if result['dataset'] in common.PLANETOID:
        proto = PROTOCOL_TEXT[args.protocol].format(
            splits=args.splits, seeds=args.seeds, epochs=args.epochs,
            patience=args.patience)
    else:
        proto = (f"{result['split_text']}, {args.splits} splits x "
                 f"{args.seeds} seeds, optimiser settings of the "
                 f"{args.protocol} protocol")
    stacked_models = [m for m in result['summary'] if m in STACKED]
    per_pass = args.runs_per_pass or 'all'
    head = (f"**{result['dataset']}** ({result['num_nodes']} nodes, "
            f"{result['num_edges']} edges), {proto}; "
            f"{_config_text(result)}; {result['completed_runs']} runs. "
            f"{', '.join(stacked_models) or 'No model'} trained {per_pass} "
            f"runs per pass (time per epoch: the pass's divided by its "
            f"runs). Peak memory: {result['memory']} during training, max "
            f"over runs (stacked models: over passes).\n\n"
            f"Command: `{command}`\n\n")
    return head + reporting.runs_table(result['summary'])


def main(argv=None):
    parser = common.parser(
        __doc__, datasets=dict(default=list(common.PLANETOID),
                               choices=list(common.NODE_DATASETS)),
        models=dict(default=list(common.MODELS), choices=list(
            common.MODELS) + ['COIN-safe']),
        splits=dict(default=10, help='splits (paper protocol; the fixed '
                    'ones of a data set that has them)'),
        seeds=dict(default=None, help='initialisations per split (None: 2 '
                   'for paper, 10 for public)'),
        epochs=dict(default=None, help='maximum epochs (None: 1000 for '
                    'paper, 10000 for the authors; public: a cap on the '
                    'published ones)'),
        patience=50,
        root=dict(default=common.SHARED, help='the data folder (planetoid/, '
                  'amazon/, coauthor/, npz/; or a Planetoid folder)'),
        device='cpu', protocol='paper',
        K=dict(default=None, help="COIN diffusion steps of the authors' "
               f"setting (None: theirs, {authors.K})"),
        sigma2=dict(default=None, help="COIN sigma2 of the authors' setting "
                    f"(None: theirs, {authors.SIGMA2})"))
    parser.add_argument('--setting', nargs='+', choices=SETTINGS,
                        default=['ours'],
                        help="'ours' (--protocol), 'authors' (their code, "
                        "step by step), or both side by side")
    parser.add_argument('--config', '--coin-config', default=None,
                        help="COIN's, ResNet's and APPNP's hyper-parameters "
                        "per data set (search.py; a file of coin.json's "
                        "layout holds COIN's only; None: "
                        "benchmarks/configs/search_<protocol>.json)")
    parser.add_argument('--runs-per-pass', type=int, default=None,
                        help='runs of COIN, ResNet, MLP, GCN, SGC and APPNP '
                        'trained in one pass (None: all)')
    parser.add_argument('--x-layout', choices=common.X_LAYOUTS,
                        default='auto', help='the features of the models '
                        'trained in one pass (auto: sparse below 20%% '
                        'non-zeros)')
    parser.add_argument('--npz-root', default=None,
                        help="the folder of the gnn-benchmark .npz files "
                        "(the authors' setting; None: <root>/npz)")
    args, command = common.parse_args(parser, argv, 'planetoid')
    if args.runs_per_pass is not None and args.runs_per_pass < 1:
        parser.error(f'--runs-per-pass must be positive (got '
                     f'{args.runs_per_pass})')
    if args.config is None:
        args.config = common.config_path(args.protocol)
    if 'authors' in args.setting:
        other = [d for d in args.datasets if d not in authors.NPZ_FILES]
        if other:
            parser.error(f"--setting authors covers "
                         f"{tuple(authors.NPZ_FILES)} only (got {other})")
    if args.npz_root is None:
        args.npz_root = osp.join(args.root, 'npz')
    with common.data_errors(parser):  # Missing data: before any run.
        if 'ours' in args.setting:
            for name in args.datasets:
                common.node_dataset_path(args.root, name)
        if 'authors' in args.setting:
            for name in args.datasets:
                path = osp.join(args.npz_root, authors.NPZ_FILES[name])
                if not osp.isfile(path):
                    raise FileNotFoundError(
                        f"No gnn-benchmark file '{path}': pass the datasets "
                        f"folder as --root (or set {common.ENV_VAR}) or its "
                        f"npz/ folder as --npz-root")
    args.authors_K = authors.K if args.K is None else args.K
    args.authors_sigma2 = (authors.SIGMA2 if args.sigma2 is None
                           else args.sigma2)
    args.authors_epochs = (authors.MAX_EPOCHS if args.epochs is None
                           else args.epochs)
    settings = [s for s in SETTINGS if s in args.setting]
    if args.seeds is None:
        args.seeds = 2 if args.protocol == 'paper' else 10
    if args.protocol == 'paper' and args.epochs is None:
        args.epochs = 1000

    ours_models = [m for m in args.models if m in common.MODELS]
    authors_models = [m for m in args.models if m in authors.MODELS]
    total = sum(
        ('ours' in settings) * len(ours_models) * args.seeds * (
            1 if args.protocol == 'public' and name in common.PLANETOID
            else args.splits)
        + ('authors' in settings) * args.splits * args.seeds
        * len(authors_models) for name in args.datasets)
    outputs, paths = {}, []
    with tqdm(total=total, desc='runs') as bar:
        for name in args.datasets:
            runs = (f'{args.seeds}seeds' if args.protocol == 'public'
                    and name in common.PLANETOID else
                    f'{args.splits}splits_{args.seeds}seeds')
            authors_runs = f'{args.splits}splits_{args.seeds}seeds'
            out = outputs[name] = {}
            if 'authors' in settings and authors_models:
                written = []

                def write(result):
                    written[:] = reporting.write_results(
                        args.out_dir, f'planetoid_authors_{name}_'
                        f"{'-'.join(authors_models)}_{authors_runs}",
                        dict(result, command=command, setting='authors',
                             args=vars(args)),
                        authors_markdown(args, result, command))

                out['authors'] = result = run_authors(args, name, bar, write)
                tqdm.write(authors_markdown(args, result, command))
                paths += written
            if 'ours' in settings and ours_models:
                written = []
                ours_args = copy.copy(args)
                ours_args.models = ours_models

                def write(result):
                    written[:] = reporting.write_results(
                        args.out_dir, f'planetoid_{args.protocol}_{name}_'
                        f"{'-'.join(ours_models)}_{runs}",
                        dict(result, command=command, setting='ours',
                             protocol=args.protocol, args=vars(args)),
                        markdown(args, result, command))

                out['ours'] = result = run_dataset(ours_args, name, bar,
                                                   write)
                tqdm.write(markdown(args, result, command))
                paths += written
            if len(out) == 2:
                md, diff = side_by_side(out['authors'], out['ours'],
                                        args.protocol, command)
                paths += reporting.write_results(
                    args.out_dir,
                    f'planetoid_authors_vs_{args.protocol}_{name}_'
                    f"{'-'.join(args.models)}_{runs}",
                    dict(dataset=name, command=command, differences=diff,
                         authors=out['authors']['summary'],
                         ours=out['ours']['summary'], args=vars(args)), md)
                tqdm.write(md)
            if settings == ['ours']:  # the former return value
                outputs[name] = out['ours']
    reporting.wrote(*paths)
    return outputs


if __name__ == '__main__':
    main()
