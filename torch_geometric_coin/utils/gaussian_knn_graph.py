from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.utils import coalesce

from torch_geometric_coin.utils.diffusion_laplacian import diffusion_laplacian

METRICS = ('euclidean', 'cosine')
KERNELS = ('gaussian', 'self_tuning')
BACKENDS = ('exact', 'faiss', 'pyg_lib')

# Columns of the score matrix processed at once inside a query chunk, and the
# group size of the block-minimum pre-selection that makes top-k cheap:
_TILE = 8192
_GROUP = 16
_ROWS = 256


def gaussian_knn_graph(
    x: Tensor,
    k: int,
    bandwidth_k: int,
    batch: Optional[Tensor] = None,
    loop: bool = True,
    normalize: bool = True,
    symmetrize: bool = True,
    metric: str = 'euclidean',
    kernel: str = 'gaussian',
    chunk_size: Optional[int] = None,
    max_memory: int = 256 * 2**20,
    backend: str = 'exact',
    num_workers: Optional[int] = None,
) -> Tuple[Tensor, Tensor]:
    r"""Builds a weighted :math:`k`-nearest-neighbour graph with Gaussian
    edge weights from node features, as used by Convection-Diffusion Networks
    (COIN) for data that come without a graph.

    Every node :math:`i` keeps its :obj:`k` nearest *other* nodes
    :math:`\mathcal{N}_k(i)` and weights them with

    .. math::
        w_{ij} = \exp\left(-\left(\frac{d_{ij}}{s_i}\right)^2\right)
        \quad \textrm{(gaussian)} \qquad
        w_{ij} = \exp\left(-\frac{d_{ij}^2}{s_i s_j}\right)
        \quad \textrm{(self\_tuning)},

    where :math:`s_i` is the distance of node :math:`i` to its
    :obj:`bandwidth_k`-th nearest other node. With :obj:`loop=True`, every
    node gets a self weight :math:`w_{ii} = 1`. Then

    .. math::
        \mathbf{W} \leftarrow \mathbf{D}^{-1/2} \mathbf{W} \mathbf{D}^{-1/2},
        \qquad
        \mathbf{W} \leftarrow \frac{1}{2}(\mathbf{W} + \mathbf{W}^{\top}),

    with :math:`\mathbf{D} = \mathrm{diag}(\mathbf{W} \mathbf{1})`
    (skipped with :obj:`normalize=False` and :obj:`symmetrize=False`,
    respectively).
    With :obj:`k=6, bandwidth_k=3` this is the construction of the COIN
    authors (:obj:`n_top=8, sigma=4`, which count the node itself).

    Duplicate points never produce NaN: the weights are defined by their limit
    :math:`s \to 0^+`, *i.e.*, :math:`w_{ij} = 1` if :math:`d_{ij} = 0` and
    :math:`w_{ij} = 0` if :math:`d_{ij} > 0` whenever the denominator
    vanishes. Degrees are at least :math:`e^{-1}` for the Gaussian kernel, and
    a zero degree (only possible for the self-tuning kernel without self
    loops when all weights underflow) normalizes to zero instead of NaN.

    The neighbour search is exact and never needs :math:`O(N^2)` memory: query
    chunks are scored against all nodes of their graph with the matrix form
    :math:`\|\mathbf{x}_j\|^2 - 2\,\mathbf{x}_i^{\top}\mathbf{x}_j`, a few
    extra candidates are kept with :meth:`torch.topk`, their distances are
    recomputed exactly from the differences :math:`\mathbf{x}_i -
    \mathbf{x}_j`, and rows whose result is not certified by a rounding-error
    bound are recomputed by exhaustive exact search.

    Args:
        x (torch.Tensor): Node features :math:`\mathbf{X} \in
            \mathbb{R}^{N \times F}` (float32 or float64, CPU or CUDA).
        k (int): The number of neighbours of each node, :obj:`k >= 1`, and
            smaller than the number of nodes of each graph.
        bandwidth_k (int): The neighbour whose distance is the bandwidth
            :math:`s_i`, :obj:`1 <= bandwidth_k <= k`.
        batch (torch.Tensor, optional): Batch vector
            :math:`\mathbf{b} \in {\{ 0, \ldots, B-1\}}^N`, which assigns each
            node to a specific graph. Graphs are never connected to each
            other. (default: :obj:`None`)
        loop (bool, optional): If :obj:`True`, adds self weights
            :math:`w_{ii} = 1` before normalization. (default: :obj:`True`)
        normalize (bool, optional): If :obj:`True`, applies the symmetric
            degree normalization. (default: :obj:`True`)
        symmetrize (bool, optional): If :obj:`True`, returns
            :math:`(\mathbf{W} + \mathbf{W}^{\top}) / 2`.
            (default: :obj:`True`)
        metric (str, optional): :obj:`"euclidean"`, or :obj:`"cosine"` for
            the distance :math:`1 - \cos(\mathbf{x}_i, \mathbf{x}_j)`.
            (default: :obj:`"euclidean"`)
        kernel (str, optional): :obj:`"gaussian"` or :obj:`"self_tuning"`.
            (default: :obj:`"gaussian"`)
        chunk_size (int, optional): The number of query nodes scored at once.
            If :obj:`None`, it is chosen from :obj:`max_memory`.
            (default: :obj:`None`)
        max_memory (int, optional): Approximate memory budget in bytes of the
            temporary score matrices. (default: :obj:`256 MiB`)
        backend (str, optional): :obj:`"exact"`, or :obj:`"faiss"` /
            :obj:`"pyg_lib"` to generate the candidates with these libraries
            when installed (their candidates are re-ranked by exact distances,
            but, unlike :obj:`"exact"`, not certified).
            (default: :obj:`"exact"`)
        num_workers (int, optional): On CPU, the number of threads that
            search query chunks in parallel, each running single-threaded
            PyTorch operations (PyTorch's intra-op thread count is set to 1
            for the duration of the search and restored afterwards); this is
            much faster than fine-grained parallelism when the cores are
            shared. If :obj:`None`, uses :meth:`torch.get_num_threads`.
            (default: :obj:`None`)

    Returns:
        (torch.Tensor, torch.Tensor): :obj:`edge_index` of shape
        :obj:`[2, E]`, where edge :obj:`(j, i)` (source :obj:`j`, target
        :obj:`i`) carries :math:`W_{ij}`, and :obj:`edge_weight` of shape
        :obj:`[E]` in the dtype of :obj:`x`. The output is coalesced.

    Example:
        >>> x = torch.randn(100, 16)
        >>> edge_index, edge_weight = gaussian_knn_graph(x, k=6, bandwidth_k=3)
        >>> conv = CoinDiffusionConv(K=10, normalization=None)
        >>> out = conv(x, edge_index, edge_weight)
    """
    x, batch = _check_input(x, k, bandwidth_k, batch, metric, kernel,
                            chunk_size, max_memory, backend, num_workers)
    N = x.size(0)

    dist, col = knn_search(x, k, batch, metric, chunk_size, max_memory,
                           backend, num_workers)  # [N, k], ascending.
    row = torch.arange(N, device=x.device).view(-1, 1).expand(-1, k)

    s = dist[:, bandwidth_k - 1]
    num = dist * dist
    if kernel == 'gaussian':
        den = (s * s).view(-1, 1).expand(-1, k)
    else:
        den = s.view(-1, 1) * s[col]
    ratio = num / den
    # Limit s -> 0+ for duplicate points: exp(-0/0) := 1, exp(-c/0) := 0.
    limit = torch.where(num > 0, torch.full_like(ratio, float('inf')),
                        torch.zeros_like(ratio))
    ratio = torch.where(den > 0, ratio, limit)
    weight = torch.exp(-ratio).view(-1)
    row, col = row.reshape(-1), col.reshape(-1)

    if loop:
        loop_index = torch.arange(N, device=x.device)
        row = torch.cat([row, loop_index])
        col = torch.cat([col, loop_index])
        weight = torch.cat([weight, weight.new_ones(N)])

    if normalize:  # D^-1/2 W D^-1/2, the degrees summed over the neighbours
        weight, _ = diffusion_laplacian(torch.stack([col, row]), weight, N,
                                        'sym', add_self_loops=False)

    if symmetrize:
        row, col = torch.cat([row, col]), torch.cat([col, row])
        weight = torch.cat([weight, weight]) / 2

    edge_index, weight = coalesce(torch.stack([col, row]), weight, N,
                                  reduce='sum')
    return edge_index, weight


