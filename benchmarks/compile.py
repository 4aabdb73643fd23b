"""torch.compile(fullgraph=True) against eager mode, for the layer and COIN.

    python benchmarks/compile.py
    python benchmarks/compile.py --sizes 2708:10556 100000:1000000 --repeats 20

On random undirected graphs NODES:EDGES, in one process: each case is
warmed up in eager mode (which prepares the cached graph), compiled with
``torch.compile(..., fullgraph=True)`` (so any graph break fails the run),
checked against eager mode, then both are timed in alternating repeats. The
cases: the layer's forward plus backward (K=20, fixed and learnable sigma2,
7 channels) and COIN's training step (forward, loss, backward; the
optimiser step stays eager) and inference forward on features of Cora's
size (1,433 channels, 7 classes). The table gives the median times, the
ratio compiled / eager and the one-off compilation time.
"""
import os.path as osp
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import reporting  # noqa: E402

from torch_geometric_coin.nn import COIN, CoinDiffusionConv  # noqa: E402


def graph(size: str, channels: int, seed: int = 0):
    n, e = (int(v) for v in size.split(':'))
    edge_index = common.random_graph(n, e, seed=seed)
    x = torch.randn(n, channels,
                    generator=torch.Generator().manual_seed(seed + 1))
    return x, edge_index


def cases(size: str, K: int, in_channels: int, num_classes: int):
    r"""Pairs of (eager module, call) per case name; each call runs the
    module it is given."""
    x, edge_index = graph(size, num_classes)
    grad = torch.randn_like(x)
    out = {}
    for name, kwargs in [('layer fwd+bwd, fixed sigma2', {}),
                         ('layer fwd+bwd, learnable sigma2',
                          dict(learn_sigma2=True))]:
        conv = CoinDiffusionConv(K, 0.3, cached=True, **kwargs)

        def run(module, conv=conv):
            x_ = x.detach().requires_grad_()
            out = module(x_, edge_index)
            out.backward(grad)
            return x_.grad
        out[f'{size} {name}'] = (conv, run)

    feats, _ = graph(size, in_channels, seed=1)
    y = torch.randint(num_classes, (feats.size(0), ))
    model = COIN(in_channels, num_classes, K=K, sigma2=0.3, cached=True)

    def train_step(module, model=model):
        model.train()
        model.zero_grad(set_to_none=True)
        loss = F.nll_loss(module(feats, edge_index), y)
        loss.backward()
        return None  # dropout draws differ between the modes

    def predict(module, model=model):
        model.eval()
        with torch.no_grad():
            return module(feats, edge_index)
    out[f'{size} COIN training step'] = (model, train_step)
    out[f'{size} COIN inference'] = (model, predict)
    return out


def markdown(payload):
    rows = [[name, f"{r['eager_s'] * 1e3:.2f}", f"{r['compiled_s'] * 1e3:.2f}",
             f"{r['compiled_s'] / r['eager_s']:.3f}",
             'yes' if r['compiled_s'] < r['eager_s'] else 'no',
             f"{r['compile_s']:.1f}"]
            for name, r in payload['cases'].items()]
    return (f"Command: `{payload['command']}`\n\n"
            f"{payload['machine']}, {payload['threads']} threads, torch "
            f"{payload['torch']}, {payload['date']}; median of "
            f"{payload['repeats']} alternating repeats.\n\n" +
            reporting.markdown_table(
                ['case', 'eager ms', 'compiled ms', 'compiled / eager',
                 'compiled faster', 'compile s'], rows))


def main(argv=None):
    parser = common.parser(__doc__, K=20)
    parser.add_argument('--sizes', nargs='+', default=['2708:10556'],
                        help='random graphs as NODES:EDGES')
    parser.add_argument('--in-channels', type=int, default=1433,
                        help="COIN's input features")
    parser.add_argument('--num-classes', type=int, default=7,
                        help='classes (the channels the layer diffuses)')
    parser.add_argument('--repeats', type=int, default=20,
                        help='timed repeats of each mode')
    parser.set_defaults(threads=2)
    args, command = common.parse_args(parser, argv, 'compile')

    results = {}
    for size in args.sizes:
        for name, (module, call) in cases(size, args.K, args.in_channels,
                                          args.num_classes).items():
            ref = call(module)  # eager warm-up: prepares the cached graph
            torch._dynamo.reset()
            compiled = torch.compile(module, fullgraph=True)
            start = time.perf_counter()
            out = call(compiled)
            compile_s = time.perf_counter() - start
            if ref is not None and not torch.allclose(out, ref, rtol=1e-4,
                                                      atol=1e-5):
                raise RuntimeError(f'{name}: the compiled module differs '
                                   f'from eager mode')
            times = {'eager': [], 'compiled': []}
            for _ in range(args.repeats):
                for mode, m in [('eager', module), ('compiled', compiled)]:
                    start = time.perf_counter()
                    call(m)
                    times[mode].append(time.perf_counter() - start)
            results[name] = dict(
                eager_s=statistics.median(times['eager']),
                compiled_s=statistics.median(times['compiled']),
                compile_s=compile_s)
            print(f"{name}: eager {results[name]['eager_s'] * 1e3:.2f} ms, "
                  f"compiled {results[name]['compiled_s'] * 1e3:.2f} ms",
                  flush=True)
    payload = reporting.stamp(dict(command=command, threads=args.threads,
                                   torch=torch.__version__,
                                   repeats=args.repeats, cases=results))
    print(markdown(payload))
    return reporting.save(args.out_dir, 'compile', payload, markdown)


if __name__ == '__main__':
    main()
