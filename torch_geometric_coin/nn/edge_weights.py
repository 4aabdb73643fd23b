r"""Learnable edge weights: small modules that return an :obj:`edge_weight`
for :class:`~torch_geometric_coin.nn.CoinDiffusionConv` (or any PyG layer
that takes one). Both stay non-negative, which the comparison principle of
the diffusion needs; gradients flow through the layer's normalisation.

Both are equivariant to the storage order of :obj:`edge_index`: permuting
its columns (and those of :obj:`edge_weight`) permutes the output alike, so
a diffusion over the returned weights is the same for every order of the
same edges. Duplicate entries of an edge :math:`(j, i)` each get their own
input weight times the same learned factor, so that their sum (what the
diffusion uses) is that of the coalesced graph."""
import math
from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter

from torch_geometric.nn.dense.linear import Linear
from torch_geometric.typing import OptTensor, SparseTensor

from torch_geometric_coin._checks import check_number

_EAGER = ('learned edge weights validate and order a graph in eager mode '
          '(once per graph): run the model once before compiling it')
_INDEX_DTYPES = (torch.long, torch.int, torch.int16, torch.int8, torch.uint8)


class KernelEdgeWeight(torch.nn.Module):
    r"""The inductive Gaussian kernel on projected node features,

    .. math::
        w_{ij} = a_{ij} \exp\left(-\| \mathbf{P}(\mathbf{h}_i -
        \mathbf{h}_j) \|^2\right),

    with a learnable projection :math:`\mathbf{P}` and the input weights
    :math:`a_{ij}` (ones if not given). The weight of an edge depends only
    on its end points, so the output follows any order of the edges.

    Args:
        in_channels (int): Size of the node features :math:`\mathbf{h}`.
        out_channels (int, optional): Size of the projection
            (:obj:`in_channels` if :obj:`None`). (default: :obj:`None`)

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F)` (dense), edge
          indices :math:`(2, |\mathcal{E}|)`, edge weights
          :math:`(|\mathcal{E}|)`
          *(optional, non-negative)*
        - **output:** edge weights :math:`(|\mathcal{E}|)`
    """
    def __init__(self, in_channels: int, out_channels: Optional[int] = None):
        super().__init__()
        check_number('in_channels', in_channels, integer=True, low=1)
        if out_channels is not None:
            check_number('out_channels', out_channels, integer=True, low=1)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels or in_channels)
        self.lin = Linear(self.in_channels, self.out_channels, bias=False,
                          weight_initializer='glorot')
        self._graph = _GraphCache()
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        self.lin.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_weight: OptTensor = None) -> Tensor:
        check_features(x, self.in_channels, self.lin.weight, sparse=False)
        _check_edge_weight(edge_index, edge_weight)
        # Validated once per graph (a host sync), not at every call:
        if not self._graph.hit(edge_index, edge_weight, x.size(0)):
            _validate_index(edge_index, x.size(0))
            _validate_weight(edge_weight)
            self._graph.store(None, edge_index, edge_weight, x.size(0))
        h = self.lin(x)
        w = torch.exp(-(h[edge_index[0]] - h[edge_index[1]]).square().sum(-1))
        return w if edge_weight is None else edge_weight.to(w.dtype) * w

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels})')


