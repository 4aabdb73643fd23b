r"""Exact and approximate nearest neighbours of ``gaussian_knn_graph``.

Each of ``--parts`` writes its own result files. ``exact``: the builder's
recall against scikit-learn's brute force in float64, and its time against
scikit-learn's ``NearestNeighbors`` on random Gaussian data (runs estimated
past ``--time-cap`` are scaled: scikit-learn's from 1,000 queries, ours as
N^2 from a smaller N). ``approximate``: faiss HNSW, IVF and IVF-PQ through
PyG's ``KNNIndex`` / ``ApproxL2KNNIndex`` on a Gaussian mixture of low
intrinsic dimension, against a brute-force search timed on ``--queries``
queries (scaled by N / queries); recall on them. ``coin``: COIN on the exact
and approximate kNN graphs (``neighbors=``) of Coauthor's features.

    nice -n 5 python benchmarks/knn.py --parts exact
    python benchmarks/knn.py --parts approximate coin --threads 2
"""
import math
import os
import os.path as osp
import sys
import time

import numpy as np
import torch
from torch_geometric.data import Data
from tqdm import tqdm

from torch_geometric_coin.nn import COIN
from torch_geometric_coin.utils import gaussian_knn_graph

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import reporting  # noqa: E402
from training import fit  # noqa: E402

PARTS = ['exact', 'approximate', 'coin']
METHODS = ['ours', 'sklearn_brute', 'sklearn_kd_tree', 'sklearn_ball_tree']
APPROXIMATE = ['hnsw', 'ivf', 'ivf_pq']


def gen(seed):
    return torch.Generator().manual_seed(seed)


def make_mixture(N, dim, clusters, seed, intrinsic_dim=8, noise=0.1):
    r"""Points of :obj:`clusters` components: a centre from N(0, I) + a
    Gaussian in a random :obj:`intrinsic_dim`-subspace + :obj:`noise`."""
    g, r = gen(seed), min(intrinsic_dim, dim)
    centres = torch.randn(clusters, dim, generator=g)
    basis = torch.randn(clusters, r, dim, generator=g) / math.sqrt(r)
    label = torch.randint(clusters, (N, ), generator=g)
    x = centres[label] + noise * torch.randn(N, dim, generator=g)
    for c in range(clusters):  # (Component by component: little memory.)
        idx = (label == c).nonzero().view(-1)
        x[idx] += torch.randn(idx.numel(), r, generator=g) @ basis[c]
    return x


