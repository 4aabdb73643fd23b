import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torch_geometric_coin.utils import gaussian_knn_graph
from torch_geometric_coin.utils._gaussian_knn_graph import _exact_knn


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
                    symmetrize=True, kernel='gaussian'):
    x = np.asarray(x, dtype=np.float64)
    N = x.shape[0]
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


@pytest.mark.parametrize('kernel', ['gaussian', 'self_tuning'])
@pytest.mark.parametrize('loop,normalize,symmetrize', [
    (True, True, True), (False, True, False), (False, False, True)])
def test_dense_reference(kernel, loop, normalize, symmetrize):
    torch.manual_seed(1)
    x = torch.rand(80, 4, dtype=torch.float64) + 0.1
    kwargs = dict(loop=loop, normalize=normalize, symmetrize=symmetrize,
                  kernel=kernel)
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


def test_cosine_through_normalized_features():
    # The documented replacement of a cosine metric: unit rows have the
    # neighbours of the cosine distance and d^2 = 2 - 2 cos.
    torch.manual_seed(8)
    x = torch.randn(100, 6, dtype=torch.float64)
    unit = torch.nn.functional.normalize(x, dim=-1)
    W = to_dense(*gaussian_knn_graph(unit, 5, 2), 100)
    cos = (unit @ unit.t()).fill_diagonal_(-2)
    nbr = cos.topk(5, dim=1).indices
    np.testing.assert_allclose(W, weights_of_neighbours(unit, nbr, 2,
                                                        'gaussian'),
                               rtol=0, atol=1e-12)


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
     'nodes of graph 1 '),
    ((torch.randn(6, 2), 2, 1), dict(batch=torch.zeros(6)), "'batch'"),
    ((torch.randn(6, 2), 2, 1), dict(kernel='box'), 'kernel'),
    ((torch.randn(6, 2), 2, 1), dict(chunk_size=0), 'chunk_size'),
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
        s2 = ((x - x[_exact_knn(x.detach(), k)[:, bw - 1]])**2).sum(-1)
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


# The exact search ############################################################

def reference_knn(x, k, batch=None):
    r"""The k nearest other nodes of the same graph, brute force in float64
    from the differences."""
    x = x.double()
    dist = (x.unsqueeze(1) - x.unsqueeze(0)).norm(dim=-1)
    dist.fill_diagonal_(float('inf'))
    if batch is not None:
        dist[batch.view(-1, 1) != batch.view(1, -1)] = float('inf')
    return dist.topk(k, dim=1, largest=False)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('chunk_size', [1, 7, 64, None])
def test_exact_search(dtype, chunk_size):
    # Unsorted graphs of very different sizes (chunks span several graphs
    # and split large ones), sparse graph ids, and a subset of the queries.
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(500, 8, generator=gen, dtype=dtype)
    batch = torch.cat([torch.zeros(300), torch.ones(150),
                       torch.arange(2, 7).repeat_interleave(10)]).long()
    batch = (batch * 10**12)[torch.randperm(500, generator=gen)]
    ref = reference_knn(x, 6, batch).indices
    assert torch.equal(_exact_knn(x, 6, batch, chunk_size), ref)
    rows = torch.tensor([499, 3, 250, 3])
    assert torch.equal(_exact_knn(x, 6, batch, chunk_size, rows), ref[rows])
    assert torch.equal(_exact_knn(x, 6), reference_knn(x, 6).indices)


