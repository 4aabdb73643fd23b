"""Scaling of COIN trained on precomputed rows of its diffusion (decoupled).

    python benchmarks/scale.py --sizes 100000:1000000 1000000:10000000
    python benchmarks/scale.py --real --datasets Physics tolokers --seeds 3

``training.fit`` trains ``log(P @ softmax(base(x)))`` full batch on the rows
``P`` of ``(I - sigma2 L)^K`` of the training nodes (``diffusion_rows``,
truncated by ``--eps``/``--topk``), selects on the validation rows, and one
full-graph prediction (``COIN.inference``) scores it. Synthetic: seeded random
graphs, features and labels (meaningless accuracies), timed per phase, peak
RSS per size. ``--real``: Coauthor-Physics and tolokers, full-graph against
decoupled training from the same initialisation.
"""
import os.path as osp
import sys
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import reporting  # noqa: E402
from training import fit  # noqa: E402

from torch_geometric.data import Data  # noqa: E402

from torch_geometric_coin.nn import COIN, safe_log  # noqa: E402
from torch_geometric_coin.ops import diffusion_rows  # noqa: E402


def peak_rss(reset=False):
    r"""Peak RSS in bytes (VmHWM), or resets it (returns whether it could)."""
    try:
        if reset:
            with open('/proc/self/clear_refs', 'w') as f:
                return f.write('5') == 1
        with open('/proc/self/status') as f:
            return next(int(line.split()[1]) * 1024 for line in f
                        if line.startswith('VmHWM:'))
    except (OSError, StopIteration):
        return False if reset else None


def fit_rows(model, data, train, val, test, eps=None, topk=None, **kwargs):
    r"""Trains COIN by :func:`training.fit` on the diffusion rows of the
    :obj:`train` and :obj:`val` nodes (indices), scores it on the full graph,
    and adds the training rows' L1 error :obj:`bound`, :obj:`nnz` and times."""
    start, x, y, conv = time.perf_counter(), data.x, data.y, model.diffusion
    nodes, t = torch.cat([train, val]), train.numel()
    index, value, bound = diffusion_rows(
        data.edge_index, num_nodes=x.size(0), nodes=nodes, K=conv.K,
        sigma2=conv.sigma2_init, normalization=conv.normalization,
        add_self_loops=conv.add_self_loops, eps=eps, topk=topk)
    parts = []
    for rows in (t, nodes.numel()):
        keep = index[0] < rows
        support, col = index[1, keep].unique(return_inverse=True)
        mat = torch.sparse_coo_tensor(
            torch.stack([index[0, keep], col]), value[keep],
            (rows, support.numel()), check_invariants=False)
        parts.append((mat.coalesce().to(x.device), support.to(x.device)))

    def forward(model, _):
        mat, support = parts[0 if model.training else 1]
        return safe_log(torch.sparse.mm(
            mat, model.base(x[support]).softmax(dim=-1)))

    res = dict(preprocess_time=time.perf_counter() - start,
               nnz=parts[0][0].values().numel(), bound=float(bound[:t].max()))
    pos = torch.arange(nodes.numel(), device=y.device)
    # fit's test split is a stand-in: all three are scored below.
    res.update(fit(model, Data(y=y[nodes]), pos[:t], pos[t:], pos[t:],
                   forward=forward, **kwargs)[0])
    start = time.perf_counter()
    with torch.no_grad():
        out = model.eval().inference(x, data.edge_index, chunk_size=65536)
        for split, i in (('train', train), ('val', val), ('test', test)):
            res[f'{split}_loss'] = float(F.nll_loss(out[i], y[i]))
            res[f'{split}_acc'] = float((out[i].argmax(-1) == y[i]).float()
                                        .mean())
    return dict(res, predict_time=time.perf_counter() - start)


def train(args, data, split, seed, decoupled=True):
    torch.manual_seed(seed)
    model = COIN(data.num_features, int(data.y.max()) + 1,
                 hidden_channels=args.hidden_channels, K=args.K,
                 sigma2=args.sigma2, dropout=args.dropout, cached=True,
                 stability='ignore').to(args.device)
    kw = dict(epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay)
    if decoupled:
        return fit_rows(model, data, *split, args.eps, args.topk, **kw)
    return fit(model, data, *split, **kw)[0]


