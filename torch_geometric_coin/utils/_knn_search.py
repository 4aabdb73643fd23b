import math
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from torch_geometric_coin._checks import check_number

METRICS = ('euclidean', 'cosine')
BACKENDS = ('exact', 'faiss', 'faiss_hnsw', 'faiss_ivf', 'pyg_lib')
MAX_MEMORY = 256 * 2**20  # The default memory budget in bytes.
# The options of the approximate backends, with their defaults (None: chosen
# per graph, see `_ivf_lists`), and the smallest value allowed:
APPROXIMATE_OPTIONS = {
    'faiss_hnsw': {'hnsw_m': (32, 2), 'ef_construction': (80, 1),
                   'ef_search': (64, 1)},
    'faiss_ivf': {'nlist': (None, 1), 'nprobe': (8, 1), 'seed': (1234, 0)},
}
# k-means of the IVF coarse quantizer: iterations and training points per
# list (a seeded sample of the graph's points when it has more):
_IVF_NITER = 10
_IVF_POINTS_PER_LIST = 64

# Columns of the score matrix processed at once inside a query chunk, and the
# group size of the block-minimum pre-selection that makes top-k cheap:
_TILE = 8192
_GROUP = 16
_ROWS = 256


def knn_search(
    x: Tensor,
    k: int,
    batch: Optional[Tensor] = None,
    y: Optional[Tensor] = None,
    batch_y: Optional[Tensor] = None,
    metric: str = 'euclidean',
    chunk_size: Optional[int] = None,
    max_memory: Optional[int] = None,
    backend: str = 'exact',
    num_workers: Optional[int] = None,
    hnsw_m: Optional[int] = None,
    ef_construction: Optional[int] = None,
    ef_search: Optional[int] = None,
    nlist: Optional[int] = None,
    nprobe: Optional[int] = None,
    seed: Optional[int] = None,
) -> Tuple[Tensor, Tensor]:
    r"""Finds for each query point the :obj:`k` nearest points of
    :obj:`x` within the same graph, exactly (or approximately with
    :obj:`backend="faiss_hnsw"` or :obj:`"faiss_ivf"`).

    Without :obj:`y`, the queries are the points of :obj:`x` themselves and
    each query's own point is excluded (its :obj:`k` nearest *other*
    points, the neighbourhoods of a :math:`k`-NN graph). With :obj:`y`, as
    in :func:`torch_geometric.nn.knn`, the queries are the rows of
    :obj:`y` and nothing is excluded (so :obj:`knn_search(x, k, y=x)`
    returns every point as its own nearest neighbour). The distance is

    .. math::
        d(\mathbf{y}_i, \mathbf{x}_j) = \|\mathbf{y}_i - \mathbf{x}_j\|_2
        \quad \textrm{(euclidean)} \qquad
        d(\mathbf{y}_i, \mathbf{x}_j) = 1 - \cos(\mathbf{y}_i,
        \mathbf{x}_j) \quad \textrm{(cosine)}.

    The search never needs :math:`O(N M)` memory: query chunks are scored
    against all points of their graph with the matrix form
    :math:`\|\mathbf{x}_j\|^2 - 2\,\mathbf{y}_i^{\top}\mathbf{x}_j`, a few
    extra candidates are kept with :meth:`torch.topk`, their distances are
    recomputed exactly from the differences :math:`\mathbf{y}_i -
    \mathbf{x}_j`, and queries whose result is not certified by a
    rounding-error bound are recomputed by exhaustive exact search.
    The points are first scaled by a power of two (exactly), so that any
    finite features give correct distances, however large or small their
    magnitude: a :class:`FloatingPointError` is raised only if a returned
    distance itself exceeds the range of the dtype of :obj:`x`.

    The approximate backends build one `faiss <https://github.com/
    facebookresearch/faiss>`_ index per graph (on CPU, in float32, from the
    points scaled as above, or the unit rows for :obj:`"cosine"`): a
    hierarchical navigable small world graph (:obj:`"faiss_hnsw"`,
    :class:`faiss.IndexHNSWFlat`) or an inverted file of :obj:`nlist`
    k-means cells of which the :obj:`nprobe` nearest are scanned
    (:obj:`"faiss_ivf"`, :class:`faiss.IndexIVFFlat`). They return
    :obj:`k + max(8, k // 2)` candidates per query, which are re-ranked by
    the exact distances, so the output has the format and the semantics of
    the exact search (the query's own point excluded without :obj:`y`,
    duplicates of it kept at distance :obj:`0`, no repeated neighbour, the
    distances exact for the neighbours found), but a neighbour may be
    missed. Queries left with fewer than :obj:`k` candidates (*e.g.*, IVF
    cells with few points) are searched exhaustively. With the defaults,
    the recall against the exact search was :obj:`0.976` (HNSW, 8.5 times
    faster than the exact search) and :obj:`0.984` (IVF, 14 times faster) at
    :obj:`k = 10` on :math:`10^6` points of a 64-dimensional Gaussian
    mixture of intrinsic dimension 8 (see :obj:`benchmarks/knn.py`); it
    depends on the data (it is lower on data of a high intrinsic
    dimension, whose nearest neighbours are nearly equidistant). faiss uses
    :meth:`torch.get_num_threads` threads for the search (restored
    afterwards). The IVF index is deterministic given :obj:`seed`; the
    HNSW graph is deterministic with one thread only (its insertions run in
    parallel).

    Args:
        x (torch.Tensor): The points searched, :math:`\mathbf{X} \in
            \mathbb{R}^{N \times F}` (floating point, finite, CPU or
            CUDA; a vector counts as :obj:`F = 1`).
        k (int): The number of neighbours, :obj:`k >= 1`: smaller than the
            number of points of each graph of :obj:`x` without :obj:`y`,
            at most that number with :obj:`y`.
        batch (torch.Tensor, optional): Batch vector :math:`\mathbf{b} \in
            {\{ 0, \ldots, B-1\}}^N` of :obj:`x`, which assigns each point to
            a specific graph; neighbours come from the query's graph only.
            (default: :obj:`None`)
        y (torch.Tensor, optional): The query points :math:`\mathbf{Y} \in
            \mathbb{R}^{M \times F}`, in the dtype and on the device of
            :obj:`x`. If :obj:`None`, the points of :obj:`x` search their
            nearest other points. (default: :obj:`None`)
        batch_y (torch.Tensor, optional): Batch vector of :obj:`y`, given
            together with :obj:`batch`. (default: :obj:`None`)
        metric (str, optional): :obj:`"euclidean"` or :obj:`"cosine"`.
            (default: :obj:`"euclidean"`)
        chunk_size (int, optional): The number of queries scored at once
            (:obj:`backend="exact"` only). If :obj:`None`, it is chosen from
            :obj:`max_memory`. (default: :obj:`None`)
        max_memory (int, optional): Approximate memory budget in bytes of the
            temporary score matrices (:obj:`backend="exact"` only). If
            :obj:`None`, 256 MiB. (default: :obj:`None`)
        backend (str, optional): :obj:`"exact"`, or :obj:`"faiss"` /
            :obj:`"pyg_lib"` to generate the candidates with these libraries
            when installed (their candidates are re-ranked by exact distances,
            but, unlike :obj:`"exact"`, not certified).
            :obj:`"faiss_hnsw"` and :obj:`"faiss_ivf"` search approximately
            (see above). (default: :obj:`"exact"`)
        num_workers (int, optional): On CPU, the number of threads that
            search query chunks in parallel, each running single-threaded
            PyTorch operations (PyTorch's intra-op thread count is set to 1
            for the duration of the search and restored afterwards); this is
            much faster than fine-grained parallelism when the cores are
            shared (:obj:`backend="exact"` only; on other devices only
            :obj:`None` or :obj:`1`). If :obj:`None`, uses
            :meth:`torch.get_num_threads`. (default: :obj:`None`)
        hnsw_m (int, optional): The number of links of each node of the HNSW
            graph (faiss's :obj:`M`), :obj:`>= 2`; more links, higher recall
            and memory (:obj:`backend="faiss_hnsw"` only, as
            :obj:`ef_construction` and :obj:`ef_search`). If :obj:`None`,
            :obj:`32`. (default: :obj:`None`)
        ef_construction (int, optional): The candidate list size while
            building the HNSW graph (faiss's :obj:`efConstruction`). If
            :obj:`None`, :obj:`80`. (default: :obj:`None`)
        ef_search (int, optional): The candidate list size of an HNSW search
            (faiss's :obj:`efSearch`; at least the number of candidates,
            :obj:`k + max(8, k // 2)`, is used). If :obj:`None`, :obj:`64`.
            (default: :obj:`None`)
        nlist (int, optional): The number of IVF cells of every graph, at
            most its number of points (:obj:`backend="faiss_ivf"` only, as
            :obj:`nprobe` and :obj:`seed`). If :obj:`None`, chosen per graph
            of :math:`n` points as :math:`\min(\lceil 4 \sqrt{n} \rceil,
            \max(1, \lfloor n / 39 \rfloor))` (faiss's rule of thumb, with
            at least 39 training points per cell). (default: :obj:`None`)
        nprobe (int, optional): The number of IVF cells scanned per query
            (all cells, an exact search, if it exceeds :obj:`nlist`). If
            :obj:`None`, :obj:`8`. (default: :obj:`None`)
        seed (int, optional): The seed of the IVF k-means (its training
            sample of at most :obj:`64` points per cell and its
            initialisation), :obj:`>= 0`. If :obj:`None`, :obj:`1234`.
            (default: :obj:`None`)

    Returns:
        (torch.Tensor, torch.Tensor): The distances, in the dtype of
        :obj:`x`, and the indices into :obj:`x` of the neighbours of each
        query, both of shape :obj:`[M, k]` (:obj:`[N, k]` without :obj:`y`),
        sorted by ascending distance.

    Example:
        >>> x, y = torch.randn(1000, 16), torch.randn(10, 16)
        >>> dist, index = knn_search(x, 5, y=y)  # 5 nearest rows of x
        >>> dist, index = knn_search(x, 5)  # 5 nearest other rows of x
        >>> dist, index = knn_search(x, 5, backend='faiss_hnsw', ef_search=32)
    """
    d, idx, exponent = _search(
        x, k, batch, y, batch_y, metric, chunk_size, max_memory, backend,
        num_workers, hnsw_m=hnsw_m, ef_construction=ef_construction,
        ef_search=ef_search, nlist=nlist, nprobe=nprobe, seed=seed)
    if metric == 'cosine':
        dist = d * d / 2  # 1 - cos(a, b) = |a - b|^2 / 2 for unit vectors.
    else:
        dist = _times_pow2(d, exponent)
    out = dist.to(x.dtype)
    if not bool(torch.isfinite(out).all()):
        of = "'x'" if y is None else "'x' and 'y'"
        raise FloatingPointError(
            f"The distances between the points of {of} exceed the range of "
            f"{x.dtype}; scale the features down or pass them in float64")
    return out, idx