@pytest.mark.parametrize('chunk_size', [5, None])
def test_exact_search_of_large_graphs(monkeypatch, chunk_size):
    # Graphs of more than 64 (k + 8) nodes: the candidates come from the
    # blocks of the smallest minima (and the last columns), not a full top-k.
    import torch_geometric_coin.utils._gaussian_knn_graph as module
    shortcut, smallest = [], module._smallest

    def spy(s, n):
        shortcut.append(s.size(1) // 16 > 4 * n)
        return smallest(s, n)

    monkeypatch.setattr(module, '_smallest', spy)
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(3003, 6, generator=gen, dtype=torch.float64)
    batch = (torch.arange(3003) < 1201).long()
    ref = reference_knn(x, 5, batch).indices
    assert torch.equal(_exact_knn(x, 5, batch, chunk_size), ref)
    assert any(shortcut)


def test_same_neighbours_as_sklearn():
    from sklearn.neighbors import NearestNeighbors
    x = torch.randn(600, 16, generator=torch.Generator().manual_seed(2))
    _, ref = NearestNeighbors(n_neighbors=11).fit(
        x.double().numpy()).kneighbors(x.double().numpy())
    ours = _exact_knn(x, 10)
    for i in range(600):
        assert set(ours[i].tolist()) == set(ref[i].tolist()) - {i}


@pytest.mark.parametrize('batched', [False, True])
def test_certification_fallback(monkeypatch, batched):
    # A tiny cluster beside far away points: the matrix form cannot order
    # the cluster in float32; the fallback (from the differences) must.
    gen = torch.Generator().manual_seed(5)
    x = torch.cat([torch.randn(50, 4, generator=gen) * 1e-4,
                   torch.randn(50, 4, generator=gen) * 1e4])
    batch = torch.arange(100) % 2 if batched else None
    calls = []
    cdist = torch.cdist

    def spy(a, b, **kwargs):
        calls.append(a.size(0))
        return cdist(a, b, **kwargs)

    monkeypatch.setattr(torch, 'cdist', spy)
    index = _exact_knn(x, 5, batch)
    assert sum(calls) > 0
    # (The far points see the cluster as ties in float32.)
    assert torch.equal(index[:50], reference_knn(x, 5, batch).indices[:50])


@pytest.mark.parametrize('scale', [1e30, 1e-30, 1e-40])
def test_exact_search_any_magnitude(scale):
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(80, 5, generator=gen, dtype=torch.float64) * scale
    assert torch.equal(_exact_knn(x.float(), 5),
                       reference_knn(x.float(), 5).indices)
    x = torch.tensor([[0.], [1e-30], [3e-30], [7e-30], [1.], [2.], [4.]])
    assert _exact_knn(x, 2)[:4].tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]


def test_no_thread_settings_changed(monkeypatch):
    def refuse(*args):
        raise AssertionError('a process-wide thread setting was changed')

    monkeypatch.setattr(torch, 'set_num_threads', refuse)
    x = torch.randn(3000, 4, generator=torch.Generator().manual_seed(3))
    gaussian_knn_graph(x, 5, 2, batch=torch.arange(3000) % 3)


# Precomputed neighbours ######################################################

@pytest.mark.parametrize('kernel', ['gaussian', 'self_tuning'])
def test_neighbors_give_the_weights_of_those_neighbours(kernel):
    # Any neighbour lists (random ones, in any order): the weights of the
    # exact distances, sorted per row; the exact ones give the exact graph.
    gen = torch.Generator().manual_seed(30)
    x = torch.randn(60, 3, generator=gen, dtype=torch.float64)
    nbr = torch.stack([torch.randperm(59, generator=gen)[:6] for _ in
                       range(60)])
    nbr = nbr + (nbr >= torch.arange(60).view(-1, 1)).long()  # No self.
    out = gaussian_knn_graph(x, 6, 3, kernel=kernel, neighbors=nbr)
    srt = nbr.gather(1, (x[nbr] - x.unsqueeze(1)).norm(dim=-1).argsort(1))
    np.testing.assert_allclose(to_dense(*out, 60),
                               weights_of_neighbours(x, srt, 3, kernel),
                               rtol=1e-12, atol=1e-14)
    exact = _exact_knn(x, 6)
    ref = gaussian_knn_graph(x, 6, 3, kernel=kernel)
    for n in (exact, exact.flip(1).int()):
        out = gaussian_knn_graph(x, 6, 3, kernel=kernel, neighbors=n)
        assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])


