r"""Exactness, speed and peak memory of the exact kNN search behind
:func:`torch_geometric_coin.utils.gaussian_knn_graph`, side by side with
scikit-learn's :class:`NearestNeighbors` (brute force, KD-tree, ball tree),
and the recall, speed and COIN accuracy of approximate neighbours (faiss
HNSW, IVF and IVF-PQ through PyG's :class:`KNNIndex` /
:class:`ApproxL2KNNIndex`) passed to it as ``neighbors=``.

Four parts (``--parts``, all by default):

Exactness: recall of our k nearest other nodes against scikit-learn's brute
force in float64 on random Gaussian data (no ties).

Speed: every (method, N) runs in a fresh subprocess (so its peak RSS is its
own) on float32 data, d = 64, k = 10 by default. A method whose full run
would exceed ``--time-cap`` seconds (estimated from a probe on
``--probe`` query points) is measured on those query points only and its
full time is extrapolated linearly in the number of queries (fit time is
measured in full); such rows are marked ``extrapolated``.

Approximate: the indexes ``--approx`` (one per graph, see
:func:`approximate_neighbors`; built and searched, timed in full, and the
few queries the index leaves with fewer than k neighbours searched exactly)
give the k nearest other nodes of all N points of a seeded synthetic
Gaussian mixture (d = 64, float32, ``--clusters`` components with centres
drawn from N(0, I), each a Gaussian of ``--intrinsic-dim`` dimensions in a
random subspace plus isotropic noise ``--noise``; see
:func:`make_mixture`). Real features have a low intrinsic dimension; a
mixture of isotropic 64-dimensional components (``--intrinsic-dim 64
--noise 0``), whose nearest neighbours are nearly equidistant, is much
harder for every approximate search. The exact search would take hours at
N = 10^6, but its cost is linear in the number of queries (every query is
scored against all N points): it is timed on ``--queries`` random query
points and its time is scaled by N / queries. The recall of each index is
measured against the exact neighbours of these queries. The time of the
weights from given neighbours (``gaussian_knn_graph(..., neighbors=)``),
the same for every method, is reported apart.

COIN: the Gaussian kNN graph (k = ``--k``, bandwidth ``--bandwidth-k``) of
the node features of a real data set (``--coin-dataset``, Coauthor-CS by
default, reduced to ``--coin-dim`` dimensions by seeded randomized PCA) is
built exactly and from each index's neighbours, and COIN (``--K``,
``--sigma2``, ``normalization=None``) is trained on each graph with the same
random splits (20 / 30 labels per class) and seeds by :func:`training.fit`;
the table gives the test accuracy and its paired difference to the exact
graph.

Example (the table in BENCHMARKS.md):

    nice -n 5 python benchmarks/knn.py

Approximate search at 10^5 and 10^6 points, and the COIN check:

    python benchmarks/knn.py --parts approximate coin --threads 2

Tiny configuration (smoke test, a few seconds):

    python benchmarks/knn.py --parts exactness speed --sizes 2000 \
        --exact-sizes 500 --dim 8 --out-dir /tmp/knn
"""
import argparse
import json
import math
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
PARTS = ['exactness', 'speed', 'approximate', 'coin']
APPROXIMATE = ['hnsw', 'ivf', 'ivf_pq']
COIN_DATASETS = {'CS': ('coauthor', 'CS'), 'Physics': ('coauthor', 'Physics'),
                 'Computers': ('amazon', 'Computers'),
                 'Photo': ('amazon', 'Photo')}


def make_data(N, dim, seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, dim)).astype(dtype)


