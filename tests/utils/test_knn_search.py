import importlib

import numpy as np
import pytest
import torch

from torch_geometric_coin.utils import knn_search

# The private module, to shrink its tiles and spy on its fallbacks:
search_module = importlib.import_module(
    'torch_geometric_coin.utils._knn_search')


def reference(x, k, y=None, batch=None, batch_y=None):
    r"""Brute force in float64: distances and indices of the k nearest rows
    of x for every row of y (without y: every row of x, itself excluded)."""
    x64 = x.double()
    y64 = x64 if y is None else y.double()
    dist = torch.cdist(y64, x64)
    if y is None:
        dist.fill_diagonal_(float('inf'))
    if batch is not None:
        by = batch if y is None else batch_y
        dist[by.view(-1, 1) != batch.view(1, -1)] = float('inf')
    return dist.topk(k, dim=1, largest=False)


def assert_exact(out, ref, atol):
    dist, index = out
    assert torch.equal(index, ref.indices)
    torch.testing.assert_close(dist.double(), ref.values, rtol=0, atol=atol)


@pytest.mark.parametrize('dtype,atol', [(torch.float32, 1e-5),
                                        (torch.float64, 1e-12)])
def test_self_and_query_search(dtype, atol):
    torch.manual_seed(0)
    x = torch.randn(400, 6, dtype=dtype)
    y = torch.randn(70, 6, dtype=dtype) * 1.5
    out = knn_search(x, 7)
    assert out[0].dtype == dtype and out[1].shape == (400, 7)
    assert_exact(out, reference(x, 7), atol)
    out = knn_search(x, 7, y=y)
    assert out[1].shape == (70, 7)
    assert_exact(out, reference(x, 7, y), atol)
    # Ascending distances, as documented:
    assert bool((out[0][:, 1:] >= out[0][:, :-1]).all())


def test_query_is_not_excluded():
    # With y, a query equal to a point of x finds that point at distance 0
    # (as torch_geometric.nn.knn); without y, it is left out.
    torch.manual_seed(1)
    x = torch.randn(200, 4, dtype=torch.float64)
    dist, index = knn_search(x, 5, y=x)
    assert torch.equal(index[:, 0], torch.arange(200))
    assert bool((dist[:, 0] == 0).all())
    dist_other, index_other = knn_search(x, 4)
    assert torch.equal(index[:, 1:], index_other)
    torch.testing.assert_close(dist[:, 1:], dist_other, rtol=0, atol=1e-12)


def test_same_neighbours_as_sklearn():
    from sklearn.neighbors import NearestNeighbors
    torch.manual_seed(2)
    x, y = torch.randn(600, 16), torch.randn(50, 16)
    nn = NearestNeighbors(n_neighbors=11).fit(x.double().numpy())
    _, ref = nn.kneighbors(x.double().numpy())
    _, ours = knn_search(x, 10)
    for i in range(600):
        assert set(ours[i].tolist()) == set(ref[i].tolist()) - {i}
    _, ref = nn.kneighbors(y.double().numpy(), n_neighbors=10)
    _, ours = knn_search(x, 10, y=y)
    assert np.array_equal(ours.numpy(), ref)


def test_batch():
    torch.manual_seed(3)
    x = torch.randn(90, 3, dtype=torch.float64)
    batch = torch.randint(0, 4, (90, ))  # Unsorted.
    batch[:4] = torch.arange(4)
    batch[batch == 2] = 1  # Graph 2 has no points in x.
    y = torch.randn(40, 3, dtype=torch.float64)
    batch_y = torch.tensor([0, 1, 3]).repeat(14)[:40]  # No queries in 2.
    out = knn_search(x, 5, batch)
    assert_exact(out, reference(x, 5, batch=batch), 1e-12)
    assert bool((batch[out[1]] == batch.view(-1, 1)).all())
    out = knn_search(x, 5, batch, y=y, batch_y=batch_y)
    assert_exact(out, reference(x, 5, y, batch, batch_y), 1e-12)
    assert bool((batch[out[1]] == batch_y.view(-1, 1)).all())
    # A graph of x without queries, and queries that see all of their graph:
    small = int((batch == 3).sum())
    out = knn_search(x, small, batch, y=y[:5], batch_y=torch.full((5, ), 3))
    assert_exact(out, reference(x, small, y[:5], batch, torch.full((5, ), 3)),
                 1e-12)
    assert set(out[1][0].tolist()) == set((batch == 3).nonzero().view(-1)
                                          .tolist())


