"""COIN against PyG's baselines on node classification, with paired
intervals: Cora, CiteSeer, PubMed, the check sets (Amazon Computers,
Coauthor CS and Physics) and the heterophilous graphs.

    python benchmarks/planetoid.py                              # 20 x 5 runs
    python benchmarks/planetoid.py --splits 100 --seeds 20 --device cuda
    python benchmarks/planetoid.py --protocol public --seeds 10
    python benchmarks/planetoid.py --datasets Computers CS Physics \
        --splits 10 --seeds 2

``paper`` protocol (the COIN authors'): the gnn-benchmark ``.npz`` graphs of
Cora and CiteSeer and PyG's PubMed (:func:`common.load_node_dataset`), each
one's largest connected component with binary features row-normalised;
random splits of 20 training and 30 validation nodes per class, the rest as
test (split s drawn with seed s), S splits x I initialisations; every model
with Adam, lr 0.01, weight decay 5e-4, at most 1,000 epochs, patience 50,
the epoch of best validation accuracy. ``public``: the standard Planetoid
split with each model's published optimiser settings, I seeds.

COIN is the authors' recipe, unsearched (:obj:`models.COIN_RECIPE`: K=20,
dropout 0.5, weight decay 5e-4), once per ``--sigma2`` and
``--hidden-channels`` (0: as wide as the input, the authors' width). The
baselines keep their published hyper-parameters (:func:`models.build_model`).
COIN, ResNet, MLP, GCN, SGC and APPNP train their runs in one pass
(:func:`models.stack`; ``--runs-per-pass`` splits them), their time per
epoch being the pass's divided by its runs.

Each COIN is compared with each ``--compare`` model, paired. Paper protocol:
per split, each model's test accuracy averaged over its initialisations;
the mean of the S differences and its 95% t interval. Public protocol: every
seed sees the same test nodes, so the interval is a paired bootstrap over
those nodes (each model's per-node accuracy averaged over its seeds), which
counts the test set's own sampling error. The verdict: COIN wins (interval
above 0), loses (below 0) or ties. Writes
``planetoid_<protocol>_<dataset>_<models>_<runs>.{json,md}`` into
``--out-dir`` after every model.

``--reuse FILE ...`` (paper protocol) takes a model's runs from result files
of this script instead of training it again: each pass seeds its own runs, so
with the same runs (data set, splits, seeds, epochs, patience, runs per
pass and device) they are the runs this command would train. Models run in
separate processes thus combine into one paired table. A COIN is matched by
its sigma2 and width: a ``--sigma2 0.35`` file gives ``COIN s2=0.35`` to a
``--sigma2 0.3 0.35`` command.
"""
import json
import os.path as osp
import sys

import torch
from tqdm import tqdm

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import models  # noqa: E402
import reporting  # noqa: E402
from training import fit  # noqa: E402

BASELINES = ('ResNet', 'MLP', 'GCN', 'GAT', 'APPNP', 'SGC', 'GCNII')


def coin_variants(args):
    r"""The COIN configurations to run, by name: one per :obj:`--sigma2`
    and :obj:`--hidden-channels` (the name says what varies)."""
    out = {}
    for sigma2 in args.sigma2:
        for width in args.hidden_channels:
            name = 'COIN'
            if len(args.sigma2) > 1:
                name += f' s2={sigma2:g}'
            if len(args.hidden_channels) > 1:
                name += f" w={width or 'in'}"
            out[name] = dict(sigma2=sigma2, hidden_channels=width or None)
    return out


def train_kwargs(args, kw):
    if args.protocol == 'paper':
        return dict(lr=0.01, weight_decay=kw['weight_decay']
                    if 'param_groups' not in kw else 5e-4,
                    epochs=args.epochs or 1000, patience=args.patience)
    kw = dict(kw)
    if args.epochs is not None:
        kw['epochs'] = min(kw['epochs'], args.epochs)
    return kw