class PerEdgeWeight(torch.nn.Module):
    r"""One free weight per edge of a fixed graph (transductive),

    .. math::
        w_{ji} = a_{ji} \, \mathrm{softplus}(\theta_{ji}),

    initialised to :math:`w_{ji} = a_{ji}` (the input weights, ones if not
    given).

    The parameters belong to the edges :math:`(j, i)` (source, target), not
    to positions in the input: :obj:`weight[k]` is that of the :math:`k`-th
    distinct edge in lexicographic (source, target) order, the order of a
    coalesced :obj:`edge_index` (see
    :func:`torch_geometric.utils.coalesce`). Any order of the same edges
    therefore gets the same weight per edge. Duplicate entries of an edge
    share its parameter (each keeps its own :math:`a`), so
    :obj:`num_edges` counts distinct edges. The order is computed once per
    :obj:`edge_index` tensor (and whenever it is modified in place), not
    at every call.

    Args:
        num_edges (int): The number of distinct edges
            :math:`|\mathcal{E}|`.

    Shapes:
        - **input:** edge indices :math:`(2, |\mathcal{E}|)` in any order,
          edge weights :math:`(|\mathcal{E}|)` *(optional, non-negative)*
        - **output:** edge weights :math:`(|\mathcal{E}|)`, in the order of
          the input
    """
    def __init__(self, num_edges: int):
        super().__init__()
        check_number('num_edges', num_edges, integer=True, low=0)
        self.num_edges = int(num_edges)
        self.weight = Parameter(torch.empty(self.num_edges))
        self._graph = _GraphCache()  # edge_index -> edge_ids
        self._weight = _GraphCache()  # the validated input edge_weight
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        with torch.no_grad():  # softplus(theta) = 1
            self.weight.fill_(1.0 + math.log(-math.expm1(-1.0)))

    def edge_ids(self, edge_index: Tensor) -> Optional[Tensor]:
        r"""The index into :obj:`weight` of each column of
        :obj:`edge_index` (:obj:`None` if it is already coalesced, *i.e.*,
        the identity); cached by tensor."""
        if not self._graph.hit(edge_index):
            self._prepare(edge_index)
        return self._graph.value

    @torch.compiler.disable(reason=_EAGER)
    def _prepare(self, edge_index: Tensor):
        _check_edge_index(edge_index)
        _validate_index(edge_index, None)
        ids, count = canonical_edge_ids(edge_index)
        if count != self.num_edges:
            raise ValueError(
                f"The module learns {self.num_edges} edge weights but the "
                f"graph has {count} distinct edges (in "
                f"{edge_index.size(1)} columns of 'edge_index'; duplicates "
                f"share one weight)")
        if count == edge_index.size(1) and bool(torch.equal(
                ids, torch.arange(count, device=ids.device))):
            ids = None  # coalesced: no gather on the hot path
        self._graph.store(ids, edge_index)

    def forward(self, edge_index: Tensor,
                edge_weight: OptTensor = None) -> Tensor:
        _check_edge_weight(edge_index, edge_weight)
        if not self._weight.hit(edge_weight):
            _validate_weight(edge_weight)
            self._weight.store(None, edge_weight)
        ids = self.edge_ids(edge_index)
        w = F.softplus(self.weight)
        if ids is not None:
            w = w[ids]
        return w if edge_weight is None else edge_weight.to(w.dtype) * w

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.num_edges})'


def canonical_edge_ids(edge_index: Tensor) -> Tuple[Tensor, int]:
    r"""Numbers the distinct edges :math:`(j, i)` of :obj:`edge_index` in
    lexicographic (source, target) order and returns the number of each
    column, and how many distinct edges there are."""
    num_cols = edge_index.size(1)
    if num_cols == 0:
        return edge_index.new_empty(0, dtype=torch.long), 0
    src, dst = edge_index[0].long(), edge_index[1].long()
    perm = torch.argsort(dst, stable=True)
    perm = perm[torch.argsort(src[perm], stable=True)]
    src, dst = src[perm], dst[perm]
    new = torch.ones(num_cols, dtype=torch.bool, device=src.device)
    new[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
    group = new.cumsum(0) - 1
    ids = torch.empty_like(group)
    ids[perm] = group
    return ids, int(group[-1]) + 1


SPARSE_LAYOUTS = (torch.sparse_coo, torch.sparse_csr)


def check_features(x: Any, in_channels: int, weight: OptTensor,
                   sparse: bool = True):
    r"""Raises a clear error unless :obj:`x` is a floating point tensor of
    shape :obj:`[num_nodes, in_channels]` in the dtype of :obj:`weight`
    (any dtype under autocast, or if :obj:`weight` is :obj:`None`).

    With :obj:`sparse=True`, :obj:`x` may also be a 2-D :obj:`torch.sparse`
    COO or CSR tensor (no dense or batch dimensions, not requiring
    gradients), in exactly the dtype of :obj:`weight` (sparse products do
    not autocast), float32 or float64 on the CPU."""
    if not isinstance(x, Tensor):
        raise TypeError(f"'x' must be a tensor of shape [num_nodes, "
                        f"{in_channels}] (got {type(x).__name__})")
    layout = x.layout
    if layout != torch.strided:
        allowed = 'torch.sparse_coo or torch.sparse_csr tensor'
        if not sparse:
            raise TypeError(f"'x' must be a dense tensor here (got layout "
                            f"{layout}); convert it with 'x.to_dense()'")
        if layout not in SPARSE_LAYOUTS:
            raise TypeError(f"A sparse 'x' must be a {allowed} (got layout "
                            f"{layout}); convert it, e.g., with "
                            f"'x.to_sparse_csr()'")
        if x.dim() != 2 or x.dense_dim() != 0:
            raise ValueError(f"A sparse 'x' must be a 2-D {allowed} of "
                             f"shape [num_nodes, {in_channels}] without "
                             f"dense or batch dimensions (got shape "
                             f"{list(x.size())} with {x.dense_dim()} dense "
                             f"dimensions)")
        if x.requires_grad:
            raise ValueError("Gradients with respect to a sparse 'x' are "
                             "not supported: pass it without "
                             "'requires_grad' or as a dense tensor")
    if x.dim() != 2 or x.size(-1) != in_channels:
        raise ValueError(f"'x' must have shape [num_nodes, {in_channels}] "
                         f"(got {list(x.size())})")
    if not x.is_floating_point():
        raise TypeError(f"'x' must be a floating point tensor (got "
                        f"{x.dtype}); convert it, e.g., with 'x.float()'")
    if weight is not None and x.dtype != weight.dtype and (
            layout != torch.strided
            or not torch.is_autocast_enabled(x.device.type)):
        raise TypeError(f"'x' has dtype {x.dtype} but the parameters have "
                        f"dtype {weight.dtype}; convert one of them, e.g., "
                        f"'x.to({weight.dtype})' or 'model.to({x.dtype})'")
    if layout != torch.strided and x.device.type == 'cpu' and \
            x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"A sparse 'x' on the CPU must be float32 or "
                        f"float64 (got {x.dtype}: no sparse products in "
                        f"this dtype); pass 'x.to_dense()' or use float32")


