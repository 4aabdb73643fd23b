import copy
import dataclasses
import math
import warnings
from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor

from torch_geometric.typing import Adj, OptTensor, SparseTensor
from torch_geometric.utils import is_torch_sparse_tensor, scatter

from torch_geometric_coin._checks import check_bool, check_choice, \
    check_number
from torch_geometric_coin._graph_cache import GraphCache
from torch_geometric_coin.utils._coin_norm import NORMALIZATIONS, coin_norm
from torch_geometric_coin.ops._schemes import explicit, functorch_active, \
    implicit

INDEX_DTYPES = (torch.long, torch.int, torch.int16, torch.int8, torch.uint8)
# Graphs up to this size get the exact largest eigenvalue (dense).
DENSE_EIGEN_NODES = 512
POWER_STEPS = 30


@dataclasses.dataclass
class SolverStats:
    r"""Iteration counts of the solves of :meth:`DiffusionOperator.implicit`:
    one per forward step, and one per adjoint solve of the backward pass."""
    forward: List[int] = dataclasses.field(default_factory=list)
    adjoint: List[int] = dataclasses.field(default_factory=list)


def validate_graph(edge_index: Adj, edge_weight: OptTensor = None,
                   num_nodes: Optional[int] = None,
                   ) -> Tuple[Tensor, OptTensor, int]:
    r"""The one validator of a graph: returns :obj:`(edge_index,
    edge_weight, num_nodes)` (:obj:`edge_index = (source, target)`, int64
    in range; finite, non-negative, floating point weights) from an
    :obj:`edge_index` with optional :obj:`edge_weight`, a
    :class:`torch_sparse.SparseTensor` or a :obj:`torch.sparse` adjacency
    (read as PyG's :obj:`adj_t`), or raises an error naming the argument.
    :obj:`num_nodes` is inferred if :obj:`None`."""
    if num_nodes is not None:
        check_number('num_nodes', num_nodes, integer=True, low=0)
    if isinstance(edge_index, SparseTensor) or \
            is_torch_sparse_tensor(edge_index):
        if edge_weight is not None:
            raise ValueError("Pass edge weights as the values of the sparse "
                             "tensor, not as 'edge_weight'")
        size = tuple(edge_index.sizes() if isinstance(
            edge_index, SparseTensor) else edge_index.size())
        num_nodes = size[0] if num_nodes is None else num_nodes
        if size != (num_nodes, num_nodes):
            raise ValueError(f"The sparse adjacency must have shape "
                             f"[{num_nodes}, {num_nodes}] to match 'x' "
                             f"(got {list(size)})")
        if isinstance(edge_index, SparseTensor):
            row, col, edge_weight = edge_index.coo()
        else:  # (coalesced: duplicates sum, as they do in the Laplacian)
            adj = edge_index.to_sparse_coo().coalesce()
            (row, col), edge_weight = adj.indices(), adj.values()
        edge_index = torch.stack([col, row])
    elif isinstance(edge_index, Tensor):
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"'edge_index' must have shape [2, num_edges] "
                             f"(got {list(edge_index.size())})")
        if edge_index.dtype not in INDEX_DTYPES:
            raise TypeError(f"'edge_index' must be an integer tensor (got "
                            f"{edge_index.dtype})")
        edge_index = edge_index.long()
        low = int(edge_index.min()) if edge_index.numel() else 0
        high = int(edge_index.max()) if edge_index.numel() else -1
        num_nodes = high + 1 if num_nodes is None else num_nodes
        if low < 0 or high >= num_nodes:
            raise ValueError(f"'edge_index' contains node indices outside "
                             f"[0, {num_nodes - 1}] (range found: "
                             f"[{low}, {high}])")
    else:
        raise TypeError(f"Unsupported adjacency type "
                        f"'{type(edge_index).__name__}': expected an "
                        f"'edge_index', a 'SparseTensor' or torch.sparse")
    if edge_weight is not None:
        if not isinstance(edge_weight, Tensor) or edge_weight.shape != (
                edge_index.size(1), ):
            raise ValueError(f"'edge_weight' must have shape "
                             f"[{edge_index.size(1)}] (got "
                             f"{getattr(edge_weight, 'shape', edge_weight)})")
        if edge_weight.dtype == torch.bool or edge_weight.is_complex():
            raise TypeError(f"'edge_weight' must be a real tensor (got "
                            f"{edge_weight.dtype})")
        if not edge_weight.is_floating_point():
            edge_weight = edge_weight.to(torch.get_default_dtype())
        w = edge_weight.detach()
        if not bool(((w >= 0) & (w < math.inf)).all()):  # (one read)
            raise ValueError(
                "'edge_weight' contains NaN or infinite values" if not bool(
                    torch.isfinite(w).all()) else "'edge_weight' must be "
                "non-negative (the comparison principle needs it)")
    return edge_index, edge_weight, int(num_nodes)


