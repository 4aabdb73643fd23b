r"""Checks of arguments shared by the package's modules."""
import math
import numbers
import os.path as osp
import sys
import warnings

import numpy as np
import torch
import torch_geometric

import torch_geometric_coin


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


def check_bool(name: str, value):
    r"""Raises a :class:`TypeError` naming :obj:`name` unless :obj:`value`
    is a boolean (a Python or numpy one): a flag given as, *e.g.*, the
    string :obj:`'False'` would otherwise count as :obj:`True`."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"'{name}' must be True or False (got {value!r})")


_SKIP = tuple(osp.dirname(module.__file__) + osp.sep for module in
              (torch, torch_geometric, torch_geometric_coin))


def warn_at_caller(msg: str):
    r"""Warns at the first frame outside :obj:`torch` and this package (the
    user's line that called the model)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_SKIP):
        frame, level = frame.f_back, level + 1
    warnings.warn(msg, UserWarning, stacklevel=level + 1)