def _search(
    x: Tensor,
    k: int,
    batch: Optional[Tensor],
    y: Optional[Tensor],
    batch_y: Optional[Tensor],
    metric: str,
    chunk_size: Optional[int],
    max_memory: Optional[int],
    backend: str,
    num_workers: Optional[int],
    **options: Optional[int],
) -> Tuple[Tensor, Tensor, int]:
    r"""The search of :func:`knn_search` (same arguments), returning the
    Euclidean distances of the points scaled by :math:`2^{-e}` (in float32
    or float64), the indices, and the exponent :math:`e` (:obj:`0` for the
    cosine metric, whose distances are those of the unit rows).

    Scaling by a power of two is exact and makes the largest magnitude of
    :obj:`x` and :obj:`y` lie in :math:`[1/2, 1)`, so that neither the
    squares of large features overflow nor those of tiny ones underflow.
    :obj:`options` are the options of the approximate backends."""
    x, batch, y, batch_y = _check_input(x, k, batch, y, batch_y, metric,
                                        chunk_size, max_memory, backend,
                                        num_workers, options)
    k = int(k)
    max_memory = MAX_MEMORY if max_memory is None else int(max_memory)
    chunk_size = None if chunk_size is None else int(chunk_size)
    num_workers = None if num_workers is None else int(num_workers)
    self_search = y is None
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
        y = None if self_search else y.float()

    exponent = 0
    if metric == 'cosine':
        x = _unit_rows(x, 'x')
        y = None if self_search else _unit_rows(y, 'y')
    else:
        top = x.abs().max()
        if not self_search:
            top = torch.maximum(top, y.abs().max())
        exponent = math.frexp(float(top.detach()))[1]
        x = _times_pow2(x, -exponent)
        y = None if self_search else _times_pow2(y, -exponent)

    perm_x, x, batch = _sort_by_graph(x, batch)
    if self_search:
        perm_y, y, batch_y = perm_x, x, batch
    else:
        perm_y, y, batch_y = _sort_by_graph(y, batch_y)
    ptr_x, ptr_y = _graph_ptr(x, y, batch, batch_y)

    if backend == 'exact':
        d, idx = _exact_knn(x, y, k, batch, batch_y, ptr_x, ptr_y,
                            self_search, chunk_size, max_memory,
                            num_workers)
    else:
        d, idx = _library_knn(x, y, k, batch, batch_y, ptr_x, ptr_y,
                              self_search, backend, options)

    if perm_x is not None:
        idx = perm_x[idx]
    if perm_y is not None:  # Back to the order of the queries:
        out_d, out_idx = torch.empty_like(d), torch.empty_like(idx)
        out_d[perm_y], out_idx[perm_y] = d, idx
        d, idx = out_d, out_idx
    return d, idx, exponent


