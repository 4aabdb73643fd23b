"""What the package defaults cost: a COIN training step against PyG's GCN, an
uncached diffusion layer against a cached one, and R runs in one pass.

    python benchmarks/step_time.py                  # Cora, 2 threads

Public Cora. Training steps (Adam, lr 0.01, weight decay 5e-4) of PyG's
``GCN`` (64 hidden) against ``COIN(num_features, num_classes)`` on CSR
features, with ``cached=True``, at the authors' width and compiled; layer
forwards of ``CoinDiffusionConv()`` against ``cached=True``, PyG's ``APPNP``
beside it, in interleaved rounds (medians). Runs in one pass:
``training.fit`` of R runs (seeds 0 to R-1) one by one against the same runs
stacked (``models.stack``), ``--epochs`` epochs, no early stopping.
"""
import os.path as osp
import statistics
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from tqdm import tqdm
from torch_geometric.nn import APPNP
from torch_geometric.nn.models import GCN

from torch_geometric_coin.nn import COIN, CoinDiffusionConv

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import models  # noqa: E402
import reporting  # noqa: E402
from training import fit  # noqa: E402

warnings.filterwarnings('ignore', '.*Sparse CSR tensor support.*')
warnings.filterwarnings('ignore', '.*Explicit diffusion is unstable.*')
STACKED = ('COIN', 'GCN')


