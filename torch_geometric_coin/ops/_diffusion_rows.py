r"""Sparse rows of COIN's explicit diffusion operator
:math:`(\mathbf{I} - \sigma^2 \mathbf{L})^K`, truncated after each step."""
from typing import List, Optional, Tuple

import scipy.sparse
import torch
from torch import Tensor

from torch_geometric.typing import Adj, OptTensor, SparseTensor
from torch_geometric.utils import is_torch_sparse_tensor

from torch_geometric_coin._checks import check_number
from torch_geometric_coin.ops._operator import (
    DiffusionOperator,
    INDEX_DTYPES,
    check_overflow,
    csr,
)

MAX_MEMORY = 256 * 2**20  # the default budget of a blocked product, bytes
_COPIES = 3  # (copies of an expanded entry's index and value in a product)


def diffusion_rows(
    edge_index: Adj,
    edge_weight: OptTensor = None,
    num_nodes: Optional[int] = None,
    nodes: Optional[Tensor] = None,
    *,
    K: int = 20,
    sigma2: float = 0.35,
    normalization: Optional[str] = 'coin',
    add_self_loops: bool = True,
    eps: Optional[float] = None,
    topk: Optional[int] = None,
    max_memory: Optional[int] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    r"""The rows :obj:`nodes` of COIN's explicit diffusion operator

    .. math::
        \mathbf{P} = \mathbf{M}^K, \quad \mathbf{M} = \mathbf{I} - \sigma^2
        \mathbf{L},

    as a sparse matrix, with the Laplacian :math:`\mathbf{L}` of
    :func:`~torch_geometric_coin.utils.coin_norm` (the operator that
    :class:`~torch_geometric_coin.nn.CoinDiffusionConv` applies:
    :math:`\mathbf{X}^{\prime} = \mathbf{P} \mathbf{X}`, so row :math:`i`
    holds the weights :math:`P_{ij}` of the nodes :math:`j` in the output
    of node :math:`i`). Computed by :math:`K` sparse products from the unit
    rows :math:`\mathbf{r}_0 = \mathbf{e}_s^{\top}`,

    .. math::
        \mathbf{r}_{k} = \mathcal{T}(\mathbf{r}_{k-1} \mathbf{M}), \quad
        k = 1, \dots, K,

    where the truncation :math:`\mathcal{T}` drops the entries of modulus
    below :obj:`eps` and then keeps the :obj:`topk` largest moduli of each
    row (either, both, or neither: without truncation the rows are exact).
    With :math:`\mathbf{d}_k \geq 0` the moduli of the entries dropped at
    step :math:`k`, the returned :obj:`bound` is

    .. math::
        \beta = \sum_{k=1}^K \mathbf{d}_k^{\top} \mathbf{g}_{K-k}, \quad
        \mathbf{g}_0 = \mathbf{1}, \quad \mathbf{g}_{m+1} = |\mathbf{M}|
        \mathbf{g}_m,

    an upper bound of :math:`\| \mathbf{e}_s^{\top} \mathbf{P} -
    \mathbf{r}_K \|_1` (the error made at step :math:`k` propagates through
    the :math:`K - k` remaining steps; rounding is not part of it), :math:`0`
    where nothing was dropped. The per-node weights :math:`\mathbf{g}_m`
    (:math:`K-1` products with :math:`|\mathbf{M}|`, :math:`8 (K-1) N`
    bytes) give way to the looser scalar :math:`\|\mathbf{M}\|_{\infty}^m`
    where they would exceed :obj:`max_memory`, and where all rows of
    :math:`|\mathbf{M}|` have the same sum (then they are equal).

    Each product runs on blocks of rows whose temporaries (about
    :math:`3 \times` (8 + the value's size) bytes per entry of the
    expanded product) fit :obj:`max_memory`: :obj:`scipy.sparse` CSR
    products on the CPU (PyTorch's CPU product of two CSR tensors leaks
    memory, `pytorch#109445
    <https://github.com/pytorch/pytorch/issues/109445>`_),
    :obj:`torch.sparse` elsewhere; a single row needing more raises a
    :class:`ValueError`. The graph is validated and the stability rule
    applied as in :class:`~torch_geometric_coin.ops.DiffusionOperator`
    (a warning if :math:`\sigma^2 \lambda_{\max} > 2`); non-finite rows
    raise a :class:`FloatingPointError`.

    Args:
        edge_index (torch.Tensor or SparseTensor): The edge indices
            :math:`(2, |\mathcal{E}|)` (edge :obj:`(j, i)` is the entry
            :math:`(i, j)`), or a sparse adjacency as the layer takes.
        edge_weight (torch.Tensor, optional): Non-negative edge weights
            :math:`(|\mathcal{E}|)`. (default: :obj:`None`)
        num_nodes (int, optional): The number of nodes :math:`N`.
            (default: :obj:`None`)
        nodes (torch.Tensor, optional): The rows to compute, node indices
            :math:`(S)` (repetitions allowed); all nodes if :obj:`None`.
            (default: :obj:`None`)
        K, sigma2, normalization, add_self_loops (optional): As in
            :class:`~torch_geometric_coin.nn.CoinDiffusionConv`
            (defaults: :obj:`20`, :obj:`0.35`, :obj:`'coin'`,
            :obj:`True`).
        eps (float, optional): Drops the entries of modulus below
            :obj:`eps` after each product. (default: :obj:`None`)
        topk (int, optional): Keeps the :obj:`topk` entries of largest
            modulus of each row after each product (ties at the cut in any
            order). (default: :obj:`None`)
        max_memory (int, optional): Budget in bytes of the temporaries of
            each blocked product (see above); :obj:`None` for 256 MiB.
            (default: :obj:`None`)

    Returns:
        (:class:`torch.Tensor`, :class:`torch.Tensor`,
        :class:`torch.Tensor`): :obj:`index` :math:`(2, \textrm{nnz})`
        (:obj:`index[0]` the position in :obj:`nodes`, :obj:`index[1]` the
        node), sorted by row and then column, without duplicates;
        :obj:`value` :math:`(\textrm{nnz})`, in the dtype of
        :obj:`edge_weight` (float32 for half precision; the default dtype
        if :obj:`None`); :obj:`bound` :math:`(S)`, the bound
        :math:`\beta` above, per row.
    """
    check_number('K', K, integer=True, low=0)
    check_number('sigma2', sigma2, low=0, open_low=True)
    for name, value in [('eps', eps), ('topk', topk),
                        ('max_memory', max_memory)]:
        if value is not None:
            check_number(name, value, integer=name != 'eps', low=0,
                         open_low=True)
    K, sigma2 = int(K), float(sigma2)
    max_memory = MAX_MEMORY if max_memory is None else int(max_memory)
    dtype = _value_dtype(edge_index, edge_weight)
    op = DiffusionOperator.from_graph(edge_index, edge_weight, num_nodes,
                                      normalization, add_self_loops, dtype)
    N, device = op.num_nodes, op.value.device
    nodes = _check_nodes(nodes, N, device)
    op.certify(sigma2, 'warn', stacklevel=2)

    S = nodes.numel()
    bound = torch.zeros(S, dtype=torch.float64, device=device)
    if K == 0 or S == 0:
        index = torch.stack([torch.arange(S, device=device), nodes])
        return index, torch.ones(S, dtype=dtype, device=device), \
            bound.to(dtype)  # (zeros)

    val_m = op.step_matrix(sigma2).detach()
    mat = _matrix(op.crow, op.col, val_m, N, N)
    deg_m = op.crow.diff().long()
    del op  # (its layouts: the products need M alone)
    truncate = eps is not None or topk is not None
    weights = _propagation_weights(mat, deg_m, val_m, K, N, max_memory) \
        if truncate else None
    # Weights that overflow (an unstable scheme) need care where 0 drops.
    overflow = weights is not None and not all(
        bool(torch.isfinite(torch.as_tensor(w)).all()) for w in (
            weights if isinstance(weights, list) else
            [torch.tensor(weights, dtype=torch.float64).pow(K)]))
    entry_bytes = _COPIES * (8 + val_m.element_size())

    crow = torch.arange(S + 1, device=device)
    col, val = nodes, torch.ones(S, dtype=dtype, device=device)
    out_row = out_col = None
    for k in range(1, K + 1):
        last = k == K
        blocks = _blocks(crow, deg_m[col], max(1, max_memory // entry_bytes),
                         max_memory, entry_bytes)
        crows: List[Tensor] = []
        cols: List[Tensor] = []
        vals: List[Tensor] = []
        rows: List[Tensor] = []
        for r0, r1 in blocks:
            start, end = int(crow[r0]), int(crow[r1])
            b_crow, b_col, b_val = _product(
                mat, crow[r0:r1 + 1] - start, col[start:end],
                val[start:end], N)
            if truncate:
                crow_before, col_before = b_crow, b_col
                b_crow, b_col, b_val, dropped = _truncate(
                    b_crow, b_col, b_val, eps, topk)
                if dropped is not None:
                    # The dropped moduli times the weights of their nodes,
                    # summed per row (kept entries are zeros).
                    if isinstance(weights, list) and k < K:
                        w = weights[K - k - 1][col_before].mul_(dropped)
                    else:
                        w = dropped.double()
                        if k < K:
                            w.mul_(w.new_tensor(weights).pow_(K - k))
                    if overflow and k < K:  # (no inf * 0 = NaN)
                        w = torch.where(dropped > 0, w, 0.)
                    bound[r0:r1] += torch.segment_reduce(
                        w, 'sum', offsets=crow_before)
            if last:  # sorted by row, then column
                b_row = _rows(b_crow)
                perm = torch.argsort(b_row * N + b_col)
                rows.append(b_row[perm] + r0)
                cols.append(b_col[perm])
                vals.append(b_val[perm])
            else:
                crows.append(b_crow[1:])
                cols.append(b_col)
                vals.append(b_val)
        if last:
            out_row, out_col = torch.cat(rows), torch.cat(cols)
        else:
            crow = _concat_crow(crows, device)
            col = torch.cat(cols)
        val = torch.cat(vals)

    check_overflow(torch.cat([val, bound.to(val.dtype)]), nodes, K, sigma2)
    return torch.stack([out_row, out_col]), val, _round_up(bound, dtype)


def _round_up(bound: Tensor, dtype: torch.dtype) -> Tensor:
    r"""The float64 :obj:`bound` in :obj:`dtype`, rounded up (a bound)."""
    out = bound.to(dtype)
    if dtype != torch.float64:
        low = out.double() < bound
        out = torch.where(low, torch.nextafter(out, out.new_tensor(
            float('inf'))), out)
    return out


def _value_dtype(edge_index: Adj, edge_weight: OptTensor) -> torch.dtype:
    r"""The weights' dtype (float32 for half precision; default if none)."""
    if isinstance(edge_index, SparseTensor):
        edge_weight = edge_index.storage.value()
    elif is_torch_sparse_tensor(edge_index):
        edge_weight = edge_index  # (its dtype is that of its values)
    dtype = torch.get_default_dtype()
    if isinstance(edge_weight, Tensor) and edge_weight.is_floating_point():
        dtype = edge_weight.dtype
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) \
        else dtype


def _check_nodes(nodes, num_nodes: int, device) -> Tensor:
    if nodes is None:
        return torch.arange(num_nodes, device=device)
    if not isinstance(nodes, Tensor) or nodes.dtype not in INDEX_DTYPES \
            or nodes.dim() != 1 or nodes.device != device:
        raise ValueError(f"'nodes' must be a one-dimensional integer tensor "
                         f"on the graph's device {device} (got "
                         f"{getattr(nodes, 'shape', type(nodes).__name__)})")
    nodes = nodes.long()
    if nodes.numel() > 0 and not 0 <= int(nodes.min()) <= int(
            nodes.max()) < num_nodes:
        raise ValueError(f"'nodes' contains node indices outside [0, "
                         f"{num_nodes - 1}]")
    return nodes


def _matrix(crow: Tensor, col: Tensor, value: Tensor, num_rows: int,
            num_cols: int):
    r"""A CSR matrix: :obj:`scipy.sparse` on the CPU, :obj:`torch.sparse`
    elsewhere."""
    if crow.device.type == 'cpu':
        return scipy.sparse.csr_matrix(
            (value.numpy(), col.numpy(), crow.numpy()),
            shape=(num_rows, num_cols))
    return csr(crow, col, value, (num_rows, num_cols))


def _entries(mat) -> Tuple[Tensor, Tensor, Tensor]:
    r"""The :obj:`(crow, col, value)` of a matrix of :func:`_matrix`."""
    if isinstance(mat, Tensor):
        return (mat.crow_indices().long(), mat.col_indices().long(),
                mat.values())
    return (torch.from_numpy(mat.indptr).long(),
            torch.from_numpy(mat.indices).long(), torch.from_numpy(mat.data))


def _propagation_weights(mat, deg: Tensor, value: Tensor, K: int,
                         n: int, max_memory: int):
    r"""The per-node weights :math:`\mathbf{g}_1, \dots,
    \mathbf{g}_{K-1}` (:math:`\mathbf{g}_{m+1} = |\mathbf{M}|
    \mathbf{g}_m`) in float64, or, where they would take more than
    :obj:`max_memory` bytes, the scalar :math:`\|\mathbf{M}\|_\infty`."""
    absval = value.detach().abs().double()
    row = _rows_from_deg(deg)
    sums = absval.new_zeros(n).index_add_(0, row, absval)
    norm = float(sums.max()) if n > 0 else 0.0
    # The scalar where it is (nearly) as tight: rows of |M| of equal sums
    # (as those of 'coin' and 'rw' where M >= 0) make g_m = norm^m.
    if (K - 1) * n * 8 > max_memory or n == 0 \
            or float(sums.min()) >= norm * (1 - 1e-6):
        return norm
    crow, col, _ = _entries(mat)
    abs_mat = _matrix(crow, col, absval, n, n)
    g = torch.ones(n, dtype=torch.float64, device=value.device)
    weights = []
    for _ in range(K - 1):
        if isinstance(abs_mat, Tensor):
            g = torch.mv(abs_mat, g)
        else:
            g = torch.from_numpy(abs_mat @ g.numpy())
        weights.append(g)
    return weights


def _rows_from_deg(deg: Tensor) -> Tensor:
    return torch.repeat_interleave(
        torch.arange(deg.numel(), device=deg.device), deg)


def _rows(crow: Tensor) -> Tensor:
    return _rows_from_deg(crow.diff())


def _blocks(crow: Tensor, expand: Tensor, budget: int, max_memory: int,
            entry_bytes: int) -> List[Tuple[int, int]]:
    r"""Splits the rows into consecutive blocks :obj:`(r0, r1)` whose
    expanded entries (:obj:`expand` per nonzero) sum to at most
    :obj:`budget`."""
    num_rows = crow.numel() - 1
    total = torch.zeros(expand.numel() + 1, dtype=torch.long,
                        device=crow.device)
    torch.cumsum(expand, 0, out=total[1:])
    per_row = total[crow].cpu()  # expanded entries before each row
    if int(per_row[-1]) <= budget:
        return [(0, num_rows)]
    blocks, r0 = [], 0
    while r0 < num_rows:
        r1 = int(torch.searchsorted(per_row, per_row[r0] + budget,
                                    right=True)) - 1
        if r1 <= r0:
            need = int(per_row[r0 + 1] - per_row[r0]) * entry_bytes
            raise ValueError(f"'max_memory' ({max_memory} bytes) is below "
                             f"what the product of one row needs (about "
                             f"{need} bytes)")
        r1 = min(r1, num_rows)
        blocks.append((r0, r1))
        r0 = r1
    return blocks


def _product(mat, crow: Tensor, col: Tensor, val: Tensor,
             n: int) -> Tuple[Tensor, Tensor, Tensor]:
    r"""The CSR entries of the rows times :math:`\mathbf{M}` (columns
    unsorted within rows)."""
    num_rows = crow.numel() - 1
    if col.numel() == 0:
        return crow, col, val
    return _entries(_matrix(crow, col, val, num_rows, n) @ mat)


def _truncate(crow: Tensor, col: Tensor, val: Tensor, eps: Optional[float],
              topk: Optional[int]):
    r"""Keeps the entries of modulus at least :obj:`eps`, then the
    :obj:`topk` largest of each row; returns the kept rows and the moduli
    of all entries with those kept set to zero (:obj:`None` if none was
    dropped)."""
    mag = val.abs()
    keep = None
    if eps is not None:
        keep = ~(mag < eps)  # NaN (an overflow) is kept, to be reported
    if topk is not None:
        counts = _segment_count(crow, keep)
        if bool((counts > topk).any()):
            row = _rows(crow)
            idx = torch.arange(val.numel(), device=val.device)
            if keep is not None:
                idx = idx[keep]
            # Within each row, by decreasing modulus: two stable sorts.
            perm = idx[torch.argsort(mag[idx], descending=True, stable=True)]
            perm = perm[torch.argsort(row[perm], stable=True)]
            first = torch.zeros(counts.numel() + 1, dtype=torch.long,
                                device=val.device)
            torch.cumsum(counts, 0, out=first[1:])
            rank = torch.arange(perm.numel(), device=val.device) - \
                first[row[perm]]
            keep = torch.zeros(val.numel(), dtype=torch.bool,
                               device=val.device)
            keep[perm[rank < topk]] = True
    if keep is None or bool(keep.all()):
        return crow, col, val, None
    idx = keep.nonzero().view(-1)  # increasing
    return (torch.searchsorted(idx, crow), col[idx], val[idx],
            mag.masked_fill_(keep, 0.))


def _segment_count(crow: Tensor, keep: Optional[Tensor]) -> Tensor:
    if keep is None:
        return crow.diff()
    kept = torch.zeros(keep.numel() + 1, dtype=torch.long,
                       device=keep.device)
    torch.cumsum(keep, 0, out=kept[1:])
    return kept[crow].diff()


def _concat_crow(crows: List[Tensor], device) -> Tensor:
    r"""The row pointer of consecutive blocks (each given without its
    leading zero)."""
    parts, offset = [torch.zeros(1, dtype=torch.long, device=device)], 0
    for c in crows:
        parts.append(c + offset)
        if c.numel() > 0:
            offset = offset + c[-1]
    return torch.cat(parts)