def _times_pow2(t: Tensor, exponent: int) -> Tensor:
    r"""Returns :obj:`t * 2**exponent`, exactly unless the result leaves the
    normal range of the dtype (in two steps, as :obj:`2**exponent` itself
    may not be representable)."""
    if exponent == 0:
        return t
    half = exponent // 2
    return t * math.ldexp(1.0, half) * math.ldexp(1.0, exponent - half)


def _check_points(t, name: str) -> Tensor:
    if not isinstance(t, Tensor) or not t.is_floating_point():
        got = t.dtype if isinstance(t, Tensor) else type(t).__name__
        raise TypeError(f"'{name}' must be a floating point tensor "
                        f"(got {got})")
    if t.dim() == 1:
        t = t.view(-1, 1)
    if t.dim() != 2:
        raise ValueError(f"'{name}' must be of shape [N, F] "
                         f"(got {tuple(t.shape)})")
    if t.size(0) == 0 or t.size(1) == 0:
        raise ValueError(f"'{name}' is empty (shape {tuple(t.shape)})")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"'{name}' contains NaN or infinite values")
    return t


def _check_batch(batch, t: Tensor, name: str, of: str) -> Optional[Tensor]:
    if batch is None:
        return None
    N = t.size(0)
    if not isinstance(batch, Tensor) or batch.dim() != 1 \
            or batch.numel() != N:
        shape = tuple(batch.shape) if isinstance(batch, Tensor) else batch
        raise ValueError(f"'{name}' must be a vector of length {N} to match "
                         f"'{of}' (got {shape})")
    if batch.dtype.is_floating_point or batch.dtype == torch.bool:
        raise ValueError(f"'{name}' must hold integer graph ids "
                         f"(got {batch.dtype})")
    if batch.device != t.device:
        raise ValueError(f"'{name}' is on {batch.device} but '{of}' on "
                         f"{t.device}")
    batch = batch.long()
    if int(batch.min()) < 0:
        raise ValueError(f"'{name}' contains negative graph ids")
    return batch


