import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torch_geometric_coin.utils import gaussian_knn_graph, knn_search


def authors_reference(x, n_top=8, sigma=4):
    # The COIN authors' dense construction, counting the node itself: keep
    # d_ij < the n_top-th smallest distance, bandwidth = sigma-th smallest.
    x = np.asarray(x, dtype=np.float64)
    dist = np.sqrt(((x[:, None, :] - x[None, :, :])**2).sum(-1))
    srt = np.sort(dist, axis=1)
    keep = dist < srt[:, n_top - 1:n_top]
    W = np.exp(-(dist / srt[:, sigma - 1:sigma])**2) * keep
    deg = W.sum(1)
    W = W / np.sqrt(np.outer(deg, deg))
    return (W + W.T) / 2


def dense_reference(x, k, bandwidth_k, batch=None, loop=True, normalize=True,
                    symmetrize=True, metric='euclidean', kernel='gaussian'):
    x = np.asarray(x, dtype=np.float64)
    N = x.shape[0]
    if metric == 'cosine':
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        dist = 1 - xn @ xn.T
    else:
        dist = np.sqrt(((x[:, None, :] - x[None, :, :])**2).sum(-1))
    dist[np.arange(N), np.arange(N)] = np.inf
    if batch is not None:
        batch = np.asarray(batch)
        dist[batch[:, None] != batch[None, :]] = np.inf
    nbr = np.argsort(dist, axis=1, kind='stable')[:, :k]
    s = dist[np.arange(N), nbr[:, bandwidth_k - 1]]
    W = np.zeros((N, N))
    for i in range(N):
        for j in nbr[i]:
            den = s[i]**2 if kernel == 'gaussian' else s[i] * s[j]
            d2 = dist[i, j]**2
            W[i, j] = np.exp(-d2 / den) if den > 0 else float(d2 == 0)
    if loop:
        W += np.eye(N)
    if normalize:
        deg = W.sum(1)
        W = W / np.sqrt(np.outer(deg, deg))
    if symmetrize:
        W = (W + W.T) / 2
    return W


def to_dense(edge_index, edge_weight, N):
    # Edge (j, i) carries W_ij.
    W = np.zeros((N, N))
    W[edge_index[1].numpy(), edge_index[0].numpy()] = edge_weight.double()
    return W


