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

    truncated to a sparse graph, as PyG's
    :class:`~torch_geometric.transforms.GDC` does with its kernels
    (functional name: :obj:`coin_diffusion`); the rows come from
    :func:`~torch_geometric_coin.ops.diffusion_rows` (truncated after each
    of the :math:`K` products by :obj:`eps` and :obj:`topk`).

    The new :obj:`data.edge_index` holds an edge :math:`j \to i` of weight
    :math:`P_{ij}` per kept entry (sorted by :math:`i`, then :math:`j`), so
    that summing weighted messages gives :math:`\mathbf{P}\mathbf{X}`, the
    output of :class:`~torch_geometric_coin.nn.CoinDiffusionConv` up to the
    truncation. The input weights are :obj:`data.edge_weight`, else a
    one-dimensional :obj:`data.edge_attr` (as GDC reads them), else ones;
    the output weights go to the same attribute (:obj:`data.edge_weight`
    if none). Every other edge-level attribute (:obj:`edge_attr`,
    :obj:`edge_type`, ...) belonged to the old edges and is removed.
    :obj:`data.diffusion_bound` :math:`(N)` bounds the :math:`L_1` norm of
    each row's truncation error (:math:`0` where nothing was dropped).

    Args:
        K, sigma2, normalization, add_self_loops, topk, max_memory
            (optional): As in
            :func:`~torch_geometric_coin.ops.diffusion_rows` (defaults:
            :obj:`20`, :obj:`0.35`, :obj:`'coin'`, :obj:`True`,
            :obj:`None`, :obj:`None`).
        eps (float, optional): Drops entries of modulus below :obj:`eps`
            after each step (:obj:`None`: no threshold).
            (default: :obj:`1e-4`)
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