def _check_options(k, metric, chunk_size, max_memory, backend, num_workers,
                   **options):
    r"""Checks the arguments of :func:`knn_search` that are not tensors
    (:obj:`options`: those of the approximate backends, by name)."""
    check_number('k', k, integer=True, low=1)
    if metric not in METRICS:
        raise ValueError(f"'metric' must be one of {METRICS} (got {metric!r})")
    if backend not in BACKENDS:
        raise ValueError(f"'backend' must be one of {BACKENDS} "
                         f"(got {backend!r})")
    for name, value in (('chunk_size', chunk_size),
                        ('max_memory', max_memory),
                        ('num_workers', num_workers)):
        if value is not None:
            check_number(name, value, integer=True, low=1)
    if backend != 'exact':  # The libraries search all queries at once:
        for name, value in (('chunk_size', chunk_size),
                            ('max_memory', max_memory),
                            ('num_workers', num_workers)):
            if value is not None:
                raise ValueError(f"'{name}' applies to backend='exact' only "
                                 f"(got {name}={value!r} with "
                                 f"backend={backend!r}); leave it None")
    known = {name: (owner, low) for owner, opts in APPROXIMATE_OPTIONS.items()
             for name, (_, low) in opts.items()}
    for name, value in options.items():
        if name not in known:
            raise TypeError(f"'{name}' is not an option of knn_search")
        if value is None:
            continue
        owner, low = known[name]
        check_number(name, value, integer=True, low=low,
                     high=2**31)  # (C ints of faiss.)
        if backend != owner:  # It would be ignored:
            raise ValueError(f"'{name}' applies to backend={owner!r} only "
                             f"(got {name}={value!r} with "
                             f"backend={backend!r}); leave it None")