class DiffusionOperator:
    r"""The graph Laplacian :math:`\mathbf{L}` of COIN's diffusion and its
    two schemes, :math:`K` explicit Euler steps :math:`\mathbf{u}
    \leftarrow (\mathbf{I} - \sigma^2 \mathbf{L}) \mathbf{u}`
    (:meth:`explicit`) and :math:`K` implicit ones :math:`(\mathbf{I} +
    \sigma^2 \mathbf{L}) \mathbf{u}^{(k+1)} = \mathbf{u}^{(k)}`
    (:meth:`implicit`), each one autograd node.

    It owns what does not depend on parameters: the CSR layout of
    :math:`\mathbf{L}` (duplicates summed, int32 indices where they fit),
    that of :math:`\mathbf{L}^{\top}` (on first use), its symmetry and
    eigenvalue bound (on first use); :meth:`step_matrix` assembles
    :math:`\mathbf{I} - \sigma^2 \mathbf{L}`. Build it with
    :meth:`from_graph` (any PyG adjacency, validated once) or from the
    output of :func:`~torch_geometric_coin.utils.coin_norm`;
    :meth:`reweight` gives the operator of new edge weights on the same
    layout. Only :attr:`value` depends on parameters.

    Args:
        edge_index (torch.Tensor): The entries :math:`(2, E)` in the layout
            of :func:`~torch_geometric_coin.utils.coin_norm` (entry
            :obj:`(j, i)` is :math:`L_{ij}`).
        value (torch.Tensor): The values :math:`(E)`.
        num_nodes (int): The number of nodes :math:`N`.
    """
    def __init__(self, edge_index: Tensor, value: Tensor, num_nodes: int):
        n, nnz = num_nodes, edge_index.size(1)
        loop = torch.arange(n, device=edge_index.device)
        if nnz < n or not torch.equal(edge_index[:, nnz - n:],
                                      torch.stack([loop, loop])):
            raise ValueError("'edge_index' must end with one diagonal entry "
                             "per node, as 'coin_norm' returns")
        key, self._inverse = torch.unique(edge_index[1] * n + edge_index[0],
                                          return_inverse=True)
        dtype = torch.int32 if max(n, key.numel()) < 2**31 - 1 else \
            torch.int64
        row = torch.div(key, n, rounding_mode='floor')
        self.num_nodes = n
        self.crow = _compress(row, n).to(dtype)
        self.col = (key - row * n).to(dtype)
        self.diag_pos = self._inverse[nnz - n:]
        self._inverse = self._inverse.to(dtype)  # (coin_norm -> CSR order)
        self._transposed: Optional[Tuple[Tensor, Tensor, Tensor]] = None
        self._row: OptTensor = None
        self._set_value(value)
        # The validated input of `from_graph` (for `reweight`, `has_graph`
        # and the per-edge entries of `step_matrix`).
        self.graph: Optional[Tuple[Tensor, OptTensor]] = None
        self.normalization: Optional[str] = None
        self.add_self_loops = True

    def _set_value(self, value: Tensor):
        self.value = value.new_zeros(self.col.numel()).index_add(
            0, self._inverse, value)  # (duplicate entries sum)
        self._symmetric = self._lambda_max = None
        self._steps = {}
        self._gershgorin: Optional[float] = None

    @classmethod
    def from_graph(cls, edge_index: Adj, edge_weight: OptTensor,
                   num_nodes: int, normalization: Optional[str] = 'coin',
                   add_self_loops: bool = True,
                   dtype: Optional[torch.dtype] = None,
                   ) -> 'DiffusionOperator':
        r"""Validates a graph (see :func:`validate_graph`) and builds the
        operator of its Laplacian
        (:func:`~torch_geometric_coin.utils.coin_norm`)."""
        check_choice('normalization', normalization, NORMALIZATIONS)
        check_bool('add_self_loops', add_self_loops)
        edge_index, edge_weight, num_nodes = validate_graph(
            edge_index, edge_weight, num_nodes)
        if edge_weight is not None and dtype is not None:
            edge_weight = edge_weight.to(dtype)
        index, value = coin_norm(edge_index, edge_weight, num_nodes,
                                 normalization, add_self_loops, dtype)
        op = cls(index, value, num_nodes)
        op.graph, op._version = (edge_index, edge_weight), edge_index._version
        op.normalization, op.add_self_loops = normalization, add_self_loops
        return op

    def reweight(self, edge_weight: OptTensor) -> 'DiffusionOperator':
        r"""The operator of the same graph (built by :meth:`from_graph`)
        with new :obj:`edge_weight` (*e.g.*, learned ones, see
        :mod:`torch_geometric_coin.nn.edge_weights`): the layouts are
        shared, gradients flow through the normalisation. The weights are
        not validated (learned weights are non-negative by construction)."""
        edge_index = _graph_of(self)[0]
        if edge_weight is not None and edge_weight.shape != (
                edge_index.size(1), ):
            raise ValueError(f"'edge_weight' must have shape "
                             f"[{edge_index.size(1)}] (got "
                             f"{list(edge_weight.shape)})")
        _, value = coin_norm(edge_index, edge_weight, self.num_nodes,
                             self.normalization, self.add_self_loops,
                             self.value.dtype)
        op = copy.copy(self)
        op._set_value(value)
        op.graph = (edge_index, edge_weight)
        return op

    def has_graph(self, edge_index: Adj) -> bool:
        r"""Whether :obj:`edge_index` (any adjacency) holds the edges (and
        sparse values) of :attr:`graph` in its order, unedited since."""
        index, weight, _ = validate_graph(edge_index, None, self.num_nodes)
        ref_index, ref_weight = _graph_of(self)
        if ref_index._version != self._version or index.shape != \
                ref_index.shape or not torch.equal(index, ref_index):
            return False
        if weight is None:
            return True
        ref = torch.ones_like(weight) if ref_weight is None else ref_weight
        return torch.equal(weight.to(ref.dtype), ref)

    def _transpose(self) -> Tuple[Tensor, Tensor, Tensor]:
        r"""The CSR layout of :math:`\mathbf{L}^{\top}`: the order of its
        entries in :attr:`value`, its row pointer and columns."""
        if self._transposed is None:
            row = self.row()
            t_perm = torch.argsort(self.col.long() * self.num_nodes + row)
            t_crow = _compress(self.col.long()[t_perm], self.num_nodes)
            self._transposed = (t_perm, t_crow.to(self.crow.dtype),
                                row[t_perm].to(self.crow.dtype))
        return self._transposed

    def row(self) -> Tensor:  # (int64, kept once needed)
        if self._row is None:
            self._row = torch.repeat_interleave(
                torch.arange(self.num_nodes, device=self.crow.device),
                self.crow.diff(), output_size=self.col.numel())
        return self._row

    def matrix(self, value: OptTensor = None,
               transpose: bool = False) -> Tensor:
        r"""The CSR matrix of :obj:`value` (default: :math:`\mathbf{L}`), or
        of its transpose."""
        value = self.value if value is None else value
        crow, col = self.crow, self.col
        if transpose:
            t_perm, crow, col = self._transpose()
            value = value[t_perm]
        return csr(crow, col, value, (self.num_nodes, self.num_nodes))

    def transposed(self) -> 'DiffusionOperator':
        r"""The operator of :math:`\mathbf{L}^{\top}`."""
        t_perm, t_crow, t_col = self._transpose()
        inv = torch.empty_like(t_perm)
        inv[t_perm] = torch.arange(t_perm.numel(), device=t_perm.device)
        op = copy.copy(self)
        op.crow, op.col, op.diag_pos = t_crow, t_col, inv[self.diag_pos]
        op.value, op._transposed = self.value[t_perm], (inv, self.crow,
                                                        self.col)
        op.graph, op._steps, op._row = None, {}, None
        return op

    def sddmm(self, a: Tensor, b: Tensor, chunk: int = 1 << 22) -> Tensor:
        r"""The sampled product :math:`\sum_c a_{ic} b_{jc}` per entry."""
        row, col = self.row(), self.col
        out = a.new_empty(col.numel())
        for i in range(0, out.numel(), chunk):
            out[i:i + chunk] = (a[row[i:i + chunk]] *
                                b[col[i:i + chunk]]).sum(dim=-1)
        return out

    def step_matrix(self, sigma2: Union[float, Tensor],
                    dtype: Optional[torch.dtype] = None,
                    per_edge: bool = False) -> Tensor:
        r"""The values of :math:`\mathbf{I} - \sigma^2 \mathbf{L}` on the
        layout (the one place that assembles it; :obj:`-sigma2` gives the
        matrix :math:`\mathbf{I} + \sigma^2 \mathbf{L}` of the implicit
        scheme), differentiable in :attr:`value` and :obj:`sigma2`. Values
        that do not depend on parameters are assembled once per
        :obj:`sigma2`. With :obj:`per_edge=True`, :obj:`(edge_index,
        value)` in the layout of
        :func:`~torch_geometric_coin.utils.coin_norm` on :attr:`graph`
        instead (one entry per input edge that is no self-loop, then one
        per node)."""
        dtype = dtype or self.value.dtype
        if per_edge:
            index, value = coin_norm(*self.graph, self.num_nodes,
                                     self.normalization, self.add_self_loops,
                                     dtype)
            return index, _shift(value.to(dtype), sigma2, torch.arange(
                value.numel() - self.num_nodes, value.numel(),
                device=value.device))
        if self.value.requires_grad or isinstance(sigma2, Tensor):
            return _shift(self.value.to(dtype), sigma2, self.diag_pos)
        key = (type(sigma2), sigma2, dtype)  # (the last two: both schemes)
        if key not in self._steps:  # (checked once, not at every call)
            check_number('sigma2', sigma2)
            self._steps = dict(list(self._steps.items())[-1:])
            self._steps[key] = _shift(self.value.to(dtype), sigma2,
                                      self.diag_pos)
        return self._steps[key]

    @property
    def symmetric(self) -> bool:
        r"""Whether :math:`\mathbf{L}` is symmetric (to rounding); once."""
        if self._symmetric is None:
            value = self.value.detach()
            tol = 16 * torch.finfo(value.dtype).eps * float(
                value.abs().max()) if value.numel() else 0.
            t_perm, t_crow, t_col = self._transpose()
            self._symmetric = torch.equal(t_crow, self.crow) and \
                torch.equal(t_col, self.col) and bool(
                    (value[t_perm] - value).abs().max() <= tol)
        return self._symmetric

    def gershgorin_bound(self) -> float:
        r"""Gershgorin's bound of the eigenvalue moduli of :math:`\mathbf{L}`
        over rows and columns (the smaller):
        :math:`\max_i |L_{ii}| + \sum_{j \neq i} |L_{ij}|`."""
        if self._gershgorin is None:
            a = self.value.detach().abs()
            off = a.index_fill(0, self.diag_pos, 0.)
            center, n = a[self.diag_pos], self.num_nodes
            rows = center + torch.segment_reduce(  # (no row index held)
                off, 'sum', offsets=self.crow.long())
            cols = center + scatter(off, self.col.long(), 0, dim_size=n)
            self._gershgorin = float(torch.minimum(rows.max(), cols.max())
                                     ) if n > 0 else 0.0
        return self._gershgorin

    def lambda_max(self) -> float:
        r"""An upper bound of the eigenvalue moduli of :math:`\mathbf{L}`,
        on which the stability of the explicit scheme depends
        (:math:`\sigma^2 \lambda_{\max} \leq 2`); computed once.

        For a symmetric :math:`\mathbf{L}`: exact (dense) up to 512 nodes,
        else the Collatz-Wielandt bound
        :math:`\rho(|\mathbf{L}|) \leq \max_i (|\mathbf{L}|
        \mathbf{x})_i / x_i` at the iterate :math:`\mathbf{x} > 0` of 30
        power steps on :math:`|\mathbf{L}|` (an upper bound for every
        :math:`\mathbf{x}`, and :math:`\rho(|\mathbf{L}|) =
        \lambda_{\max}` for a bipartite graph; *e.g.*, :math:`5.783` for
        Cora's :obj:`'coin'` Laplacian, whose :math:`\lambda_{\max}` is
        :math:`5.780` and Gershgorin bound :math:`11.48`), capped by
        :meth:`gershgorin_bound`. For a non-symmetric :math:`\mathbf{L}`
        (directed graphs, :obj:`'rw'`), whose eigenvalues may be complex,
        the Gershgorin bound, which keeps the explicit scheme stable on
        every disc it bounds."""
        if self._lambda_max is None:
            lam, n = self.gershgorin_bound(), self.num_nodes
            if lam > 0 and self.symmetric and n <= DENSE_EIGEN_NODES:
                value, row = self.value.detach().double(), self.row()
                dense = value.new_zeros(n, n).index_put_(
                    (row, self.col.long()), value, True)
                lam = min(lam, float(torch.linalg.eigvalsh(dense)[-1]))
            elif lam > 0 and self.symmetric:
                lam = min(lam, self._collatz_wielandt())
            self._lambda_max = lam
        return self._lambda_max

    def stable(self, sigma2: float) -> bool:
        r"""Whether :math:`\sigma^2 \lambda_{\max} \leq 2` (the Gershgorin
        bound first: the estimate is made only if it does not settle it)."""
        return sigma2 * self.gershgorin_bound() <= 2 or \
            sigma2 * self.lambda_max() <= 2

    def certify(self, sigma2: float, stability: str = 'warn',
                stacklevel: int = 2) -> bool:
        r"""Whether the explicit scheme is stable (:meth:`stable`); else
        warns or raises for :obj:`stability` :obj:`'warn'`/:obj:`'raise'`."""
        if self.stable(sigma2):
            return True
        lam = self.lambda_max()
        msg = (f"Explicit diffusion is unstable: sigma2 * lambda_max = "
               f"{sigma2:.4g} * {lam:.4g} = {sigma2 * lam:.4g} > 2, where "
               f"lambda_max is the largest eigenvalue of the "
               f"{self.normalization!r} Laplacian; the scheme is stable for "
               f"sigma2 <= {2.0 / lam:.4g} (or use scheme='implicit')")
        if stability == 'raise':
            raise ValueError(msg)
        if stability == 'warn':
            warnings.warn(msg, UserWarning, stacklevel=stacklevel + 1)
        return False

    def _collatz_wielandt(self) -> float:
        value, n = self.value.detach().abs().double(), self.num_nodes
        row, col = self.row(), self.col.long()
        mat = None if functorch_active() else self.matrix(value)
        x = value.new_ones(n, 1)
        bound = value.new_tensor(float('inf'))
        for _ in range(POWER_STEPS):
            y = value.new_zeros(n, 1).index_add_(  # (gathers in torch.func)
                0, row, value.view(-1, 1) * x[col]) if mat is None else \
                torch.sparse.mm(mat, x)
            bound = torch.minimum(bound, (y / x).max())
            x = (y / y.max()).clamp_min(1e-200)  # (positive)
        return float(bound)

    def explicit(self, x: Tensor, K: int,
                 sigma2: Union[float, Tensor]) -> Tensor:
        r"""Takes :math:`K` explicit Euler steps :math:`\mathbf{u}
        \leftarrow (\mathbf{I} - \sigma^2 \mathbf{L}) \mathbf{u}` from
        :obj:`x` :math:`(N, C)`: :math:`K` CSR products forward and
        :math:`K` with the transpose backward; the states are stored only
        if the step matrix needs a gradient (learned weights or
        :math:`\sigma^2`). :obj:`create_graph=True` and :mod:`torch.func`
        run the definition (differentiable gathers)."""
        _check_steps(K, sigma2)
        return self._explicit(self._check_x(x), K, sigma2)

    def _explicit(self, x: Tensor, K: int,
                  sigma2: Union[float, Tensor]) -> Tensor:
        s = self._learned_sigma2(sigma2)  # (its gradient: one product)
        return explicit(self, x, K, self.step_matrix(
            sigma2 if s is None else s.detach(), x.dtype), s)

    def _learned_sigma2(self, sigma2) -> OptTensor:
        return sigma2 if isinstance(sigma2, Tensor) and sigma2.requires_grad \
            and not self.value.requires_grad else None

    def implicit(self, x: Tensor, K: int, sigma2: Union[float, Tensor],
                 tol: float = 1e-5, max_iter: int = 1000,
                 stats: Optional[SolverStats] = None) -> Tensor:
        r"""Takes :math:`K` implicit Euler steps :math:`(\mathbf{I} +
        \sigma^2 \mathbf{L}) \mathbf{u}^{(k+1)} = \mathbf{u}^{(k)}` from
        :obj:`x` :math:`(N, C)`, each solved by
        :func:`~torch_geometric_coin.ops.krylov_solve` to a true relative
        residual :obj:`tol` in at most :obj:`max_iter` iterations (else
        :class:`~torch_geometric_coin.ops.ConvergenceError`); gradients
        solve the adjoint systems, iteration counts go to :obj:`stats`.
        :mod:`torch.func` transforms raise :class:`NotImplementedError`."""
        _check_steps(K, sigma2)
        check_number('tol', tol, low=0, high=1, open_low=True)
        check_number('max_iter', max_iter, integer=True, low=1)
        return self._implicit(self._check_x(x), K, sigma2, tol, max_iter,
                              stats)

    def _implicit(self, x: Tensor, K: int, sigma2: Union[float, Tensor],
                  tol: float, max_iter: int,
                  stats: Optional[SolverStats] = None) -> Tensor:
        with torch.no_grad():  # (the true residuals are checked in float64)
            wide = self.step_matrix(-sigma2, torch.float64)
        s = self._learned_sigma2(sigma2)
        return implicit(self, x, K, self.step_matrix(
            -(sigma2 if s is None else s.detach()), x.dtype), tol, max_iter,
            stats, wide, s)

    def _check_x(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 2 or x.size(0) != \
                self.num_nodes or not x.is_floating_point():
            raise ValueError(f"'x' must be a floating point tensor of shape "
                             f"[{self.num_nodes}, num_channels] (got "
                             f"{getattr(x, 'shape', type(x).__name__)})")
        return x

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_nodes={self.num_nodes}, '
                f'nnz={self.value.numel()})')


