"""This checkout's CoinDiffusionConv against that of another git revision.

Forward plus backward time of the same cases (explicit scheme, fixed and
learnable sigma2; implicit scheme, learnable sigma2), each revision's package
(``git archive``) in its own process, in alternating rounds: the median over
rounds of each process's median, and the ratio this checkout / revision.

    python benchmarks/regression.py --rev 92da4e3
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


def worker(sizes, K, implicit_sigma2, repeats, threads):
    r"""Times the cases in this process (whichever package it imports) and
    prints the median seconds as JSON."""
    import torch

    import torch_geometric_coin
    from torch_geometric_coin.nn import CoinDiffusionConv
    torch.set_num_threads(threads or torch.get_num_threads())
    seconds = {}
    for size in sizes:
        n, e, c = (int(v) for v in size.split(':'))
        edge_index = common.random_graph(n, e)
        x, grad = torch.randn(2, n, c, generator=torch.Generator()
                              .manual_seed(1))
        convs = {f'{size} {name}': CoinDiffusionConv(
            **kwargs, cached=True, stability='ignore') for name, kwargs in [
            (f'explicit K={K}, fixed sigma2', dict(K=K, sigma2=0.35)),
            (f'explicit K={K}, learnable sigma2',
             dict(K=K, sigma2=0.35, learn_sigma2=True)),
            (f'implicit K=5, sigma2={implicit_sigma2:g}, learnable',
             dict(K=5, sigma2=implicit_sigma2, learn_sigma2=True,
                  scheme='implicit', tol=1e-5))]}
        times = {name: [] for name in convs}
        for _ in range(repeats + 1):  # (The first round builds the caches.)
            for name, conv in convs.items():
                start = time.perf_counter()
                conv(x.detach().requires_grad_(), edge_index).backward(grad)
                times[name].append(time.perf_counter() - start)
        seconds.update({k: statistics.median(t[1:]) for k, t in times.items()})
    print(json.dumps(dict(seconds=seconds, package=osp.dirname(
        torch_geometric_coin.__file__))))


def markdown(r):
    return (f"Command: `{r['command']}`\n\n{r['machine']}, {r['threads']} "
            f"threads, {r['date']}; median over {r['rounds']} alternating "
            f"rounds of each process's median of {r['repeats']} repeats, "
            f"forward plus backward.\n\n" + reporting.markdown_table(
                ['case', f"{r['rev']} s", 'this checkout s', 'this / rev'],
                [[name, f'{rev:.4f}', f'{here:.4f}', f'{here / rev:.3f}']
                 for name, (here, rev) in r['seconds'].items()]))


def main(argv=None):
    parser = common.parser(__doc__, K=20)
    parser.add_argument('--rev', default='HEAD', help='the git revision')
    parser.add_argument('--sizes', nargs='+', help='random graphs as '
                        'NODES:EDGES:CHANNELS',
                        default=['2708:10556:16', '200000:2000000:16'])
    parser.add_argument('--implicit-sigma2', type=float, default=5.0,
                        help='sigma2 of the implicit case')
    parser.add_argument('--repeats', type=int, default=5,
                        help='timed repeats in each process')
    parser.add_argument('--rounds', type=int, default=3,
                        help='alternating rounds of both processes')
    parser.set_defaults(threads=2)
    args, command = common.parse_args(parser, argv, 'regression')

    rev = subprocess.run(['git', '-C', common.REPO, 'rev-parse', '--short',
                          args.rev], check=True, capture_output=True,
                         text=True).stdout.strip()
    spec = json.dumps([args.sizes, args.K, args.implicit_sigma2,
                       args.repeats, args.threads])
    with tempfile.TemporaryDirectory() as tmp:
        with tempfile.TemporaryFile() as f:  # The revision's package.
            subprocess.run(['git', '-C', common.REPO, 'archive', rev,
                            'torch_geometric_coin'], stdout=f, check=True)
            f.seek(0)
            tarfile.open(fileobj=f).extractall(tmp, filter='data')
        runs = {common.REPO: [], tmp: []}  # This checkout, the revision.
        for _ in range(args.rounds):
            for path, seconds in runs.items():
                out = json.loads(subprocess.run(
                    [sys.executable, __file__, '--worker', spec],
                    env=dict(os.environ, PYTHONPATH=path), check=True,
                    capture_output=True, text=True).stdout.splitlines()[-1])
                if osp.realpath(out['package']) != osp.realpath(
                        osp.join(path, 'torch_geometric_coin')):
                    raise RuntimeError(f"Imported {out['package']}, not "
                                       f"{path}")
                seconds.append(out['seconds'])
    seconds = {name: tuple(statistics.median(r[name] for r in rs)
                           for rs in runs.values()) for name in out['seconds']}
    payload = reporting.stamp(dict(
        command=command, rev=rev, threads=args.threads, rounds=args.rounds,
        repeats=args.repeats, seconds=seconds))
    print(markdown(payload))
    return reporting.save(args.out_dir, f'regression_{rev}', payload,
                          markdown)


if __name__ == '__main__':
    if sys.argv[1:2] == ['--worker']:
        worker(*json.loads(sys.argv[2]))
    else:
        main()
