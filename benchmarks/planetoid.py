"""COIN against PyG's baselines on Cora, CiteSeer and PubMed.

    python benchmarks/planetoid.py                          # paper, 10 x 2
    python benchmarks/planetoid.py --splits 100 --seeds 20  # the full paper
    python benchmarks/planetoid.py --protocol public        # 10 seeds

Protocols: ``paper`` (the COIN authors' one: largest connected component,
binary features row-normalised, random splits of 20 train / 30 validation
nodes per class and the rest as test, S splits x I initialisations, Adam lr
0.01, weight decay 5e-4, early stopping with patience 50) and ``public``
(the standard Planetoid split, each model with its published optimiser
settings, 10 seeds). Every model runs on the same splits and seeds. COIN's K
and sigma2 per data set come from ``benchmarks/configs/coin.json``
(``benchmarks/search.py`` chose them by validation accuracy). Writes
``planetoid_<protocol>_<dataset>.{json,md}`` into ``--out-dir``.
"""
import os.path as osp
import sys

import torch
from tqdm import tqdm

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import reporting  # noqa: E402
from training import fit  # noqa: E402

PROTOCOL_TEXT = {
    'paper': ('paper protocol: largest connected component, binary features '
              'row-normalised, random splits 20 train / 30 val per class / '
              'rest test, {splits} splits x {seeds} seeds, Adam lr 0.01 '
              'wd 5e-4, max {epochs} epochs, patience {patience}'),
    'public': ('public protocol: standard Planetoid split, row-normalised '
               'features, {seeds} seeds, published optimiser settings per '
               'model'),
}


def run_dataset(args, name, bar, write):
    r"""Trains every model on every run of :obj:`name` (an inner bar shows
    the epochs of the current one); calls :obj:`write(result)` after each
    run, so that an interrupted benchmark keeps the runs it finished."""
    device = torch.device(args.device)
    data = common.load_planetoid(args.root, name, args.protocol).to(device)
    coin = common.load_coin_config(name, args.coin_config)
    records = {m: [] for m in args.models}
    result = dict(dataset=name, num_nodes=data.num_nodes,
                  num_edges=data.num_edges, coin=coin, runs=records)
    for split, init, seed, train, val, test in common.runs(
            data, args.protocol, args.splits, args.seeds):
        for model_name in args.models:
            torch.manual_seed(seed)
            model, kw = common.build_model(model_name, name, data.num_features,
                                           data.num_classes, coin)
            model = model.to(device)
            if args.protocol == 'paper':
                kw = dict(lr=0.01, weight_decay=5e-4, epochs=args.epochs,
                          patience=args.patience)
            elif args.epochs is not None:
                kw['epochs'] = min(kw['epochs'], args.epochs)
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
            records[model_name].append(res)
            bar.set_postfix(data=name, model=model_name,
                            acc=f"{res['test_acc']:.3f}")
            bar.update()
        result['summary'] = reporting.summarize_runs(records)
        result['completed_runs'] = len(records[args.models[0]])
        write(result)
    return result


def markdown(args, result, command):
    proto = PROTOCOL_TEXT[args.protocol].format(
        splits=args.splits, seeds=args.seeds, epochs=args.epochs,
        patience=args.patience)
    head = (f"**{result['dataset']}** ({result['num_nodes']} nodes, "
            f"{result['num_edges']} edges), {proto}; COIN K="
            f"{result['coin']['K']}, sigma2={result['coin']['sigma2']}, "
            f"hidden={result['coin'].get('hidden_channels')}; "
            f"{result['completed_runs']} runs. Peak memory: "
            f"{result['memory']} during training, max over runs.\n\n"
            f"Command: `{command}`\n\n")
    return head + reporting.runs_table(result['summary'])


def main(argv=None):
    parser = common.parser(
        __doc__, datasets=dict(default=list(common.PLANETOID),
                               choices=common.PLANETOID),
        models=dict(default=list(common.MODELS), choices=common.MODELS),
        splits=dict(default=10, help='random splits (paper protocol)'),
        seeds=dict(default=None, help='initialisations per split (None: 2 '
                   'for paper, 10 for public)'),
        epochs=dict(default=None, help='maximum epochs (None: 1000 for '
                    'paper; public: a cap on the published ones)'),
        patience=50, root=osp.join(common.SHARED, 'planetoid'),
        device='cpu', protocol='paper', coin_config=None)
    args, command = common.parse_args(parser, argv, 'planetoid')
    if args.seeds is None:
        args.seeds = 2 if args.protocol == 'paper' else 10
    if args.protocol == 'paper' and args.epochs is None:
        args.epochs = 1000

    n_runs = (args.splits if args.protocol == 'paper' else 1) * args.seeds
    outputs, paths = {}, []
    with tqdm(total=n_runs * len(args.models) * len(args.datasets),
              desc='runs') as bar:
        for name in args.datasets:
            written = []

            def write(result):
                written[:] = reporting.write_results(
                    args.out_dir, f'planetoid_{args.protocol}_{name}',
                    dict(result, command=command, protocol=args.protocol,
                         args=vars(args)), markdown(args, result, command))

            outputs[name] = result = run_dataset(args, name, bar, write)
            tqdm.write(markdown(args, result, command))
            paths += written
    reporting.wrote(*paths)
    return outputs


if __name__ == '__main__':
    main()
