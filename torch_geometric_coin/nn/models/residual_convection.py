import numbers
from typing import Any, Callable, Dict, NamedTuple, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.resolver import (
    activation_resolver,
    normalization_resolver,
)

from torch_geometric_coin._checks import check_bool, check_features, \
    check_number
from torch_geometric_coin._graph_cache import GraphCache


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
    the identity when :obj:`hidden_channels` equals :obj:`in_channels`.
    A :obj:`torch.sparse` input (*e.g.*, bag-of-words features) meets its
    first linear map as a sparse-dense product, with dropout on its stored
    values; everything after that map is dense.

    Args:
        in_channels (int): Size of each input sample.
        hidden_channels (int, optional): Width of the residual blocks
            (:obj:`in_channels` if :obj:`None`). (default: :obj:`None`)
        out_channels (int, optional): Size of each output sample; no output
            map if :obj:`None`. (default: :obj:`None`)
        num_layers (int, optional): Number of residual blocks :math:`L`;
            with :obj:`0`, :obj:`T`, :obj:`act`, :obj:`norm` and their
            arguments must keep their defaults. (default: :obj:`1`)
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

    Shapes:
        - **input:** :math:`(N, F_{in})`, dense or sparse (COO or CSR, in
          the dtype of the parameters; float32 or float64 on the CPU)
        - **output:** :math:`(N, F_{out})`, or :math:`(N, F_{hid})` without
          output map (dense)
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
        check_bool('bias', bias)
        for name, value, default in [('T', T, 1.), ('act', act, 'relu'),
                                     ('norm', norm, None),
                                     ('act_kwargs', act_kwargs, None),
                                     ('norm_kwargs', norm_kwargs, None)]:
            if num_layers == 0 and value is not default and not (
                    isinstance(value, (str, numbers.Real))
                    and value == default):
                raise ValueError(f"'{name}' has no effect with num_layers=0; "
                                 f"leave it at its default ({default!r})")
        if dropout > 0 and num_layers == 0 and out_channels is None and \
                hidden_channels == in_channels:
            raise ValueError("'dropout' has no effect without a linear map "
                             "(num_layers=0, no projection or output map)")
        for name, value, kw in [('act', act, act_kwargs),
                                ('norm', norm, norm_kwargs)]:
            if kw is not None and not isinstance(value, str):
                raise ValueError(f"'{name}_kwargs' is only used when '{name}' "
                                 f"is a name (got {name}={value!r})")

        self.in_channels = int(in_channels)
        self.hidden_channels = hidden = int(hidden_channels)
        self.out_channels = None if out_channels is None else int(out_channels)
        self.num_layers = int(num_layers)
        self.T = float(T)
        self.dropout = float(dropout)

        bias = bool(bias)
        self.lin_in = None if hidden == self.in_channels else Linear(
            self.in_channels, hidden, bias=bias)
        self.lins = torch.nn.ModuleList([
            Linear(hidden, hidden, bias=bias) for _ in range(num_layers)
        ])
        self.norms = torch.nn.ModuleList([
            torch.nn.Identity() if norm is None else _resolve(
                'norm', norm, hidden, norm_kwargs) for _ in range(num_layers)
        ])
        self.act = torch.nn.Identity() if act is None else _resolve(
            'act', act, hidden, act_kwargs)
        self.lin_out = None if out_channels is None else Linear(
            hidden, self.out_channels, bias=bias)
        self._sparse = GraphCache()  # a sparse x -> its _SparseInput
        first = self._first_linear()
        if first is not None:  # column-major: X W^T reads W^T in place
            first.weight = torch.nn.Parameter(
                first.weight.detach().t().contiguous().t())
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        for module in [self.lin_in, self.lin_out, *self.lins, *self.norms,
                       self.act]:
            if hasattr(module, 'reset_parameters'):
                module.reset_parameters()

    def encode(self, x: Tensor) -> Tensor:
        r"""Runs the residual blocks, without the output map."""
        return _dense(self._encode(x))

    def decode(self, x: Tensor) -> Tensor:
        r"""The output map (dropout, then :obj:`lin_out`), if any."""
        if self.lin_out is None:
            return _dense(x)
        return self._linear(self.lin_out, x)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self._encode(x))

    def _encode(self, x: Tensor) -> Union[Tensor, '_SparseInput']:
        r"""The residual blocks; a sparse :obj:`x` that met no linear map
        is returned as its :class:`_SparseInput`."""
        first = self._first_linear()
        check_features(x, self.in_channels,
                       None if first is None else first.weight)
        if x.layout != torch.strided:
            x = self._sparse_input(x)
        if self.lin_in is not None:
            x = self._linear(self.lin_in, x)
        step = self.T / max(self.num_layers, 1)
        for lin, norm in zip(self.lins, self.norms):
            h = self.act(norm(self._linear(lin, x)))
            if isinstance(x, Tensor):
                x = x + step * h
            elif step == 1.:  # no dense copy of the sparse x
                x = h + x.csr
            else:
                x = (step * h).add_(x.csr)
        return x

    def _linear(self, lin: Linear, x: Union[Tensor, '_SparseInput'],
                ) -> Tensor:
        if isinstance(x, Tensor):
            return lin(dropout(x, self.dropout, self.training))
        return self._sparse_linear(lin, x)

    @torch.compiler.disable  # (sparse tensors: a graph break)
    def _sparse_linear(self, lin: Linear, sp: '_SparseInput') -> Tensor:
        values = dropout(sp.csr.values(), self.dropout, self.training)
        return _SparseLinear.apply(values, sp, lin.weight, lin.bias)

    @torch.compiler.disable
    def _sparse_input(self, x: Tensor) -> '_SparseInput':
        if self._sparse.hit(x):
            return self._sparse.value
        return self._sparse.store(_SparseInput.of(x), x)

    def _first_linear(self) -> Optional[Linear]:
        return next((lin for lin in [self.lin_in, *self.lins, self.lin_out]
                     if lin is not None), None)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.hidden_channels}, {self.out_channels}, '
                f'num_layers={self.num_layers}, T={self.T})')


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    r"""Dropout as :func:`torch.nn.functional.dropout`, with the mask drawn
    by :func:`torch.rand_like` on the CPU (the same distribution)."""
    if not training or p == 0.:
        return x
    if x.device.type != 'cpu' or p >= 1.:
        return F.dropout(x, p=p, training=True)
    with torch.no_grad():
        scale = torch.rand_like(x).ge_(p).mul_(1. / (1. - p))
    return x * scale


