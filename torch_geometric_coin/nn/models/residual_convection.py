import numbers
from typing import Any, Callable, Dict, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.resolver import (
    activation_resolver,
    normalization_resolver,
)

from torch_geometric_coin._checks import check_number
from torch_geometric_coin.nn.edge_weights import check_features


class ResidualConvection(torch.nn.Module):
    r"""The convection part of Convection-Diffusion Networks from the
    `"Convection-Diffusion Equation: A Theoretically Certified Framework for
    Neural Networks" <https://arxiv.org/abs/2403.15726>`_ paper: residual
    blocks as explicit Euler steps of
    :math:`\partial_t \mathbf{x} = f(\mathbf{x})` with step :math:`h = T/L`,

    .. math::
        \mathbf{x}^{(0)} &= \mathbf{W}_{\textrm{in}} \mathbf{x}

        \mathbf{x}^{(l)} &= \mathbf{x}^{(l-1)} + h \,
        \sigma\left(\mathrm{norm}\left(\mathbf{W}^{(l)}
        \mathbf{x}^{(l-1)} + \mathbf{b}^{(l)}\right)\right)

        \mathbf{y} &= \mathbf{W}_{\textrm{out}} \mathbf{x}^{(L)} +
        \mathbf{b}_{\textrm{out}},

    with dropout on the input of every linear map. The input projection is
    the identity when :obj:`hidden_channels` equals :obj:`in_channels` (the
    authors' base classifier: one block as wide as the input).

    Args:
        in_channels (int): Size of each input sample.
        hidden_channels (int, optional): Width of the residual blocks
            (:obj:`in_channels` if :obj:`None`). (default: :obj:`None`)
        out_channels (int, optional): Size of each output sample; no output
            map if :obj:`None`. (default: :obj:`None`)
        num_layers (int, optional): Number of residual blocks :math:`L`.
            (default: :obj:`1`)
        T (float, optional): Time horizon; each block is a step of size
            :math:`T/L`. (default: :obj:`1.`)
        act (str or Callable, optional): The non-linearity :math:`\sigma`
            (the identity if :obj:`None`). (default: :obj:`"relu"`)
        norm (str or Callable, optional): Normalisation inside the blocks,
            *e.g.*, :obj:`"batch_norm"` or :obj:`"layer_norm"`.
            (default: :obj:`None`)
        dropout (float, optional): Dropout probability. (default: :obj:`0.`)
        bias (bool, optional): Whether the linear maps learn a bias.
            (default: :obj:`True`)
        act_kwargs (Dict[str, Any], optional): Arguments of :obj:`act`.
        norm_kwargs (Dict[str, Any], optional): Arguments of :obj:`norm`.

    With :obj:`num_layers=0` (no block), :obj:`T`, :obj:`act`, :obj:`norm`
    and their arguments have no effect and must keep their defaults.
    Integer arguments take Python or numpy integers, real ones Python or
    numpy reals (not booleans).

    Shapes:
        - **input:** :math:`(N, F_{in})`
        - **output:** :math:`(N, F_{out})`, or :math:`(N, F_{hid})` without
          output map
    """
    def __init__(
        self,
        in_channels: int,
        hidden_channels: Optional[int] = None,
        out_channels: Optional[int] = None,
        num_layers: int = 1,
        T: float = 1.,
        act: Union[str, Callable, None] = 'relu',
        norm: Union[str, Callable, None] = None,
        dropout: float = 0.,
        bias: bool = True,
        act_kwargs: Optional[Dict[str, Any]] = None,
        norm_kwargs: Optional[Dict[str, Any]] = None,
    ):
        super().__init__()
        check_number('in_channels', in_channels, integer=True, low=1)
        if hidden_channels is None:
            hidden_channels = in_channels
        check_number('hidden_channels', hidden_channels, integer=True, low=1)
        if out_channels is not None:
            check_number('out_channels', out_channels, integer=True, low=1)
        check_number('num_layers', num_layers, integer=True, low=0)
        check_number('T', T, low=0, open_low=True)
        check_number('dropout', dropout, low=0, high=1)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"'bias' must be a bool (got {bias!r})")
        if num_layers == 0:
            # No residual block: 'T', 'act', 'norm' and their arguments
            # would be accepted and ignored.
            for name, value, default in [('T', T, 1.0), ('act', act, 'relu'),
                                         ('norm', norm, None),
                                         ('act_kwargs', act_kwargs, None),
                                         ('norm_kwargs', norm_kwargs, None)]:
                if not (value is default or (
                        isinstance(value, (str, numbers.Real))
                        and value == default)):
                    raise ValueError(f"'{name}' has no effect with "
                                     f"num_layers=0 (no residual block); "
                                     f"leave it at its default "
                                     f"({default!r})")
        if dropout > 0 and num_layers == 0 and out_channels is None and \
                hidden_channels == in_channels:
            raise ValueError("'dropout' has no effect without any linear "
                             "map (num_layers=0, no projection and no "
                             "output map)")
        for name, value, kw in [('act', act, act_kwargs),
                                ('norm', norm, norm_kwargs)]:
            if kw is not None and not isinstance(value, str):
                raise ValueError(f"'{name}_kwargs' is only used when "
                                 f"'{name}' is given by name (got "
                                 f"{name}={value!r})")

        self.in_channels = int(in_channels)
        self.hidden_channels = hidden_channels = int(hidden_channels)
        self.out_channels = None if out_channels is None else int(
            out_channels)
        self.num_layers = num_layers = int(num_layers)
        self.T = float(T)
        self.dropout = float(dropout)

        self.lin_in = None
        if hidden_channels != self.in_channels:
            self.lin_in = Linear(self.in_channels, hidden_channels,
                                 bias=bool(bias))
        self.lins = torch.nn.ModuleList([
            Linear(hidden_channels, hidden_channels, bias=bool(bias))
            for _ in range(num_layers)
        ])
        self.norms = torch.nn.ModuleList([
            _resolve('norm', norm, hidden_channels, norm_kwargs)
            if norm is not None else torch.nn.Identity()
            for _ in range(num_layers)
        ])
        self.act = torch.nn.Identity() if act is None else _resolve(
            'act', act, hidden_channels, act_kwargs)
        self.lin_out = None
        if self.out_channels is not None:
            self.lin_out = Linear(hidden_channels, self.out_channels,
                                  bias=bool(bias))
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        for module in [self.lin_in, self.lin_out, *self.lins, *self.norms,
                       self.act]:
            if hasattr(module, 'reset_parameters'):
                module.reset_parameters()

    def encode(self, x: Tensor) -> Tensor:
        r"""Runs the residual blocks, without the output map."""
        check_features(x, self.in_channels, self._weight())
        if self.lin_in is not None:
            x = F.dropout(x, p=self.dropout, training=self.training)
            x = self.lin_in(x)
        step = self.T / max(self.num_layers, 1)
        for lin, norm in zip(self.lins, self.norms):
            h = F.dropout(x, p=self.dropout, training=self.training)
            x = x + step * self.act(norm(lin(h)))
        return x

    def decode(self, x: Tensor) -> Tensor:
        r"""The output map (dropout, then :obj:`lin_out`), if any."""
        if self.lin_out is not None:
            x = F.dropout(x, p=self.dropout, training=self.training)
            x = self.lin_out(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    def _weight(self) -> Optional[Tensor]:
        r"""The weight of the first linear map (:obj:`None` if the module
        is the identity), whose dtype :obj:`x` must have."""
        for lin in [self.lin_in, *self.lins, self.lin_out]:
            if lin is not None:
                return lin.weight
        return None

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.hidden_channels}, {self.out_channels}, '
                f'num_layers={self.num_layers}, T={self.T})')


