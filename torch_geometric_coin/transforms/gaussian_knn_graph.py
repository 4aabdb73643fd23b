import inspect
from typing import Any

import torch
from torch_geometric.data import Data
from torch_geometric.data.datapipes import functional_transform
from torch_geometric.transforms import BaseTransform

from torch_geometric_coin.utils import gaussian_knn_graph
from torch_geometric_coin.utils._gaussian_knn_graph import _check_options

# The arguments of `gaussian_knn_graph` that `**kwargs` may set:
_DEFAULTS = {name: p.default for name, p in
             inspect.signature(gaussian_knn_graph).parameters.items()
             if name not in ('x', 'k', 'bandwidth_k', 'batch')}
_OPTIONS = tuple(_DEFAULTS)


@functional_transform('gaussian_knn_graph')
class GaussianKNNGraph(BaseTransform):
    r"""Creates a weighted :math:`k`-NN graph with Gaussian edge weights from
    node features :obj:`data.x` (or positions :obj:`data.pos`), as computed by
    :func:`torch_geometric_coin.utils.gaussian_knn_graph` (functional name:
    :obj:`gaussian_knn_graph`). Sets :obj:`data.edge_index` and
    :obj:`data.edge_weight`, and removes :obj:`data.edge_attr` (which
    belonged to the replaced edges); a :obj:`data.batch` vector keeps graphs
    apart. All arguments are checked when the transform is created.

    The result feeds
    :class:`~torch_geometric_coin.nn.CoinDiffusionConv` with
    :obj:`normalization=None` directly.

    Args:
        k (int, optional): The number of neighbours. (default: :obj:`6`)
        bandwidth_k (int, optional): The neighbour whose distance is the
            bandwidth. (default: :obj:`3`)
        attr (str, optional): The node attribute to build the graph from,
            :obj:`"x"` or :obj:`"pos"`. (default: :obj:`"x"`)
        **kwargs (optional): Additional arguments of
            :func:`~torch_geometric_coin.utils.gaussian_knn_graph`
            (:obj:`loop`, :obj:`normalize`, :obj:`symmetrize`, :obj:`metric`,
            :obj:`kernel`, :obj:`chunk_size`, :obj:`max_memory`,
            :obj:`backend`, :obj:`num_workers`, and the options of the
            approximate backends :obj:`"faiss_hnsw"` (:obj:`hnsw_m`,
            :obj:`ef_construction`, :obj:`ef_search`) and
            :obj:`"faiss_ivf"` (:obj:`nlist`, :obj:`nprobe`, :obj:`seed`)).
    """
    def __init__(
        self,
        k: int = 6,
        bandwidth_k: int = 3,
        attr: str = 'x',
        **kwargs: Any,
    ) -> None:
        if attr not in ('x', 'pos'):
            raise ValueError(f"'attr' must be 'x' or 'pos' (got {attr!r})")
        unknown = sorted(set(kwargs) - set(_OPTIONS))
        if unknown:
            raise TypeError(f"'{unknown[0]}' is not an argument of "
                            f"'gaussian_knn_graph' (choose from {_OPTIONS})")
        _check_options(k, bandwidth_k, **{**_DEFAULTS, **kwargs})
        self.k = int(k)
        self.bandwidth_k = int(bandwidth_k)
        self.attr = attr
        self.kwargs = kwargs

    def forward(self, data: Data) -> Data:
        x = getattr(data, self.attr, None)
        if x is None:
            raise ValueError(f"'{self.__class__.__name__}' needs "
                             f"'data.{self.attr}'")
        # Errors name the attribute of the data (not the argument 'x'):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(f"'data.{self.attr}' must be a floating point "
                            f"tensor (got {got})")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"'data.{self.attr}' contains NaN or infinite "
                             f"values")
        data.edge_index, data.edge_weight = gaussian_knn_graph(
            x, self.k, self.bandwidth_k, batch=getattr(data, 'batch', None),
            **self.kwargs)
        if 'edge_attr' in data:
            data.edge_attr = None
        return data

    def __repr__(self) -> str:
        options = ''.join(f', {key}={value!r}'
                          for key, value in self.kwargs.items())
        return (f'{self.__class__.__name__}(k={self.k}, '
                f'bandwidth_k={self.bandwidth_k}, attr={self.attr!r}'
                f'{options})')
