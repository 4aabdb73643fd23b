"""Scaling of decoupled COIN training (benchmarks/decoupled.py).

    python benchmarks/scale.py --sizes 100000:1000000 1000000:10000000
    python benchmarks/scale.py --sizes 10000000:100000000 --threads 16
    python benchmarks/scale.py --real --datasets Physics tolokers --seeds 3

Synthetic mode: for each ``nodes:edges`` of ``--sizes``, a seeded random
graph (``common.random_graph``) with random features and labels (a random
linear map of the features), ``--train-fraction`` labelled training nodes
and half as many validation nodes; times the graph build, the rows of the
diffusion (``diffusion_rows``, truncated by ``--eps``/``--topk``), the
training epochs and the full-graph prediction, and the peak resident memory
of the process (VmHWM, reset before each size where Linux allows, else the
peak since the start). Accuracies on random labels mean nothing here.

``--seed`` seeds the synthetic graphs, or the first of the ``--seeds``
seeds of ``--real`` runs; options of the other mode are refused.
``--real``: on the largest real graphs of the data folder (Coauthor-Physics:
20 training and 30 validation nodes per class, seeded per run;
heterophilous tolokers: its split ``seed % 10``), COIN trained full batch
(``training.fit``) against decoupled from the same initialisation: test
accuracy and median time per epoch (goal: within 0.5 points, epochs at least
5x cheaper). Writes ``scale.{json,md}`` (``scale_real.*``) into
``--out-dir``.
"""
import os.path as osp
import resource
import sys
import time

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import decoupled  # noqa: E402
import reporting  # noqa: E402
from training import fit  # noqa: E402

from torch_geometric.data import Data  # noqa: E402

from torch_geometric_coin.nn import COIN  # noqa: E402

REAL = ('Physics', 'tolokers')


def reset_peak_rss() -> bool:
    r"""Resets the peak resident set size of this process (Linux's
    :obj:`/proc/self/clear_refs`); returns whether it could."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def peak_rss() -> int:
    r"""The peak resident set size of this process in bytes (VmHWM, else
    :func:`resource.getrusage`)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def parse_size(text: str):
    try:
        nodes, edges = (int(v) for v in text.split(':'))
    except ValueError:
        nodes = edges = 0
    if nodes < 2 or edges < 2:
        raise ValueError(f"A size is 'nodes:edges' with two integers >= 2 "
                         f"(got {text!r})")
    return nodes, edges


def build(args, in_channels, out_channels):
    return COIN(in_channels, out_channels,
                hidden_channels=args.hidden_channels, K=args.K,
                sigma2=args.sigma2, dropout=args.dropout, cached=True,
                stability='ignore')


