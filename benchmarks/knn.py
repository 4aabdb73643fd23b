r"""Exactness, speed and peak memory of the exact kNN search behind
:func:`torch_geometric_coin.utils.gaussian_knn_graph`, side by side with
scikit-learn's :class:`NearestNeighbors` (brute force, KD-tree, ball tree).

Exactness: recall of our k nearest other nodes against scikit-learn's brute
force in float64 on random Gaussian data (no ties).

Speed: every (method, N) runs in a fresh subprocess (so its peak RSS is its
own) on float32 data, d = 64, k = 10 by default. A method whose full run
would exceed ``--time-cap`` seconds (estimated from a probe on
``--probe`` query points) is measured on those query points only and its
full time is extrapolated linearly in the number of queries (fit time is
measured in full); such rows are marked ``extrapolated``.

Example (the table in BENCHMARKS.md):

    nice -n 5 python benchmarks/knn.py

Tiny configuration (smoke test, a few seconds):

    python benchmarks/knn.py --sizes 2000 --exact-sizes 500 --dim 8 \
        --out-dir /tmp/knn
"""
import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import reporting  # noqa: E402

METHODS = ['ours', 'sklearn_brute', 'sklearn_kd_tree', 'sklearn_ball_tree']


def make_data(N, dim, seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, dim)).astype(dtype)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(method, N, dim, k, seed, num_queries):
    r"""Runs one method on the first ``num_queries`` query points (all points
    if ``num_queries >= N``) and returns times and peak memory."""
    from sklearn.neighbors import NearestNeighbors

    from torch_geometric_coin.utils import knn_search
    algorithm = method[len('sklearn_'):]
    warm = make_data(500, dim, seed + 2)  # Warm-up outside the timings.
    if method == 'ours':
        knn_search(torch.from_numpy(warm), k)
    else:
        NearestNeighbors(n_neighbors=k + 1, algorithm=algorithm,
                         n_jobs=-1).fit(warm).kneighbors(warm)

    x = make_data(N, dim, seed)
    base_rss = peak_rss_mib()
    m = min(N, num_queries)
    if method == 'ours':
        xt = torch.from_numpy(x)
        t = time.perf_counter()
        if m == N:
            knn_search(xt, k)
        else:  # k + 1: the query point itself comes back, as in sklearn.
            knn_search(xt, k + 1, y=xt[:m])
        fit_s, query_s = 0.0, time.perf_counter() - t
    else:
        t = time.perf_counter()
        nn = NearestNeighbors(n_neighbors=k + 1, algorithm=algorithm,
                              n_jobs=-1).fit(x)
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        nn.kneighbors(x[:m])  # k + 1: the query point itself comes back.
        query_s = time.perf_counter() - t
    return dict(fit_s=fit_s, query_s=query_s, num_queries=m,
                base_rss_mib=base_rss, peak_rss_mib=peak_rss_mib())


def run_worker(args, method, N, num_queries):
    cmd = [sys.executable, osp.abspath(__file__), '--worker', method,
           str(N), str(num_queries), '--dim', str(args.dim), '--k',
           str(args.k), '--seed', str(args.seed)]
    env = dict(os.environ)
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    env['PYTHONPATH'] = root + os.pathsep + env.get('PYTHONPATH', '')
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def speed(args):
    rows = []
    for N in args.sizes:
        for method in args.methods:
            probe = run_worker(args, method, N, args.probe)
            estimate = probe['fit_s'] + probe['query_s'] * N / probe[
                'num_queries']
            if probe['num_queries'] < N and estimate <= args.time_cap:
                res = run_worker(args, method, N, N)
            else:
                res = probe
            full = res['num_queries'] == N
            total = res['fit_s'] + res['query_s'] * N / res['num_queries']
            row = dict(N=N, method=method, time_s=total,
                       fit_s=res['fit_s'],
                       measured_queries=res['num_queries'],
                       extrapolated=not full,
                       peak_rss_mib=res['peak_rss_mib'],
                       data_rss_mib=res['base_rss_mib'])
            rows.append(row)
            print(f"N={N:>8} {method:<18} {total:9.2f} s"
                  f"{'' if full else ' (extrapolated)':<15} peak "
                  f"{res['peak_rss_mib']:8.0f} MiB", flush=True)
        best = min((r for r in rows if r['N'] == N
                    and r['method'] != 'ours'), key=lambda r: r['time_s'],
                   default=None)
        ours = [r for r in rows if r['N'] == N and r['method'] == 'ours']
        if best is not None and ours:
            ours[0]['speedup_vs_fastest_sklearn'] = best['time_s'] / ours[0][
                'time_s']
    return rows


