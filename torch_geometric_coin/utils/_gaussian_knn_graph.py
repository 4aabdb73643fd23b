from typing import Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import coalesce

from torch_geometric_coin._checks import check_bool, check_number
from torch_geometric_coin.utils._knn_search import _check_options as \
    check_search_options
from torch_geometric_coin.utils._knn_search import _search

KERNELS = ('gaussian', 'self_tuning')


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

    The neighbours come from the exact search
    :func:`~torch_geometric_coin.utils.knn_search`, which never needs
    :math:`O(N^2)` memory (or from its approximate backends
    :obj:`"faiss_hnsw"` and :obj:`"faiss_ivf"` for large :math:`N`: the
    weights above are then computed from the exact distances of the
    neighbours found, by the same routine). The weights depend on ratios of
    distances only, and are computed from the points scaled by a power of
    two, so any finite features give the weights of an exact computation to
    the precision of the dtype, however large or small their magnitude
    (features of half precision are computed in float32).

    Args:
        x (torch.Tensor): Node features :math:`\mathbf{X} \in
            \mathbb{R}^{N \times F}` (floating point and finite, CPU or
            CUDA).
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
        chunk_size (int, optional): The number of query nodes scored at once
            by :func:`~torch_geometric_coin.utils.knn_search`
            (:obj:`backend="exact"` only, as :obj:`max_memory` and
            :obj:`num_workers`).
            (default: :obj:`None`, chosen from :obj:`max_memory`)
        max_memory (int, optional): Memory budget in bytes of the search's
            temporary score matrices. (default: :obj:`None`, 256 MiB)
        backend (str, optional): The search's candidate generator,
            :obj:`"exact"`, :obj:`"faiss"` or :obj:`"pyg_lib"`, or the
            approximate :obj:`"faiss_hnsw"` or :obj:`"faiss_ivf"`.
            (default: :obj:`"exact"`)
        num_workers (int, optional): CPU threads searching query chunks in
            parallel (on other devices only :obj:`None` or :obj:`1`).
            (default: :obj:`None`, :meth:`torch.get_num_threads`)
        hnsw_m (int, optional): Links per node of the HNSW graph
            (:obj:`backend="faiss_hnsw"` only, as :obj:`ef_construction`
            and :obj:`ef_search`). (default: :obj:`None`, :obj:`32`)
        ef_construction (int, optional): HNSW candidate list size while
            building. (default: :obj:`None`, :obj:`80`)
        ef_search (int, optional): HNSW candidate list size while searching.
            (default: :obj:`None`, :obj:`64`)
        nlist (int, optional): IVF cells per graph
            (:obj:`backend="faiss_ivf"` only, as :obj:`nprobe` and
            :obj:`seed`). (default: :obj:`None`, about
            :math:`4 \sqrt{N}`)
        nprobe (int, optional): IVF cells scanned per query.
            (default: :obj:`None`, :obj:`8`)
        seed (int, optional): Seed of the IVF k-means.
            (default: :obj:`None`, :obj:`1234`)
            See :func:`~torch_geometric_coin.utils.knn_search` for these
            options.

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
    options = dict(hnsw_m=hnsw_m, ef_construction=ef_construction,
                   ef_search=ef_search, nlist=nlist, nprobe=nprobe, seed=seed)
    _check_options(k, bandwidth_k, loop, normalize, symmetrize, metric,
                   kernel, chunk_size, max_memory, backend, num_workers,
                   **options)
    k, bandwidth_k = int(k), int(bandwidth_k)

    # The distances of the points scaled by a power of two, which the weights
    # do not depend on (in float32 or float64), [N, k], ascending:
    dist, col, _ = _search(x, k, batch, None, None, metric, chunk_size,
                           max_memory, backend, num_workers, **options)
    if metric == 'cosine':
        dist = dist * dist / 2  # 1 - cos from the distances of unit rows.
    N, device = dist.size(0), dist.device
    row = torch.arange(N, device=device).view(-1, 1).expand(-1, k)

    s = dist[:, bandwidth_k - 1]  # The bandwidths.
    s_j = s.view(-1, 1) if kernel == 'gaussian' else s[col]
    # d^2 / (s_i s_j) as (d / s_i) (d / s_j), which neither underflows nor
    # overflows. The limit s -> 0+ for duplicate points: exp(-0/0) := 1,
    # exp(-c/0) := 0 (with safe denominators, so gradients stay finite too).
    positive = (s.view(-1, 1) > 0) & (s_j > 0)
    one = torch.ones_like(dist)
    ratio = (dist / torch.where(positive, s.view(-1, 1), one)
             * (dist / torch.where(positive, s_j, one)))
    limit = torch.where(dist > 0, torch.full_like(ratio, float('inf')),
                        torch.zeros_like(ratio))
    ratio = torch.where(positive, ratio, limit)
    weight = torch.exp(-ratio).view(-1)
    row, col = row.reshape(-1), col.reshape(-1)

    if loop:
        loop_index = torch.arange(N, device=device)
        row = torch.cat([row, loop_index])
        col = torch.cat([col, loop_index])
        weight = torch.cat([weight, weight.new_ones(N)])

    if normalize:  # D^-1/2 W D^-1/2, the degrees summed over the neighbours
        _, weight = gcn_norm(torch.stack([col, row]), weight, N,
                             add_self_loops=False)

    if symmetrize:
        row, col = torch.cat([row, col]), torch.cat([col, row])
        weight = torch.cat([weight, weight]) / 2

    edge_index, weight = coalesce(torch.stack([col, row]), weight, N,
                                  reduce='sum')
    return edge_index, weight.to(x.dtype)


def _check_options(k, bandwidth_k, loop, normalize, symmetrize, metric,
                   kernel, chunk_size, max_memory, backend, num_workers,
                   **options):
    r"""Checks the arguments of :func:`gaussian_knn_graph` that are not
    tensors (:obj:`options`: those of the approximate backends)."""
    check_number('k', k, integer=True, low=1)
    check_number('bandwidth_k', bandwidth_k, integer=True, low=1)
    if bandwidth_k > k:
        raise ValueError(f"'bandwidth_k' must lie in [1, k={k}] "
                         f"(got {bandwidth_k})")
    if kernel not in KERNELS:
        raise ValueError(f"'kernel' must be one of {KERNELS} (got {kernel!r})")
    for name, value in (('loop', loop), ('normalize', normalize),
                        ('symmetrize', symmetrize)):
        check_bool(name, value)
    check_search_options(k, metric, chunk_size, max_memory, backend,
                         num_workers, **options)