def _check_edge_index(edge_index: Any):
    if not isinstance(edge_index, Tensor) or edge_index.is_sparse \
            or edge_index.layout != torch.strided:
        raise TypeError(f"Learnable edge weights need an 'edge_index' "
                        f"tensor of shape [2, num_edges] (got "
                        f"{type(edge_index).__name__}"
                        + (f" of layout {edge_index.layout}"
                           if isinstance(edge_index, Tensor) else '')
                        + "); turn a sparse adj_t into one with "
                        "'to_edge_index(adj_t)[0].flip(0)' (COIN does so "
                        "itself)")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'edge_index' must have shape [2, num_edges] "
                         f"(got {list(edge_index.size())})")
    if edge_index.dtype not in _INDEX_DTYPES:
        raise TypeError(f"'edge_index' must be an integer tensor (got "
                        f"{edge_index.dtype})")


def _check_edge_weight(edge_index: Any, edge_weight: Any):
    r"""The checks of shapes and types (no host sync: every call)."""
    _check_edge_index(edge_index)
    if edge_weight is None:
        return
    if not isinstance(edge_weight, Tensor):
        raise TypeError(f"'edge_weight' must be a tensor or None (got "
                        f"{type(edge_weight).__name__})")
    if edge_weight.shape != (edge_index.size(1), ):
        raise ValueError(f"'edge_weight' must have shape "
                         f"[{edge_index.size(1)}] (got "
                         f"{list(edge_weight.size())})")
    if edge_weight.dtype == torch.bool or edge_weight.is_complex():
        raise TypeError(f"'edge_weight' must be a real tensor (got "
                        f"{edge_weight.dtype})")


@torch.compiler.disable(reason=_EAGER)
def _validate_index(edge_index: Tensor, num_nodes: Optional[int]):
    r"""The check of node indices (a host sync: once per graph)."""
    if edge_index.numel() > 0:
        low, high = int(edge_index.min()), int(edge_index.max())
        if low < 0 or (num_nodes is not None and high >= num_nodes):
            bound = '' if num_nodes is None else f", {num_nodes - 1}"
            raise ValueError(f"'edge_index' contains node indices outside "
                             f"[0{bound}] (range found: [{low}, {high}])")


@torch.compiler.disable(reason=_EAGER)
def _validate_weight(edge_weight: OptTensor):
    r"""The check of input weights (a host sync: once per tensor)."""
    if edge_weight is not None and edge_weight.numel() > 0:
        w = edge_weight.detach()
        if not bool(torch.isfinite(w).all()):
            raise ValueError("'edge_weight' contains NaN or infinite values")
        if bool((w < 0).any()):
            raise ValueError("'edge_weight' must be non-negative (the "
                             "comparison principle of the diffusion needs "
                             "it)")


class _GraphCache:
    r"""Remembers the graph tensors of the last call by identity and
    in-place version (holding them, so that their ids are not reused), with
    a value computed from them. Copies and pickles of a module start
    empty."""
    def __init__(self):
        self.key: tuple = ()
        self.value: Any = None

    def hit(self, *objs) -> bool:
        if len(objs) != len(self.key):
            return False
        # (torch.compile sees identities, not version counters: a graph is
        # prepared in eager mode, as the layer's.)
        compiling = torch.compiler.is_compiling()
        for (obj, version), new in zip(self.key, objs):
            if isinstance(new, int) or isinstance(obj, int):
                if obj != new:  # a number of nodes
                    return False
            elif obj is not new or (not compiling
                                    and _version(new) != version):
                return False
        return True

    def store(self, value: Any, *objs):
        self.key = tuple((obj, _version(obj)) for obj in objs)
        self.value = value

    def __reduce__(self):
        return (_GraphCache, ())


def _version(obj: Any) -> Any:
    r"""The in-place version counter of a tensor or of the tensors of a
    :class:`torch_sparse.SparseTensor` (inference tensors have none)."""
    if isinstance(obj, SparseTensor):
        storage = obj.storage
        return tuple(_version(t) for t in (storage._row, storage._rowptr,
                                           storage._col, storage._value))
    if not isinstance(obj, Tensor):
        return None
    return -1 if obj.is_inference() else obj._version