def _dense(x: Union[Tensor, '_SparseInput']) -> Tensor:
    return x if isinstance(x, Tensor) else x.csr.to_dense()


class _SparseInput(NamedTuple):
    r"""A sparse input as CSR, and the CSR structure of its transpose."""
    csr: Tensor
    perm: Tensor
    crow_t: Tensor
    col_t: Tensor

    @staticmethod
    def of(x: Tensor) -> '_SparseInput':
        with torch.no_grad():
            if x.layout == torch.sparse_coo:
                x = x.coalesce().to_sparse_csr()
            crow, col = x.crow_indices(), x.col_indices()
            num_rows, num_cols = x.size()
            row = torch.repeat_interleave(
                torch.arange(num_rows, device=col.device),
                crow.diff().long())
            perm = torch.argsort(col.long() * num_rows + row)
            crow_t = torch.zeros(num_cols + 1, dtype=crow.dtype,
                                 device=crow.device)
            crow_t[1:] = torch.bincount(col, minlength=num_cols).cumsum(0)
            return _SparseInput(x, perm, crow_t, row[perm].to(col.dtype))


class _SparseLinear(torch.autograd.Function):
    r""":math:`\mathbf{X} \mathbf{W}^{\top} + \mathbf{b}` for a sparse
    :math:`\mathbf{X}` (its values on the structure of :obj:`sp`), with the
    weight gradient :math:`(\mathbf{X}^{\top} \mathbf{G})^{\top}`."""
    @staticmethod
    def forward(ctx, values: Tensor, sp: _SparseInput, weight: Tensor,
                bias: Optional[Tensor]) -> Tensor:
        csr = sp.csr
        x = torch.sparse_csr_tensor(csr.crow_indices(), csr.col_indices(),
                                    values, csr.size(), check_invariants=False)
        ctx.save_for_backward(values)
        ctx.sp = sp
        if bias is None:
            return torch.sparse.mm(x, weight.t())
        return torch.addmm(bias, x, weight.t())

    @staticmethod
    def backward(ctx, grad: Tensor):
        values, = ctx.saved_tensors
        sp, grad_weight = ctx.sp, None
        if ctx.needs_input_grad[2]:
            x_t = torch.sparse_csr_tensor(
                sp.crow_t, sp.col_t, values[sp.perm],
                (sp.csr.size(1), sp.csr.size(0)), check_invariants=False)
            grad_weight = torch.sparse.mm(x_t, grad).t()
        grad_bias = grad.sum(0) if ctx.needs_input_grad[3] else None
        return None, None, grad_weight, grad_bias


def _resolve(name: str, query: Any, channels: int,
             kwargs: Optional[Dict[str, Any]]) -> Callable:
    r"""Resolves :obj:`act` or :obj:`norm` and checks that it maps features
    :obj:`[N, channels]` to the same shape."""
    try:
        module = activation_resolver(query, **(kwargs or {})) \
            if name == 'act' else \
            normalization_resolver(query, channels, **(kwargs or {}))
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
    if training is not None:
        module.train(training)
    if not ok:
        raise ValueError(f"{name}={query!r} must map features of shape "
                         f"[num_nodes, {channels}] to the same shape, as "
                         f"'relu' or 'batch_norm' do")
    return module