def train_model(args, name, kind, config, data, xdata, runs, bar):
    r"""Trains model :obj:`name` (of kind :obj:`kind`: 'COIN' or a baseline)
    on every run; returns one record per run (with :obj:`test_correct`,
    the test nodes' correctness, on the public split; the result file keeps
    each model's :func:`node_accuracy` instead)."""
    device = torch.device(args.device)
    size = args.runs_per_pass or len(runs)
    stacked = kind in models.STACKED
    records = []
    for start in range(0, len(runs), size if stacked else 1):
        chunk = runs[start:start + (size if stacked else 1)]
        nets = []
        for _, _, seed, *_ in chunk:
            torch.manual_seed(seed)
            net, kw = models.build_model(kind, data.name, data.num_features,
                                         data.num_classes, config=config)
            nets.append(net)
        kw = train_kwargs(args, kw)
        with tqdm(total=kw['epochs'], leave=False,
                  desc=f'{name} x {len(chunk)}') as epochs:
            if stacked:
                net = models.stack(nets).to(device)
                masks = models.stacked_masks([r[3:] for r in chunk])
                graph = xdata
            else:
                net, masks, graph = nets[0].to(device), chunk[0][3:], data
            res = fit(net, graph, *masks, progress=lambda *_: epochs.update(),
                      **kw)
        with torch.no_grad():
            net.eval()
            pred = net(graph.x, graph.edge_index).argmax(-1)
            pred = pred.view(len(chunk), -1)
        for (split, init, seed, _, _, test), r, p in zip(chunk, res, pred):
            r.update(split=split, init=init, seed=seed,
                     time_per_epoch=r['time_per_epoch'] / len(chunk))
            if args.protocol == 'public':
                r['test_correct'] = (p == data.y)[test].int().tolist()
            records.append(r)
            bar.update()
        bar.set_postfix(data=data.name, model=name,
                        acc=f"{res[-1]['test_acc']:.3f}")
    return records


SAME_RUNS = ('protocol', 'splits', 'seeds', 'epochs', 'patience',
             'runs_per_pass', 'device')


def reused_records(args, variants, names):
    r"""The records of the :obj:`--reuse` files by :obj:`(data set, model)`,
    checked to be the runs of this command; a file that gives none of its
    models, or a model that two files give, is refused. A COIN variant is
    matched by its configuration (:func:`coin_variants`); :obj:`names` are
    the command's models, each COIN by its variant's name."""
    out = {}
    wanted = {(d, n) for d in args.datasets for n in names}
    for path in args.reuse:
        try:
            with open(path) as f:
                saved = json.load(f)
            old, records = saved['args'], saved['records']
            dataset, old_variants = saved['dataset'], saved['variants']
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f'--reuse {path}: not a result file of this '
                             f'script ({type(e).__name__}: {e})') from None
        differ = [f"--{k.replace('_', '-')}" for k in SAME_RUNS
                  if old.get(k) != getattr(args, k)]
        if differ:
            raise ValueError(f"--reuse {path}: its runs differ from this "
                             f"command's in {', '.join(differ)}")
        # A COIN is known by its configuration, not by its name ('COIN' in
        # a one-sigma2 file is 'COIN s2=0.35' in a two-sigma2 command).
        named = {n: n for n in records if n not in old_variants}
        named.update({m: n for n in records if n in old_variants
                      for m, v in variants.items() if v == old_variants[n]})
        used = [n for n in named if (dataset, n) in wanted]
        if not used:
            given = ', '.join(f'{n} {json.dumps(old_variants[n])}'
                              if n in old_variants else n for n in records)
            raise ValueError(f'--reuse {path}: none of its models ({given}) '
                             f'on {dataset} is asked for')
        for name in used:
            if (dataset, name) in out:
                raise ValueError(f'--reuse {path}: another file gives '
                                 f'{name!r} on {dataset} too')
            out[dataset, name] = records[named[name]]
    return out