def make_mixture(N, dim, clusters, seed, intrinsic_dim=8, noise=0.1):
    r"""A seeded Gaussian mixture in float32 of a low intrinsic dimension, as
    real features: :obj:`clusters` centres drawn from N(0, I); each point a
    centre (uniformly chosen) plus a standard Gaussian of
    :obj:`intrinsic_dim` dimensions in the component's random subspace (a
    random basis of N(0, 1 / intrinsic_dim) entries) plus isotropic noise of
    standard deviation :obj:`noise` (:obj:`intrinsic_dim = dim` and
    :obj:`noise = 0` give isotropic unit components)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    r = min(intrinsic_dim, dim)
    basis = rng.standard_normal((clusters, r, dim)).astype(np.float32)
    basis /= np.sqrt(r)
    label = rng.integers(0, clusters, N)
    x = noise * rng.standard_normal((N, dim)).astype(np.float32)
    x += centres[label]
    for c in range(clusters):  # (Component by component: little memory.)
        idx = np.nonzero(label == c)[0]
        z = rng.standard_normal((idx.size, r)).astype(np.float32)
        x[idx] += z @ basis[c]
    return x


def recall(index, ref):
    r"""The fraction of the reference neighbours (rows of :obj:`ref`) found
    in the rows of :obj:`index`."""
    hits = sum(len(set(a) & set(b))
               for a, b in zip(index.tolist(), ref.tolist()))
    return hits / ref.numel()


def index_options(args, method):
    r"""The options of the index :obj:`method` (command line or default)."""
    names = {'hnsw': ['hnsw_m', 'ef_construction', 'ef_search'],
             'ivf': ['nlist', 'nprobe'],
             'ivf_pq': ['nlist', 'nprobe', 'pq_m']}[method]
    return {n: getattr(args, n) for n in names}


def make_index(method, n, options):
    r"""A PyG :class:`KNNIndex` of :obj:`method` for a graph of :obj:`n`
    points (IVF cells: :obj:`nlist`, or faiss's rule of thumb
    :math:`\min(4 \sqrt{n}, n / 39)`)."""
    from torch_geometric.nn.pool import ApproxL2KNNIndex, KNNIndex
    nlist = options.get('nlist') or max(1, min(math.ceil(4 * math.sqrt(n)),
                                               n // 39))
    if method == 'ivf_pq':  # PyG's own approximate index.
        return ApproxL2KNNIndex(nlist, options['nprobe'], options['pq_m'])

    class Index(KNNIndex):
        def _create_index(self, channels):
            import faiss
            if method == 'hnsw':
                index = faiss.IndexHNSWFlat(channels, options['hnsw_m'])
                index.hnsw.efConstruction = options['ef_construction']
                index.hnsw.efSearch = options['ef_search']
            else:
                index = faiss.IndexIVFFlat(faiss.IndexFlatL2(channels),
                                           channels, nlist)
                index.nprobe = options['nprobe']
            return index

    return Index()


def approximate_neighbors(x, k, method, options, batch=None):
    r"""The :obj:`[N, k]` approximate nearest other nodes of the same graph,
    for :obj:`gaussian_knn_graph(..., neighbors=)`: one index per graph
    (a single index over all graphs would return nodes of other graphs,
    which :func:`gaussian_knn_graph` refuses); queries left with fewer than
    :obj:`k` neighbours (-1) are searched exactly."""
    from torch_geometric_coin.utils._gaussian_knn_graph import _exact_knn
    out = torch.empty(x.size(0), k, dtype=torch.long)
    graphs = [None] if batch is None else batch.unique().tolist()
    for g in graphs:
        node = (torch.arange(x.size(0)) if g is None else
                (batch == g).nonzero().view(-1))
        index = make_index(method, node.numel(), options)
        index.add(x[node])
        self_loops = torch.arange(node.numel()).repeat(2, 1)
        found = index.search(x[node], k, self_loops).index
        out[node] = torch.where(found >= 0, node[found.clamp(min=0)], -1)
    missing = (out < 0).any(1).nonzero().view(-1)
    if missing.numel() > 0:
        out[missing] = _exact_knn(x, k, batch, rows=missing)
    return out


def exact_on_queries(x, k, queries):
    r"""The exact k nearest other points of :obj:`x[queries]` (all points
    searched) and the time."""
    from torch_geometric_coin.utils._gaussian_knn_graph import _exact_knn
    _exact_knn(x, k, rows=queries[:1])  # (Warm-up outside the timing.)
    t = time.perf_counter()
    index = _exact_knn(x, k, rows=queries)
    return index, time.perf_counter() - t


def approximate(args):
    from torch_geometric_coin.utils import gaussian_knn_graph
    rows = []
    for N in args.approx_sizes:
        x = torch.from_numpy(make_mixture(N, args.dim, args.clusters,
                                          args.seed, args.intrinsic_dim,
                                          args.noise))
        gen = torch.Generator().manual_seed(args.seed)
        m = min(N, args.queries)
        queries = torch.randperm(N, generator=gen)[:m].sort().values
        ref, exact_s = exact_on_queries(x, args.k, queries)
        exact_full = exact_s * N / m
        rows.append(dict(N=N, method='exact', time_s=exact_full,
                         measured_s=exact_s, measured_queries=m,
                         extrapolated=m < N, recall=1.0, speedup=1.0,
                         options={}))
        print(f"N={N:>8} exact      {exact_full:9.1f} s (from {m} queries "
              f"in {exact_s:.1f} s)", flush=True)
        for method in args.approx:
            options = index_options(args, method)
            t = time.perf_counter()
            index = approximate_neighbors(x, args.k, method, options)
            elapsed = time.perf_counter() - t
            t = time.perf_counter()
            gaussian_knn_graph(x, args.k, args.bandwidth_k, neighbors=index)
            rows.append(dict(N=N, method=method, time_s=elapsed,
                             measured_s=elapsed, measured_queries=N,
                             extrapolated=False,
                             recall=recall(index[queries], ref),
                             speedup=exact_full / elapsed, options=options,
                             weights_s=time.perf_counter() - t))
            print(f"N={N:>8} {method:<10} {elapsed:9.1f} s, "
                  f"{rows[-1]['speedup']:.1f}x faster, recall "
                  f"{rows[-1]['recall']:.4f} (weights from the neighbours "
                  f"{rows[-1]['weights_s']:.1f} s)", flush=True)
    return rows


def load_features(args):
    r"""The node features and labels of :obj:`--coin-dataset` (PyG's
    Coauthor / Amazon from the data folder), or :obj:`None` if absent."""
    from torch_geometric.datasets import Amazon, Coauthor
    sub = COIN_DATASETS[args.coin_dataset]
    src = osp.join(common.dataset_root(args.root), *sub)
    if not osp.isdir(src):
        return None
    dst = common.writable_copy(src)
    cls = Coauthor if sub[0] == 'coauthor' else Amazon
    data = cls(osp.dirname(dst), args.coin_dataset)[0]
    return data.x, data.y


def coin_check(args):
    r"""COIN's test accuracy on the exact and the approximate Gaussian kNN
    graphs of real features, with the same splits and seeds."""
    from torch_geometric.data import Data
    from training import fit

    from torch_geometric_coin.nn import COIN
    from torch_geometric_coin.utils import gaussian_knn_graph
    from torch_geometric_coin.utils._gaussian_knn_graph import _exact_knn
    loaded = load_features(args)
    if loaded is None:
        print(f'COIN check skipped: no {args.coin_dataset} in '
              f'{common.dataset_root(args.root)}')
        return None
    x, y = loaded
    torch.manual_seed(args.seed)  # (Randomized PCA.)
    q = min(args.coin_dim, x.size(0), x.size(1))
    u, s, _ = torch.pca_lowrank(x, q=q, center=True, niter=4)
    x = (u * s).contiguous()  # The principal components, [N, q].
    num_classes = int(y.max()) + 1
    graphs, rows = {}, []
    exact_index = _exact_knn(x, args.k)
    for method in ['exact'] + args.approx:
        t = time.perf_counter()
        index = None if method == 'exact' else approximate_neighbors(
            x, args.k, method, index_options(args, method))
        graphs[method] = gaussian_knn_graph(x, args.k, args.bandwidth_k,
                                            neighbors=index)
        rows.append(dict(graph=method, graph_s=time.perf_counter() - t,
                         acc=[], edges=graphs[method][0].size(1),
                         recall=1.0 if index is None else
                         recall(index, exact_index)))
    data = Data(x=x, y=y)
    for split in range(args.splits):
        masks = common.random_split(y, seed=args.seed + split)
        for row in rows:
            data.edge_index, data.edge_weight = graphs[row['graph']]
            torch.manual_seed(args.seed + split)
            model = COIN(x.size(1), num_classes, K=args.K, sigma2=args.sigma2,
                         normalization=None, cached=True)
            res = fit(model, data, *masks, epochs=args.epochs)
            row['acc'].append(res['test_acc'])
    for row in rows:
        diff = [a - b for a, b in zip(row['acc'], rows[0]['acc'])]
        row.update(summary=reporting.summarize(row['acc']),
                   diff=reporting.summarize(diff))
        print(f"COIN on {args.coin_dataset} ({row['graph']} graph, recall "
              f"{row['recall']:.4f}): test accuracy "
              f"{100 * row['summary']['mean']:.2f}, difference to exact "
              f"{100 * row['diff']['mean']:+.2f} points", flush=True)
    return dict(dataset=args.coin_dataset, num_nodes=x.size(0), dim=q,
                rows=rows)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(method, N, dim, k, seed, num_queries):
    r"""Runs one method on the first ``num_queries`` query points (all points
    if ``num_queries >= N``) and returns times and peak memory."""
    from sklearn.neighbors import NearestNeighbors

    from torch_geometric_coin.utils._gaussian_knn_graph import _exact_knn
    algorithm = method[len('sklearn_'):]
    warm = make_data(500, dim, seed + 2)  # Warm-up outside the timings.
    if method == 'ours':
        _exact_knn(torch.from_numpy(warm), k)
    else:
        NearestNeighbors(n_neighbors=k + 1, algorithm=algorithm,
                         n_jobs=-1).fit(warm).kneighbors(warm)

    x = make_data(N, dim, seed)
    base_rss = peak_rss_mib()
    m = min(N, num_queries)
    if method == 'ours':
        xt = torch.from_numpy(x)
        t = time.perf_counter()  # (The k nearest other points.)
        _exact_knn(xt, k, rows=None if m == N else torch.arange(m))
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

    from torch_geometric_coin.utils._gaussian_knn_graph import _exact_knn
    rows = []
    for N in args.exact_sizes:
        x = make_data(N, args.dim, args.seed + 1)
        ours = _exact_knn(torch.from_numpy(x), args.k)
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
    parts = []
    if 'speed' in result:
        parts.append(markdown_exact(result))
    if 'approximate' in result:
        rows = []
        for r in result['approximate']:
            note = (f"scaled from {r['measured_queries']} queries "
                    f"({r['measured_s']:.1f} s)" if r['extrapolated'] else
                    'full run')
            opts = ', '.join(f'{k}={v}' for k, v in r['options'].items())
            weights = f"{r['weights_s']:.1f}" if 'weights_s' in r else '-'
            rows.append([r['N'], r['method'] + (f' ({opts})' if opts else ''),
                         f"{r['time_s']:.1f}", f"{r['speedup']:.1f}x",
                         f"{r['recall']:.4f}", weights, note])
        parts.append(
            f"Approximate search: k nearest other points of all N points of "
            f"a seeded Gaussian mixture ({a['clusters']} components, centres "
            f"N(0, I), each a standard Gaussian in a random "
            f"{a['intrinsic_dim']}-dimensional subspace plus isotropic noise "
            f"of std {a['noise']}), d = {a['dim']}, k = {a['k']}, float32; "
            f"recall on {a['queries']} random queries against the exact "
            f"search, whose time is scaled linearly from these queries (its "
            f"cost is linear in the number of queries); approximate times "
            f"include building the index (PyG's KNNIndex / "
            f"ApproxL2KNNIndex); the weights from the neighbours "
            f"(gaussian_knn_graph(..., neighbors=)) are timed apart; "
            f"{result['machine']}; {result['date']}; torch (and faiss) "
            f"threads {result['torch_threads']}.\n\n" +
            reporting.markdown_table(['N', 'method', 'time (s)',
                                      'speed-up vs exact', 'recall',
                                      'weights (s)', 'note'], rows))
    if result.get('coin'):
        c = result['coin']
        rows = [[r['graph'], f"{r['recall']:.4f}", r['edges'],
                 f"{r['graph_s']:.1f}", reporting.fmt_acc(r['summary']),
                 reporting.fmt_acc(r['diff'])] for r in c['rows']]
        parts.append(
            f"COIN on {c['dataset']} ({c['num_nodes']} nodes, features "
            f"reduced to {c['dim']} dimensions by PCA) with the Gaussian kNN "
            f"graph (k = {a['k']}, bandwidth_k = {a['bandwidth_k']}) built "
            f"exactly or approximately; K = {a['K']}, sigma2 = "
            f"{a['sigma2']}, normalization=None, {a['epochs']} epochs, "
            f"{a['splits']} random splits (20 / 30 labels per class), the "
            f"same splits and seeds on every graph; differences paired by "
            f"split: mean ± std [95% CI].\n\n" +
            reporting.markdown_table(
                ['graph', 'neighbour recall', 'edges', 'graph time (s)',
                 'test accuracy (%)', 'difference to exact (points)'], rows))
    if 'exactness' in result and 'speed' not in result:
        parts.append(markdown_exact(result))
    return '\n\n'.join(parts)


def markdown_exact(result):
    a = result['args']
    speed = []
    for r in result.get('speed', []):
        ours = [o for o in result['speed']
                if o['N'] == r['N'] and o['method'] == 'ours']
        ratio = r['time_s'] / ours[0]['time_s'] if ours else float('nan')
        note = (f"extrapolated from {r['measured_queries']} queries"
                if r['extrapolated'] else 'full run')
        speed.append([r['N'], r['method'], f"{r['time_s']:.2f}",
                      f'{ratio:.2f}x', f"{r['peak_rss_mib']:.0f}",
                      f"{r['data_rss_mib']:.0f}", note])
    exact = [[r['N'], f"{r['recall']:.6f}", r['misses'], r['float32_ties']]
             for r in result.get('exactness', [])]
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
    parser = common.parser(__doc__, seed=0, k=10, bandwidth_k=5, K=10,
                           sigma2=0.3, epochs=200, root=None,
                           splits=dict(default=3, help='random splits of '
                                       'the COIN check'))
    parser.add_argument('--parts', nargs='+', default=PARTS, choices=PARTS,
                        help='the parts to run')
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
    parser.add_argument('--approx-sizes', type=int, nargs='+',
                        default=[10**5, 10**6],
                        help='numbers of points of the approximate runs')
    parser.add_argument('--approx', nargs='+', default=APPROXIMATE,
                        choices=APPROXIMATE,
                        help='the approximate indexes (faiss through PyG)')
    parser.add_argument('--queries', type=int, default=10**4,
                        help='random queries on which the exact search is '
                        'timed and the recall measured')
    parser.add_argument('--clusters', type=int, default=100,
                        help='components of the Gaussian mixture')
    parser.add_argument('--intrinsic-dim', type=int, default=8,
                        help='dimension of each component of the mixture')
    parser.add_argument('--noise', type=float, default=0.1,
                        help='isotropic noise (std) of the mixture')
    for name, default, text in [
            ('hnsw_m', 32, 'links per node of the HNSW graph'),
            ('ef_construction', 80, 'HNSW candidate list while building'),
            ('ef_search', 64, 'HNSW candidate list while searching'),
            ('nlist', None, 'IVF cells per graph (None: min(4 sqrt(n), '
             'n / 39) for n points)'),
            ('nprobe', 8, 'IVF cells searched per query'),
            ('pq_m', 8, 'IVF-PQ sub-quantizers (a divisor of --dim)')]:
        parser.add_argument('--' + name.replace('_', '-'), type=int,
                            default=default, help=text)
    parser.add_argument('--coin-dataset', default='CS',
                        choices=sorted(COIN_DATASETS),
                        help='the real data set of the COIN check')
    parser.add_argument('--coin-dim', type=int, default=64,
                        help='PCA dimensions of its features')
    parser.add_argument('--worker', nargs=3, default=None,
                        help=argparse.SUPPRESS)
    args, command = common.parse_args(parser, argv, 'knn')

    if args.worker is not None:
        method, N, num_queries = args.worker
        print(json.dumps(worker(method, int(N), args.dim, args.k, args.seed,
                                int(num_queries))))
        return None

    if {'approximate', 'coin'} & set(args.parts):
        import faiss  # (A script may set the threads of the process.)
        faiss.omp_set_num_threads(torch.get_num_threads())
    result = dict(command=command, args=vars(args),
                  torch_threads=torch.get_num_threads())
    if 'exactness' in args.parts:
        result['exactness'] = exactness(args)
    if 'speed' in args.parts:
        result['speed'] = speed(args)
    if 'approximate' in args.parts:
        result['approximate'] = approximate(args)
    if 'coin' in args.parts:
        result['coin'] = coin_check(args)
    print(markdown(reporting.stamp(result)))
    also = []
    if 'speed' in result:
        also.append(osp.join(args.out_dir, 'knn.png'))
        os.makedirs(args.out_dir, exist_ok=True)
        plot(result, also[0])
    return reporting.save(args.out_dir, 'knn', result, markdown, *also)


if __name__ == '__main__':
    main()