def test_authors_construction():
    torch.manual_seed(0)
    x = torch.randn(120, 5)
    edge_index, edge_weight = gaussian_knn_graph(x, k=6, bandwidth_k=3)
    assert edge_weight.dtype == torch.float32
    W = to_dense(edge_index, edge_weight, 120)
    np.testing.assert_allclose(W, authors_reference(x), rtol=0, atol=1e-6)
    assert np.array_equal(W, W.T)

    x = x.double()
    W = to_dense(*gaussian_knn_graph(x, k=6, bandwidth_k=3), 120)
    np.testing.assert_allclose(W, authors_reference(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize('metric', ['euclidean', 'cosine'])
@pytest.mark.parametrize('kernel', ['gaussian', 'self_tuning'])
@pytest.mark.parametrize('loop,normalize,symmetrize', [
    (True, True, True), (False, True, False), (False, False, True)])
def test_dense_reference(metric, kernel, loop, normalize, symmetrize):
    torch.manual_seed(1)
    x = torch.rand(80, 4, dtype=torch.float64) + 0.1
    kwargs = dict(loop=loop, normalize=normalize, symmetrize=symmetrize,
                  metric=metric, kernel=kernel)
    W = to_dense(*gaussian_knn_graph(x, 7, 4, **kwargs), 80)
    np.testing.assert_allclose(W, dense_reference(x, 7, 4, **kwargs),
                               rtol=0, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(N=st.integers(2, 40), F=st.integers(1, 6), k=st.integers(1, 8),
       data=st.data())
def test_dense_reference_random(N, F, k, data):
    k = min(k, N - 1)
    bandwidth_k = data.draw(st.integers(1, k))
    seed = data.draw(st.integers(0, 2**31 - 1))
    x = torch.randn(N, F, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64)
    W = to_dense(*gaussian_knn_graph(x, k, bandwidth_k, chunk_size=3), N)
    np.testing.assert_allclose(W, dense_reference(x, k, bandwidth_k),
                               rtol=0, atol=1e-12)


def test_batch_separation_and_order():
    torch.manual_seed(3)
    x = torch.randn(70, 3)
    batch = torch.randint(0, 3, (70, ))
    batch[:3] = torch.tensor([0, 1, 2])
    edge_index, edge_weight = gaussian_knn_graph(x, 5, 2, batch=batch)
    assert bool((batch[edge_index[0]] == batch[edge_index[1]]).all())
    W = to_dense(edge_index, edge_weight, 70)
    for g in range(3):  # Each graph on its own gives the same weights:
        idx = (batch == g).nonzero().view(-1)
        W_g = to_dense(*gaussian_knn_graph(x[idx], 5, 2), idx.numel())
        np.testing.assert_allclose(W[np.ix_(idx, idx)], W_g, atol=1e-7)
    np.testing.assert_allclose(
        W, dense_reference(x, 5, 2, batch=batch), rtol=0, atol=1e-6)


def test_symmetric_output():
    torch.manual_seed(6)
    x = torch.randn(200, 10)
    edge_index, edge_weight = gaussian_knn_graph(x, 8, 4)
    W = to_dense(edge_index, edge_weight, 200)
    assert np.array_equal(W, W.T)
    assert bool((edge_weight > 0).all())
    # Coalesced, sorted by source then target:
    key = edge_index[0] * 200 + edge_index[1]
    assert bool((key[1:] > key[:-1]).all())


def test_duplicates_never_nan():
    torch.manual_seed(7)
    x = torch.randn(30, 3).repeat(4, 1)  # Every point four times.
    for kernel in ['gaussian', 'self_tuning']:
        for loop in [True, False]:
            out = gaussian_knn_graph(x, 6, 3, loop=loop, kernel=kernel)
            assert bool(torch.isfinite(out[1]).all())
            W = to_dense(*out, 120)
            np.testing.assert_allclose(
                W, dense_reference(x, 6, 3, loop=loop, kernel=kernel),
                rtol=0, atol=1e-6)
    # All points equal: a complete graph of equal weights.
    out = gaussian_knn_graph(torch.ones(5, 2), 4, 2)
    assert torch.allclose(out[1], torch.full_like(out[1], 0.2))


def test_cosine_metric():
    torch.manual_seed(8)
    x = torch.randn(100, 6)
    W = to_dense(*gaussian_knn_graph(x, 5, 2, metric='cosine'), 100)
    np.testing.assert_allclose(W, dense_reference(x, 5, 2, metric='cosine'),
                               rtol=0, atol=1e-5)
    # Invariant to the scale of each row:
    scaled = x * torch.rand(100, 1).add(0.5)
    W2 = to_dense(*gaussian_knn_graph(scaled, 5, 2, metric='cosine'), 100)
    np.testing.assert_allclose(W, W2, atol=1e-5)
    with pytest.raises(ValueError, match='all-zero'):
        gaussian_knn_graph(torch.cat([x, torch.zeros(1, 6)]), 5, 2,
                           metric='cosine')


def test_self_tuning_kernel():
    torch.manual_seed(9)
    x = torch.randn(90, 3, dtype=torch.float64)
    out = gaussian_knn_graph(x, 6, 3, kernel='self_tuning')
    W = to_dense(*out, 90)
    np.testing.assert_allclose(W, dense_reference(x, 6, 3,
                                                  kernel='self_tuning'),
                               rtol=0, atol=1e-12)
    gauss = to_dense(*gaussian_knn_graph(x, 6, 3), 90)
    assert not np.allclose(W, gauss)


@pytest.mark.parametrize('args,kwargs,match', [
    ((torch.randn(5, 2), 5, 2), {}, 'smaller than the number of nodes'),
    ((torch.randn(5, 2), 0, 1), {}, "'k' must be an integer >= 1"),
    ((torch.randn(5, 2), 2.0, 1), {}, "'k' must be an integer"),
    ((torch.randn(5, 2), 3, 4), {}, 'bandwidth_k'),
    ((torch.randn(5, 2), 3, 0), {}, 'bandwidth_k'),
    ((torch.tensor([[0., float('nan')], [1., 1.], [2., 2.]]), 1, 1), {},
     'NaN or infinite'),
    ((torch.tensor([[0., float('inf')], [1., 1.], [2., 2.]]), 1, 1), {},
     'NaN or infinite'),
    ((torch.empty(0, 3), 1, 1), {}, 'empty'),
    ((torch.randn(6, 2), 2, 1), dict(batch=torch.zeros(5).long()), 'batch'),
    ((torch.randn(6, 2), 2, 1), dict(batch=torch.tensor([0, 0, 0, 0, 1, 1])),
     'graph 1 has 2 nodes'),
    ((torch.randn(6, 2), 2, 1), dict(metric='manhattan'), 'metric'),
    ((torch.randn(6, 2), 2, 1), dict(kernel='box'), 'kernel'),
    ((torch.randn(6, 2), 2, 1), dict(backend='annoy'), 'backend'),
    ((torch.randn(6, 2), 2, 1), dict(chunk_size=0), 'chunk_size'),
    ((torch.randn(6, 2), 2, 1), dict(max_memory=0), 'max_memory'),
    ((torch.randn(6, 2), 2, 1), dict(num_workers=0), 'num_workers'),
])
def test_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        gaussian_knn_graph(*args, **kwargs)


def test_type_errors():
    with pytest.raises(TypeError, match='floating point'):
        gaussian_knn_graph(torch.arange(10).view(5, 2), 2, 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='CUDA needed')
def test_cuda():
    torch.manual_seed(11)
    x = torch.randn(3000, 16)
    batch = torch.arange(3).repeat_interleave(1000)
    ref = gaussian_knn_graph(x, 6, 3, batch=batch)
    for dtype in [torch.float32, torch.float64]:
        out = gaussian_knn_graph(x.to('cuda', dtype), 6, 3,
                                 batch=batch.cuda())
        assert torch.equal(out[0].cpu(), ref[0])
        assert torch.allclose(out[1].cpu().float(), ref[1], atol=1e-6)


@pytest.mark.parametrize('scale,F', [(1e20, 4), (1e19, 64), (1e-30, 4),
                                     (1e30, 2)])
@pytest.mark.parametrize('kernel', ['gaussian', 'self_tuning'])
def test_large_and_tiny_magnitudes(scale, F, kernel):
    # Squared distances of such float32 features overflow (NaN weights) or
    # underflow (every point a duplicate): the weights must be the float64
    # ones to float32 precision.
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(60, F, generator=gen, dtype=torch.float64) * scale
    x = x.float()
    out = gaussian_knn_graph(x, 6, 3, kernel=kernel)
    assert out[1].dtype == torch.float32
    W = to_dense(*out, 60)
    ref = dense_reference(x, 6, 3, kernel=kernel)
    np.testing.assert_allclose(W, ref, rtol=0, atol=1e-6)
    assert np.array_equal(W != 0, ref != 0)
    # float64 beyond the range of its squares:
    x = torch.randn(30, 3, generator=gen, dtype=torch.float64)
    for scale in [1e160, 1e-160]:
        W = to_dense(*gaussian_knn_graph(x * scale, 5, 2, kernel=kernel), 30)
        np.testing.assert_allclose(W, dense_reference(x, 5, 2, kernel=kernel),
                                   rtol=0, atol=1e-13)


def test_clusters_of_very_different_scales():
    # A cluster of diameter 1e-29 beside points of magnitude 1 (squared
    # distances below the float32 range): not duplicates.
    gen = torch.Generator().manual_seed(17)
    x = torch.cat([torch.randn(10, 2, generator=gen, dtype=torch.float64)
                   * 1e-29, torch.randn(10, 2, generator=gen,
                                        dtype=torch.float64) + 10]).float()
    for kernel in ['gaussian', 'self_tuning']:
        W = to_dense(*gaussian_knn_graph(x, 4, 2, kernel=kernel), 20)
        np.testing.assert_allclose(W, dense_reference(x, 4, 2, kernel=kernel),
                                   rtol=0, atol=1e-6)


def test_half_precision_input():
    torch.manual_seed(18)
    x = torch.randn(50, 3).half()
    edge_index, edge_weight = gaussian_knn_graph(x, 5, 2)
    assert edge_weight.dtype == torch.float16
    W = to_dense(edge_index, edge_weight, 50)  # Computed in float32.
    np.testing.assert_allclose(W, dense_reference(x, 5, 2), rtol=1e-3,
                               atol=1e-4)


def test_numpy_scalars_and_bool_options():
    torch.manual_seed(19)
    x = torch.randn(30, 3)
    ref = gaussian_knn_graph(x, 5, 2, loop=False, chunk_size=4)
    out = gaussian_knn_graph(x, np.int64(5), np.int32(2),
                             loop=np.bool_(False), chunk_size=np.int64(4))
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
    for k in [True, np.bool_(True)]:
        with pytest.raises(ValueError, match="'k' must be an integer"):
            gaussian_knn_graph(x, k, 1)
    # Any other value would be taken as True or False silently:
    for name in ['loop', 'normalize', 'symmetrize']:
        for value in ['no', None, 0, 1.0]:
            with pytest.raises(TypeError, match=f"'{name}' must be True or "
                               f"False"):
                gaussian_knn_graph(x, 5, 2, **{name: value})


def test_options_of_the_exact_search_only(monkeypatch):
    import sys
    import types
    monkeypatch.setitem(sys.modules, 'faiss', types.SimpleNamespace())
    for name in ['chunk_size', 'max_memory', 'num_workers']:
        with pytest.raises(ValueError, match=f"'{name}' applies to "
                           f"backend='exact' only"):
            gaussian_knn_graph(torch.randn(10, 2), 3, 2, backend='faiss',
                               **{name: 4})


def test_gradient_with_duplicates():
    # The weights are differentiable in x (the neighbours fixed), also for
    # duplicate points (zero distances, whose square root has no gradient):
    # compared with autograd through the definition in squared distances.
    torch.manual_seed(20)
    base = torch.randn(20, 3, dtype=torch.float64)
    x = torch.cat([base, base[:8]]).requires_grad_()  # 8 pairs of twins.
    k, bw = 4, 2
    for kernel in ['gaussian', 'self_tuning']:
        edge_index, weight = gaussian_knn_graph(
            x, k, bw, loop=False, normalize=False, symmetrize=False,
            kernel=kernel)
        assert int((weight == 1).sum()) == 16  # Twins.
        coef = torch.linspace(1, 2, weight.numel(), dtype=torch.float64)
        grad, = torch.autograd.grad((weight * coef).sum(), x)
        # The same weights from the squared distances of the same edges
        # (edge (j, i) carries w_ij; s_i from the bandwidth_k-th neighbour
        # of the search, which breaks the ties between twins):
        src, dst = edge_index
        d2 = ((x[src] - x[dst])**2).sum(-1)
        s2 = ((x - x[knn_search(x, k)[1][:, bw - 1]])**2).sum(-1)
        den = s2[dst] if kernel == 'gaussian' else (s2[dst] * s2[src]).sqrt()
        ref = torch.exp(-d2 / den)
        torch.testing.assert_close(weight, ref, rtol=1e-12, atol=0)
        ref_grad, = torch.autograd.grad((ref * coef).sum(), x)
        assert bool(torch.isfinite(grad).all())
        torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-12)


def weights_of_neighbours(x, nbr, bandwidth_k, kernel):
    r"""The dense normalized, symmetrized W (with self loops) of the given
    neighbour lists (sorted by distance), in float64."""
    x = np.asarray(x, dtype=np.float64)
    nbr = np.asarray(nbr)
    N = x.shape[0]
    dist = np.sqrt(((x[:, None, :] - x[None, :, :])**2).sum(-1))
    s = dist[np.arange(N), nbr[:, bandwidth_k - 1]]
    W = np.eye(N)
    for i in range(N):
        for j in nbr[i]:
            den = s[i]**2 if kernel == 'gaussian' else s[i] * s[j]
            W[i, j] = np.exp(-dist[i, j]**2 / den)
    deg = W.sum(1)
    W = W / np.sqrt(np.outer(deg, deg))
    return (W + W.T) / 2


@pytest.mark.parametrize('backend,options', [
    ('faiss_hnsw', dict(hnsw_m=4, ef_construction=8, ef_search=1)),
    ('faiss_ivf', dict(nlist=30, nprobe=1, seed=3)),
])
@pytest.mark.parametrize('kernel', ['gaussian', 'self_tuning'])
def test_approximate_backends_same_weights(backend, options, kernel):
    # The weights of the edges an approximate search finds are those of the
    # one routine (settings of low recall, so that the edges differ from the
    # exact ones; one thread, so that the HNSW graph is reproducible).
    pytest.importorskip('faiss')
    gen = torch.Generator().manual_seed(30)
    x = torch.randn(300, 8, generator=gen, dtype=torch.float64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, nbr = knn_search(x, 6, backend=backend, **options)
        out = gaussian_knn_graph(x, 6, 3, kernel=kernel, backend=backend,
                                 **options)
    finally:
        torch.set_num_threads(threads)
    assert not torch.equal(nbr.sort(1).values,
                           knn_search(x, 6)[1].sort(1).values)
    np.testing.assert_allclose(to_dense(*out, 300),
                               weights_of_neighbours(x, nbr, 3, kernel),
                               rtol=1e-10, atol=1e-13)
    # Probing every cell: the exact graph.
    if backend == 'faiss_ivf':
        out = gaussian_knn_graph(x, 6, 3, kernel=kernel, backend=backend,
                                 nlist=30, nprobe=30)
        ref = gaussian_knn_graph(x, 6, 3, kernel=kernel)
        assert torch.equal(out[0], ref[0])
        torch.testing.assert_close(out[1], ref[1], rtol=1e-12, atol=0)


def test_approximate_options_refused():
    with pytest.raises(ValueError, match="'nprobe' applies to "
                       "backend='faiss_ivf' only"):
        gaussian_knn_graph(torch.randn(10, 2), 3, 2, backend='faiss_hnsw',
                           nprobe=4)
    with pytest.raises(ValueError, match="'hnsw_m' applies to "
                       "backend='faiss_hnsw' only"):
        gaussian_knn_graph(torch.randn(10, 2), 3, 2, hnsw_m=4)