def node_accuracy(recs):
    r"""Each test node's accuracy over a model's runs (public split)."""
    return torch.tensor([r['test_correct'] for r in recs]).double().mean(0)


def compare(args, records, coin, other):
    r"""COIN minus :obj:`other`, paired (see the module's text)."""
    a, b = records[coin], records[other]
    if args.protocol == 'public':
        s = reporting.bootstrap_paired(node_accuracy(a), node_accuracy(b))
        how = 'paired bootstrap over test nodes'
    else:
        def per_split(recs):
            acc = {}
            for r in recs:
                acc.setdefault(r['split'], []).append(r['test_acc'])
            return [sum(v) / len(v) for _, v in sorted(acc.items())]
        s = reporting.paired(per_split(a), per_split(b))
        how = f"paired by split ({s['n']} splits)"
    return dict(s, coin=coin, other=other, how=how,
                verdict=reporting.verdict(s))


def coin_text(result):
    r"""COIN's recipe with each variant's own sigma2 and width."""
    recipe = ', '.join(f'{k}={v:g}' for k, v in result['coin'].items())
    variants = '; '.join(
        f"{name}: sigma2={v['sigma2']:g}, width "
        f"{v['hidden_channels'] or 'as the input'}"
        for name, v in result['variants'].items())
    return recipe + (f' ({variants})' if variants else '')


def markdown(args, result, command):
    data_text = result['split_text']
    if args.protocol == 'paper':
        train = ('Adam lr 0.01, weight decay 5e-4, at most '
                 f'{args.epochs or 1000} epochs, patience {args.patience}')
    else:
        train = 'published optimiser settings per model'
    runs = (f'{args.seeds} seeds' if args.protocol == 'public' else
            f'{args.splits} splits x {args.seeds} seeds')
    head = (f"**{result['dataset']}** ({result['num_nodes']} nodes, "
            f"{result['num_edges']} edges), {data_text}; {train}; "
            f"{result['runs']} runs per model ({runs}); "
            f"COIN: {coin_text(result)}. Time per epoch: the pass's divided "
            f"by its runs. Machine: {reporting.machine_info()}.\n\n"
            f"Command: `{command}`\n\n")
    rows = [[c['coin'], c['other'], reporting.fmt_diff(c), c['how'],
             f"COIN {c['verdict']}"] for c in result['comparisons']]
    table = reporting.markdown_table(
        ['COIN', 'against', 'difference in points [95% CI]', 'pairing',
         'verdict'], rows) if rows else ''
    return head + reporting.runs_table(result['summary']) + '\n' + table