def synthetic(args, nodes, edges, dec_kwargs):
    gen = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    edge_index = common.random_graph(nodes, edges, seed=args.seed)
    x = torch.randn(nodes, args.features, generator=gen)
    y = (x @ torch.randn(args.features, args.classes,
                         generator=gen)).argmax(dim=-1)
    graph_time = time.perf_counter() - start
    perm = torch.randperm(nodes, generator=gen)
    num_train = max(1, int(args.train_fraction * nodes))
    num_val = max(1, num_train // 2)
    train, val = perm[:num_train], perm[num_train:num_train + num_val]
    test = perm[num_train + num_val:]
    data = Data(x=x, y=y, edge_index=edge_index).to(args.device)
    torch.manual_seed(args.seed)
    model = build(args, args.features, args.classes).to(args.device)
    res = decoupled.train(model, data, train, val, test,
                          epochs=args.epochs, lr=args.lr,
                          weight_decay=args.weight_decay, seed=args.seed,
                          **dec_kwargs)
    return dict(res, nodes=nodes, edges=int(edge_index.size(1)),
                num_train=num_train, graph_time=graph_time)


def load_real(name, root):
    if name == 'Physics':
        from torch_geometric.datasets import Coauthor
        src = osp.join(root, 'coauthor', 'Physics')
        return Coauthor(osp.dirname(common.writable_copy(src)), 'Physics')[0]
    from torch_geometric.datasets import HeterophilousGraphDataset
    src = osp.join(root, 'heterophilous', name)
    return HeterophilousGraphDataset(
        osp.dirname(common.writable_copy(src)), name)[0]


def real(args, name, dec_kwargs):
    data = load_real(name, args.root)
    classes = int(data.y.max()) + 1
    records = {f'{name} full': [], f'{name} decoupled': []}
    for seed in range(args.seed, args.seed + args.seeds):
        stored = getattr(data, 'train_mask', None)
        if stored is not None and stored.dim() == 2:
            s = seed % data.train_mask.size(1)
            masks = (data.train_mask[:, s], data.val_mask[:, s],
                     data.test_mask[:, s])
        else:
            masks = common.random_split(data.y, seed=seed)
        for mode in ('full', 'decoupled'):
            torch.manual_seed(seed)
            model = build(args, data.num_features, classes).to(args.device)
            d = data.to(args.device)
            kwargs = dict(epochs=args.epochs, lr=args.lr,
                          weight_decay=args.weight_decay)
            if mode == 'full':
                res = fit(model, d, *masks, **kwargs)
            else:
                res = decoupled.train(model, d, *masks, seed=seed,
                                      **kwargs, **dec_kwargs)
            res.update(seed=seed)
            records[f'{name} {mode}'].append(res)
            print(f"{name} seed {seed} {mode}: test {res['test_acc']:.4f}, "
                  f"{1000 * res['time_per_epoch']:.1f} ms/epoch", flush=True)
    return data, records


def main(argv=None):
    parser = common.parser(
        __doc__, datasets=dict(default=list(REAL), choices=REAL),
        root=common.SHARED, seeds=3, seed=0, epochs=dict(
            default=None, help='training epochs (None: 5 synthetic, 200 '
            'real)'), hidden_channels=64, dropout=0.5, lr=0.01,
        weight_decay=5e-4, K=20, sigma2=0.35, device='cpu')
    parser.add_argument('--sizes', nargs='+', default=['100000:1000000'],
                        help='synthetic graphs as nodes:edges')
    parser.add_argument('--features', type=int, default=32,
                        help='synthetic: input features')
    parser.add_argument('--classes', type=int, default=8,
                        help='synthetic: classes')
    parser.add_argument('--train-fraction', type=float, default=0.01,
                        help='synthetic: fraction of labelled training '
                        'nodes (half as many validation nodes)')
    parser.add_argument('--real', action='store_true',
                        help='compare decoupled with full batch on the real '
                        'graphs of --datasets instead')
    decoupled.add_arguments(parser)
    parser.set_defaults(eps=1e-4, topk=256)
    args, command = common.parse_args(parser, argv, 'scale')
    dec_kwargs = decoupled.options(parser, args)
    for name in ('features', 'classes'):
        if getattr(args, name) < 1 + (name == 'classes'):
            parser.error(f'--{name} is too small (got {getattr(args, name)})')
    if not 0 < args.train_fraction < 0.5:
        parser.error(f'--train-fraction must be in (0, 0.5) (got '
                     f'{args.train_fraction})')
    # Options of the other mode would be accepted and ignored:
    other = (('datasets', 'seeds', 'root') if not args.real else
             ('sizes', 'features', 'classes', 'train_fraction'))
    for name in other:
        if getattr(args, name) != parser.get_default(name):
            parser.error(f"--{name.replace('_', '-')} applies to "
                         f"{'--real' if not args.real else 'synthetic'} "
                         f"runs only")
    if args.epochs is None:
        args.epochs = 200 if args.real else 5
    try:
        sizes = [parse_size(s) for s in args.sizes]
    except ValueError as e:
        parser.error(f'--sizes: {e}')
    settings = (f"K={args.K}, sigma2={args.sigma2}, hidden "
                f"{args.hidden_channels}, batch {args.batch_size}, "
                f"eps={args.eps}, topk={args.topk}, max_memory="
                f"{args.max_memory} MiB, {args.epochs} epochs, "
                f"{torch.get_num_threads()} threads, {args.device}")

    if args.real:
        records, sizes_of = {}, {}
        for name in args.datasets:
            with common.data_errors(parser):
                data, recs = real(args, name, dec_kwargs)
            records.update(recs)
            sizes_of[name] = (data.num_nodes, data.num_edges)
        summary = reporting.summarize_runs(records)
        rows = []
        for name in args.datasets:
            full = summary[f'{name} full']
            dec = summary[f'{name} decoupled']
            bound = max(r['bound'] for r in records[f'{name} decoupled'])
            gap = 100 * (dec['test_acc']['mean'] - full['test_acc']['mean'])
            rows.append([
                name, f'{sizes_of[name][0]} / {sizes_of[name][1]}',
                f'{gap:+.2f}',
                f"{full['time_per_epoch'] / dec['time_per_epoch']:.1f}x",
                f'{bound:.3g}'])
        md = (f"Decoupled against full-batch COIN ({settings}), "
              f"{args.seeds} runs each from the same initialisation.\n\n"
              f"Command: `{command}`\n\n" + reporting.runs_table(summary)
              + '\n' + reporting.markdown_table(
                  ['data set', 'nodes / edges', 'test acc gap (points)',
                   'epoch speed-up', 'max row bound'], rows))
        print(md)
        return reporting.save(args.out_dir, 'scale_real', dict(
            command=command, args=vars(args), summary=summary,
            runs=records), md)

    results = []
    for nodes, edges in sizes:
        clean = reset_peak_rss()
        res = synthetic(args, nodes, edges, dec_kwargs)
        res.update(peak_rss=peak_rss(), peak_rss_reset=clean)
        results.append(res)
        print(f"{nodes} nodes: rows {res['preprocess_time']:.1f} s, epoch "
              f"{res['time_per_epoch']:.2f} s, predict "
              f"{res['predict_time']:.1f} s, peak RSS "
              f"{reporting.fmt_mib(res['peak_rss'])} MiB", flush=True)
    table = reporting.markdown_table(
        ['nodes', 'edges', 'train seeds', 'graph s', 'rows s', 'row nnz',
         'max row bound', 's / epoch', 'predict s', 'peak RSS MiB'],
        [[r['nodes'], r['edges'], r['num_train'], f"{r['graph_time']:.1f}",
          f"{r['preprocess_time']:.1f}", r['nnz'], f"{r['bound']:.3g}",
          f"{r['time_per_epoch']:.2f}", f"{r['predict_time']:.1f}",
          reporting.fmt_mib(r['peak_rss'])] for r in results])
    md = (f"Decoupled COIN on random graphs ({settings}, "
          f"{args.features} features, {args.classes} classes, "
          f"{args.train_fraction} of the nodes labelled). Peak RSS: the "
          f"process's VmHWM"
          + (', reset before each size' if all(
              r['peak_rss_reset'] for r in results) else
             ' since the start (could not be reset)')
          + f".\n\nCommand: `{command}`\n\n" + table)
    print(md)
    return reporting.save(args.out_dir, 'scale', dict(
        command=command, args=vars(args), runs=results), md)


if __name__ == '__main__':
    main()
