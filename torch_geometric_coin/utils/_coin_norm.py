from typing import Optional, Tuple

import torch
from torch import Tensor

from torch_geometric.utils import scatter
from torch_geometric.utils.num_nodes import maybe_num_nodes

from torch_geometric_coin._checks import check_choice, check_number


NORMALIZATIONS = ('coin', 'sym', 'rw', None)


def coin_norm(
    edge_index: Tensor,
    edge_weight: Optional[Tensor] = None,
    num_nodes: Optional[int] = None,
    normalization: Optional[str] = 'coin',
    add_self_loops: bool = True,
    dtype: Optional[torch.dtype] = None,
) -> Tuple[Tensor, Tensor]:
    r"""Computes the graph Laplacian :math:`\mathbf{L}` that COIN diffuses
    with, in the form of
    :func:`~torch_geometric.nn.conv.gcn_conv.gcn_norm`: the one
    normalisation routine of the package.

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

    :obj:`'coin'` is the operator of the COIN authors' code (the GCN
    normalisation, whose self-loops cancel in :math:`\mathbf{L}`). Isolated
    nodes keep their value. Entry :math:`L_{ij}` belongs to the edge
    :math:`j \to i`, as in PyG. The output holds the input edges that are
    not self-loops, in their order, then one diagonal entry per node
    (which absorbs the input's self-loops). Gradients flow to
    :obj:`edge_weight`; the input is not validated (see
    :func:`~torch_geometric_coin.ops.validate_graph`).

    Args:
        edge_index (torch.Tensor): The edge indices :math:`(2, |\mathcal{E}|)`.
        edge_weight (torch.Tensor, optional): Non-negative edge weights
            :math:`(|\mathcal{E}|)`. (default: :obj:`None`)
        num_nodes (int, optional): The number of nodes.
            (default: :obj:`None`)
        normalization (str, optional): :obj:`'coin'`, :obj:`'sym'`,
            :obj:`'rw'` or :obj:`None`. (default: :obj:`'coin'`)
        add_self_loops (bool, optional): Whether to add self-loops of weight
            one before normalising (no effect for :obj:`None`).
            (default: :obj:`True`)
        dtype (torch.dtype, optional): The dtype of the output when
            :obj:`edge_weight` is :obj:`None`. (default: :obj:`None`)

    Returns:
        (:class:`torch.Tensor`, :class:`torch.Tensor`): the edge indices
        :math:`(2, |\mathcal{E}_{\neq}| + |\mathcal{V}|)` and the values.
    """
    check_choice('normalization', normalization, NORMALIZATIONS)
    if num_nodes is not None:
        check_number('num_nodes', num_nodes, integer=True, low=0)
    num_nodes = maybe_num_nodes(edge_index, num_nodes)
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), device=edge_index.device,
                                 dtype=dtype or torch.get_default_dtype())
    src, dst = edge_index[0], edge_index[1]
    deg = scatter(edge_weight, dst, 0, dim_size=num_nodes, reduce='sum')

    if normalization is None:
        adj, diag = edge_weight, deg
    else:
        loop = 1.0 if add_self_loops else 0.0
        deg = deg + loop
        # Inverses of a safe degree: no 0 * inf = NaN in the gradient of
        # the weights at zero-degree nodes.
        isolated = deg == 0
        safe_deg = deg.masked_fill(isolated, 1.)
        if normalization == 'rw':
            deg_inv = safe_deg.reciprocal().masked_fill(isolated, 0.)
            adj = edge_weight * deg_inv[dst]
            diag = (deg > 0).to(adj.dtype) - loop * deg_inv
        else:
            deg_inv_sqrt = safe_deg.rsqrt().masked_fill(isolated, 0.)
            # (The product of both scales first: it cannot overflow where
            # the normalised weight does not.)
            adj = (deg_inv_sqrt[src] * deg_inv_sqrt[dst]) * edge_weight
            if normalization == 'sym':
                diag = ((deg > 0).to(adj.dtype) -
                        loop * deg_inv_sqrt.square())
            else:  # 'coin': diag(A_hat 1) - A_hat
                diag = scatter(adj, dst, 0, dim_size=num_nodes, reduce='sum')

    # The input's self-loops move from A to the diagonal of L.
    is_loop = (src == dst).to(adj.dtype)
    diag = diag - scatter(adj * is_loop, dst, 0, dim_size=num_nodes,
                          reduce='sum')
    keep = (src != dst).nonzero().view(-1)
    loop_index = torch.arange(num_nodes, device=edge_index.device)
    edge_index = torch.cat([
        edge_index.index_select(1, keep),
        torch.stack([loop_index, loop_index]),
    ], dim=1)
    adj = adj.index_select(0, keep)
    return edge_index, torch.cat([-adj, diag])