def main(argv=None):
    parser = common.parser(
        __doc__, datasets=dict(default=list(common.PLANETOID),
                               choices=list(common.NODE_DATASETS)),
        models=dict(default=['COIN', 'APPNP', 'GCN', 'SGC', 'MLP'],
                    choices=['COIN', *BASELINES]),
        splits=dict(default=20, help='random splits (paper protocol; the '
                    'fixed ones of a data set that has them)'),
        seeds=dict(default=5, help='initialisations per split'),
        epochs=dict(default=None, help='maximum epochs (None: 1000 for '
                    'paper; public: a cap on the published ones)'),
        patience=50, device='cpu', protocol='paper', root=common.SHARED,
        sigma2=dict(default=[models.COIN_RECIPE['sigma2']],
                    help="COIN's sigma2 (one COIN per value)"),
        hidden_channels=dict(default=[models.COIN_RECIPE['hidden_channels']],
                             help="COIN's width (one COIN per value; 0: as "
                             "wide as the input, the authors')"))
    parser.add_argument('--compare', nargs='+', default=['APPNP', 'GCN'],
                        choices=BASELINES, help='the models each COIN is '
                        'compared with, paired')
    parser.add_argument('--runs-per-pass', type=int, default=None,
                        help='runs trained in one pass (None: all)')
    parser.add_argument('--reuse', nargs='+', default=[], metavar='FILE',
                        help='result files whose models are not trained '
                        'again (paper protocol; the same runs)')
    args, command = common.parse_args(parser, argv, 'planetoid')
    if args.runs_per_pass is not None and args.runs_per_pass < 1:
        parser.error(f'--runs-per-pass must be positive (got '
                     f'{args.runs_per_pass})')
    with common.data_errors(parser):  # Missing data: before any run.
        for name in args.datasets:
            if not (args.protocol == 'paper' and name in common.NPZ_FILES):
                common.node_dataset_path(args.root, name)
    variants = coin_variants(args) if 'COIN' in args.models else {}
    if args.reuse and args.protocol != 'paper':
        parser.error('--reuse takes the paper protocol only (a public-split '
                     "file keeps each test node's accuracy, not the runs')")
    names = [*variants, *(m for m in args.models if m != 'COIN')]
    try:
        reused = reused_records(args, variants, names)
    except ValueError as e:
        parser.error(str(e))
    paths, results = [], {}
    with tqdm(desc='runs') as bar:
        for dataset in args.datasets:
            with common.data_errors(parser):
                data = common.load_node_dataset(args.root, dataset,
                                                args.protocol)
            data.name = dataset
            runs = [r[:3] + tuple(m.to(args.device) for m in r[3:])
                    for r in common.runs(data, args.protocol, args.splits,
                                         args.seeds)]
            for name in names:
                recs = reused.get((dataset, name), [])
                if recs and [r['seed'] for r in recs] != [r[2] for r in runs]:
                    parser.error(f"--reuse: the runs of {name!r} on "
                                 f"{dataset} are not this command's")
            bar.total = (bar.total or 0) + len(runs) * len(names)
            data = data.to(args.device)
            xdata = common.stacked_features(data)
            public = len({r[0] for r in runs}) == 1 and len(runs) > 0 \
                and args.protocol == 'public'
            stem = (f"planetoid_{args.protocol}_{dataset}_"
                    f"{'-'.join(args.models)}_" + (
                        f'{args.seeds}seeds' if public else
                        f'{args.splits}splits_{args.seeds}seeds'))
            if len(variants) > 1:
                stem = stem.replace('COIN', f'COINx{len(variants)}', 1)
            records = {}
            result = results[dataset] = dict(
                dataset=dataset, num_nodes=data.num_nodes,
                num_edges=data.num_edges, split_text=data.split_text,
                runs=len(runs), coin=dict(models.COIN_RECIPE),
                variants=variants, records=records)
            for name in names:
                kind = 'COIN' if name in variants else name
                if (dataset, name) in reused:
                    records[name] = reused[dataset, name]
                    bar.update(len(runs))
                else:
                    records[name] = train_model(args, name, kind,
                                                variants.get(name), data,
                                                xdata, runs, bar)
                result['summary'] = reporting.summarize_runs(records)
                result['comparisons'] = [
                    compare(args, records, c, o) for c in variants
                    for o in args.compare if c in records and o in records]
                md = markdown(args, result, command)
                payload = dict(result, command=command, args=vars(args))
                if args.protocol == 'public':  # per node, not per run
                    payload['records'] = {m: [
                        {k: v for k, v in r.items() if k != 'test_correct'}
                        for r in recs] for m, recs in records.items()}
                    payload['test_node_accuracy'] = {
                        m: [round(v, 4) for v in node_accuracy(recs).tolist()]
                        for m, recs in records.items()}
                paths = [p for p in paths if stem not in p] + list(
                    reporting.write_results(args.out_dir, stem, payload, md))
            tqdm.write(md)
            for c in result['comparisons']:
                tqdm.write(f"{dataset}: {c['coin']} {c['verdict']} against "
                           f"{c['other']}: {reporting.fmt_diff(c)} points "
                           f"({c['how']}, 95% interval)")
    reporting.wrote(*paths)
    return results


if __name__ == '__main__':
    main()