class OperatorCache:
    r"""The operator of each graph a layer is given, prepared once: the
    same, unchanged tensors (identity and in-place version) get the
    operator of their last call, learned :obj:`edge_weight` its
    :meth:`~DiffusionOperator.reweight`. With :obj:`keep=True` (a cached
    layer) the first graph is kept and another one refused."""
    def __init__(self, normalization: Optional[str], add_self_loops: bool,
                 keep: bool = False):
        self.normalization, self.add_self_loops = normalization, \
            add_self_loops
        self.keep, self.op = keep, None  # (the kept operator)
        self._memo = GraphCache()

    @torch.compiler.disable
    def __call__(self, edge_index: Adj, edge_weight: OptTensor,
                 num_nodes: int, dtype: torch.dtype) -> DiffusionOperator:
        learned = edge_weight is not None and edge_weight.requires_grad
        sparse = isinstance(edge_index, SparseTensor) or isinstance(
            edge_index, Tensor) and edge_index.layout != torch.strided
        if sparse and (edge_index.requires_grad() if isinstance(
                edge_index, SparseTensor) else edge_index.requires_grad):
            if self.keep:
                raise ValueError("A cached layer keeps its graph, not learned "
                                 "weights: pass them as 'edge_weight' with "
                                 "an 'edge_index' (or use 'cached=False')")
            return self._prepare(edge_index, None, num_nodes, dtype)
        op, weight = self.op, None if learned else edge_weight
        if op is not None and op.num_nodes != num_nodes:
            raise ValueError(f"The cached graph has {op.num_nodes} nodes but "
                             f"'x' has {num_nodes} rows; use 'cached=False' "
                             f"for changing graphs")
        if self._memo.hit(edge_index, weight, num_nodes):
            op = self._memo.value
        elif op is None:
            op = self._prepare(edge_index, weight, num_nodes, dtype)
            self.op = op if self.keep else None
        elif not op.has_graph(edge_index):
            raise ValueError(
                f"The layer cached the operator of the graph of its first "
                f"call ({op.graph[0].size(1)} edges), but was given another "
                f"graph (or the same edges in another order, or edited in "
                f"place). 'cached=True' is for one fixed graph: use "
                f"'cached=False' for changing graphs, or 'reset_parameters()' "
                f"to forget the cached one")
        elif not sparse:
            op = op.reweight(weight)  # new weights on the kept layouts
        self._memo.store(op, edge_index, weight, num_nodes)
        return op.reweight(edge_weight) if learned else op

    def _prepare(self, edge_index, edge_weight, num_nodes, dtype):
        return DiffusionOperator.from_graph(
            edge_index, edge_weight, num_nodes, self.normalization,
            self.add_self_loops, dtype)