def synthetic(args, nodes, edges):
    clean = peak_rss(reset=True)
    gen = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    edge_index = common.random_graph(nodes, edges, seed=args.seed)
    x = torch.randn(nodes, args.features, generator=gen)
    y = (x @ torch.randn(args.features, args.classes, generator=gen)).argmax(1)
    graph_time = time.perf_counter() - start
    num_train = max(1, int(args.train_fraction * nodes))
    num_val = max(1, num_train // 2)
    split = torch.randperm(nodes, generator=gen).to(args.device).split(
        [num_train, num_val, nodes - num_train - num_val])
    data = Data(x=x, y=y, edge_index=edge_index).to(args.device)
    return dict(train(args, data, split, args.seed), nodes=nodes,
                edges=edge_index.size(1), num_train=num_train,
                graph_time=graph_time, peak_rss=peak_rss(),
                peak_rss_reset=clean)


def load_real(name, root):
    from torch_geometric.datasets import Coauthor, HeterophilousGraphDataset
    family = 'coauthor' if name == 'Physics' else 'heterophilous'
    src = common.writable_copy(osp.join(root, family, name))
    return (Coauthor if name == 'Physics' else HeterophilousGraphDataset)(
        osp.dirname(src), name)[0]


def real(args, name, bar):
    data = load_real(name, args.root).to(args.device)
    records = {f'{name} full': [], f'{name} decoupled': []}
    for seed in range(args.seed, args.seed + args.seeds):
        if 'train_mask' in data:  # tolokers: 10 fixed splits
            split = [m[:, seed % m.size(1)] for m in (
                data.train_mask, data.val_mask, data.test_mask)]
        else:
            split = common.random_split(data.y.cpu(), seed=seed)
        split = [m.nonzero().view(-1).to(args.device) for m in split]
        for decoupled, (mode, recs) in enumerate(records.items()):
            res = train(args, data, split, seed, decoupled)
            recs.append(dict(res, seed=seed))
            bar.set_postfix(run=mode, acc=f"{res['test_acc']:.3f}")
            bar.update()
    full, dec = reporting.summarize_runs(records).values()
    return records, [
        name, f'{data.num_nodes} / {data.num_edges}',
        f"{100 * (dec['test_acc']['mean'] - full['test_acc']['mean']):+.2f}",
        f"{full['time_per_epoch'] / dec['time_per_epoch']:.1f}x",
        f"{max(r['bound'] for r in records[f'{name} decoupled']):.3g}"]


def main(argv=None):
    real_sets = ['Physics', 'tolokers']
    parser = common.parser(
        __doc__, datasets=dict(default=real_sets, choices=real_sets),
        root=common.SHARED, seeds=3, seed=0, epochs=dict(
            default=None, help='training epochs (None: 5 synthetic, 200 '
            'real)'), hidden_channels=64, dropout=0.5, lr=0.01,
        weight_decay=5e-4, K=20, sigma2=0.35, device='cpu')
    add = parser.add_argument
    add('--sizes', nargs='+', default=['100000:1000000'],
        help='synthetic graphs as nodes:edges')
    add('--features', type=int, default=32, help='synthetic: features')
    add('--classes', type=int, default=8, help='synthetic: classes')
    add('--train-fraction', type=float, default=0.01, help='synthetic: '
        'labelled training nodes (half as many validation nodes)')
    add('--eps', type=float, default=1e-4, help='drop row entries below it')
    add('--topk', type=int, default=256, help='keep the topk largest per row')
    add('--real', action='store_true', help='compare with full-graph '
        'training on the real graphs of --datasets instead')
    args, command = common.parse_args(parser, argv, 'scale')
    sizes = [s.split(':') for s in args.sizes]
    if not all(len(s) == 2 and all(v.isdigit() for v in s) for s in sizes):
        parser.error(f'--sizes: nodes:edges, two integers ({args.sizes})')
    args.epochs = args.epochs or (200 if args.real else 5)
    settings = (f'K={args.K}, sigma2={args.sigma2}, hidden '
                f'{args.hidden_channels}, eps={args.eps}, topk={args.topk}, '
                f'{args.epochs} epochs full batch, '
                f'{torch.get_num_threads()} threads, {args.device}')

    if args.real:
        runs, rows = {}, []
        with tqdm(total=2 * args.seeds * len(args.datasets),
                  desc='runs') as bar:
            for name in args.datasets:
                with common.data_errors(parser):
                    recs, row = real(args, name, bar)
                runs.update(recs)
                rows.append(row)
        payload = dict(summary=reporting.summarize_runs(runs), runs=runs)
        md = (f"Decoupled against full-batch COIN ({settings}), "
              f"{args.seeds} runs each from the same initialisation.\n\n"
              f"Command: `{command}`\n\n"
              + reporting.runs_table(payload['summary']) + '\n'
              + reporting.markdown_table(
                  ['data set', 'nodes / edges', 'test acc gap (points)',
                   'epoch speed-up', 'max row bound'], rows))
    else:
        runs = [synthetic(args, int(n), int(e))
                for n, e in tqdm(sizes, desc='sizes')]
        payload = dict(runs=runs)
        reset = ('reset before each size' if all(
            r['peak_rss_reset'] for r in runs) else 'since the start')
        md = (f"Decoupled COIN on random graphs ({settings}, "
              f"{args.features} features, {args.classes} classes, "
              f"{args.train_fraction} of the nodes labelled). Peak RSS: the "
              f"process's VmHWM, {reset}.\n\nCommand: `{command}`\n\n"
              + reporting.markdown_table(
                  ['nodes', 'edges', 'train seeds', 'graph s', 'rows s',
                   'row nnz', 'max row bound', 's / epoch', 'predict s',
                   'peak RSS MiB'],
                  [[r['nodes'], r['edges'], r['num_train'],
                    f"{r['graph_time']:.1f}", f"{r['preprocess_time']:.1f}",
                    r['nnz'], f"{r['bound']:.3g}",
                    f"{r['time_per_epoch']:.2f}", f"{r['predict_time']:.1f}",
                    reporting.fmt_mib(r['peak_rss'])] for r in runs]))
    print(md)
    return reporting.save(
        args.out_dir, 'scale_real' if args.real else 'scale',
        dict(command=command, args=vars(args), **payload), md)


if __name__ == '__main__':
    main()