def knn_search(
    x: Tensor,
    k: int,
    batch: Optional[Tensor] = None,
    metric: str = 'euclidean',
    chunk_size: Optional[int] = None,
    max_memory: int = 256 * 2**20,
    backend: str = 'exact',
    num_workers: Optional[int] = None,
) -> Tuple[Tensor, Tensor]:
    r"""Returns the distances and indices of the :obj:`k` nearest other
    nodes of every node (within its graph), sorted by ascending distance,
    as two tensors of shape :obj:`[N, k]`. See :func:`gaussian_knn_graph` for
    the arguments; the input is assumed to be validated."""
    if metric == 'cosine':
        norm = x.norm(dim=1, keepdim=True)
        if bool((norm == 0).any()):
            raise ValueError("The cosine metric is undefined for all-zero "
                             "feature vectors")
        x = x / norm

    orig_dtype = x.dtype
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()

    perm: Optional[Tensor] = None
    if batch is not None and bool((batch[1:] < batch[:-1]).any()):
        perm = torch.argsort(batch, stable=True)
        x, batch = x[perm], batch[perm]

    if backend == 'exact':
        d2, idx = _exact_knn(x, k, batch, chunk_size, max_memory,
                             num_workers)
    else:
        d2, idx = _library_knn(x, k, batch, backend)

    if perm is not None:  # Back to the input order:
        out_d2, out_idx = torch.empty_like(d2), torch.empty_like(idx)
        out_d2[perm], out_idx[perm] = d2, perm[idx]
        d2, idx = out_d2, out_idx

    dist = d2 / 2 if metric == 'cosine' else d2.sqrt()
    return dist.to(orig_dtype), idx