def _graph_of(op: DiffusionOperator) -> Tuple[Tensor, OptTensor]:
    if op.graph is None:
        raise ValueError("This needs an operator built by "
                         "'DiffusionOperator.from_graph'")
    return op.graph


def csr(crow: Tensor, col: Tensor, value: Tensor, size) -> Tensor:
    with warnings.catch_warnings():  # ("support is in beta")
        warnings.filterwarnings('ignore', '.*Sparse CSR tensor support.*')
        return torch.sparse_csr_tensor(crow, col, value, size,
                                       check_invariants=False)


def check_overflow(out: Tensor, x: Tensor, K: int, sigma2):
    r"""Raises a :class:`FloatingPointError` if the diffusion of a finite
    :obj:`x` overflowed (an unstable explicit scheme)."""
    if not bool(torch.isfinite(out).all()) and bool(torch.isfinite(x).all()):
        raise FloatingPointError(
            f"Explicit diffusion overflowed after {K} steps with "
            f"sigma2={float(sigma2):.4g}: sigma2 times the largest eigenvalue "
            f"of the Laplacian exceeds 2. Lower 'sigma2' or 'K', or use "
            f"scheme='implicit'")


def _check_steps(K, sigma2):
    check_number('K', K, integer=True, low=0)
    if not isinstance(sigma2, Tensor):
        check_number('sigma2', sigma2)


def _shift(value: Tensor, sigma2: Union[float, Tensor],
           diag_pos: Tensor) -> Tensor:
    r""":math:`\mathbf{I} - \sigma^2 \mathbf{L}` from the values of
    :math:`\mathbf{L}` and the positions of its diagonal."""
    if isinstance(sigma2, Tensor):
        sigma2 = sigma2.to(value.dtype)
    return (-sigma2 * value).index_add(
        0, diag_pos, value.new_ones(diag_pos.numel()))


def _compress(row: Tensor, num_nodes: int) -> Tensor:
    crow = row.new_zeros(num_nodes + 1)
    torch.cumsum(torch.bincount(row, minlength=num_nodes), 0, out=crow[1:])
    return crow