def exact_knn(x, k, rows=None):
    r"""The :obj:`k` nearest other points of :obj:`x[rows]`, brute force."""
    rows = torch.arange(x.size(0)) if rows is None else rows
    out, step = [], max(1, 2**24 // x.size(0))
    for a in range(0, rows.numel(), step):
        d = torch.cdist(x[rows[a:a + step]], x)
        d[torch.arange(d.size(0)), rows[a:a + step]] = math.inf
        out.append(d.topk(k, dim=1, largest=False).indices)
    return torch.cat(out)


def builder_knn(x, k):
    r"""The neighbours that :func:`gaussian_knn_graph` finds."""
    (col, row), _ = gaussian_knn_graph(x, k, 1, loop=False, normalize=False,
                                       symmetrize=False)
    return col[row.argsort(stable=True)].view(-1, k)


def recall(index, ref):
    return sum(len(set(a) & set(b)) for a, b in zip(
        index.tolist(), ref.tolist())) / (len(ref) * len(ref[0]))


def approximate_neighbors(x, k, method, nprobe=8, ef_search=64):
    r"""The :obj:`[N, k]` approximate nearest other points."""
    import faiss
    from torch_geometric.nn.pool import ApproxL2KNNIndex, KNNIndex
    N = x.size(0)
    nlist = max(1, min(math.ceil(4 * math.sqrt(N)), N // 39))
    index = (KNNIndex('HNSW32') if method == 'hnsw' else
             KNNIndex(f'IVF{nlist},Flat') if method == 'ivf' else
             ApproxL2KNNIndex(nlist, nprobe, 8))
    index.add(x)
    faiss.ParameterSpace().set_index_parameter(index.index, *(
        ('efSearch', ef_search) if method == 'hnsw' else ('nprobe', nprobe)))
    out = index.search(x, k, torch.arange(N).repeat(2, 1)).index
    missing = (out < 0).any(1).nonzero().view(-1)
    if missing.numel() > 0:
        out[missing] = exact_knn(x, k, missing)
    return out


def exactness(args):
    r"""Recall against scikit-learn's brute force in float64; a miss is a
    float32 tie within 1e-6 of the k-th distance."""
    from sklearn.neighbors import NearestNeighbors
    rows = []
    for N in args.exact_sizes:
        x = torch.randn(N, args.dim, generator=gen(args.seed + 1)).numpy()
        ours = builder_knn(torch.from_numpy(x), args.k).numpy()
        x = x.astype(float)
        dist, ref = NearestNeighbors(n_neighbors=args.k + 1, algorithm='brute'
                                     ).fit(x).kneighbors(x)  # (Self first.)
        d = np.stack([np.linalg.norm(x - x[j], axis=1) for j in ours.T], 1)
        misses = round((1 - recall(ours, ref[:, 1:])) * N * args.k)
        rows.append(dict(N=N, recall=1 - misses / (N * args.k), misses=misses,
                         float32_ties=misses - int(
                             (d > dist[:, -1:] * (1 + 1e-6)).sum())))
    return rows


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    return fn(*args, **kwargs), time.perf_counter() - t


def speed(args):
    from sklearn.neighbors import NearestNeighbors
    rows = []
    gaussian_knn_graph(torch.randn(500, args.dim), args.k, args.bandwidth_k)
    for N in tqdm(args.sizes, desc='speed'):
        x = torch.randn(N, args.dim, generator=gen(args.seed)).numpy()
        for method in METHODS:
            if method == 'ours':
                last = [r for r in rows if r['method'] == method
                        and r['note'] == 'full run'][-1:]
                t = last and last[0]['time_s'] * (N / last[0]['N'])**2
                note = last and f"scaled as N^2 from N={last[0]['N']}"
                if not last or t <= args.time_cap:
                    t, note = timed(gaussian_knn_graph, torch.from_numpy(x),
                                    args.k, args.bandwidth_k)[1], 'full run'
            else:  # (k + 1: the query itself comes back.)
                nn = NearestNeighbors(n_neighbors=args.k + 1, n_jobs=-1,
                                      algorithm=method[len('sklearn_'):])
                fit_s, m = timed(nn.fit, x)[1], min(N, 1000)
                t = fit_s + timed(nn.kneighbors, x[:m])[1] * N / m
                if m < N and t <= args.time_cap:
                    t, m = fit_s + timed(nn.kneighbors, x)[1], N
                note = 'full run' if m == N else f'scaled from {m} queries'
            rows.append(dict(N=N, method=method, time_s=t, note=note))
    ours = {r['N']: r['time_s'] for r in rows if r['method'] == 'ours'}
    return [dict(r, vs_ours=r['time_s'] / ours.get(r['N'], math.nan))
            for r in rows]


def approximate(args):
    rows = []
    for N in args.approx_sizes:
        x = make_mixture(N, args.dim, args.clusters, args.seed,
                         args.intrinsic_dim, args.noise)
        m = min(N, args.queries)
        queries = torch.randperm(N, generator=gen(args.seed))[:m].sort()[0]
        ref, exact_s = timed(exact_knn, x, args.k, queries)
        rows.append(dict(N=N, method='exact', time_s=exact_s * N / m,
                         note=f'scaled from {m} queries', recall=1.))
        for method in tqdm(args.approx, desc=f'N={N}'):
            index, t = timed(approximate_neighbors, x, args.k, method,
                             args.nprobe, args.ef_search)
            rows.append(dict(N=N, method=method, time_s=t, note='full run',
                             speedup=exact_s * N / m / t,
                             recall=recall(index[queries], ref),
                             weights_s=timed(gaussian_knn_graph, x, args.k,
                                             args.bandwidth_k,
                                             neighbors=index)[1]))
    return rows


def load_features(args):
    from torch_geometric.datasets import Coauthor
    src = common.writable_copy(f'{args.root}/coauthor/{args.coin_dataset}')
    data = Coauthor(osp.dirname(src), args.coin_dataset)[0]
    return data.x, data.y


def coin_check(args, x, y):
    torch.manual_seed(args.seed)  # (Randomized PCA.)
    u, s, _ = torch.pca_lowrank(x, q=min(args.coin_dim, *x.shape), niter=4)
    data = Data(x=(u * s).contiguous(), y=y)
    ref, rows, graphs = exact_knn(data.x, args.k), [], []
    for method in ['exact'] + args.approx:
        index = None if method == 'exact' else approximate_neighbors(
            data.x, args.k, method, args.nprobe, args.ef_search)
        graphs.append(gaussian_knn_graph(data.x, args.k, args.bandwidth_k,
                                         neighbors=index))
        rows.append(dict(graph=method, edges=graphs[-1][0].size(1), acc=[],
                         recall=1. if index is None else recall(index, ref)))
    for split in tqdm(range(args.splits), desc='COIN splits'):
        masks = common.random_split(y, seed=args.seed + split)
        for row, (data.edge_index, data.edge_weight) in zip(rows, graphs):
            torch.manual_seed(args.seed + split)
            model = COIN(data.num_features, int(y.max()) + 1, K=args.K,
                         sigma2=args.sigma2, normalization=None, cached=True)
            res, = fit(model, data, *masks, epochs=args.epochs)
            row['acc'].append(res['test_acc'])
    for row in rows:
        row.update(test_acc=reporting.summarize(row['acc']), diff=reporting.
                   summarize([a - b for a, b in zip(row['acc'],
                                                    rows[0]['acc'])]))
    return rows


def markdown(caption, r, *tables):
    def cell(v):
        return (f'{v:.6g}' if isinstance(v, float) else
                reporting.fmt_acc(v) if isinstance(v, dict) else v)
    text = (f"{caption}; {r['machine']}; {r['date']}; torch (and faiss) "
            f"threads {r['torch_threads']}.\n")
    for rows in tables:
        cols = list(dict.fromkeys(c for row in rows for c, v in row.items()
                                  if not isinstance(v, list)))
        text += '\n' + reporting.markdown_table(
            cols, [[cell(row.get(c, '-')) for c in cols] for row in rows])
    return text


def plot(rows, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method in METHODS:
        rs = [r for r in rows if r['method'] == method]
        ax.loglog([r['N'] for r in rs], [r['time_s'] for r in rs], 'o-',
                  label=method)
    ax.set(xlabel='N', ylabel='time (s), all N queries')
    fig.legend()
    fig.savefig(path, dpi=120, bbox_inches='tight')
    return [path]


def main(argv=None):
    parser = common.parser(
        __doc__, seed=0, k=10, bandwidth_k=5, K=10, sigma2=0.3, epochs=200,
        root=common.SHARED, splits=dict(default=3, help='COIN splits'))
    for flag, kind, default, text, *choices in [
            ('--parts', str, PARTS, 'the parts to run', PARTS),
            ('--dim', int, 64, 'dimension of the points'),
            ('--sizes', int, [10**4, 10**5, 10**6], 'N of the speed runs'),
            ('--exact-sizes', int, [10**3, 10**4, 10**5], 'N of exactness'),
            ('--time-cap', float, 300., 'seconds of a full run'),
            ('--approx-sizes', int, [10**5, 10**6], 'N of approximate runs'),
            ('--approx', str, APPROXIMATE, 'faiss indexes', APPROXIMATE),
            ('--queries', int, 10**4, 'queries timed exactly, of recall'),
            ('--clusters', int, 100, 'components of the mixture'),
            ('--intrinsic-dim', int, 8, 'dimension of each component'),
            ('--noise', float, 0.1, 'isotropic noise (std) of the mixture'),
            ('--nprobe', int, 8, 'IVF cells searched per query'),
            ('--ef-search', int, 64, 'HNSW candidate list when searching'),
            ('--coin-dataset', str, 'CS', 'Coauthor-CS or -Physics',
             ['CS', 'Physics']),
            ('--coin-dim', int, 64, 'PCA dimensions of its features')]:
        parser.add_argument(flag, type=kind, default=default, help=text,
                            nargs='+' if isinstance(default, list) else None,
                            choices=choices[0] if choices else None)
    a, command = common.parse_args(parser, argv, 'knn')
    if {'approximate', 'coin'} & set(a.parts):
        import faiss  # (Its threads follow --threads.)
        faiss.omp_set_num_threads(torch.get_num_threads())
    out = {}
    for part in a.parts:
        r, also = dict(command=command, args=vars(a), rows=[],
                       torch_threads=torch.get_num_threads()), []
        if part == 'exact':
            stem = f'knn_exact_gaussian{a.dim}'
            r.update(rows=speed(a), exactness=exactness(a))
            os.makedirs(a.out_dir, exist_ok=True)
            also = plot(r['rows'], f'{a.out_dir}/{stem}.png')
            caption = f'Random Gaussian data, float32, d = {a.dim}, k = {a.k}'
        elif part == 'approximate':
            r['rows'] = approximate(a)
            stem = 'knn_recall_mixture_' + '_'.join(map(str, a.approx_sizes))
            caption = (f'Gaussian mixture ({a.clusters} components of '
                       f'{a.intrinsic_dim} dimensions, noise {a.noise}), d = '
                       f'{a.dim}, k = {a.k}; nprobe {a.nprobe}, efSearch '
                       f'{a.ef_search}; recall on {a.queries} random queries')
        else:
            with common.data_errors(parser):
                x, y = load_features(a)
            r['rows'] = coin_check(a, x, y)
            stem = f'knn_coin_{a.coin_dataset}_{a.splits}splits'
            caption = (f'COIN (K = {a.K}, sigma2 = {a.sigma2}) on '
                       f'{a.coin_dataset} (PCA to {a.coin_dim}), k = {a.k}, '
                       f'bandwidth_k = {a.bandwidth_k}; test accuracy (%), '
                       f'its difference to the exact graph, by split')
        text = markdown(caption, reporting.stamp(r), r['rows'],
                        *([r['exactness']] if part == 'exact' else []))
        print(text)
        out[part] = reporting.save(a.out_dir, stem, r, text, *also)
    return out


if __name__ == '__main__':
    main()