def _check_input(x, k, bandwidth_k, batch, metric, kernel, chunk_size,
                 max_memory, backend,
                 num_workers) -> Tuple[Tensor, Optional[Tensor]]:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"'x' must be a floating point tensor (got {got})")
    if x.dim() == 1:
        x = x.view(-1, 1)
    if x.dim() != 2:
        raise ValueError(f"'x' must be of shape [N, F] (got {tuple(x.shape)})")
    if x.size(0) == 0 or x.size(1) == 0:
        raise ValueError(f"'x' is empty (shape {tuple(x.shape)})")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("'x' contains NaN or infinite values")
    for name, value in (('k', k), ('bandwidth_k', bandwidth_k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"'{name}' must be an integer (got {value!r})")
    if k < 1:
        raise ValueError(f"'k' must be at least 1 (got {k})")
    if not 1 <= bandwidth_k <= k:
        raise ValueError(f"'bandwidth_k' must lie in [1, k={k}] "
                         f"(got {bandwidth_k})")
    if metric not in METRICS:
        raise ValueError(f"'metric' must be one of {METRICS} (got {metric!r})")
    if kernel not in KERNELS:
        raise ValueError(f"'kernel' must be one of {KERNELS} (got {kernel!r})")
    if backend not in BACKENDS:
        raise ValueError(f"'backend' must be one of {BACKENDS} "
                         f"(got {backend!r})")
    if chunk_size is not None and (not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise ValueError(f"'chunk_size' must be a positive integer "
                         f"(got {chunk_size!r})")
    if num_workers is not None and (not isinstance(num_workers, int)
                                    or num_workers < 1):
        raise ValueError(f"'num_workers' must be a positive integer "
                         f"(got {num_workers!r})")
    if max_memory <= 0:
        raise ValueError(f"'max_memory' must be positive (got {max_memory})")

    N = x.size(0)
    if batch is None:
        if k >= N:
            raise ValueError(f"'k' must be smaller than the number of nodes "
                             f"(got k={k} for {N} nodes)")
        return x, None
    if not isinstance(batch, Tensor) or batch.dim() != 1 \
            or batch.numel() != N:
        shape = tuple(batch.shape) if isinstance(batch, Tensor) else batch
        raise ValueError(f"'batch' must be a vector of length {N} to match "
                         f"'x' (got {shape})")
    if batch.dtype.is_floating_point or batch.dtype == torch.bool:
        raise ValueError(f"'batch' must hold integer graph ids "
                         f"(got {batch.dtype})")
    if batch.device != x.device:
        raise ValueError(f"'batch' is on {batch.device} but 'x' on {x.device}")
    batch = batch.long()
    if int(batch.min()) < 0:
        raise ValueError("'batch' contains negative graph ids")
    count = torch.bincount(batch)
    small = ((count > 0) & (count <= k)).nonzero().view(-1)
    if small.numel() > 0:
        g = int(small[0])
        raise ValueError(f"'k' must be smaller than the number of nodes of "
                         f"every graph (got k={k}, but graph {g} has "
                         f"{int(count[g])} nodes)")
    return x, batch


def _groups(ptr: List[int], rows: int) -> List[Tuple[int, int, bool]]:
    r"""Splits the node ranges of sorted graphs (given by :obj:`ptr`) into
    groups :obj:`(start, end, mixed)`: a single graph of at least :obj:`rows`
    nodes, or consecutive smaller graphs collected up to about :obj:`rows`
    nodes (:obj:`mixed=True` if there are several)."""
    out: List[Tuple[int, int, bool]] = []
    start, num_graphs = ptr[0], 0
    for g in range(len(ptr) - 1):
        size = ptr[g + 1] - ptr[g]
        if num_graphs > 0 and (size >= rows or ptr[g + 1] - start > rows):
            out.append((start, ptr[g], num_graphs > 1))
            start, num_graphs = ptr[g], 0
        num_graphs += 1
    out.append((start, ptr[-1], num_graphs > 1))
    return out


def _exact_knn(x: Tensor, k: int, batch: Optional[Tensor],
               chunk_size: Optional[int], max_memory: int,
               num_workers: Optional[int] = None,
               num_queries: Optional[int] = None) -> Tuple[Tensor, Tensor]:
    # `num_queries` (benchmarks only): search the first nodes of one graph.
    N, F = x.size()
    device, dtype = x.device, x.dtype
    kk = k + max(8, k // 2)  # Candidates kept from the matrix form.

    if batch is None:
        ptr = [0, N]
    else:
        count = torch.bincount(batch)
        ptr = [0] + torch.cumsum(count, 0).tolist()
        ptr = sorted(set(ptr))  # Drop empty graphs.
    tile, rows_max = _TILE, _ROWS
    if device.type != 'cpu':  # Fewer, larger kernels on accelerators.
        num_workers, tile, rows_max = 1, 8 * _TILE, 16 * _ROWS
    elif num_workers is None:
        num_workers = torch.get_num_threads()
    if chunk_size is None:  # Score tile + block minima + masks per row.
        chunk_size = max_memory // (3 * tile * x.element_size() *
                                    num_workers)
        chunk_size = max(1, min(rows_max, chunk_size))

    out_d2 = x.new_empty(N, k)
    out_idx = torch.empty(N, k, dtype=torch.long, device=device)
    rel_tol = (2 * F + 16) * torch.finfo(dtype).eps
    inf = float('inf')

    def search(xg, xc, xc_t, sq, tol, bg, start, kq, a):
        n = xg.size(0)
        b = min(a + chunk_size, n)
        q = xc[a:b]
        rows = torch.arange(b - a, device=device)
        vs: List[Tensor] = []
        ids: List[Tensor] = []
        width = 0
        for t0 in range(0, n, tile):
            t1 = min(t0 + tile, n)
            s = torch.addmm(sq[t0:t1].view(1, -1), q, xc_t[:, t0:t1],
                            alpha=-2)
            if a < t1 and t0 < b:  # Exclude the query node itself.
                self_col = rows + a - t0
                m = (self_col >= 0) & (self_col < t1 - t0)
                s[rows[m], self_col[m]] = inf
            if bg is not None:
                s.masked_fill_(bg[a:b].view(-1, 1) != bg[t0:t1].view(1, -1),
                               inf)
            v, i = _candidates(s, kq)
            vs.append(v)
            ids.append(i + t0)
            width += v.size(1)
            if width > 4096 or t1 == n:  # Merge the candidates of the tiles:
                v, i = torch.cat(vs, 1), torch.cat(ids, 1)
                v, j = torch.topk(v, min(kq, v.size(1)), dim=1,
                                  largest=False, sorted=False)
                vs, ids, width = [v], [i.gather(1, j)], v.size(1)
        best_v, best_i = vs[0], ids[0]

        # Exact squared distances of the candidates (on the input data):
        valid = best_v < inf
        d2 = _exact_sq_dist(xg[a:b], xg, best_i).masked_fill(~valid, inf)
        d2, j = torch.topk(d2, k, dim=1, largest=False, sorted=True)
        idx = best_i.gather(1, j)

        # Certify: every node left out has a score >= the largest kept one
        # (unless all valid nodes were kept), hence a true squared distance
        # >= that score + |q|^2 - tol.
        bound = best_v.max(dim=1).values + sq[a:b] - 2 * tol[a:b]
        bad = (valid.all(dim=1) & (d2[:, -1] > bound)).nonzero().view(-1)
        if kq < n - 1 and bad.numel() > 0:
            d2[bad], idx[bad] = _brute_force(xg, bg, a + bad, k, max_memory)
        out_d2[start + a:start + b] = d2
        out_idx[start + a:start + b] = idx + start

    num_threads = torch.get_num_threads()
    executor = None
    if num_workers > 1:  # Coarse-grained parallelism over query chunks:
        torch.set_num_threads(1)
        executor = ThreadPoolExecutor(num_workers)
    try:
        for start, end, mixed in _groups(ptr, chunk_size):
            xg = x[start:end]
            xc = xg - xg.mean(dim=0, keepdim=True)  # Less cancellation.
            sq = (xc * xc).sum(dim=1)
            tol = rel_tol * (sq.max() + sq)  # Bounds the error of scores.
            ctx = (xg, xc, xc.t().contiguous(), sq, tol,
                   batch[start:end] if mixed else None, start,
                   min(kk, end - start - 1))
            n = end - start if num_queries is None else num_queries
            if executor is None:
                for a in range(0, n, chunk_size):
                    search(*ctx, a)
            else:
                list(executor.map(lambda a: search(*ctx, a),
                                  range(0, n, chunk_size)))
    finally:
        if executor is not None:
            executor.shutdown()
            torch.set_num_threads(num_threads)

    return out_d2, out_idx


def _candidates(s: Tensor, kq: int) -> Tuple[Tensor, Tensor]:
    r"""Returns a subset of the columns of :obj:`s` (values and indices) that
    contains the :obj:`kq` smallest entries of every row, using block minima
    over :obj:`_GROUP` strided column slices to avoid a top-k over all."""
    c, T = s.size()
    m = T // _GROUP
    if m <= 4 * kq or T % _GROUP != 0:
        v, i = torch.topk(s, min(kq, T), dim=1, largest=False, sorted=False)
        return v, i
    # Each of the kq smallest entries lies in a column block whose minimum is
    # among the kq smallest block minima.
    block_min = s.view(c, _GROUP, m).amin(dim=1)
    _, blocks = torch.topk(block_min, kq, dim=1, largest=False, sorted=False)
    offset = torch.arange(_GROUP, device=s.device).view(1, -1, 1) * m
    cols = (blocks.view(c, 1, kq) + offset).view(c, -1)
    return s.gather(1, cols), cols


def _exact_sq_dist(q: Tensor, x: Tensor, idx: Tensor) -> Tensor:
    diff = x[idx] - q.unsqueeze(1)
    return (diff * diff).sum(dim=-1)


def _brute_force(x: Tensor, batch: Optional[Tensor], rows: Tensor, k: int,
                 max_memory: int) -> Tuple[Tensor, Tensor]:
    r"""Exhaustive exact search from the differences, for the few query
    :obj:`rows` the matrix form cannot certify."""
    n, F = x.size()
    step = max(1, max_memory // (max(1, rows.numel()) * F * x.element_size()))
    best_d = best_i = None
    for t0 in range(0, n, step):
        t1 = min(t0 + step, n)
        diff = x[t0:t1].unsqueeze(0) - x[rows].unsqueeze(1)
        d2 = (diff * diff).sum(dim=-1)
        cols = torch.arange(t0, t1, device=x.device)
        d2.masked_fill_(cols.view(1, -1) == rows.view(-1, 1), float('inf'))
        if batch is not None:
            d2.masked_fill_(batch[t0:t1].view(1, -1)
                            != batch[rows].view(-1, 1), float('inf'))
        i = cols.view(1, -1).expand_as(d2)
        if best_d is not None:
            d2, i = torch.cat([best_d, d2], 1), torch.cat([best_i, i], 1)
        best_d, j = torch.topk(d2, min(k, d2.size(1)), dim=1, largest=False,
                               sorted=True)
        best_i = i.gather(1, j)
    return best_d, best_i


def _library_knn(x: Tensor, k: int, batch: Optional[Tensor],
                 backend: str) -> Tuple[Tensor, Tensor]:
    r"""Candidates from faiss or pyg-lib (both use the matrix form too), with
    self excluded and re-ranked by exact distances."""
    N = x.size(0)
    ptr = [0, N] if batch is None else sorted(
        set([0] + torch.cumsum(torch.bincount(batch), 0).tolist()))
    min_size = min(ptr[g + 1] - ptr[g] for g in range(len(ptr) - 1))
    kq = min(k + max(8, k // 2) + 1, min_size)

    if backend == 'faiss':
        try:
            import faiss
        except ImportError as e:
            raise ImportError("backend='faiss' requires the 'faiss' package "
                              "(pip install faiss-cpu)") from e
        parts = []
        for g in range(len(ptr) - 1):
            xg = x[ptr[g]:ptr[g + 1]].detach().cpu().float().contiguous()
            index = faiss.IndexFlatL2(xg.size(1))
            index.add(xg.numpy())
            _, i = index.search(xg.numpy(), kq)
            parts.append(torch.from_numpy(i).long() + ptr[g])
        cand = torch.cat(parts, 0).to(x.device)
    else:
        import torch_geometric.typing
        if not torch_geometric.typing.WITH_KNN:
            raise ImportError("backend='pyg_lib' requires 'pyg-lib>=0.6.0'")
        from torch_geometric.nn import knn
        assign = knn(x, x, kq, batch, batch)
        perm = torch.argsort(assign[0], stable=True)
        cand = assign[1][perm].view(N, kq)

    d2 = _exact_sq_dist(x, x, cand)
    self_mask = cand == torch.arange(N, device=x.device).view(-1, 1)
    d2 = d2.masked_fill(self_mask | (cand < 0), float('inf'))
    d2, j = torch.topk(d2, k, dim=1, largest=False, sorted=True)
    return d2, cand.gather(1, j)
