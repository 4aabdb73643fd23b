import inspect
from typing import Any

from torch_geometric.data import Data
from torch_geometric.data.datapipes import functional_transform
from torch_geometric.transforms import BaseTransform

from torch_geometric_coin.utils import gaussian_knn_graph
from torch_geometric_coin._checks import check_number

# The arguments of `gaussian_knn_graph` that `**kwargs` may set:
_OPTIONS = tuple(name for name in inspect.signature(gaussian_knn_graph)
                 .parameters if name not in ('x', 'k', 'bandwidth_k', 'batch'))


@functional_transform('gaussian_knn_graph')
class GaussianKNNGraph(BaseTransform):
    r"""Creates a weighted :math:`k`-NN graph with Gaussian edge weights from
    node features :obj:`data.x` (or positions :obj:`data.pos`), as computed by
    :func:`torch_geometric_coin.utils.gaussian_knn_graph` (functional name:
    :obj:`gaussian_knn_graph`). Sets :obj:`data.edge_index` and
    :obj:`data.edge_weight`; a :obj:`data.batch` vector keeps graphs apart.

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
            :obj:`backend`, :obj:`num_workers`).
    """
    def __init__(
        self,
        k: int = 6,
        bandwidth_k: int = 3,
        attr: str = 'x',
        **kwargs: Any,
    ) -> None:
        check_number('k', k, integer=True, low=1)
        check_number('bandwidth_k', bandwidth_k, integer=True, low=1)
        if attr not in ('x', 'pos'):
            raise ValueError(f"'attr' must be 'x' or 'pos' (got {attr!r})")
        unknown = sorted(set(kwargs) - set(_OPTIONS))
        if unknown:
            raise TypeError(f"'{unknown[0]}' is not an argument of "
                            f"'gaussian_knn_graph' (choose from {_OPTIONS})")
        self.k = k
        self.bandwidth_k = bandwidth_k
        self.attr = attr
        self.kwargs = kwargs

    def forward(self, data: Data) -> Data:
        x = getattr(data, self.attr, None)
        if x is None:
            raise ValueError(f"'{self.__class__.__name__}' needs "
                             f"'data.{self.attr}'")
        data.edge_index, data.edge_weight = gaussian_knn_graph(
            x, self.k, self.bandwidth_k, batch=getattr(data, 'batch', None),
            **self.kwargs)
        return data

    def __repr__(self) -> str:
        options = ''.join(f', {key}={value!r}'
                          for key, value in self.kwargs.items())
        return (f'{self.__class__.__name__}(k={self.k}, '
                f'bandwidth_k={self.bandwidth_k}, attr={self.attr!r}'
                f'{options})')
