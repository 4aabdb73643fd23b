from typing import Optional

import torch
from torch_geometric.data import Data
from torch_geometric.data.datapipes import functional_transform
from torch_geometric.transforms import BaseTransform

from torch_geometric_coin._checks import check_bool, check_choice, \
    check_number
from torch_geometric_coin.ops import diffusion_rows
from torch_geometric_coin.utils._coin_norm import NORMALIZATIONS


@functional_transform('coin_diffusion')
class CoinDiffusion(BaseTransform):
    r"""Replaces the graph by COIN's explicit diffusion operator

    .. math::
        \mathbf{P} = (\mathbf{I} - \sigma^2 \mathbf{L})^K,

    truncated to a sparse graph, as PyG's :class:`~torch_geometric.
    transforms.GDC` does with the heat kernel (whose sparse, approximate
    variant GDC does not implement) (functional name:
    :obj:`coin_diffusion`). :math:`\mathbf{L}` is the Laplacian of
    :func:`~torch_geometric_coin.utils.coin_norm`; the rows are computed by
    :func:`~torch_geometric_coin.ops.diffusion_rows`: :math:`K` sparse
    products from the unit rows, each followed by dropping the entries of
    modulus below :obj:`eps` and keeping the :obj:`topk` largest of each
    row, so the graph never densifies.

    The new :obj:`data.edge_index` holds the edge :math:`j \to i`
    (:obj:`edge_index[:, e] = (j, i)`, sorted by :math:`i` then :math:`j`)
    with weight :math:`P_{ij}` for each kept entry, so that summing the
    weighted messages (*e.g.*, :obj:`torch_geometric.utils.spmm` or
    :class:`~torch_geometric.nn.conv.SimpleConv`) gives
    :math:`\mathbf{P}\mathbf{X}`, the output of
    :class:`~torch_geometric_coin.nn.CoinDiffusionConv` up to the
    truncation. The input weights are :obj:`data.edge_weight`, else a
    one-dimensional :obj:`data.edge_attr` (as GDC reads them), else ones;
    the output weights go to the same attribute (:obj:`data.edge_weight`
    if the graph had none). Every other edge-level attribute (such as
    :obj:`data.edge_attr` or :obj:`data.edge_type`) belonged to the replaced
    edges and is removed.

    :obj:`data.diffusion_bound` :math:`(N)` is set to an upper bound of the
    :math:`L_1` norm of the truncation error of each row,
    :math:`\sum_j |P_{ij} - \tilde{P}_{ij}|` (so
    :math:`\|(\mathbf{P} - \tilde{\mathbf{P}})\mathbf{X}\|_{\infty} \leq
    \beta_i \|\mathbf{X}\|_{\infty}` for node :math:`i`); :math:`0` where
    nothing was dropped. See :func:`~torch_geometric_coin.ops.diffusion_rows`
    for its formula.

    Args:
        K (int, optional): Number of steps :math:`K`. (default: :obj:`20`)
        sigma2 (float, optional): Step size :math:`\sigma^2 > 0`.
            (default: :obj:`0.35`)
        normalization (str, optional): :obj:`'coin'`, :obj:`'sym'`,
            :obj:`'rw'` or :obj:`None` (see
            :func:`~torch_geometric_coin.utils.coin_norm`).
            (default: :obj:`'coin'`)
        add_self_loops (bool, optional): Whether to add self-loops of weight
            one before normalising. (default: :obj:`True`)
        eps (float, optional): Drops entries of modulus below :obj:`eps`
            after each step (:obj:`None`: no threshold).
            (default: :obj:`1e-4`)
        topk (int, optional): Keeps the :obj:`topk` entries of largest
            modulus per row after each step (:obj:`None`: all).
            (default: :obj:`None`)
        max_memory (int, optional): Memory budget in bytes of the
            temporaries of each sparse product (:obj:`None` for 256 MiB).
            (default: :obj:`None`)
    """
    def __init__(
        self,
        K: int = 20,
        sigma2: float = 0.35,
        normalization: Optional[str] = 'coin',
        add_self_loops: bool = True,
        eps: Optional[float] = 1e-4,
        topk: Optional[int] = None,
        max_memory: Optional[int] = None,
    ) -> None:
        check_number('K', K, integer=True, low=0)
        for name, value in [('sigma2', sigma2), ('eps', eps), ('topk', topk),
                            ('max_memory', max_memory)]:
            if value is not None or name == 'sigma2':
                check_number(name, value, integer=name in ('topk',
                                                           'max_memory'),
                             low=0, open_low=True)
        check_choice('normalization', normalization, NORMALIZATIONS)
        check_bool('add_self_loops', add_self_loops)
        self.K = int(K)
        self.sigma2 = float(sigma2)
        self.normalization = normalization
        self.add_self_loops = bool(add_self_loops)
        self.eps = None if eps is None else float(eps)
        self.topk = None if topk is None else int(topk)
        self.max_memory = None if max_memory is None else int(max_memory)

    @torch.no_grad()
    def forward(self, data: Data) -> Data:
        edge_index = data.edge_index if 'edge_index' in data else None
        if edge_index is None:
            raise ValueError(f"'{self.__class__.__name__}' needs "
                             f"'data.edge_index'")
        num_nodes = data.num_nodes
        if num_nodes is None:
            raise ValueError(f"'{self.__class__.__name__}' needs the number "
                             f"of nodes of 'data'")
        attr = None
        if getattr(data, 'edge_weight', None) is not None:
            attr = 'edge_weight'
        elif getattr(data, 'edge_attr', None) is not None \
                and data.edge_attr.dim() == 1:
            attr = 'edge_attr'
        weight = None if attr is None else data[attr]
        index, value, bound = diffusion_rows(
            edge_index, weight, num_nodes, K=self.K, sigma2=self.sigma2,
            normalization=self.normalization,
            add_self_loops=self.add_self_loops, eps=self.eps, topk=self.topk,
            max_memory=self.max_memory)
        for key in data.edge_attrs():  # (they belonged to the old edges)
            if key not in ('edge_index', attr):
                del data[key]
        data.edge_index = index.flip(0)  # (source j, target i)
        data[attr or 'edge_weight'] = value
        data.diffusion_bound = bound
        return data

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(K={self.K}, '
                f'sigma2={self.sigma2}, '
                f'normalization={self.normalization!r}, '
                f'add_self_loops={self.add_self_loops}, eps={self.eps}, '
                f'topk={self.topk}, max_memory={self.max_memory})')
