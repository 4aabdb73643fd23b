"""This checkout's CoinDiffusionConv against that of an earlier git revision.

    python benchmarks/regression.py --rev 6ea1209
    python benchmarks/regression.py --rev HEAD~1 --sizes 2000:20000:8

A regression check of a refactoring: forward plus backward time of the same
cases (explicit scheme with fixed and learnable sigma2; the implicit scheme
with a learnable sigma2 against a random upstream gradient), each revision's
package in its own process (the revision's ``torch_geometric_coin/`` is
extracted with ``git archive`` into a temporary folder), in alternating
rounds; the table gives the median over rounds of each process's median
time and the ratio this checkout / revision. Only the arguments that both
versions of the layer accept are used.
"""
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import reporting  # noqa: E402


def cases(size: str, K: int, implicit_sigma2: float):
    r"""The timed calls on a random undirected graph NODES:EDGES:CHANNELS,
    in the current process (whichever package it imports)."""
    import torch
    from torch_geometric.utils import to_undirected

    from torch_geometric_coin.nn import CoinDiffusionConv

    n, e, c = (int(v) for v in size.split(':'))
    gen = torch.Generator().manual_seed(0)
    edge_index = torch.randint(n, (2, e // 2), generator=gen)
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    edge_index = to_undirected(edge_index, num_nodes=n)
    x = torch.randn(n, c, generator=gen)
    grad = torch.randn(n, c, generator=gen)
    out = {}
    for name, kwargs in [
        (f'explicit K={K}, fixed sigma2', dict(K=K, sigma2=0.35)),
        (f'explicit K={K}, learnable sigma2', dict(K=K, sigma2=0.35,
                                                   learn_sigma2=True)),
        (f'implicit K=5, sigma2={implicit_sigma2:g}, learnable',
         dict(K=5, sigma2=implicit_sigma2, learn_sigma2=True,
              scheme='implicit', tol=1e-5)),
    ]:
        conv = CoinDiffusionConv(cached=True, stability='ignore', **kwargs)

        def run(conv=conv):
            conv(x.detach().requires_grad_(), edge_index).backward(grad)
        out[f'{size} {name}'] = run
    return out


def worker(argv):
    r"""Times :func:`cases` and prints the median seconds as JSON."""
    import torch

    import torch_geometric_coin
    sizes, K, sigma2, repeats, threads = json.loads(argv[0])
    if threads:
        torch.set_num_threads(threads)
    result = dict(package=osp.dirname(torch_geometric_coin.__file__),
                  seconds={})
    for size in sizes:
        calls = cases(size, K, sigma2)
        times = {name: [] for name in calls}
        for fn in calls.values():
            fn()  # warm-up, builds the cache
        for _ in range(repeats):
            for name, fn in calls.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        result['seconds'].update(
            {name: statistics.median(t) for name, t in times.items()})
    print(json.dumps(result))


def extract(rev: str, dst: str) -> str:
    r"""Writes the revision's package into :obj:`dst`; returns :obj:`dst`."""
    archive = osp.join(dst, 'package.tar')
    with open(archive, 'wb') as f:
        subprocess.run(['git', '-C', common.REPO, 'archive', rev,
                        'torch_geometric_coin'], stdout=f, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dst, filter='data')
    return dst


def markdown(payload):
    rows = []
    for name, (here, rev) in payload['seconds'].items():
        rows.append([name, f'{rev:.4f}', f'{here:.4f}', f'{here / rev:.3f}'])
    return (f"Command: `{payload['command']}`\n\n"
            f"{payload['machine']}, {payload['threads']} threads, "
            f"{payload['date']}; median over {payload['rounds']} alternating "
            f"rounds of each process's median of {payload['repeats']} "
            f"repeats, forward plus backward.\n\n" + reporting.markdown_table(
                ['case', f"{payload['rev']} s", 'this checkout s',
                 'this / rev'], rows))


def main(argv=None):
    parser = common.parser(__doc__, K=20)
    parser.add_argument('--rev', default='HEAD', help='the git revision to '
                        'compare against')
    parser.add_argument('--sizes', nargs='+', default=[
        '2708:10556:16', '200000:2000000:16'
    ], help='random graphs as NODES:EDGES:CHANNELS')
    parser.add_argument('--implicit-sigma2', type=float, default=5.0,
                        help='sigma2 of the implicit case')
    parser.add_argument('--repeats', type=int, default=5,
                        help='timed repeats in each process')
    parser.add_argument('--rounds', type=int, default=3,
                        help='alternating rounds of both processes')
    parser.set_defaults(threads=2)
    args, command = common.parse_args(parser, argv, 'regression')

    spec = json.dumps([args.sizes, args.K, args.implicit_sigma2,
                       args.repeats, args.threads or 0])
    runs = {'here': [], 'rev': []}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {'here': common.REPO, 'rev': extract(args.rev, tmp)}
        for _ in range(args.rounds):
            for key, path in paths.items():
                env = dict(os.environ, PYTHONPATH=path)
                out = subprocess.run(
                    [sys.executable, __file__, '--worker', spec], env=env,
                    check=True, capture_output=True, text=True).stdout
                res = json.loads(out.strip().splitlines()[-1])
                if osp.realpath(res['package']) != osp.realpath(
                        osp.join(path, 'torch_geometric_coin')):
                    raise RuntimeError(f"The worker imported "
                                       f"{res['package']}, not {path}")
                runs[key].append(res['seconds'])
    seconds = {name: (statistics.median(r[name] for r in runs['here']),
                      statistics.median(r[name] for r in runs['rev']))
               for name in runs['here'][0]}
    payload = reporting.stamp(dict(
        command=command, rev=args.rev, threads=args.threads,
        rounds=args.rounds, repeats=args.repeats, seconds=seconds))
    print(markdown(payload))
    return reporting.save(args.out_dir, 'regression', payload, markdown)


if __name__ == '__main__':
    if sys.argv[1:2] == ['--worker']:
        worker(sys.argv[2:])
    else:
        main()