def _check_input(x, k, batch, y, batch_y, metric, chunk_size, max_memory,
                 backend, num_workers, options):
    x = _check_points(x, 'x')
    _check_options(k, metric, chunk_size, max_memory, backend, num_workers,
                   **options)
    if x.device.type != 'cpu' and num_workers not in (None, 1):
        raise ValueError(f"'num_workers' applies to CPU searches only (got "
                         f"{num_workers} for 'x' on {x.device}); leave it "
                         f"None")

    if y is None:
        if batch_y is not None:
            raise ValueError("'batch_y' is given without 'y'")
    else:
        y = _check_points(y, 'y')
        if y.size(1) != x.size(1):
            raise ValueError(f"'y' must have the {x.size(1)} features of "
                             f"'x' (got {y.size(1)})")
        if y.dtype != x.dtype or y.device != x.device:
            raise ValueError(f"'y' ({y.dtype} on {y.device}) must have the "
                             f"dtype and device of 'x' ({x.dtype} on "
                             f"{x.device})")
        if (batch is None) != (batch_y is None):
            raise ValueError("'batch' and 'batch_y' must be given together")
    batch = _check_batch(batch, x, 'batch', 'x')
    if y is not None:
        batch_y = _check_batch(batch_y, y, 'batch_y', 'y')
    names = None  # The graph ids of the user, if renumbered.
    if batch is not None:
        num = batch.numel() + (0 if batch_y is None else batch_y.numel())
        top = int(batch.max()) if batch_y is None else \
            max(int(batch.max()), int(batch_y.max()))
        if top >= num:  # Sparse graph ids: numbered 0, 1, ... instead.
            ids = batch if batch_y is None else torch.cat([batch, batch_y])
            names, ids = torch.unique(ids, return_inverse=True)
            batch, batch_y = ids[:batch.numel()], (
                None if batch_y is None else ids[batch.numel():])
    _check_sizes(k, x, batch, y, batch_y, names)
    return x, batch, y, batch_y


def _check_sizes(k: int, x: Tensor, batch: Optional[Tensor],
                 y: Optional[Tensor], batch_y: Optional[Tensor],
                 names: Optional[Tensor] = None):
    r"""Checks that the graph of every query has enough points in :obj:`x`
    (the query itself excluded without :obj:`y`)."""
    excluded = int(y is None)
    if batch is None:
        count, queries = torch.tensor([x.size(0)]), torch.ones(1)
    else:
        size = int(batch.max()) + 1
        if batch_y is not None:
            size = max(size, int(batch_y.max()) + 1)
        count = torch.bincount(batch, minlength=size)
        queries = count if y is None else torch.bincount(batch_y,
                                                         minlength=size)
    small = ((queries > 0) & (count < k + excluded)).nonzero().view(-1)
    if small.numel() == 0:
        return
    g, n = int(small[0]), int(count[small[0]])
    g = g if names is None else int(names[g])
    if y is None and batch is None:
        raise ValueError(f"'k' must be smaller than the number of nodes "
                         f"(got k={k} for {n} nodes)")
    if y is None:
        raise ValueError(f"'k' must be smaller than the number of nodes of "
                         f"every graph (got k={k}, but graph {g} has {n} "
                         f"nodes)")
    if batch is None:
        raise ValueError(f"'k' must not exceed the number of points of 'x' "
                         f"(got k={k} for {n} points)")
    raise ValueError(f"'k' must not exceed the number of points of 'x' in "
                     f"the graph of every query (got k={k}, but graph {g} "
                     f"has {n} points in 'x')")


def _unit_rows(t: Tensor, name: str) -> Tensor:
    top = t.abs().amax(dim=1, keepdim=True)
    if bool((top == 0).any()):
        raise ValueError(f"The cosine metric is undefined for all-zero "
                         f"feature vectors (found in '{name}')")
    t = t / top  # The norm of large rows would overflow, of tiny underflow.
    return t / t.norm(dim=1, keepdim=True)


def _sort_by_graph(
    t: Tensor, batch: Optional[Tensor]
) -> Tuple[Optional[Tensor], Tensor, Optional[Tensor]]:
    if batch is None or not bool((batch[1:] < batch[:-1]).any()):
        return None, t, batch
    perm = torch.argsort(batch, stable=True)
    return perm, t[perm], batch[perm]


def _graph_ptr(x: Tensor, y: Tensor, batch: Optional[Tensor],
               batch_y: Optional[Tensor]) -> Tuple[List[int], List[int]]:
    r"""The node ranges of the graphs of the sorted :obj:`x` and :obj:`y`
    that have points in :obj:`x`, aligned (graph :obj:`g` is
    :obj:`x[ptr_x[g]:ptr_x[g + 1]]` and :obj:`y[ptr_y[g]:ptr_y[g + 1]]`)."""
    if batch is None:
        return [0, x.size(0)], [0, y.size(0)]
    size = max(int(batch[-1]), int(batch_y[-1])) + 1
    count_x = torch.bincount(batch, minlength=size)
    count_y = torch.bincount(batch_y, minlength=size)
    keep = count_x > 0  # Graphs without points have no queries either.
    ptr = torch.stack([count_x.cumsum(0), count_y.cumsum(0)])[:, keep]
    ptr_x, ptr_y = ptr.tolist()
    return [0] + ptr_x, [0] + ptr_y


