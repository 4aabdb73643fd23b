from typing import Any, Callable, Dict, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.resolver import (
    activation_resolver,
    normalization_resolver,
)


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
        act (str or Callable, optional): The non-linearity :math:`\sigma`.
            (default: :obj:`"relu"`)
        norm (str or Callable, optional): Normalisation inside the blocks,
            *e.g.*, :obj:`"batch_norm"` or :obj:`"layer_norm"`.
            (default: :obj:`None`)
        dropout (float, optional): Dropout probability. (default: :obj:`0.`)
        bias (bool, optional): Whether the linear maps learn a bias.
            (default: :obj:`True`)
        act_kwargs (Dict[str, Any], optional): Arguments of :obj:`act`.
        norm_kwargs (Dict[str, Any], optional): Arguments of :obj:`norm`.

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
        hidden_channels = hidden_channels or in_channels
        for name, value in [('in_channels', in_channels),
                            ('hidden_channels', hidden_channels)]:
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"'{name}' must be a positive integer "
                                 f"(got {value!r})")
        if not isinstance(num_layers, int) or num_layers < 0:
            raise ValueError(f"'num_layers' must be a non-negative integer "
                             f"(got {num_layers!r})")
        if not T > 0:
            raise ValueError(f"'T' must be positive (got {T})")
        if not 0. <= dropout < 1.:
            raise ValueError(f"'dropout' must be in [0, 1) (got {dropout})")

        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.num_layers = num_layers
        self.T = T
        self.dropout = dropout

        self.lin_in = None
        if hidden_channels != in_channels:
            self.lin_in = Linear(in_channels, hidden_channels, bias=bias)
        self.lins = torch.nn.ModuleList([
            Linear(hidden_channels, hidden_channels, bias=bias)
            for _ in range(num_layers)
        ])
        self.norms = torch.nn.ModuleList([
            normalization_resolver(norm, hidden_channels,
                                   **(norm_kwargs or {}))
            if norm is not None else torch.nn.Identity()
            for _ in range(num_layers)
        ])
        self.act = activation_resolver(act, **(act_kwargs or {}))
        self.lin_out = None
        if out_channels is not None:
            self.lin_out = Linear(hidden_channels, out_channels, bias=bias)
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        for module in [self.lin_in, self.lin_out, *self.lins, *self.norms]:
            if hasattr(module, 'reset_parameters'):
                module.reset_parameters()

    def encode(self, x: Tensor) -> Tensor:
        r"""Runs the residual blocks, without the output map."""
        if x.dim() != 2 or x.size(-1) != self.in_channels:
            raise ValueError(f"'x' must have shape [N, {self.in_channels}] "
                             f"(got {tuple(x.size())})")
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

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.hidden_channels}, {self.out_channels}, '
                f'num_layers={self.num_layers}, T={self.T})')