@pytest.mark.parametrize('neighbors,error,match', [
    ([[1, 2]] * 5, ValueError, r'integer tensor .* \(got list\)'),
    (torch.tensor([[1, 2]] * 5).float(), ValueError, 'got torch.float32'),
    (torch.tensor([[1, 2]] * 4), ValueError, r'shape \[N, k\] = \[5, 2\]'),
    (torch.tensor([[1, 2]] * 4 + [[1, -1]]), ValueError, 'outside'),
    (torch.tensor([[1, 2]] * 4 + [[1, 5]]), ValueError, 'outside'),
    (torch.tensor([[1, 2]] * 5), ValueError, 'row 1 holds the node itself'),
    (torch.tensor([[1, 1], [2, 3], [3, 4], [4, 0], [0, 1]]), ValueError,
     r'row 0 holds a neighbour twice: \[1, 1\]'),
])
def test_neighbors_errors(neighbors, error, match):
    with pytest.raises(error, match="'neighbors' must"):
        gaussian_knn_graph(torch.randn(5, 2), 2, 1, neighbors=neighbors)
    with pytest.raises(error, match=match):
        gaussian_knn_graph(torch.randn(5, 2), 2, 1, neighbors=neighbors)
    with pytest.raises(ValueError, match="'chunk_size' applies to the exact"):
        gaussian_knn_graph(torch.randn(5, 2), 2, 1, chunk_size=2,
                           neighbors=torch.tensor([[1, 2]] * 5))


def crossing_neighbors(x, batch, k):
    r"""A batched approximate search done wrong: one faiss index over the
    points of all graphs (PyG's flat :class:`L2KNNIndex`), the query itself
    excluded."""
    from torch_geometric.nn.pool import L2KNNIndex
    index = L2KNNIndex(x)
    self_loops = torch.arange(x.size(0)).repeat(2, 1)
    return index.search(x, k, exclude_links=self_loops).index


def test_neighbors_from_other_graphs_are_refused():
    # Two interleaved graphs of the same distribution: a global index finds
    # neighbours in the other graph, which the batch keeps apart.
    gen = torch.Generator().manual_seed(31)
    x = torch.randn(200, 4, generator=gen)
    batch = torch.arange(200) % 2
    nbr = torch.stack([torch.randperm(99, generator=gen)[:5] for _ in
                       range(200)]) * 2 + 1 - batch.view(-1, 1)
    with pytest.raises(ValueError, match="row 0 holds a node of another "
                       "graph of 'batch'"):
        gaussian_knn_graph(x, 5, 2, batch=batch, neighbors=nbr)
    pytest.importorskip('faiss')
    nbr = crossing_neighbors(x, batch, 5)
    assert bool((batch[nbr] != batch.view(-1, 1)).any())
    with pytest.raises(ValueError, match="another graph of 'batch'"):
        gaussian_knn_graph(x, 5, 2, batch=batch, neighbors=nbr)
    # An index per graph: accepted, and (flat indexes) the exact graph.
    from torch_geometric.nn.pool import L2KNNIndex
    nbr = torch.empty(200, 5, dtype=torch.long)
    for g in range(2):
        node = (batch == g).nonzero().view(-1)
        self_loops = torch.arange(node.numel()).repeat(2, 1)
        found = L2KNNIndex(x[node]).search(x[node], 5, self_loops).index
        nbr[node] = node[found]
    out = gaussian_knn_graph(x, 5, 2, batch=batch, neighbors=nbr)
    ref = gaussian_knn_graph(x, 5, 2, batch=batch)
    assert torch.equal(out[0], ref[0])
    torch.testing.assert_close(out[1], ref[1], rtol=1e-6, atol=0)


def test_approximate_neighbors_from_pyg():
    # PyG's IVF-PQ index (ApproxL2KNNIndex): a few neighbours missed, the
    # weights those of the neighbours found.
    pytest.importorskip('faiss')
    from torch_geometric.nn.pool import ApproxL2KNNIndex
    gen = torch.Generator().manual_seed(32)
    x = torch.randn(1000, 8, generator=gen)
    index = ApproxL2KNNIndex(num_cells=16, num_cells_to_visit=2,
                             bits_per_vector=4, emb=x)
    nbr = index.search(x, 6, torch.arange(1000).repeat(2, 1)).index
    out = gaussian_knn_graph(x, 6, 3, neighbors=nbr)
    exact = _exact_knn(x, 6)
    found = (nbr.unsqueeze(2) == exact.unsqueeze(1)).any(1).float().mean()
    assert 0.5 < float(found) < 1
    srt = nbr.gather(1, (x[nbr] - x.unsqueeze(1)).norm(dim=-1).argsort(1))
    np.testing.assert_allclose(to_dense(*out, 1000),
                               weights_of_neighbours(x, srt, 3, 'gaussian'),
                               rtol=1e-5, atol=1e-6)
