import warnings
from typing import NamedTuple, Optional

import torch
from torch import Tensor


class CSROperator(NamedTuple):
    r"""The parameter-free structure of a square sparse operator in CSR
    layout, with the layout of its transpose kept once, so that products
    with :math:`\mathbf{M}` and :math:`\mathbf{M}^{\top}` only need the
    values of :math:`\mathbf{M}` (built by :meth:`from_coo`).

    Entry :obj:`e` of the CSR layout sits at :obj:`(row[e], col[e])`; the
    values of :math:`\mathbf{M}^{\top}` in its own CSR layout are
    :obj:`value[t_perm]`, and :obj:`diag_pos` holds the positions of one
    diagonal entry per row (every row has one).
    """
    num_nodes: int
    crow: Tensor
    col: Tensor
    row: Tensor
    diag_pos: Tensor
    t_crow: Tensor
    t_col: Tensor
    t_perm: Tensor
    symmetric_layout: bool  # whether M^T has the same layout as M

    @staticmethod
    def from_coo(row: Tensor, col: Tensor, num_nodes: int,
                 diag_pos: Tensor) -> 'CSROperator':
        r"""Builds the structure from COO indices :obj:`(row, col)` whose
        entries :obj:`diag_pos` are the diagonal. Returns the operator and
        the permutation :obj:`perm` that orders COO values into CSR."""
        perm = torch.argsort(row * num_nodes + col)
        crow = _compress(row, num_nodes)
        row_s, col_s = row[perm], col[perm]
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(perm.numel(), device=perm.device)
        t_perm = torch.argsort(col_s * num_nodes + row_s)
        t_crow = _compress(col_s, num_nodes)
        t_col = row_s[t_perm]
        symmetric = bool(torch.equal(t_crow, crow)
                         and torch.equal(t_col, col_s))
        op = CSROperator(num_nodes, crow, col_s, row_s, inv[diag_pos], t_crow,
                         t_col, t_perm, symmetric)
        return op, perm

    def is_symmetric(self, value: Tensor) -> bool:
        r"""Whether :obj:`value` (in CSR order) makes a symmetric matrix, up
        to a few units of rounding."""
        if not self.symmetric_layout:
            return False
        if value.numel() == 0:
            return True
        tol = 16 * torch.finfo(value.dtype).eps * float(value.abs().max())
        return bool((value[self.t_perm] - value).abs().max() <= tol)

    def matrix(self, value: Tensor, transpose: bool = False) -> Tensor:
        r"""The :obj:`torch.sparse_csr` matrix with :obj:`value` (in CSR
        order), or its transpose."""
        size = (self.num_nodes, self.num_nodes)
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', '.*Sparse CSR tensor support.*')
            if transpose:
                return torch.sparse_csr_tensor(self.t_crow, self.t_col,
                                               value[self.t_perm], size,
                                               check_invariants=False)
            return torch.sparse_csr_tensor(self.crow, self.col, value, size,
                                           check_invariants=False)

    def sddmm(self, a: Tensor, b: Tensor, chunk: int = 1 << 22) -> Tensor:
        r"""The sampled dense-dense product :math:`\sum_c a_{ic} b_{jc}` on
        every entry :math:`(i, j)` of the layout (in CSR order), in chunks of
        :obj:`chunk` entries to bound the memory of the gathers."""
        out = a.new_empty(self.col.numel())
        for start in range(0, out.numel(), chunk):
            end = start + chunk
            out[start:end] = (a[self.row[start:end]] *
                              b[self.col[start:end]]).sum(dim=-1)
        return out


class LinearOperator:
    r"""Products with a :class:`CSROperator` of given values and with its
    transpose (whose CSR matrix is assembled once, on first use, and not at
    all when the values are symmetric)."""
    def __init__(self, op: CSROperator, value: Tensor,
                 symmetric: Optional[bool] = None):
        self.op = op
        self.value = value
        self.symmetric = op.is_symmetric(value) if symmetric is None \
            else symmetric
        self._mat = op.matrix(value)
        self._mat_t: Optional[Tensor] = self._mat if self.symmetric else None

    def mm(self, x: Tensor) -> Tensor:
        return torch.sparse.mm(self._mat, x)

    def tmm(self, x: Tensor) -> Tensor:
        if self._mat_t is None:
            self._mat_t = self.op.matrix(self.value, transpose=True)
        return torch.sparse.mm(self._mat_t, x)

    def diagonal(self) -> Tensor:
        r"""The diagonal (summing duplicate diagonal entries is not needed:
        the layout has exactly one per row)."""
        return self.value[self.op.diag_pos]


def _compress(index: Tensor, num_nodes: int) -> Tensor:
    crow = index.new_zeros(num_nodes + 1)
    crow[1:] = torch.cumsum(torch.bincount(index, minlength=num_nodes), 0)
    return crow