def _groups(ptr: List[int], rows: int) -> List[Tuple[int, int]]:
    r"""Splits the graphs, whose node ranges :obj:`ptr` gives, into groups
    :obj:`(g0, g1)` of consecutive graphs :obj:`g0 <= g < g1`: a single
    graph of at least :obj:`rows` nodes, or consecutive smaller graphs
    collected up to about :obj:`rows` nodes."""
    out: List[Tuple[int, int]] = []
    g0 = 0
    for g in range(len(ptr) - 1):
        if g > g0 and (ptr[g + 1] - ptr[g] >= rows
                       or ptr[g + 1] - ptr[g0] > rows):
            out.append((g0, g))
            g0 = g
    out.append((g0, len(ptr) - 1))
    return out


def _exact_knn(x: Tensor, y: Tensor, k: int, batch: Optional[Tensor],
               batch_y: Optional[Tensor], ptr_x: List[int],
               ptr_y: List[int], self_search: bool,
               chunk_size: Optional[int], max_memory: int,
               num_workers: Optional[int]) -> Tuple[Tensor, Tensor]:
    F = x.size(1)
    device, dtype = x.device, x.dtype
    kk = k + max(8, k // 2)  # Candidates kept from the matrix form.
    excluded = int(self_search)

    tile, rows_max = _TILE, _ROWS
    if device.type != 'cpu':  # Fewer, larger kernels on accelerators.
        num_workers, tile, rows_max = 1, 8 * _TILE, 16 * _ROWS
    elif num_workers is None:
        num_workers = torch.get_num_threads()
    if chunk_size is None:  # Score tile + block minima + masks per row.
        chunk_size = max_memory // (3 * tile * x.element_size() *
                                    num_workers)
        chunk_size = max(1, min(rows_max, chunk_size))

    out_d = x.new_empty(y.size(0), k)
    out_idx = torch.empty(y.size(0), k, dtype=torch.long, device=device)
    rel_tol = (2 * F + 16) * torch.finfo(dtype).eps
    inf = float('inf')

    def search(ctx, a):
        xg, xc_t, sq, yg, yc, sq_q, tol, bx, by, x0, y0, kq = ctx
        n = xg.size(0)
        b = min(a + chunk_size, yg.size(0))
        q = yc[a:b]
        rows = torch.arange(b - a, device=device)
        vs: List[Tensor] = []
        ids: List[Tensor] = []
        width = 0
        for t0 in range(0, n, tile):
            t1 = min(t0 + tile, n)
            s = torch.addmm(sq[t0:t1].view(1, -1), q, xc_t[:, t0:t1],
                            alpha=-2)
            if self_search and a < t1 and t0 < b:  # Exclude the query.
                self_col = rows + a - t0
                m = (self_col >= 0) & (self_col < t1 - t0)
                s[rows[m], self_col[m]] = inf
            if bx is not None:
                s.masked_fill_(by[a:b].view(-1, 1) != bx[t0:t1].view(1, -1),
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

        # Exact distances of the candidates (on the input data):
        valid = best_v < inf
        d = _exact_dist(yg[a:b], xg, best_i).masked_fill(~valid, inf)
        d, j = torch.topk(d, k, dim=1, largest=False, sorted=True)
        idx = best_i.gather(1, j)

        # Certify: every point left out has a score >= the largest kept one
        # (unless all valid points were kept), hence a true squared distance
        # >= that score + |q|^2 - tol.
        bound = best_v.max(dim=1).values + sq_q[a:b] - 2 * tol[a:b]
        bound = bound.clamp(min=0).sqrt()
        bad = (valid.all(dim=1) & (d[:, -1] > bound)).nonzero().view(-1)
        if kq < n - excluded and bad.numel() > 0:
            rows_bad = a + bad
            d[bad], idx[bad] = _brute_force(
                xg, bx, yg[rows_bad], None if by is None else by[rows_bad],
                rows_bad if self_search else None, k, max_memory)
        out_d[y0 + a:y0 + b] = d
        out_idx[y0 + a:y0 + b] = idx + x0

    num_threads = torch.get_num_threads()
    executor = None
    if num_workers > 1:  # Coarse-grained parallelism over query chunks:
        torch.set_num_threads(1)
        executor = ThreadPoolExecutor(num_workers)
    try:
        for g0, g1 in _groups(ptr_x, chunk_size):
            x0, x1, y0, y1 = ptr_x[g0], ptr_x[g1], ptr_y[g0], ptr_y[g1]
            if y1 == y0:  # No queries in these graphs.
                continue
            xg = x[x0:x1]
            mean = xg.mean(dim=0, keepdim=True)
            xc = xg - mean  # Less cancellation.
            sq = (xc * xc).sum(dim=1)
            if self_search:
                yg, yc, sq_q = xg, xc, sq
            else:
                yg = y[y0:y1]
                yc = yg - mean
                sq_q = (yc * yc).sum(dim=1)
            tol = rel_tol * (sq.max() + sq_q)  # Bounds the error of scores.
            mixed = g1 - g0 > 1
            ctx = (xg, xc.t().contiguous(), sq, yg, yc, sq_q, tol,
                   batch[x0:x1] if mixed else None,
                   batch_y[y0:y1] if mixed else None, x0, y0,
                   min(kk, x1 - x0 - excluded))
            chunks = range(0, y1 - y0, chunk_size)
            if executor is None:
                for a in chunks:
                    search(ctx, a)
            else:
                list(executor.map(lambda a: search(ctx, a), chunks))
    finally:
        if executor is not None:
            executor.shutdown()
            torch.set_num_threads(num_threads)

    return out_d, out_idx


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


def _exact_dist(q: Tensor, x: Tensor, idx: Tensor) -> Tensor:
    return _norm(x[idx] - q.unsqueeze(1))


def _norm(diff: Tensor) -> Tensor:
    r"""The Euclidean norms along the last dimension. The few so small that
    the squares of the differences may underflow (the sum below :obj:`F`
    times the smallest normal number; the points are scaled to magnitudes
    below one, so nothing overflows) are recomputed from the differences
    scaled by their largest magnitude."""
    d2 = (diff * diff).sum(dim=-1)
    small = d2 < diff.size(-1) * torch.finfo(diff.dtype).tiny
    # (No square root of zero, whose gradient would be NaN.)
    d = torch.where(small, torch.ones_like(d2), d2).sqrt()
    if bool(small.any()):
        part = diff[small]
        top = part.abs().amax(dim=-1, keepdim=True)
        safe = torch.where(top > 0, top, torch.ones_like(top))
        d = d.masked_scatter(small, (part / safe).norm(dim=-1) *
                             top.squeeze(-1))
    return d


def _brute_force(x: Tensor, batch: Optional[Tensor], q: Tensor,
                 batch_q: Optional[Tensor], self_index: Optional[Tensor],
                 k: int, max_memory: int) -> Tuple[Tensor, Tensor]:
    r"""Exhaustive exact search from the differences, for the few queries
    :obj:`q` the matrix form cannot certify (:obj:`self_index`: the row of
    :obj:`x` each query must not return, if any)."""
    n, F = x.size()
    step = max(1, max_memory // (q.size(0) * F * x.element_size()))
    best_d = best_i = None
    for t0 in range(0, n, step):
        t1 = min(t0 + step, n)
        d = _norm(x[t0:t1].unsqueeze(0) - q.unsqueeze(1))
        cols = torch.arange(t0, t1, device=x.device)
        if self_index is not None:
            d.masked_fill_(cols.view(1, -1) == self_index.view(-1, 1),
                           float('inf'))
        if batch is not None:
            d.masked_fill_(batch[t0:t1].view(1, -1)
                           != batch_q.view(-1, 1), float('inf'))
        i = cols.view(1, -1).expand_as(d)
        if best_d is not None:
            d, i = torch.cat([best_d, d], 1), torch.cat([best_i, i], 1)
        best_d, j = torch.topk(d, min(k, d.size(1)), dim=1, largest=False,
                               sorted=True)
        best_i = i.gather(1, j)
    return best_d, best_i


def _library_knn(x: Tensor, y: Tensor, k: int, batch: Optional[Tensor],
                 batch_y: Optional[Tensor], ptr_x: List[int],
                 ptr_y: List[int], self_search: bool, backend: str,
                 options: Dict[str, Optional[int]]) -> Tuple[Tensor, Tensor]:
    r"""Candidates from faiss or pyg-lib (both use the matrix form too), with
    the query itself excluded (without :obj:`y`) and re-ranked by exact
    distances; queries left with fewer than :obj:`k` candidates are searched
    exhaustively."""
    graphs = [g for g in range(len(ptr_x) - 1) if ptr_y[g + 1] > ptr_y[g]]
    min_size = min(ptr_x[g + 1] - ptr_x[g] for g in graphs)
    kq = min(k + max(8, k // 2) + int(self_search), min_size)

    if backend.startswith('faiss'):
        cand = _faiss_candidates(x, y, kq, ptr_x, ptr_y, graphs, backend,
                                 options)
    else:
        import torch_geometric.typing
        if not torch_geometric.typing.WITH_KNN:
            raise ImportError("backend='pyg_lib' requires 'pyg-lib>=0.6.0'")
        from torch_geometric.nn import knn
        assign = knn(x, y, kq, batch, batch_y)
        perm = torch.argsort(assign[0], stable=True)
        cand = assign[1][perm].view(y.size(0), kq)

    # Re-ranking by exact distances, in chunks of queries within the memory
    # budget. Sorted candidates reveal repeated ones (and put the missing
    # ones, -1, first):
    cand = cand.sort(dim=1).values
    rows = max(1, MAX_MEMORY // (kq * x.size(1) * x.element_size()))
    out_d, out_i = [], []
    for r0 in range(0, y.size(0), rows):
        c = cand[r0:r0 + rows]
        mask = c < 0
        mask[:, 1:] |= c[:, 1:] == c[:, :-1]
        if self_search:
            mask |= c == torch.arange(r0, r0 + c.size(0),
                                      device=x.device).view(-1, 1)
        d = _exact_dist(y[r0:r0 + rows], x, c.clamp(min=0))
        d = d.masked_fill(mask, float('inf'))
        d, j = torch.topk(d, k, dim=1, largest=False, sorted=True)
        out_d.append(d)
        out_i.append(c.gather(1, j))
    d, idx = torch.cat(out_d), torch.cat(out_i)

    short = torch.isinf(d[:, -1]).nonzero().view(-1)
    if short.numel() > 0:  # Fewer than k candidates: exhaustive search.
        d_s, i_s = _brute_force(
            x, batch, y[short], None if batch is None else batch_y[short],
            short if self_search else None, k, MAX_MEMORY)
        d = d.index_put((short, ), d_s)
        idx = idx.index_put((short, ), i_s)
    return d, idx


def _ivf_lists(n: int) -> int:
    r"""The default number of IVF cells of a graph of :obj:`n` points."""
    return min(math.ceil(4 * math.sqrt(n)), max(1, n // 39))


def _faiss_candidates(x: Tensor, y: Tensor, kq: int, ptr_x: List[int],
                      ptr_y: List[int], graphs: List[int], backend: str,
                      options: Dict[str, Optional[int]]) -> Tensor:
    r"""The :obj:`kq` candidates of every query (indices into :obj:`x`,
    :obj:`-1` where the index found fewer), from one faiss index per
    graph, searched with :meth:`torch.get_num_threads` threads."""
    try:
        import faiss
    except ImportError as e:
        raise ImportError(f"backend={backend!r} requires the 'faiss' "
                          f"package (pip install faiss-cpu)") from e
    opts = {name: default if options.get(name) is None else
            int(options[name]) for name, (default, _) in
            APPROXIMATE_OPTIONS.get(backend, {}).items()}
    if backend == 'faiss_ivf' and opts['nlist'] is not None:
        for g in graphs:
            n = ptr_x[g + 1] - ptr_x[g]
            if opts['nlist'] > n:
                of = '' if len(ptr_x) == 2 else f' of graph {g}'
                raise ValueError(f"'nlist' must not exceed the number of "
                                 f"points{of} (got nlist={opts['nlist']} for "
                                 f"{n} points)")

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(torch.get_num_threads())
    try:
        parts = []
        for g in graphs:
            xg = x[ptr_x[g]:ptr_x[g + 1]].detach().cpu().float().contiguous()
            yg = y[ptr_y[g]:ptr_y[g + 1]].detach().cpu().float().contiguous()
            F = xg.size(1)
            if backend == 'faiss':
                index = faiss.IndexFlatL2(F)
            elif backend == 'faiss_hnsw':
                index = faiss.IndexHNSWFlat(F, opts['hnsw_m'])
                index.hnsw.efConstruction = opts['ef_construction']
                index.hnsw.efSearch = max(opts['ef_search'], kq)
            else:
                nlist = opts['nlist'] or _ivf_lists(xg.size(0))
                index = faiss.IndexIVFFlat(faiss.IndexFlatL2(F), F, nlist)
                index.cp.seed = opts['seed']
                index.cp.niter = _IVF_NITER
                index.cp.max_points_per_centroid = _IVF_POINTS_PER_LIST
                index.cp.min_points_per_centroid = 1  # (No warnings.)
                index.train(xg.numpy())
                index.nprobe = min(opts['nprobe'], nlist)
            index.add(xg.numpy())
            _, i = index.search(yg.numpy(), kq)
            i = torch.from_numpy(i).long()
            parts.append(torch.where(i >= 0, i + ptr_x[g], i))
    finally:
        faiss.omp_set_num_threads(threads)
    return torch.cat(parts, 0).to(x.device)
