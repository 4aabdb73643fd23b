from typing import Optional, Tuple

import torch
from torch import Tensor

from torch_geometric.utils import scatter

NORMALIZATIONS = ('coin', 'sym', 'rw', None)


def check_normalization(normalization: Optional[str]) -> None:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"Unknown normalization {normalization!r}: expected "
                         f"one of {NORMALIZATIONS}")


def diffusion_laplacian(
    edge_index: Tensor,
    edge_weight: Optional[Tensor],
    num_nodes: int,
    normalization: Optional[str] = 'coin',
    add_self_loops: bool = True,
    dtype: Optional[torch.dtype] = None,
) -> Tuple[Tensor, Tensor]:
    r"""Computes the graph Laplacian :math:`\mathbf{L}` that COIN diffuses
    with, as :math:`\mathbf{L} = \mathrm{diag}(\mathbf{l}) - \mathbf{A}`, where
    :math:`\mathbf{A}` lives on the given edges and :math:`\mathbf{l}` is a
    node vector. This is the only normalisation routine of the package.

    With weights :math:`\mathbf{W}` (ones if :obj:`edge_weight` is
    :obj:`None`), :math:`\tilde{\mathbf{W}} = \mathbf{W} + \mathbf{I}` if
    :obj:`add_self_loops` else :math:`\mathbf{W}`, and the (in-)degree
    :math:`\tilde{\mathbf{D}} = \mathrm{diag}(\tilde{\mathbf{W}} \mathbf{1})`:

    .. math::
        \mathbf{L}_{\textrm{coin}} &= \mathrm{diag}(\hat{\mathbf{A}}
        \mathbf{1}) - \hat{\mathbf{A}}, \quad \hat{\mathbf{A}} =
        \tilde{\mathbf{D}}^{-1/2} \tilde{\mathbf{W}}
        \tilde{\mathbf{D}}^{-1/2}

        \mathbf{L}_{\textrm{sym}} &= \mathbf{I} - \tilde{\mathbf{D}}^{-1/2}
        \tilde{\mathbf{W}} \tilde{\mathbf{D}}^{-1/2}

        \mathbf{L}_{\textrm{rw}} &= \mathbf{I} - \tilde{\mathbf{D}}^{-1}
        \tilde{\mathbf{W}}

        \mathbf{L}_{\textrm{None}} &= \mathrm{diag}(\mathbf{W} \mathbf{1}) -
        \mathbf{W}

    :obj:`'coin'` is the operator of the authors' code (GCN normalisation).
    For :obj:`'sym'` and :obj:`'rw'`, isolated nodes (zero degree) get
    :math:`L_{ii} = 0`, so they keep their value. Self-loops cancel in
    :obj:`'coin'` and :obj:`None`: they only enter :math:`\tilde{\mathbf{D}}`.
    Entry :math:`A_{ij}` belongs to the edge :math:`j \to i`
    (:obj:`edge_index[:, e] = (j, i)`), so :math:`(\mathbf{L}\mathbf{u})_i`
    aggregates over the incoming edges of node :math:`i`.

    Args:
        edge_index (torch.Tensor): The edge indices :math:`(2, |\mathcal{E}|)`.
        edge_weight (torch.Tensor, optional): Non-negative edge weights
            :math:`(|\mathcal{E}|)`. (default: :obj:`None`)
        num_nodes (int): The number of nodes.
        normalization (str, optional): :obj:`'coin'`, :obj:`'sym'`,
            :obj:`'rw'` or :obj:`None`. (default: :obj:`'coin'`)
        add_self_loops (bool, optional): Whether to add self-loops of weight
            one before normalising (no effect for :obj:`None`).
            (default: :obj:`True`)
        dtype (torch.dtype, optional): The dtype of the output when
            :obj:`edge_weight` is :obj:`None`. (default: :obj:`None`)

    Returns:
        (:class:`torch.Tensor`, :class:`torch.Tensor`): the values of
        :math:`\mathbf{A}` on the edges, shape :math:`(|\mathcal{E}|)`, and
        the diagonal :math:`\mathbf{l}`, shape :math:`(|\mathcal{V}|)`.
    """
    check_normalization(normalization)
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), device=edge_index.device,
                                 dtype=dtype or torch.get_default_dtype())
    src, dst = edge_index[0], edge_index[1]
    deg = scatter(edge_weight, dst, 0, dim_size=num_nodes, reduce='sum')

    if normalization is None:
        return edge_weight, deg

    loop = 1.0 if add_self_loops else 0.0
    deg = deg + loop

    if normalization == 'rw':
        deg_inv = deg.reciprocal().masked_fill(deg == 0, 0.)
        adj = edge_weight * deg_inv[dst]
        return adj, (deg > 0).to(adj.dtype) - loop * deg_inv

    deg_inv_sqrt = deg.rsqrt().masked_fill(deg == 0, 0.)
    adj = deg_inv_sqrt[src] * edge_weight * deg_inv_sqrt[dst]
    if normalization == 'sym':
        return adj, (deg > 0).to(adj.dtype) - loop * deg_inv_sqrt.square()

    # 'coin': diag(A_hat 1) - A_hat; the added self-loop cancels.
    return adj, scatter(adj, dst, 0, dim_size=num_nodes, reduce='sum')


def laplacian_diagonal(edge_index: Tensor, adj: Tensor,
                       diag: Tensor) -> Tensor:
    r"""The diagonal of :math:`\mathbf{L} = \mathrm{diag}(\mathbf{l}) -
    \mathbf{A}` (as returned by :func:`diffusion_laplacian`): :math:`l_i`
    minus the weights of the input's self-loops at :math:`i`, which
    :math:`\mathbf{A}` keeps on their edges."""
    is_loop = edge_index[0] == edge_index[1]
    return diag - scatter(adj[is_loop], edge_index[1][is_loop], 0,
                          dim_size=diag.numel(), reduce='sum')


def gershgorin_bound(edge_index: Tensor, adj: Tensor, diag: Tensor,
                     normalization: Optional[str] = None) -> Tensor:
    r"""An upper bound of the largest eigenvalue modulus of
    :math:`\mathbf{L} = \mathrm{diag}(\mathbf{l}) - \mathbf{A}` (as returned
    by :func:`diffusion_laplacian`) from Gershgorin's theorem, taken over the
    rows and the columns (the smaller of both):
    :math:`\max_i |L_{ii}| + \sum_{j \neq i} |L_{ij}|`. For the
    :obj:`'sym'` and :obj:`'rw'` normalisations of non-negative weights the
    spectrum lies in :math:`[0, 2]`, so the bound is capped at :math:`2`.
    """
    num_nodes = diag.numel()
    adj, diag = adj.detach(), diag.detach()
    src, dst = edge_index[0], edge_index[1]
    off = adj.abs() * (src != dst)
    center = laplacian_diagonal(edge_index, adj, diag).abs()
    rows = center + scatter(off, dst, 0, dim_size=num_nodes, reduce='sum')
    cols = center + scatter(off, src, 0, dim_size=num_nodes, reduce='sum')
    if num_nodes == 0:
        return diag.new_zeros(())
    bound = torch.minimum(rows.max(), cols.max())
    if normalization in ('sym', 'rw'):
        bound = bound.clamp(max=2.0)
    return bound
