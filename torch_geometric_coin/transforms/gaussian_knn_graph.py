from typing import Optional

from torch_geometric.data import Data
from torch_geometric.data.datapipes import functional_transform
from torch_geometric.transforms import BaseTransform

from torch_geometric_coin._checks import check_choice
from torch_geometric_coin.utils import gaussian_knn_graph
from torch_geometric_coin.utils._gaussian_knn_graph import (
    _check_input,
    _check_options,
)


@functional_transform('gaussian_knn_graph')
class GaussianKNNGraph(BaseTransform):
    r"""Sets :obj:`data.edge_index` and :obj:`data.edge_weight` to the
    Gaussian :math:`k`-NN graph of :obj:`data.x` (or :obj:`data.pos`) of
    :func:`~torch_geometric_coin.utils.gaussian_knn_graph`, per graph of
    :obj:`data.batch`, and removes :obj:`data.edge_attr` (functional name:
    :obj:`gaussian_knn_graph`).

    Args:
        k (int, optional): The number of neighbours. (default: :obj:`6`)
        bandwidth_k (int, optional): The neighbour of the bandwidth.
            (default: :obj:`3`)
        attr (str, optional): :obj:`"x"` or :obj:`"pos"`. (default: :obj:`"x"`)
        loop, normalize, symmetrize (bool, optional): As in the function.
            (default: :obj:`True`)
        kernel (str, optional): :obj:`"gaussian"` or :obj:`"self_tuning"`.
            (default: :obj:`"gaussian"`)
        chunk_size (int, optional): As in the function. (default: :obj:`None`)
    """
    def __init__(self, k: int = 6, bandwidth_k: int = 3, attr: str = 'x',
                 loop: bool = True, normalize: bool = True,
                 symmetrize: bool = True, kernel: str = 'gaussian',
                 chunk_size: Optional[int] = None) -> None:
        check_choice('attr', attr, ('x', 'pos'))
        _check_options(k, bandwidth_k, loop, normalize, symmetrize, kernel,
                       chunk_size)
        self.k, self.bandwidth_k, self.attr = int(k), int(bandwidth_k), attr
        self.options = dict(loop=bool(loop), normalize=bool(normalize),
                            symmetrize=bool(symmetrize), kernel=kernel,
                            chunk_size=chunk_size and int(chunk_size))

    def forward(self, data: Data) -> Data:
        x, name = getattr(data, self.attr, None), f"'data.{self.attr}'"
        if x is None:
            raise ValueError(f"'{type(self).__name__}' needs {name}")
        _check_input(x, None, name)
        data.edge_index, data.edge_weight = gaussian_knn_graph(
            x, self.k, self.bandwidth_k, getattr(data, 'batch', None),
            **self.options)
        if 'edge_attr' in data:
            data.edge_attr = None
        return data

    def __repr__(self) -> str:
        defaults = dict(loop=True, normalize=True, symmetrize=True,
                        kernel='gaussian', chunk_size=None)
        options = ''.join(f', {key}={value!r}' for key, value in
                          self.options.items() if value != defaults[key])
        return (f'{self.__class__.__name__}(k={self.k}, bandwidth_k='
                f'{self.bandwidth_k}, attr={self.attr!r}{options})')