def _resolve(name: str, query: Any, channels: int,
             kwargs: Optional[Dict[str, Any]]) -> Callable:
    r"""Resolves :obj:`act` or :obj:`norm` and checks that it maps features
    :obj:`[N, channels]` to the same shape, so that a wrong name or module
    fails here, with its argument's name, and not in the first forward."""
    resolver = activation_resolver if name == 'act' else \
        normalization_resolver
    try:
        module = resolver(query, **(kwargs or {})) if name == 'act' else \
            resolver(query, channels, **(kwargs or {}))
    except (ValueError, TypeError) as e:
        raise ValueError(f"Could not build {name}={query!r}: {e}") from None
    training = getattr(module, 'training', None)
    try:
        if training is not None:
            module.eval()
        with torch.no_grad():
            gen = torch.Generator().manual_seed(0)  # not the global RNG
            out = module(torch.randn(3, channels, generator=gen))
        ok = isinstance(out, Tensor) and out.shape == (3, channels)
    except Exception:  # noqa: BLE001 (any failure means: unusable here)
        ok = False
    finally:
        if training is not None:
            module.train(training)
    if not ok:
        raise ValueError(f"{name}={query!r} must map features of shape "
                         f"[num_nodes, {channels}] to the same shape (an "
                         f"element-wise non-linearity for 'act', a "
                         f"normalisation such as 'batch_norm' or "
                         f"'layer_norm' for 'norm')")
    return module