@pytest.mark.parametrize('query', [False, True])
def test_chunking_and_tiling(monkeypatch, query):
    torch.manual_seed(4)
    x = torch.randn(500, 8)
    batch = torch.cat([torch.zeros(300), torch.ones(150),
                       torch.arange(2, 7).repeat_interleave(10)]).long()
    y = batch_y = None
    if query:
        y = torch.randn(120, 8)
        batch_y = torch.randint(0, 7, (120, )).sort().values
    ref = reference(x, 6, y, batch, batch_y)
    assert_exact(knn_search(x, 6, batch, y, batch_y, chunk_size=10**6), ref,
                 1e-5)
    # Small tiles and groups exercise the tile merge and block minima:
    monkeypatch.setattr(search_module, '_TILE', 64)
    monkeypatch.setattr(search_module, '_GROUP', 4)
    for chunk_size in [1, 7, 64, None]:
        for num_workers in [1, 2]:
            out = knn_search(x, 6, batch, y, batch_y, chunk_size=chunk_size,
                             max_memory=2**16, num_workers=num_workers)
            assert_exact(out, ref, 1e-5)


@pytest.mark.parametrize('query', [False, True])
def test_block_minima_candidates(monkeypatch, query):
    # Tiles wide enough for the block-minima shortcut of `_candidates` (the
    # path of every graph of more than ~8,000 nodes with the default tile):
    torch.manual_seed(6)
    x = torch.randn(500, 8)
    y = torch.randn(90, 8) if query else None
    monkeypatch.setattr(search_module, '_TILE', 256)
    monkeypatch.setattr(search_module, '_GROUP', 4)
    shortcut = []
    candidates = search_module._candidates

    def spy(s, kq):
        shortcut.append(s.size(1) // 4 > 4 * kq and s.size(1) % 4 == 0)
        return candidates(s, kq)

    monkeypatch.setattr(search_module, '_candidates', spy)
    out = knn_search(x, 6, y=y, max_memory=2**16)
    assert any(shortcut)
    assert_exact(out, reference(x, 6, y), 1e-5)


def test_candidates_keep_the_smallest_entries():
    torch.manual_seed(7)
    s = torch.rand(3, 256)
    _, i = search_module._candidates(s, 14)
    for row in range(3):
        assert set(torch.topk(s[row], 14, largest=False).indices.tolist()) <= \
            set(i[row].tolist())


@pytest.mark.parametrize('query', [False, True])
@pytest.mark.parametrize('batched', [False, True])
def test_certification_fallback(monkeypatch, query, batched):
    # A tiny cluster next to far away points: the matrix form cannot resolve
    # the cluster in float32, the fallback must recompute it exactly (within
    # the query's graph, with two interleaved graphs).
    gen = torch.Generator().manual_seed(5)
    x = torch.cat([torch.randn(50, 4, generator=gen) * 1e-4,
                   torch.randn(50, 4, generator=gen) * 1e4])
    y = torch.randn(20, 4, generator=gen) * 1e-4 if query else None
    batch = torch.arange(100) % 2 if batched else None
    batch_y = torch.arange(20) % 2 if batched and query else None
    calls = []
    brute_force = search_module._brute_force

    def spy(*args, **kwargs):
        calls.append(args[2].size(0))
        return brute_force(*args, **kwargs)

    monkeypatch.setattr(search_module, '_brute_force', spy)
    dist, index = knn_search(x, 5, batch, y, batch_y)
    assert sum(calls) > 0
    ref = reference(x, 5, y, batch, batch_y)
    rows = 20 if query else 50  # The queries in the cluster (far points see
    # the cluster as ties in float32).
    assert torch.equal(index[:rows].sort(1).values,
                       ref.indices[:rows].sort(1).values)
    torch.testing.assert_close(dist.double(), ref.values, rtol=1e-6, atol=0)


def test_cosine_metric():
    torch.manual_seed(8)
    x, y = torch.randn(100, 6, dtype=torch.float64), torch.randn(30, 6)
    y = y.double()
    xn, yn = x / x.norm(dim=1, keepdim=True), y / y.norm(dim=1, keepdim=True)
    ref = (1 - yn @ xn.t()).topk(4, dim=1, largest=False)
    dist, index = knn_search(x, 4, y=y * 3, metric='cosine')
    assert torch.equal(index, ref.indices)
    torch.testing.assert_close(dist, ref.values, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="all-zero .* in 'y'"):
        knn_search(x, 4, y=torch.zeros(2, 6, dtype=torch.float64),
                   metric='cosine')


def test_half_precision_input():
    torch.manual_seed(9)
    x = torch.randn(100, 4).to(torch.bfloat16)
    y = torch.randn(10, 4).to(torch.bfloat16)
    dist, index = knn_search(x, 3, y=y)
    assert dist.dtype == torch.bfloat16
    assert torch.equal(index, reference(x, 3, y).indices)


@pytest.mark.parametrize('args,kwargs,error,match', [
    ((torch.randn(5, 2), 5), {}, ValueError,
     'smaller than the number of nodes'),
    ((torch.randn(5, 2), 6), dict(y=torch.randn(2, 2)), ValueError,
     r"not exceed the number of points of 'x' \(got k=6 for 5"),
    ((torch.randn(6, 2), 3), dict(batch=torch.tensor([0, 0, 0, 0, 1, 1]),
                                  y=torch.randn(2, 2),
                                  batch_y=torch.tensor([0, 1])), ValueError,
     "graph 1 has 2 points in 'x'"),
    ((torch.randn(5, 2), 0), {}, ValueError, "'k' must be an integer >= 1"),
    ((torch.randn(5, 2), 2.0), {}, ValueError, "'k' must be an integer"),
    ((torch.arange(10).view(5, 2), 2), {}, TypeError, 'floating point'),
    ((torch.randn(5, 2), 2), dict(y=torch.arange(2)), TypeError,
     "'y' must be a floating point"),
    ((torch.randn(5, 2), 2), dict(y=torch.randn(3, 3)), ValueError,
     "'y' must have the 2 features"),
    ((torch.randn(5, 2), 2), dict(y=torch.randn(3, 2).double()), ValueError,
     'dtype and device'),
    ((torch.randn(5, 2), 2), dict(y=torch.empty(0, 2)), ValueError,
     "'y' is empty"),
    ((torch.randn(5, 2), 2), dict(y=torch.tensor([[0., float('nan')]])),
     ValueError, "'y' contains NaN"),
    ((torch.randn(5, 2), 2), dict(batch=torch.zeros(5).long(),
                                  y=torch.randn(3, 2)), ValueError,
     'given together'),
    ((torch.randn(5, 2), 2), dict(batch_y=torch.zeros(3).long()), ValueError,
     "'batch_y' is given without 'y'"),
    ((torch.randn(5, 2), 2), dict(batch=torch.zeros(5).long(),
                                  y=torch.randn(3, 2),
                                  batch_y=torch.zeros(2).long()), ValueError,
     "'batch_y' must be a vector of length 3 to match 'y'"),
    ((torch.randn(5, 2), 2), dict(batch=torch.zeros(5)), ValueError,
     'integer graph ids'),
    ((torch.randn(5, 2), 2), dict(batch=-torch.ones(5).long()), ValueError,
     'negative'),
    ((torch.randn(5, 2), 2), dict(metric='manhattan'), ValueError, 'metric'),
    ((torch.randn(5, 2), 2), dict(backend='annoy'), ValueError, 'backend'),
    ((torch.randn(5, 2), 2), dict(chunk_size=0), ValueError, 'chunk_size'),
    ((torch.randn(5, 2), 2), dict(max_memory=0), ValueError, 'max_memory'),
    ((torch.randn(5, 2), 2), dict(num_workers=0), ValueError, 'num_workers'),
])
def test_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        knn_search(*args, **kwargs)


def test_faiss_backend_with_a_stand_in(monkeypatch):
    # A brute-force stand-in with faiss's interface (squared distances,
    # self included, ascending) runs the candidate handling of the faiss
    # path (self-exclusion, batch offsets, exact re-ranking) here too.
    import sys
    import types

    class IndexFlatL2:
        def __init__(self, d):
            self.xb = np.empty((0, d), dtype=np.float32)

        def add(self, xb):
            self.xb = np.concatenate([self.xb, xb])

        def search(self, xq, k):
            d2 = ((xq[:, None, :] - self.xb[None]) ** 2).sum(-1)
            i = np.argsort(d2, axis=1, kind='stable')[:, :k]
            return np.take_along_axis(d2, i, 1), i

    monkeypatch.setitem(sys.modules, 'faiss', types.SimpleNamespace(
        IndexFlatL2=IndexFlatL2, omp_get_max_threads=lambda: 1,
        omp_set_num_threads=lambda n: None))
    torch.manual_seed(11)
    x, y = torch.randn(120, 4), torch.randn(30, 4)
    batch = torch.tensor([0] * 50 + [1] * 40 + [2] * 30)
    batch_y = torch.tensor([2, 0] * 15)
    for b, q, bq in [(None, None, None), (batch, None, None), (None, y, None),
                     (batch, y, batch_y)]:
        out = knn_search(x, 6, b, q, bq, backend='faiss')
        assert_exact(out, reference(x, 6, q, b, bq), 1e-5)


@pytest.mark.parametrize('backend', ['faiss', 'pyg_lib'])
def test_optional_backends(backend):
    torch.manual_seed(10)
    x, y = torch.randn(100, 4), torch.randn(20, 4)
    try:
        out = knn_search(x, 6, backend=backend)
    except ImportError as e:
        assert backend.split('_')[0] in str(e)
        pytest.skip(f'{backend} not installed')
    assert_exact(out, reference(x, 6), 1e-5)
    assert_exact(knn_search(x, 6, y=y, backend=backend), reference(x, 6, y),
                 1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='CUDA needed')
def test_cuda():
    torch.manual_seed(11)
    x, y = torch.randn(3000, 16), torch.randn(500, 16)
    batch = torch.arange(3).repeat_interleave(1000)
    batch_y = torch.arange(3).repeat(167)[:500]
    for dtype, atol in [(torch.float32, 1e-4), (torch.float64, 1e-12)]:
        xc, yc = x.to('cuda', dtype), y.to('cuda', dtype)
        out = knn_search(xc, 6, batch.cuda())
        assert_exact((out[0].cpu(), out[1].cpu()),
                     reference(x.to(dtype), 6, batch=batch), atol)
        out = knn_search(xc, 6, batch.cuda(), yc, batch_y.cuda())
        assert_exact((out[0].cpu(), out[1].cpu()),
                     reference(x.to(dtype), 6, y.to(dtype), batch, batch_y),
                     atol)
    # Large magnitudes (squares beyond float32) on the device too:
    big = x[:500] * 1e20
    out = knn_search(big.cuda(), 6, num_workers=1)
    ref = reference(big, 6)
    assert torch.equal(out[1].cpu(), ref.indices)
    torch.testing.assert_close(out[0].cpu().double(), ref.values, rtol=1e-6,
                               atol=0)
    # Threads of query chunks are a CPU option:
    with pytest.raises(ValueError, match="'num_workers' applies to CPU "
                       "searches only"):
        knn_search(x.cuda(), 6, num_workers=4)


@pytest.mark.parametrize('scale,F', [(1e20, 4), (1e19, 64), (1e30, 3),
                                     (1e-30, 4), (1e-38, 5)])
def test_large_and_tiny_magnitudes(scale, F):
    # The squares of such float32 features overflow (inf distances, NaN
    # weights downstream) or underflow (all distances 0): the points are
    # scaled by a power of two first, so the result is the float64 one to
    # float32 precision.
    gen = torch.Generator().manual_seed(12)
    x = (torch.randn(80, F, generator=gen, dtype=torch.float64) * scale)
    y = (torch.randn(15, F, generator=gen, dtype=torch.float64) * scale)
    x, y = x.float(), y.float()
    for q in [None, y]:
        dist, index = knn_search(x, 5, y=q)
        ref = reference(x, 5, q)
        assert torch.equal(index, ref.indices)
        torch.testing.assert_close(dist.double(), ref.values, rtol=1e-6,
                                   atol=0)


def test_large_magnitudes_float64():
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(60, 3, generator=gen, dtype=torch.float64)
    for scale in [1e160, 1e-160]:  # Squares out of the range of float64.
        dist, index = knn_search(x * scale, 4)
        ref = reference(x, 4)
        assert torch.equal(index, ref.indices)
        torch.testing.assert_close(dist / scale, ref.values, rtol=1e-13,
                                   atol=0)


def test_tiny_distances_next_to_large_points():
    # Distances whose squares underflow float32 (a cluster at 1e-30 beside
    # points of magnitude 1) are exact too, and ordered correctly.
    x = torch.tensor([[0.], [1e-30], [3e-30], [7e-30], [1.], [2.], [4.]])
    y = torch.tensor([[2.5e-30], [3.]])
    for q in [None, y]:
        dist, index = knn_search(x, 2, y=q)
        ref = reference(x, 2, q)
        torch.testing.assert_close(dist.double(), ref.values, rtol=1e-6,
                                   atol=0)
        rows = 4 if q is None else 2  # (Point 4 has two nearest at 1.)
        assert torch.equal(index[:rows], ref.indices[:rows])
    # The fallback search (its own norms) gives the same distances:
    out = search_module._brute_force(x, None, x[:4], None, torch.arange(4),
                                     2, 2**20)
    torch.testing.assert_close(out[0].double(), reference(x, 2).values[:4],
                               rtol=1e-6, atol=0)


def test_distances_beyond_the_dtype():
    # Finite points whose distance itself exceeds float32: a clear error.
    x = torch.tensor([[-3e38], [3e38], [3.3e38]])
    with pytest.raises(FloatingPointError, match="exceed the range"):
        knn_search(x[1:], 1, y=x[:1])
    # ... but not when the nearest neighbours are close:
    dist, index = knn_search(x[1:], 1)
    assert index.view(-1).tolist() == [1, 0]
    assert dist.view(-1).tolist() == [float(x[2] - x[1])] * 2


def test_cosine_metric_large_and_tiny_magnitudes():
    # The row norms of such features overflow / underflow in float32.
    torch.manual_seed(14)
    x = torch.randn(60, 5, dtype=torch.float64)
    ref = knn_search(x, 4, metric='cosine')
    for scale in [1e25, 1e-25]:
        dist, index = knn_search((x * scale).float(), 4, metric='cosine')
        assert torch.equal(index, ref[1])
        torch.testing.assert_close(dist.double(), ref[0], rtol=0, atol=1e-6)


def test_numpy_scalars_and_sparse_graph_ids():
    torch.manual_seed(15)
    x, y = torch.randn(40, 3), torch.randn(10, 3)
    ref = knn_search(x, 4, y=y, chunk_size=3, max_memory=2**16,
                     num_workers=2)
    out = knn_search(x, np.int64(4), y=y, chunk_size=np.int32(3),
                     max_memory=np.int64(2**16), num_workers=np.int64(2))
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
    with pytest.raises(ValueError, match="'k' must be an integer"):
        knn_search(x, np.bool_(True))
    # Graph ids need not be consecutive (no memory of the largest id):
    batch = torch.tensor([10**15, 3] * 20)
    batch_y = torch.tensor([3, 10**15] * 5)
    dense = (batch == 3).long(), (batch_y == 3).long()
    out = knn_search(x, 4, batch, y, batch_y)
    ref = knn_search(x, 4, dense[0], y, dense[1])
    assert torch.equal(out[1], ref[1]) and torch.equal(out[0], ref[0])
    assert_exact(out, reference(x, 4, y, dense[0], dense[1]), 1e-5)
    batch[:2] = 3  # Errors name the graph by its id:
    with pytest.raises(ValueError, match='graph 1000000000000000 has 19'):
        knn_search(x, 19, batch)


@pytest.mark.parametrize('option', [dict(chunk_size=4),
                                    dict(max_memory=2**20),
                                    dict(num_workers=2)])
def test_options_of_the_exact_search_only(monkeypatch, option):
    # The libraries search all queries at once: these options would be
    # ignored, so they are refused (faiss replaced by a stand-in).
    import sys
    import types
    monkeypatch.setitem(sys.modules, 'faiss', types.SimpleNamespace())
    name = next(iter(option))
    with pytest.raises(ValueError, match=f"'{name}' applies to "
                       f"backend='exact' only"):
        knn_search(torch.randn(10, 2), 2, backend='faiss', **option)


def test_gradient():
    # Distances are differentiable in x and y (the neighbours fixed).
    torch.manual_seed(16)
    x = torch.randn(12, 3, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda x, y: knn_search(x, 3, y=y)[0], (x, y))
    torch.autograd.gradcheck(lambda x: knn_search(x * 1e20, 3)[0], (x, ))


# Approximate backends (faiss HNSW and IVF) ###################################

APPROXIMATE = ['faiss_hnsw', 'faiss_ivf']


def clustered(n, F, clusters, seed, dtype=torch.float32, r=4):
    r"""A seeded Gaussian mixture of a low intrinsic dimension (as real
    features and the mixture of benchmarks/knn.py): centres N(0, 9 I), each
    component a standard Gaussian in a random r-dimensional subspace plus
    noise of std 0.1."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, F, generator=gen, dtype=dtype) * 3
    basis = torch.randn(clusters, r, F, generator=gen, dtype=dtype) / r**0.5
    label = torch.randint(0, clusters, (n, ), generator=gen)
    z = torch.randn(n, 1, r, generator=gen, dtype=dtype)
    return (centres[label] + (z @ basis[label]).squeeze(1) +
            0.1 * torch.randn(n, F, generator=gen, dtype=dtype))


def recall(index, ref_index):
    hits = sum(len(set(a) & set(b)) for a, b in
               zip(index.tolist(), ref_index.tolist()))
    return hits / ref_index.numel()


def assert_valid(x, k, dist, index, y=None, batch=None, batch_y=None):
    r"""The format of the exact search: shapes, dtypes, indices in range and
    in the query's graph, no repeated neighbour, the query itself excluded
    without y, the exact distances of the neighbours found, ascending."""
    M = x.size(0) if y is None else y.size(0)
    assert dist.shape == index.shape == (M, k)
    assert dist.dtype == x.dtype and index.dtype == torch.long
    assert bool((index >= 0).all()) and bool((index < x.size(0)).all())
    assert bool((index.sort(1).values.diff(dim=1) > 0).all())
    if y is None:
        assert not bool((index == torch.arange(M).view(-1, 1)).any())
    if batch is not None:
        by = batch if y is None else batch_y
        assert bool((batch[index] == by.view(-1, 1)).all())
    q = (x if y is None else y).double()
    true = (x.double()[index] - q.unsqueeze(1)).norm(dim=-1)
    torch.testing.assert_close(dist.double(), true, rtol=1e-5, atol=1e-6)
    assert bool((dist[:, 1:] >= dist[:, :-1]).all())


@pytest.mark.parametrize('backend', APPROXIMATE)
@pytest.mark.parametrize('k', [10, 15])
def test_approximate_recall_on_clustered_data(backend, k):
    pytest.importorskip('faiss')
    x = clustered(4300, 16, 20, seed=20)
    x, y = x[:4000], x[4000:]  # Queries y of the same mixture.
    ref = reference(x, k)
    dist, index = knn_search(x, k, backend=backend)
    assert_valid(x, k, dist, index)
    assert recall(index, ref.indices) >= 0.95
    # Queries y: nothing excluded.
    dist, index = knn_search(x, k, y=y, backend=backend)
    assert_valid(x, k, dist, index, y)
    assert recall(index, reference(x, k, y).indices) >= 0.95


@pytest.mark.parametrize('backend', APPROXIMATE)
def test_approximate_float64_batch_and_cosine(backend):
    pytest.importorskip('faiss')
    x = clustered(900, 8, 6, seed=22, dtype=torch.float64)
    batch = torch.arange(3).repeat(300)  # Unsorted, three graphs.
    dist, index = knn_search(x, 6, batch, backend=backend)
    assert_valid(x, 6, dist, index, batch=batch)
    assert recall(index, reference(x, 6, batch=batch).indices) >= 0.95
    y = clustered(60, 8, 6, seed=23, dtype=torch.float64)
    batch_y = torch.arange(3).repeat(20)
    dist, index = knn_search(x, 6, batch, y, batch_y, backend=backend)
    assert_valid(x, 6, dist, index, y, batch, batch_y)
    # Cosine: the unit rows are indexed, the distances 1 - cos.
    dist, index = knn_search(x, 6, metric='cosine', backend=backend)
    ref_d, ref_i = knn_search(x, 6, metric='cosine')
    assert recall(index, ref_i) >= 0.95
    xn = x / x.norm(dim=1, keepdim=True)
    true = 1 - (xn[index] * xn.unsqueeze(1)).sum(-1)
    torch.testing.assert_close(dist, true, rtol=0, atol=1e-12)


@pytest.mark.parametrize('backend', APPROXIMATE)
def test_approximate_duplicates(backend):
    # Each point three times: the query itself is excluded, its two twins
    # are its nearest neighbours, at distance 0.
    pytest.importorskip('faiss')
    base = clustered(300, 6, 5, seed=24)
    x = base.repeat(3, 1)
    dist, index = knn_search(x, 5, backend=backend)
    assert_valid(x, 5, dist, index)
    twins = torch.arange(900).view(-1, 1) % 300 + torch.tensor([0, 300, 600])
    for i in range(900):
        assert set(index[i, :2].tolist()) == set(twins[i].tolist()) - {i}
    assert bool((dist[:, :2] == 0).all()) and bool((dist[:, 2:] > 0).all())


def test_ivf_few_candidates_fall_back_to_exact(monkeypatch):
    # One cell per point and one probed cell: most queries get fewer than k
    # candidates and are searched exhaustively (exactly).
    pytest.importorskip('faiss')
    calls = []
    brute_force = search_module._brute_force

    def spy(*args, **kwargs):
        calls.append(args[2].size(0))
        return brute_force(*args, **kwargs)

    monkeypatch.setattr(search_module, '_brute_force', spy)
    x = clustered(200, 4, 4, seed=25)
    dist, index = knn_search(x, 5, backend='faiss_ivf', nlist=200, nprobe=1)
    assert sum(calls) > 100
    assert_valid(x, 5, dist, index)
    assert recall(index, reference(x, 5).indices) >= 0.9


def test_approximate_options_reach_faiss():
    # Low-quality settings lower the recall (so the options are used), the
    # IVF index is deterministic given its seed, and faiss's thread count is
    # restored.
    faiss = pytest.importorskip('faiss')
    threads = faiss.omp_get_max_threads()
    x = torch.randn(3000, 32, generator=torch.Generator().manual_seed(26))
    ref = reference(x, 10).indices
    good = recall(knn_search(x, 10, backend='faiss_ivf', nprobe=64)[1], ref)
    bad = recall(knn_search(x, 10, backend='faiss_ivf', nprobe=1)[1], ref)
    assert good > bad + 0.2
    good = recall(knn_search(x, 10, backend='faiss_hnsw', hnsw_m=32,
                             ef_search=200)[1], ref)
    bad = recall(knn_search(x, 10, backend='faiss_hnsw', hnsw_m=2,
                            ef_construction=4, ef_search=1)[1], ref)
    assert good > bad + 0.05
    runs = [knn_search(x, 10, backend='faiss_ivf', nlist=40, nprobe=2,
                       seed=s) for s in (1, 1, 2)]
    assert torch.equal(runs[0][1], runs[1][1])
    assert torch.equal(runs[0][0], runs[1][0])
    assert not torch.equal(runs[0][1], runs[2][1])
    assert faiss.omp_get_max_threads() == threads


@pytest.mark.parametrize('kwargs,match', [
    (dict(backend='exact', hnsw_m=16), "'hnsw_m' applies to "
     "backend='faiss_hnsw' only"),
    (dict(backend='faiss_ivf', ef_search=16), "'ef_search' applies to "
     "backend='faiss_hnsw' only"),
    (dict(backend='faiss', ef_construction=16), "'ef_construction' applies"),
    (dict(backend='faiss_hnsw', nlist=16), "'nlist' applies to "
     "backend='faiss_ivf' only"),
    (dict(backend='pyg_lib', nprobe=4), "'nprobe' applies to "
     "backend='faiss_ivf' only"),
    (dict(backend='exact', seed=0), "'seed' applies to backend='faiss_ivf'"),
    (dict(backend='faiss_hnsw', chunk_size=4), "'chunk_size' applies to "
     "backend='exact' only"),
    (dict(backend='faiss_ivf', num_workers=2), "'num_workers' applies"),
    (dict(backend='faiss_hnsw', hnsw_m=1), "'hnsw_m' must be an integer >= "
     "2"),
    (dict(backend='faiss_hnsw', ef_search=0), "'ef_search' must be an "
     "integer >= 1"),
    (dict(backend='faiss_ivf', nprobe=2.5), "'nprobe' must be an integer"),
    (dict(backend='faiss_ivf', seed=-1), "'seed' must be an integer >= 0"),
    (dict(backend='faiss_ivf', seed=2**31), "'seed' must be an integer >= 0 "
     "and < 2147483648"),
    (dict(backend='faiss_ivf', nlist=11), "'nlist' must not exceed the "
     r"number of points \(got nlist=11 for 10 points\)"),
])
def test_approximate_option_errors(monkeypatch, kwargs, match):
    # (faiss replaced by a stand-in where the error comes first.)
    import sys
    import types
    if 'nlist' not in kwargs or kwargs['backend'] != 'faiss_ivf':
        monkeypatch.setitem(sys.modules, 'faiss', types.SimpleNamespace())
    else:
        pytest.importorskip('faiss')
    with pytest.raises(ValueError, match=match):
        knn_search(torch.randn(10, 2), 2, **kwargs)


def test_nlist_per_graph():
    pytest.importorskip('faiss')
    x = torch.randn(30, 2)
    batch = torch.tensor([0] * 20 + [1] * 10)
    with pytest.raises(ValueError, match="'nlist' must not exceed the number "
                       r"of points of graph 1 \(got nlist=12 for 10"):
        knn_search(x, 2, batch, backend='faiss_ivf', nlist=12)
    assert [search_module._ivf_lists(n) for n in (1, 50, 10**4, 10**6)] == \
        [1, 1, 256, 4000]


def test_approximate_backends_need_faiss(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, 'faiss', None)  # "Not installed".
    for backend in APPROXIMATE:
        with pytest.raises(ImportError, match=f"backend='{backend}' requires "
                           f"the 'faiss' package"):
            knn_search(torch.randn(10, 2), 2, backend=backend)
