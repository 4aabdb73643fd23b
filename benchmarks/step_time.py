"""What the package defaults cost: a COIN training step against PyG's GCN,
and an uncached diffusion layer against a cached one.

    python benchmarks/step_time.py                  # Cora, 2 threads
    python benchmarks/step_time.py --repeats 5 --nodes 2000  # quick

Training steps (public Cora, ``torch.sparse`` CSR features for COIN, the
dense features for GCN; forward, NLL on the training nodes, backward and a
``torch.optim.Adam`` step, lr 0.01, weight decay 5e-4, all in training
mode): PyG's ``torch_geometric.nn.models.GCN`` (2 layers, 64 hidden, dropout
0.5) against ``COIN(num_features, num_classes)`` with the package defaults
(64 hidden, K=20, sigma2=0.35, not cached), the same with ``cached=True``,
at the authors' width (``hidden_channels=None``) and under
``torch.compile`` (default settings; one graph break at the diffusion).

Layer forwards (no gradients): ``CoinDiffusionConv()`` (defaults) against
``CoinDiffusionConv(cached=True)`` on Cora and on a random graph of
``--nodes`` nodes (``--degree`` edges per node), with 7 and 64 channels; the
uncached layer once with the same tensors at every call (its graph is
prepared once) and once with a new ``edge_index`` tensor at every call (its
graph is prepared at every call); PyG's ``APPNP(K=20, alpha=0.1)``
uncached against cached beside it.

Every case is timed in interleaved rounds in one process; the figures are
medians and the ratios are against the baseline of the same run.
"""
import os.path as osp
import statistics
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from torch_geometric.nn import APPNP
from torch_geometric.nn.models import GCN

from torch_geometric_coin.nn import COIN, CoinDiffusionConv

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import reporting  # noqa: E402

warnings.filterwarnings('ignore', '.*Sparse CSR tensor support.*')
warnings.filterwarnings('ignore', '.*Explicit diffusion is unstable.*')


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
    models = {
        'GCN (PyG, 64 hidden)': (GCN(F_in, 64, 2, C, dropout=0.5), data.x),
        'COIN defaults': (COIN(F_in, C), x_csr),
        'COIN cached=True': (COIN(F_in, C, cached=True), x_csr),
        "COIN authors' width": (COIN(F_in, C, None), x_csr),
        "COIN authors' width, cached=True": (COIN(F_in, C, None,
                                                  cached=True), x_csr),
    }
    if compile:
        models['COIN defaults, torch.compile'] = (torch.compile(COIN(F_in,
                                                                     C)),
                                                  x_csr)
    steps = {}
    for name, (model, x) in models.items():
        opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
        log = name.startswith('GCN')

        def step(model=model, x=x, opt=opt, log=log):
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
    return text


def main(argv=None):
    parser = common.parser(__doc__, root=common.SHARED)
    parser.add_argument('--repeats', type=int, default=20,
                        help='interleaved timed rounds (medians)')
    parser.add_argument('--nodes', type=int, default=20000,
                        help='nodes of the random graph')
    parser.add_argument('--degree', type=int, default=10,
                        help='edges per node of the random graph')
    parser.add_argument('--no-compile', action='store_true',
                        help='leave out the torch.compile case')
    parser.set_defaults(threads=2)
    args, command = common.parse_args(parser, argv, 'step_time')
    torch.manual_seed(0)
    with common.data_errors(parser):
        data = common.load_planetoid(osp.join(args.root, 'planetoid'),
                                     'Cora', 'public')

    t = timed(training_steps(data, not args.no_compile), args.repeats)
    gcn = t['GCN (PyG, 64 hidden)']
    steps = {name: dict(ms=s * 1e3, vs_gcn=s / gcn) for name, s in t.items()}
    steps['COIN defaults']['vs_cached'] = (
        t['COIN defaults'] / t['COIN cached=True'])
    for name, r in steps.items():
        print(f"step {name}: {r['ms']:.2f} ms ({r['vs_gcn']:.2f} x GCN)")

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
            for case, r in layers[key].items():
                print(f"{key} {case}: {r['ms']:.3f} ms "
                      f"({r['vs_cached']:.2f} x cached)", flush=True)
    payload = reporting.stamp(dict(command=command, threads=args.threads,
                                   torch=torch.__version__,
                                   repeats=args.repeats, steps=steps,
                                   layers=layers))
    print(markdown(payload))
    return reporting.save(args.out_dir, 'step_time', payload, markdown)


if __name__ == '__main__':
    main()