def exactness(args):
    r"""Recall against scikit-learn's brute force in float64. A miss counts
    as a float32 tie when our neighbour's float64 distance is within float32
    rounding (relative 1e-6) of the k-th reference distance, i.e., the two
    cannot be told apart in the float32 input's precision."""
    from sklearn.neighbors import NearestNeighbors

    from torch_geometric_coin.utils import knn_search
    rows = []
    for N in args.exact_sizes:
        x = make_data(N, args.dim, args.seed + 1)
        _, ours = knn_search(torch.from_numpy(x), args.k)
        ours = ours.numpy()
        x64 = x.astype(np.float64)
        dist, ref = NearestNeighbors(n_neighbors=args.k + 1,
                                     algorithm='brute').fit(x64).kneighbors(
                                         x64)
        hits = ties = 0
        for i in range(N):
            ref_i = set(ref[i].tolist()) - {i}
            hits += len(set(ours[i].tolist()) & ref_i)
            kth = np.sort(dist[i][ref[i] != i])[args.k - 1]
            for j in set(ours[i].tolist()) - ref_i:
                d = np.sqrt(((x64[i] - x64[j])**2).sum())
                ties += int(d <= kth * (1 + 1e-6))
        misses = N * args.k - hits
        rows.append(dict(N=N, recall=hits / (N * args.k), misses=misses,
                         float32_ties=ties))
        print(f'N={N:>8} recall vs sklearn brute (float64): '
              f'{rows[-1]["recall"]:.6f} ({misses} misses, {ties} of them '
              f'float32 ties)', flush=True)
    return rows


def markdown(result):
    a = result['args']
    speed = []
    for r in result['speed']:
        ours = [o for o in result['speed']
                if o['N'] == r['N'] and o['method'] == 'ours']
        ratio = r['time_s'] / ours[0]['time_s'] if ours else float('nan')
        note = (f"extrapolated from {r['measured_queries']} queries"
                if r['extrapolated'] else 'full run')
        speed.append([r['N'], r['method'], f"{r['time_s']:.2f}",
                      f'{ratio:.2f}x', f"{r['peak_rss_mib']:.0f}",
                      f"{r['data_rss_mib']:.0f}", note])
    exact = [[r['N'], f"{r['recall']:.6f}", r['misses'], r['float32_ties']]
             for r in result['exactness']]
    return (
        f"Random Gaussian data, d = {a['dim']}, k = {a['k']}, float32; "
        f"{result['machine']}; {result['date']}; torch threads "
        f"{result['torch_threads']}.\n\n" + reporting.markdown_table(
            ['N', 'method', 'time (s)', 'vs ours', 'peak RSS (MiB)',
             'RSS before search (MiB)', 'note'], speed) +
        '\n"vs ours" is the time relative to ours (> 1: slower than '
        'ours).\n\n' + reporting.markdown_table(
            ['N', 'recall vs sklearn brute (float64)', 'misses',
             'misses that are float32 ties'], exact))


def plot(result, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method in result['args']['methods']:
        rs = [r for r in result['speed'] if r['method'] == method]
        ax.loglog([r['N'] for r in rs], [r['time_s'] for r in rs], 'o-',
                  label=method)
    ax.set_xlabel('N')
    ax.set_ylabel('time (s), all N queries')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = common.parser(__doc__, seed=0, k=10)
    parser.add_argument('--sizes', type=int, nargs='+',
                        default=[10**4, 10**5, 10**6],
                        help='numbers of points of the speed runs')
    parser.add_argument('--exact-sizes', type=int, nargs='+',
                        default=[10**3, 10**4, 10**5],
                        help='numbers of points of the exactness runs')
    parser.add_argument('--dim', type=int, default=64,
                        help='dimension of the points')
    parser.add_argument('--methods', nargs='+', default=METHODS,
                        choices=METHODS)
    parser.add_argument('--time-cap', type=float, default=300.,
                        help='seconds per method and N before extrapolating')
    parser.add_argument('--probe', type=int, default=1000,
                        help='query points of the probe run')
    parser.add_argument('--worker', nargs=3, default=None,
                        help=argparse.SUPPRESS)
    args, command = common.parse_args(parser, argv, 'knn')

    if args.worker is not None:
        method, N, num_queries = args.worker
        print(json.dumps(worker(method, int(N), args.dim, args.k, args.seed,
                                int(num_queries))))
        return None

    result = dict(command=command, args=vars(args),
                  torch_threads=torch.get_num_threads())
    result['exactness'] = exactness(args)
    result['speed'] = speed(args)
    print(markdown(reporting.stamp(result)))
    png = osp.join(args.out_dir, 'knn.png')
    os.makedirs(args.out_dir, exist_ok=True)
    plot(result, png)
    return reporting.save(args.out_dir, 'knn', result, markdown, png)


if __name__ == '__main__':
    main()