def timed(cases, repeats: int, warmup: int = 3):
    r"""Median seconds of each callable of :obj:`cases`, in interleaved
    rounds after :obj:`warmup` calls each."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def training_steps(data, compile: bool):
    mask, y, x_csr = data.train_mask, data.y, common.sparse_features(data)
    C, F_in = data.num_classes, data.num_features
    cases = {
        'GCN (PyG, 64 hidden)': (GCN(F_in, 64, 2, C, dropout=0.5), data.x),
        'COIN defaults': (COIN(F_in, C), x_csr),
        'COIN cached=True': (COIN(F_in, C, cached=True), x_csr),
        "COIN authors' width": (COIN(F_in, C, None), x_csr),
        "COIN authors' width, cached=True": (COIN(F_in, C, None,
                                                  cached=True), x_csr),
    }
    if compile:
        cases['COIN defaults, torch.compile'] = (torch.compile(COIN(F_in, C)),
                                                 x_csr)
    steps = {}
    for name, (model, x) in cases.items():
        opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)

        def step(model=model, x=x, opt=opt, log=name.startswith('GCN')):
            opt.zero_grad()
            out = model(x, data.edge_index)
            out = out.log_softmax(-1) if log else out
            F.nll_loss(out[mask], y[mask]).backward()
            opt.step()
        steps[name] = step
    return steps


def layer_forwards(edge_index, num_nodes: int, channels: int):
    x = torch.rand(num_nodes, channels)
    cached = CoinDiffusionConv(cached=True)
    same, fresh = CoinDiffusionConv(), CoinDiffusionConv()
    appnp, appnp_cached = APPNP(20, 0.1), APPNP(20, 0.1, cached=True)
    return {
        'CoinDiffusionConv cached=True': lambda: cached(x, edge_index),
        'CoinDiffusionConv, same tensors': lambda: same(x, edge_index),
        'CoinDiffusionConv, new tensors': lambda: fresh(x, edge_index + 0),
        'APPNP cached=True': lambda: appnp_cached(x, edge_index),
        'APPNP, new tensors': lambda: appnp(x, edge_index + 0),
    }


def stacked_runs(data, name: str, runs: int, epochs: int):
    r"""Seconds of :func:`training.fit` of :obj:`runs` runs of :obj:`name`
    one by one and stacked in one model, and their mean test accuracy."""
    def build(seed):
        torch.manual_seed(seed)
        return models.build_model(name, 'Cora', data.num_features,
                                  data.num_classes)

    split = (data.train_mask, data.val_mask, data.test_mask)
    singles, train = zip(*[build(seed) for seed in range(runs)])
    stacked = models.stack([build(seed)[0] for seed in range(runs)])
    kw = dict(epochs=epochs, lr=train[0]['lr'],
              weight_decay=train[0]['weight_decay'])
    t0 = time.perf_counter()
    one = [fit(model, data, *split, **kw)[0] for model in singles]
    t1 = time.perf_counter()
    many = fit(stacked, common.stacked_features(data),
               *models.stacked_masks([split] * runs), **kw)
    t2 = time.perf_counter()
    return dict(runs=runs, epochs=epochs, one_by_one_s=t1 - t0,
                stacked_s=t2 - t1, speedup=(t1 - t0) / (t2 - t1),
                test_acc_one_by_one=statistics.fmean(
                    r['test_acc'] for r in one),
                test_acc_stacked=statistics.fmean(r['test_acc'] for r in many))


def markdown(p):
    text = (f"Command: `{p['command']}`\n\n{p['machine']}, {p['threads']} "
            f"threads, {p['date']}; medians of "
            f"{p['repeats']} interleaved rounds.\n\n### Training step, "
            f"Cora (public split)\n\n")
    rows = [[name, f"{r['ms']:.2f}", f"{r['vs_gcn']:.2f}"]
            for name, r in p['steps'].items()]
    text += reporting.markdown_table(['model', 'ms / step', 'x GCN'], rows)
    text += ("\n### Layer forward, uncached against cached\n\n")
    rows = [[graph, case, f"{r['ms']:.3f}", f"{r['vs_cached']:.2f}"]
            for graph, cases in p['layers'].items()
            for case, r in cases.items()]
    text += reporting.markdown_table(
        ['graph, channels', 'layer', 'ms / forward', 'x cached'], rows)
    text += ("\n### R runs in one pass (one by one on dense features, "
             "stacked on sparse ones)\n\n")
    rows = [[name, r['runs'], r['epochs'], f"{r['one_by_one_s']:.2f}",
             f"{r['stacked_s']:.2f}", f"{r['speedup']:.1f}x",
             f"{100 * r['test_acc_one_by_one']:.1f}",
             f"{100 * r['test_acc_stacked']:.1f}"]
            for name, r in p['stacked'].items()]
    text += reporting.markdown_table(
        ['model', 'R', 'epochs', 's one by one', 's stacked', 'speed-up',
         'test acc % one by one', 'test acc % stacked'], rows)
    return text


def main(argv=None):
    parser = common.parser(__doc__, root=common.SHARED, epochs=10)
    parser.add_argument('--repeats', type=int, default=20,
                        help='interleaved timed rounds (medians)')
    parser.add_argument('--nodes', type=int, default=20000,
                        help='nodes of the random graph')
    parser.add_argument('--degree', type=int, default=10,
                        help='edges per node of the random graph')
    parser.add_argument('--no-compile', action='store_true',
                        help='leave out the torch.compile case')
    parser.add_argument('--runs', type=int, default=10,
                        help='R, the runs trained in one pass')
    parser.set_defaults(threads=2)
    args, command = common.parse_args(parser, argv, 'step_time')
    if args.runs < 1:
        parser.error(f'--runs must be positive (got {args.runs})')
    torch.manual_seed(0)
    with common.data_errors(parser):
        data = common.load_planetoid(osp.join(args.root, 'planetoid'),
                                     'Cora', 'public')

    t = timed(training_steps(data, not args.no_compile), args.repeats)
    gcn = t['GCN (PyG, 64 hidden)']
    steps = {name: dict(ms=s * 1e3, vs_gcn=s / gcn) for name, s in t.items()}
    steps['COIN defaults']['vs_cached'] = (
        t['COIN defaults'] / t['COIN cached=True'])

    graphs = {'Cora': (data.edge_index, data.num_nodes),
              f'random {args.nodes}': (common.random_graph(
                  args.nodes, args.nodes * args.degree), args.nodes)}
    layers = {}
    for graph, (edge_index, n) in graphs.items():
        for channels in [7, 64]:
            with torch.no_grad():
                t = timed(layer_forwards(edge_index, n, channels),
                          args.repeats)
            key = f'{graph}, {channels} channels'
            layers[key] = {case: dict(ms=s * 1e3, vs_cached=s / t[
                ('APPNP' if case.startswith('APPNP') else 'CoinDiffusionConv')
                + ' cached=True']) for case, s in t.items()}
    stacked = {name: stacked_runs(data, name, args.runs, args.epochs)
               for name in tqdm(STACKED, desc='runs in one pass')}
    payload = reporting.stamp(dict(command=command, threads=args.threads,
                                   torch=torch.__version__,
                                   repeats=args.repeats, steps=steps,
                                   layers=layers, stacked=stacked))
    print(markdown(payload))
    return reporting.save(args.out_dir, 'step_time', payload, markdown)


if __name__ == '__main__':
    main()
