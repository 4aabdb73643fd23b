import math
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import coalesce

from torch_geometric_coin._checks import check_bool, check_choice, check_number

KERNELS = ('gaussian', 'self_tuning')
_BUDGET = 2**21  # Entries of the score matrix of a chunk of queries.


def gaussian_knn_graph(
    x: Tensor,
    k: int,
    bandwidth_k: int,
    batch: Optional[Tensor] = None,
    loop: bool = True,
    normalize: bool = True,
    symmetrize: bool = True,
    kernel: str = 'gaussian',
    neighbors: Optional[Tensor] = None,
    chunk_size: Optional[int] = None,
) -> Tuple[Tensor, Tensor]:
    r"""The :math:`k`-nearest-neighbour graph of node features with the
    Gaussian weights of COIN: node :math:`i` keeps its :obj:`k` nearest
    other nodes :math:`j` of its graph with

    .. math::
        w_{ij} = \exp\left(-\frac{d_{ij}^2}{s_i^2}\right)
        \textrm{ (gaussian)}, \qquad
        w_{ij} = \exp\left(-\frac{d_{ij}^2}{s_i s_j}\right)
        \textrm{ (self\_tuning)},

    :math:`d_{ij} = \|\mathbf{x}_i - \mathbf{x}_j\|_2` and :math:`s_i` the
    distance to its :obj:`bandwidth_k`-th neighbour (duplicates get
    :math:`w_{ij} = 1`); then, each optional, :math:`w_{ii} = 1`,
    :math:`\mathbf{D}^{-1/2} \mathbf{W} \mathbf{D}^{-1/2}` and
    :math:`(\mathbf{W} + \mathbf{W}^{\top}) / 2` (:obj:`k=6,
    bandwidth_k=3`: the authors' :obj:`n_top=8, sigma=4`).

    Args:
        x (torch.Tensor): Node features :math:`\mathbf{X} \in
            \mathbb{R}^{N \times F}`.
        k (int): The number of neighbours, smaller than every graph.
        bandwidth_k (int): The neighbour of the bandwidth, :obj:`<= k`.
        batch (torch.Tensor, optional): Batch vector :math:`\mathbf{b} \in
            {\{ 0, \ldots, B-1\}}^N`, which assigns each node to a specific
            graph. (default: :obj:`None`)
        loop (bool, optional): Adds :math:`w_{ii} = 1`. (default: :obj:`True`)
        normalize (bool, optional): Normalizes. (default: :obj:`True`)
        symmetrize (bool, optional): Symmetrizes. (default: :obj:`True`)
        kernel (str, optional): :obj:`"gaussian"` or :obj:`"self_tuning"`.
            (default: :obj:`"gaussian"`)
        neighbors (torch.Tensor, optional): :obj:`[N, k]` other nodes of the
            same graph, in any order, from another (*e.g.*, approximate)
            search instead of the exact one. (default: :obj:`None`)
        chunk_size (int, optional): Queries scored at once by the exact
            search. (default: :obj:`None`: about :math:`2^{21} / N`)

    :rtype: (:class:`torch.Tensor`, :class:`torch.Tensor`): The coalesced
        :obj:`edge_index` (edge :obj:`(j, i)` carries :math:`w_{ij}`) and
        :obj:`edge_weight` (dtype of :obj:`x`).
    """
    _check_options(k, bandwidth_k, loop, normalize, symmetrize, kernel,
                   chunk_size, neighbors is not None)
    x, batch = _check_input(x, batch)
    k, N, dtype, x = int(k), x.size(0), x.dtype, _scaled(x)
    if neighbors is None:
        col = _exact_knn(x.detach(), k, batch, chunk_size)
    else:
        col = _check_neighbors(neighbors, x, k, batch)
    dist, order = _dist(x, x, col).sort(dim=1)
    col = col.gather(1, order)

    s = dist[:, int(bandwidth_k) - 1].view(-1, 1)  # The bandwidths.
    s_j = s if kernel == 'gaussian' else s.view(-1)[col]
    # d^2 / (s_i s_j) as (d / s_i) (d / s_j), which neither underflows nor
    # overflows; exp(-0/0) := 1, exp(-c/0) := 0 (with safe denominators, so
    # that gradients stay finite).
    ok = (s > 0) & (s_j > 0)
    one = torch.ones_like(dist)
    ratio = dist / torch.where(ok, s, one) * (dist / torch.where(ok, s_j, one))
    limit = torch.where(dist > 0, math.inf, 0.).to(dist.dtype)
    weight = torch.exp(-torch.where(ok, ratio, limit)).view(-1)
    loops = torch.arange(N, device=x.device)
    row, col = loops.repeat_interleave(k), col.view(-1)
    if loop:
        row, col = torch.cat([row, loops]), torch.cat([col, loops])
        weight = torch.cat([weight, weight.new_ones(N)])
    if normalize:  # D^-1/2 W D^-1/2, the degrees summed over the neighbours.
        _, weight = gcn_norm(torch.stack([col, row]), weight, N,
                             add_self_loops=False)
    if symmetrize:
        row, col = torch.cat([row, col]), torch.cat([col, row])
        weight = torch.cat([weight, weight]) / 2
    edge_index, weight = coalesce(torch.stack([col, row]), weight, N,
                                  reduce='sum')
    return edge_index, weight.to(dtype)


