from typing import Optional

from torch_geometric.data import Data
from torch_geometric.data.datapipes import functional_transform
from torch_geometric.transforms import BaseTransform

from torch_geometric_coin.utils import gaussian_knn_graph


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
        loop (bool, optional): Adds self weights before normalization.
            (default: :obj:`True`)
        normalize (bool, optional): Symmetric degree normalization.
            (default: :obj:`True`)
        symmetrize (bool, optional): Returns :math:`(\mathbf{W} +
            \mathbf{W}^{\top}) / 2`. (default: :obj:`True`)
        metric (str, optional): :obj:`"euclidean"` or :obj:`"cosine"`.
            (default: :obj:`"euclidean"`)
        kernel (str, optional): :obj:`"gaussian"` or :obj:`"self_tuning"`.
            (default: :obj:`"gaussian"`)
        chunk_size (int, optional): Query nodes scored at once.
            (default: :obj:`None`, chosen from :obj:`max_memory`)
        max_memory (int, optional): Memory budget in bytes of the temporary
            score matrices. (default: :obj:`256 MiB`)
        backend (str, optional): :obj:`"exact"`, :obj:`"faiss"` or
            :obj:`"pyg_lib"`. (default: :obj:`"exact"`)
    """
    def __init__(
        self,
        k: int = 6,
        bandwidth_k: int = 3,
        attr: str = 'x',
        loop: bool = True,
        normalize: bool = True,
        symmetrize: bool = True,
        metric: str = 'euclidean',
        kernel: str = 'gaussian',
        chunk_size: Optional[int] = None,
        max_memory: int = 256 * 2**20,
        backend: str = 'exact',
    ) -> None:
        if attr not in ('x', 'pos'):
            raise ValueError(f"'attr' must be 'x' or 'pos' (got {attr!r})")
        self.k = k
        self.bandwidth_k = bandwidth_k
        self.attr = attr
        self.loop = loop
        self.normalize = normalize
        self.symmetrize = symmetrize
        self.metric = metric
        self.kernel = kernel
        self.chunk_size = chunk_size
        self.max_memory = max_memory
        self.backend = backend

    def forward(self, data: Data) -> Data:
        x = getattr(data, self.attr, None)
        if x is None:
            raise ValueError(f"'{self.__class__.__name__}' needs 'data.{self.attr}'")
        edge_index, edge_weight = gaussian_knn_graph(
            x, self.k, self.bandwidth_k, batch=getattr(data, 'batch', None),
            loop=self.loop, normalize=self.normalize,
            symmetrize=self.symmetrize, metric=self.metric,
            kernel=self.kernel, chunk_size=self.chunk_size,
            max_memory=self.max_memory, backend=self.backend)
        data.edge_index = edge_index
        data.edge_weight = edge_weight
        return data

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(k={self.k}, '
                f'bandwidth_k={self.bandwidth_k}, attr={self.attr!r}, '
                f'metric={self.metric!r}, kernel={self.kernel!r})')
