r"""Checks of arguments shared by the package's modules."""
import math
import numbers
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor


def check_number(name: str, value, integer: bool = False, low=None,
                 high=None, open_low: bool = False):
    r"""Raises a :class:`ValueError` naming :obj:`name` unless :obj:`value` is
    a finite real number (an integer if :obj:`integer`; numpy scalars count,
    booleans do not) in :obj:`[low, high)` (:obj:`(low, high)` if
    :obj:`open_low`)."""
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool)
    ok = ok and math.isfinite(value)
    ok = ok and (low is None or value > low or (value == low and not
                                                open_low))
    ok = ok and (high is None or value < high)
    if not ok:
        what = 'an integer' if integer else 'a finite number'
        lo = '' if low is None else f" {'>' if open_low else '>='} {low}"
        hi = '' if high is None else f" and < {high}"
        raise ValueError(f"'{name}' must be {what}{lo}{hi} (got {value!r})")


def check_choice(name: str, value, choices):
    r"""Raises a :class:`ValueError` naming :obj:`name` unless :obj:`value`
    is one of :obj:`choices`."""
    if not any(value is c or type(value) is type(c) and value == c
               for c in choices):
        raise ValueError(f"Unknown '{name}' {value!r}: expected one of "
                         f"{tuple(choices)}")


def check_bool(name: str, value):
    r"""Raises a :class:`TypeError` naming :obj:`name` unless :obj:`value`
    is a boolean (a Python or numpy one): a flag given as, *e.g.*, the
    string :obj:`'False'` would otherwise count as :obj:`True`."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"'{name}' must be True or False (got {value!r})")


SPARSE_LAYOUTS = (torch.sparse_coo, torch.sparse_csr)


def check_features(x: Any, in_channels: int, weight: Optional[Tensor],
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