def _exact_knn(x: Tensor, k: int, batch: Optional[Tensor] = None,
               chunk_size: Optional[int] = None,
               rows: Optional[Tensor] = None) -> Tensor:
    r"""The :obj:`[len(rows), k]` nearest other nodes of the same graph of
    the nodes :obj:`rows` (all if :obj:`None`), by ascending distance."""
    x, N, F = _scaled(x), x.size(0), x.size(1)
    perm = None if batch is None else torch.argsort(batch, stable=True)
    b = x.new_zeros(N, dtype=torch.long) if batch is None else batch[perm]
    x = x if batch is None else x[perm]  # Sorted by graph.
    ids, count = torch.unique_consecutive(b, return_counts=True)
    if bool((count <= k).any()):
        i = int((count <= k).nonzero()[0])
        of = '' if batch is None else f' of graph {int(ids[i])}'
        raise ValueError(f"'k' must be smaller than the number of nodes{of} "
                         f"(got k={k} for {int(count[i])} nodes)")
    gid, end = torch.repeat_interleave(count), count.cumsum(0)
    start, end = (end - count).tolist(), end.tolist()
    mean = x.new_zeros(count.numel(), F).index_add_(0, gid, x)
    xc = x - (mean / count.view(-1, 1))[gid]  # Centered: less cancellation.
    sq, tol = (xc * xc).sum(dim=1), (2 * F + 16) * torch.finfo(x.dtype).eps
    pos = torch.arange(N, device=x.device) if rows is None else rows
    pos, order = (pos if perm is None else perm.argsort()[pos]).sort()
    R, gq = max(int(count.max()), 256), gid[pos].tolist()
    step = chunk_size or max(32, min(R, _BUDGET // min(N, 3 * R)))
    out = torch.empty(pos.numel(), k, dtype=torch.long, device=x.device)

    def candidates(s, p, c0, c1, g0, g1):
        s[torch.arange(p.numel()), p - c0] = math.inf  # Not the node itself.
        if g0 != g1:  # Nor those of other graphs.
            s.masked_fill_(b[p].view(-1, 1) != b[c0:c1].view(1, -1),
                           math.inf)
        v, c = _smallest(s, min(k + max(8, k // 2), c1 - c0))
        return v, torch.where(v < math.inf, c + c0, -1)

    def nearest(p, c):
        d = _dist(x[p], x, c.clamp(min=0)).masked_fill(c < 0, math.inf)
        d, j = d.topk(k, dim=1, largest=False)
        return d, c.gather(1, j)

    for a in range(0, pos.numel(), step):
        p = pos[a:a + step]
        g0, g1 = gq[a], gq[a + p.numel() - 1]
        c0, c1 = start[g0], end[g1]
        s = torch.addmm(sq[c0:c1].view(1, -1), xc[p], xc[c0:c1].t(),
                        alpha=-2)
        v, c = candidates(s, p, c0, c1, g0, g1)
        d, out[a:a + p.numel()] = nearest(p, c)
        # A node left out has a score >= the largest kept, hence a squared
        # distance >= that score + |q|^2 - the rounding errors of both:
        bound = v.amax(1) + sq[p] - 2 * tol * (sq[c0:c1].amax() + sq[p])
        bad = ((d[:, -1]**2 > bound) & (d[:, -1] > 0)).nonzero().view(-1)
        if bad.numel() > 0:  # Not certified: from the differences.
            s = torch.cdist(x[p[bad]].double(), x[c0:c1].double(),
                            compute_mode='donot_use_mm_for_euclid_dist')
            _, c = candidates(s, p[bad], c0, c1, g0, g1)
            out[a + bad] = nearest(p[bad], c)[1]
    out[order] = out.clone() if perm is None else perm[out]
    return out


def _smallest(s: Tensor, n: int) -> Tuple[Tensor, Tensor]:
    r"""The :obj:`n` smallest entries of the rows of :obj:`s` and their
    columns, from the :obj:`n` blocks of 16 strided columns of the smallest
    minima (which hold them) and the last columns, not from all columns."""
    m, arange = s.size(1) // 16, torch.arange(s.size(1), device=s.device)
    if m <= 4 * n:
        return s.topk(n, 1, largest=False)
    block = s[:, :16 * m].unflatten(1, (16, m)).amin(1)
    block = block.topk(n, 1, largest=False)[1].unsqueeze(1)
    cols = torch.cat([(block + arange[:16 * m:m].view(1, -1, 1)).flatten(1),
                      arange[16 * m:].expand(s.size(0), -1)], dim=1)
    v, j = s.gather(1, cols).topk(n, 1, largest=False)
    return v, cols.gather(1, j)


def _dist(q: Tensor, x: Tensor, index: Tensor) -> Tensor:
    r"""The distances :obj:`[n, c]` of the rows of :obj:`q` to the rows
    :obj:`index` of :obj:`x`, from the differences scaled by their maximum."""
    out, step = [], max(1, _BUDGET // (index.size(1) * x.size(1)))
    for a in range(0, index.size(0), step):
        diff = x[index[a:a + step]] - q[a:a + step].unsqueeze(1)
        top = diff.detach().abs().amax(dim=-1, keepdim=True)
        top = torch.where(top > 0, top, torch.ones_like(top))
        out.append((diff / top).norm(dim=-1) * top.squeeze(-1))
    return torch.cat(out)


def _scaled(x: Tensor) -> Tensor:
    r"""In float32 or float64, times the power of two (in two exact steps)
    that brings the largest magnitude to :math:`[1/2, 1)`."""
    x = x if x.dtype in (torch.float32, torch.float64) else x.float()
    e = math.frexp(float(x.detach().abs().max()))[1]
    return x * math.ldexp(1., -(e // 2)) * math.ldexp(1., e // 2 - e) \
        if e != 0 else x


def _check_options(k, bandwidth_k, loop, normalize, symmetrize, kernel,
                   chunk_size, neighbors: bool = False):
    check_number('k', k, integer=True, low=1)
    check_number('bandwidth_k', bandwidth_k, integer=True, low=1, high=k + 1)
    for name, value in (('loop', loop), ('normalize', normalize),
                        ('symmetrize', symmetrize)):
        check_bool(name, value)
    check_choice('kernel', kernel, KERNELS)
    if chunk_size is not None:
        check_number('chunk_size', chunk_size, integer=True, low=1)
        if neighbors:
            raise ValueError("'chunk_size' applies to the exact search only "
                             "(leave it None with 'neighbors')")


def _check_input(x, batch, name: str = "'x'"
                 ) -> Tuple[Tensor, Optional[Tensor]]:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"{name} must be a floating point tensor (got {got})")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    x = x.view(-1, 1) if x.dim() == 1 else x
    if x.dim() != 2 or x.numel() == 0:
        raise ValueError(f"{name} must be a non-empty [N, F] tensor (got "
                         f"shape {tuple(x.shape)})")
    if batch is not None and not _integers(batch, x.shape[:1], x.device):
        raise ValueError(f"'batch' must be an integer vector of the graphs "
                         f"of the {x.size(0)} nodes on the device of 'x'")
    return x, None if batch is None else batch.long()


def _integers(t, shape, device) -> bool:
    return isinstance(t, Tensor) and t.shape == shape and not (
        t.dtype.is_floating_point or t.dtype.is_complex
        or t.dtype == torch.bool) and t.device == device


def _check_neighbors(nbr, x: Tensor, k: int, batch: Optional[Tensor]):
    N = x.size(0)
    if not _integers(nbr, (N, k), x.device):
        got = (f'{nbr.dtype} of shape {list(nbr.shape)} on {nbr.device}'
               if isinstance(nbr, Tensor) else type(nbr).__name__)
        raise ValueError(f"'neighbors' must be an integer tensor of shape "
                         f"[N, k] = [{N}, {k}] on {x.device} (got {got})")
    nbr = nbr.long()
    srt = nbr.sort(dim=1).values
    checks = [((nbr < 0) | (nbr >= N), f'an index outside [0, {N}) (-1: '
               f'a neighbour the search did not find)'),
              (nbr == torch.arange(N, device=x.device).view(-1, 1),
               'the node itself'), (srt[:, 1:] == srt[:, :-1],
                                    'a neighbour twice')]
    if batch is not None:  # (Indices out of range are refused first.)
        checks.append((batch[nbr.clamp(0, N - 1)] != batch.view(-1, 1),
                       "a node of another graph of 'batch'"))
    for bad, what in checks:
        if bool(bad.any()):
            i = int(bad.any(dim=1).nonzero()[0])
            raise ValueError(f"'neighbors' must hold k other nodes of the "
                             f"same graph, but row {i} holds {what}: "
                             f"{nbr[i].tolist()}")
    return nbr
