"""The models of the benchmarks: PyG's baselines with their published
hyper-parameters, COIN with the authors' recipe (:obj:`COIN_RECIPE`),
:func:`build_model`, and R runs in one pass (:func:`stack`; not
:func:`torch.func.vmap`, which takes neither sparse features nor the
sparse propagation)."""
import copy
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Linear, Parameter

from torch_geometric.nn import APPNP, MLP, GATConv, GCN2Conv, GCNConv, SGConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.typing import OptTensor

from torch_geometric_coin.nn import COIN, safe_log
from torch_geometric_coin.nn.models.residual_convection import (
    dropout as drop_out,  # COIN's dropout (the same masks)
)

MODELS = ('COIN', 'ResNet', 'MLP', 'GCN', 'GAT', 'APPNP', 'SGC', 'GCNII')
STACKED = ('COIN', 'ResNet', 'MLP', 'GCN', 'SGC', 'APPNP')  # see stack()
# The authors' recipe (K=20, Adam 0.01 / 5e-4) at width 64, unsearched;
# sigma2=0.3 is stable on Planetoid (the authors' 0.35 is not on Cora).
COIN_RECIPE = dict(K=20, sigma2=0.3, hidden_channels=64, num_layers=1,
                   dropout=0.5, weight_decay=5e-4)


class GCN(torch.nn.Module):
    r"""Kipf & Welling (2017): 2 layers, 16 hidden, dropout 0.5."""
    def __init__(self, in_channels, out_channels, hidden_channels=16,
                 dropout=0.5):
        super().__init__()
        self.dropout = dropout
        self.conv1 = GCNConv(in_channels, hidden_channels, cached=True)
        self.conv2 = GCNConv(hidden_channels, out_channels, cached=True)

    def forward(self, x, edge_index):
        x = F.dropout(x, p=self.dropout, training=self.training)
        x = self.conv1(x, edge_index).relu()
        x = F.dropout(x, p=self.dropout, training=self.training)
        return self.conv2(x, edge_index).log_softmax(dim=-1)


class GAT(torch.nn.Module):
    r"""Velickovic et al. (2018): 8 heads x 8 hidden, ELU, dropout 0.6,
    :obj:`out_heads` averaged output heads (8 on PubMed, else 1)."""
    def __init__(self, in_channels, out_channels, hidden_channels=8, heads=8,
                 out_heads=1, dropout=0.6):
        super().__init__()
        self.dropout = dropout
        self.conv1 = GATConv(in_channels, hidden_channels, heads=heads,
                             dropout=dropout)
        self.conv2 = GATConv(hidden_channels * heads, out_channels,
                             heads=out_heads, concat=False, dropout=dropout)

    def forward(self, x, edge_index):
        x = F.dropout(x, p=self.dropout, training=self.training)
        x = F.elu(self.conv1(x, edge_index))
        x = F.dropout(x, p=self.dropout, training=self.training)
        return self.conv2(x, edge_index).log_softmax(dim=-1)


class SGC(torch.nn.Module):
    r"""Wu et al. (2019): :class:`~torch_geometric.nn.conv.SGConv`, K=2."""
    def __init__(self, in_channels, out_channels, K=2):
        super().__init__()
        self.conv = SGConv(in_channels, out_channels, K=K, cached=True)

    def forward(self, x, edge_index):
        return self.conv(x, edge_index).log_softmax(dim=-1)


class MLPNet(torch.nn.Module):
    r"""A 2-layer MLP, 64 hidden, dropout 0.5 (graph-free baseline)."""
    def __init__(self, in_channels, out_channels, hidden_channels=64,
                 dropout=0.5):
        super().__init__()
        self.dropout = dropout
        self.mlp = MLP([in_channels, hidden_channels, out_channels],
                       dropout=dropout, norm=None)

    def forward(self, x, edge_index):
        x = F.dropout(x, p=self.dropout, training=self.training)
        return self.mlp(x).log_softmax(dim=-1)


class APPNPNet(MLPNet):
    r"""Gasteiger et al. (2019): :class:`MLPNet`, then
    :class:`~torch_geometric.nn.conv.APPNP` (K=10, alpha=0.1)."""
    def __init__(self, in_channels, out_channels, hidden_channels=64, K=10,
                 alpha=0.1, dropout=0.5):
        super().__init__(in_channels, out_channels, hidden_channels, dropout)
        self.prop = APPNP(K, alpha, cached=True)

    def forward(self, x, edge_index):
        x = F.dropout(x, p=self.dropout, training=self.training)
        return self.prop(self.mlp(x), edge_index).log_softmax(dim=-1)


class GCNII(torch.nn.Module):
    r"""Chen et al. (2020) with :class:`~torch_geometric.nn.conv.GCN2Conv`
    (as PyG's ``examples/gcn2_cora.py``)."""
    def __init__(self, in_channels, out_channels, hidden_channels=64,
                 num_layers=64, alpha=0.1, theta=0.5, dropout=0.6):
        super().__init__()
        self.dropout = dropout
        self.lins = torch.nn.ModuleList(
            [Linear(in_channels, hidden_channels),
             Linear(hidden_channels, out_channels)])
        self.convs = torch.nn.ModuleList([
            GCN2Conv(hidden_channels, alpha, theta, layer + 1,
                     shared_weights=True, normalize=True, cached=True)
            for layer in range(num_layers)])

    def forward(self, x, edge_index):
        x = F.dropout(x, self.dropout, training=self.training)
        x = x_0 = self.lins[0](x).relu()
        for conv in self.convs:
            x = F.dropout(x, self.dropout, training=self.training)
            x = conv(x, x_0, edge_index).relu()
        x = F.dropout(x, self.dropout, training=self.training)
        return self.lins[1](x).log_softmax(dim=-1)


GCNII_SETTINGS = {  # Chen et al. (2020), their semi-supervised runs
    'Cora': dict(num_layers=64, hidden_channels=64, theta=0.5, dropout=0.6,
                 conv_wd=0.01),
    'CiteSeer': dict(num_layers=32, hidden_channels=256, theta=0.6,
                     dropout=0.7, conv_wd=0.01),
    'PubMed': dict(num_layers=16, hidden_channels=256, theta=0.4,
                   dropout=0.5, conv_wd=5e-4),
}


def build_model(name: str, dataset: str, in_channels: int, out_channels: int,
                config: Optional[Dict] = None):
    r"""Returns :obj:`(model, train_kwargs)`: a fresh model with its published
    hyper-parameters and the keyword arguments of :func:`training.fit`.
    COIN and ResNet (COIN with :obj:`K=0`) take :obj:`COIN_RECIPE` updated
    by :obj:`config` (which may also set :obj:`scheme` and :obj:`diffuse`)."""
    train = dict(lr=0.01, weight_decay=5e-4, epochs=200, patience=None)
    if name in ('COIN', 'ResNet'):
        cfg = dict(COIN_RECIPE, **(config or {}))
        unknown = set(cfg) - set(COIN_RECIPE) - {'scheme', 'diffuse'}
        if unknown:
            raise ValueError(f"Unknown COIN options {sorted(unknown)}")
        kw = {k: cfg[k] for k in ('hidden_channels', 'num_layers', 'sigma2',
                                  'dropout')}
        model = COIN(in_channels, out_channels,
                     K=0 if name == 'ResNet' else cfg['K'],
                     diffuse=cfg.get('diffuse', 'prob'),
                     scheme=cfg.get('scheme', 'explicit'), cached=True,
                     stability='ignore', **kw)
        train.update(weight_decay=cfg['weight_decay'])
        return model, train
    if config:
        raise ValueError(f"'config' holds COIN's options, not {name!r}'s")
    simple = dict(MLP=MLPNet, GCN=GCN, APPNP=APPNPNet, SGC=SGC)
    if name in simple:
        model = simple[name](in_channels, out_channels)
        if name == 'SGC':
            train.update(lr=0.2, weight_decay=5e-3, epochs=100)
    elif name == 'GAT':
        pubmed = dataset == 'PubMed'
        model = GAT(in_channels, out_channels, out_heads=8 if pubmed else 1)
        train.update(lr=0.01 if pubmed else 0.005,
                     weight_decay=1e-3 if pubmed else 5e-4, epochs=1000,
                     patience=100)
    elif name == 'GCNII':
        kw = dict(GCNII_SETTINGS.get(dataset, GCNII_SETTINGS['Cora']))
        conv_wd = kw.pop('conv_wd')
        model = GCNII(in_channels, out_channels, **kw)
        train.update(param_groups=[
            dict(params=model.convs.parameters(), weight_decay=conv_wd),
            dict(params=model.lins.parameters(), weight_decay=5e-4),
        ], epochs=1500, patience=100)
    else:
        raise ValueError(f'Unknown model {name!r}: expected one of {MODELS}')
    return model, train


def _check_x(x: Tensor, in_channels: int, weight: OptTensor):
    if x.dim() != 2 or x.size(-1) != in_channels:
        raise ValueError(f"'x' must have shape [num_nodes, {in_channels}] "
                         f"(got {list(x.size())})")
    if weight is not None and x.dtype != weight.dtype and (
            x.layout != torch.strided
            or not torch.is_autocast_enabled(x.device.type)):
        raise TypeError(f"'x' has dtype {x.dtype} but the parameters have "
                        f"dtype {weight.dtype}")


def _is_shared(x: Tensor) -> bool:  # [N, F] (or sparse), not [R, N, F]
    return x.is_sparse or x.dim() == 2


def _dense(x: Tensor) -> Tensor:
    return x.to_dense() if x.is_sparse else x


def _to_nodes(x: Tensor) -> Tensor:  # [R, N, C] -> [N, R * C]
    R, N, C = x.shape
    return x.transpose(0, 1).reshape(N, R * C)


def _to_runs(x: Tensor, R: int) -> Tensor:
    return x.view(x.size(0), R, -1).transpose(0, 1)


def _softmax(h: Tensor, log: bool = True) -> Tensor:
    r"""(Log-)softmax of :obj:`[R, N, C]` over the classes. PyTorch's CPU
    kernel over a short last dimension is 3-7x slower than over a middle
    one (forward and backward of :obj:`[10, 2708, 7]`: 4.4 ms against 1.2
    ms, 1 thread), so fewer than 32 classes go through the transposed
    view."""
    if h.device.type != 'cpu' or h.size(-1) >= 32:
        return h.log_softmax(dim=-1) if log else h.softmax(dim=-1)
    h = h.transpose(-1, -2)
    return (h.log_softmax(dim=-2) if log else h.softmax(dim=-2)).transpose(
        -1, -2)


class _SparseMatmul(torch.autograd.Function):
    r""":math:`\mathbf{A} \mathbf{x}` for a constant sparse :math:`\mathbf{A}`;
    :obj:`adj_t()` gives its transpose for the backward pass."""
    @staticmethod
    def forward(ctx, adj: Tensor, adj_t, x: Tensor) -> Tensor:
        ctx.adj_t = adj_t
        return adj @ x

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, None, ctx.adj_t() @ grad


def _block_matmul(block, value: Tensor, weight: Tensor) -> Tensor:
    r"""The product of the CSR matrix of a cached layout :obj:`block` and
    values :obj:`value` with :obj:`weight`."""
    crow, col, t_crow, t_col, perm, size = block
    return _SparseMatmul.apply(
        torch.sparse_csr_tensor(crow, col, value, size,
                                check_invariants=False),
        lambda: torch.sparse_csr_tensor(t_crow, t_col, value[perm],
                                        size[::-1], check_invariants=False),
        weight)


class StackedLinear(torch.nn.Module):
    r"""R linear maps :math:`\mathbf{x}_r \mathbf{W}_r + \mathbf{b}_r` with
    dropout on their input (independent masks per run), on a shared input
    :obj:`[N, F_in]` (dense or sparse) or per-run inputs :obj:`[R, N, F_in]`.

    Args:
        lins (Sequence[torch.nn.Module]): R :class:`torch.nn.Linear` (or
            PyG :class:`Linear`) layers of one shape (copied).
    """
    def __init__(self, lins: Sequence[torch.nn.Module]):
        super().__init__()
        weights = [lin.weight for lin in lins]
        if any(isinstance(w, torch.nn.parameter.UninitializedParameter)
               for w in weights):
            raise ValueError("Cannot stack lazily initialised linear layers "
                             "(in_channels=-1): call each model once first")
        shapes = {tuple(w.shape) for w in weights}
        biases = [lin.bias for lin in lins]
        if len(shapes) != 1 or len({b is None for b in biases}) != 1:
            raise ValueError(f"The models' linear layers differ in shape or "
                             f"bias (got weights of shapes {sorted(shapes)})")
        self.weight = Parameter(torch.stack([w.detach().t()
                                             for w in weights]).clone())
        self.bias = None if biases[0] is None else Parameter(torch.stack(
            [b.detach() for b in biases]).clone())
        self._block = None  # (x, indices, values, layouts) of a sparse x

    def forward(self, x: Tensor, dropout: float = 0.) -> Tensor:
        R, F_in, F_out = self.weight.shape
        if not _is_shared(x):
            x = drop_out(x, dropout, self.training)
            if self.bias is None:
                return torch.bmm(x, self.weight)
            return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)
        _check_x(x, F_in, self.weight)
        N = x.size(0)
        if not (dropout > 0 and self.training):
            w_cat = self.weight.transpose(0, 1).reshape(F_in, R * F_out)
            if x.is_sparse:
                block, value = self._block_matrix(x, 1)
                out = _block_matmul(block, value, w_cat)
            else:
                out = x @ w_cat
            out = out.view(N, R, F_out).transpose(0, 1)  # a view, node-major
        elif x.is_sparse:
            block, value = self._block_matrix(x, R)
            value = drop_out(value.expand(R, -1), dropout, True).reshape(-1)
            out = _block_matmul(block, value,
                                self.weight.reshape(R * F_in, F_out))
            out = out.view(R, N, F_out)
        else:
            out = torch.bmm(drop_out(x.expand(R, N, F_in), dropout, True),
                            self.weight)
        return out if self.bias is None else out + self.bias.unsqueeze(1)

    def _block_matrix(self, x: Tensor, R: int):
        r"""The layout of the block-diagonal matrix of R copies of the
        sparse :obj:`x`, and the values of :obj:`x`."""
        if self._block is None or self._block[0] is not x:
            x_c = x.coalesce()
            self._block = (x, x_c.indices(), x_c.values(), {})
        _, index, value, layouts = self._block
        if R not in layouts:
            N, F_in = x.shape
            offset = torch.arange(R, device=x.device).view(-1, 1)
            row = (offset * N + index[0]).view(-1)
            col = (offset * F_in + index[1]).view(-1)
            perm = torch.argsort(col * (R * N) + row)
            layouts[R] = (
                torch._convert_indices_from_coo_to_csr(row, R * N), col,
                torch._convert_indices_from_coo_to_csr(col[perm], R * F_in),
                row[perm], perm, (R * N, R * F_in))
        return layouts[R], value

    def extra_repr(self) -> str:
        R, F_in, F_out = self.weight.shape
        return f'{F_in}, {F_out}, runs={R}, bias={self.bias is not None}'


class GCNPropagation(torch.nn.Module):
    r"""K steps of :math:`\mathbf{x} \leftarrow (1 - \alpha) \hat{\mathbf{A}}
    \mathbf{x} + \alpha \mathbf{x}^{(0)}` (:func:`gcn_norm`'s
    :math:`\hat{\mathbf{A}}` as a CSR matrix cached per :obj:`edge_index`)."""
    def __init__(self, K: int = 1, alpha: float = 0.):
        super().__init__()
        self.K, self.alpha = int(K), float(alpha)
        self._cache = None

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_weight: OptTensor = None) -> Tensor:
        adj, adj_t = self._adjacency(x, edge_index, edge_weight)
        h = x
        for _ in range(self.K):
            x = _SparseMatmul.apply(adj, lambda: adj_t, x)
            if self.alpha > 0:
                x = x * (1 - self.alpha) + self.alpha * h
        return x

    def _adjacency(self, x, edge_index, edge_weight):
        cache = self._cache
        N = x.size(0)
        if cache is not None and cache[0] is edge_index \
                and cache[1] is edge_weight and cache[2] == N \
                and cache[3].dtype == x.dtype:
            return cache[3:]
        if not isinstance(edge_index, Tensor) or edge_index.is_sparse \
                or edge_index.dim() != 2 or edge_index.size(0) != 2:
            got = getattr(edge_index, 'shape', type(edge_index).__name__)
            raise TypeError(f"Stacked GCN, APPNP and SGC take an "
                            f"'edge_index' tensor of shape [2, num_edges] "
                            f"(got {got})")
        _check_edge_weight(edge_weight)
        index, weight = gcn_norm(edge_index, edge_weight, N, False, True,
                                 dtype=x.dtype)
        # Row i aggregates the messages of the edges j -> i:
        adj = torch.sparse_coo_tensor(index.flip(0), weight, (N, N),
                                      check_invariants=False).coalesce()
        self._cache = (edge_index, edge_weight, N, adj.to_sparse_csr(),
                       adj.t().coalesce().to_sparse_csr())
        return self._cache[3:]

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(K={self.K}, alpha={self.alpha})'


def _check_edge_weight(edge_weight):
    if isinstance(edge_weight, Tensor) and edge_weight.requires_grad:
        raise ValueError("Stacked models take fixed edge weights only (got "
                         "an 'edge_weight' that requires grad)")


def _check_same(models: Sequence[torch.nn.Module], what: str, get):
    values = [get(m) for m in models]
    other = next((v for v in values if v != values[0]), values[0])
    if other != values[0]:
        raise ValueError(f"The models to stack differ in {what} (got "
                         f"{values[0]!r} and another {other!r})")
    return values[0]


class _Stacked(torch.nn.Module):
    r"""The stacked models' :obj:`num_runs` and :meth:`run_state_dict`."""
    def __init__(self, num_runs: int):
        super().__init__()
        self.num_runs = int(num_runs)
        self._names: Dict[str, str] = {}  # stacked name -> single name

    def _add(self, name: str, models, single: str) -> StackedLinear:
        lin = StackedLinear([m.get_submodule(single) for m in models])
        self._names[f'{name}.weight'] = f'{single}.weight'
        if lin.bias is not None:
            self._names[f'{name}.bias'] = f'{single}.bias'
        return lin

    def _propagate(self, h: Tensor, edge_index, edge_weight) -> Tensor:
        return _to_runs(self.prop(_to_nodes(h), edge_index, edge_weight),
                        self.num_runs)

    def extra_repr(self) -> str:
        return f'runs={self.num_runs}'

    def run_state_dict(self, run: int) -> Dict[str, Tensor]:
        r"""The parameters of run :obj:`run`, named and shaped as those of
        the single model it was stacked from (copies)."""
        if not 0 <= run < self.num_runs:
            raise ValueError(f"'run' must be in [0, {self.num_runs}) "
                             f"(got {run})")
        p = {n: v[run].detach().clone() for n, v in self.named_parameters()}
        return {single: p[name].t() if name.endswith('weight') else p[name]
                for name, single in self._names.items()}


class StackedCOIN(_Stacked):
    r"""R :class:`~torch_geometric_coin.nn.COIN` with the same
    hyper-parameters (:obj:`norm=None`, fixed :math:`K`, :math:`\sigma^2`
    and edge weights) in one pass: stacked linear maps, then one diffusion
    (a copy of the first model's) over :math:`[N, R \cdot C]` channels."""
    def __init__(self, models: Sequence[COIN]):
        super().__init__(len(models))
        for m in models:
            for bad, msg in [
                    (m.edge_weights is not None, "refuses learned edge "
                     "weights ('learn_edge_weights' must be None)"),
                    (m.diffusion.learn_sigma2, "refuses a learned sigma2 "
                     "('learn_sigma2' must be False)"),
                    (any(not isinstance(n, torch.nn.Identity)
                         for n in m.base.norms), "supports norm=None only (a "
                     "normalisation would mix the runs' statistics)"),
                    (any(True for _ in m.base.act.parameters()),
                     "needs an activation without parameters")]:
                if bad:
                    raise ValueError(f"Stacked COIN {msg}")
        base = models[0].base
        _check_same(models, 'architecture', lambda m: (
            m.diffuse, m.base.in_channels, m.base.hidden_channels,
            m.base.out_channels, m.base.num_layers, m.base.T,
            m.base.dropout, repr(m.base.act), m.base.lin_in is None,
            m.base.lin_out is None))
        _check_same(models, 'diffusion', lambda m: (
            repr(m.diffusion), m.diffusion.add_self_loops,
            m.diffusion.cached, m.diffusion.stability, m.diffusion.tol,
            m.diffusion.max_iter))
        self.diffuse = models[0].diffuse
        self.in_channels = base.in_channels
        self.num_layers, self.T = base.num_layers, base.T
        self.dropout = base.dropout
        self.act = copy.deepcopy(base.act)
        self.lin_in = self.lin_out = None
        if base.lin_in is not None:
            self.lin_in = self._add('lin_in', models, 'base.lin_in')
        self.lins = torch.nn.ModuleList([
            self._add(f'lins.{i}', models, f'base.lins.{i}')
            for i in range(base.num_layers)])
        if base.lin_out is not None:
            self.lin_out = self._add('lin_out', models, 'base.lin_out')
        self.diffusion = copy.deepcopy(models[0].diffusion)
        self.diffusion.reset_parameters()  # forget a cached graph

    def encode(self, x: Tensor) -> Tensor:
        r"""The R residual bases without output maps: :obj:`[R, N, H]`."""
        h = x
        if self.lin_in is not None:
            h = self.lin_in(h, self.dropout)
        step = self.T / max(self.num_layers, 1)
        for lin in self.lins:
            z = self.act(lin(h, self.dropout))
            if _is_shared(h):
                h = _dense(h).unsqueeze(0)
            h = torch.add(h, z, alpha=step)
        if _is_shared(h):
            _check_x(h, self.in_channels, None)
            h = _dense(h).unsqueeze(0).expand(self.num_runs, -1, -1)
        return h

    def decode(self, h: Tensor) -> Tensor:
        return h if self.lin_out is None else self.lin_out(h, self.dropout)

    def forward(self, x: Tensor, edge_index, edge_weight: OptTensor = None,
                ) -> Tensor:
        _check_edge_weight(edge_weight)

        def diffuse(h: Tensor) -> Tensor:
            h = self.diffusion(_to_nodes(h), edge_index, edge_weight)
            return _to_runs(h, self.num_runs)

        if self.diffuse == 'hidden':
            return _softmax(self.decode(diffuse(self.encode(x))))
        logits = self.decode(self.encode(x))
        if self.diffuse == 'logits':
            return _softmax(diffuse(logits))
        return safe_log(diffuse(_softmax(logits, log=False)))


class StackedGCN(_Stacked):
    r"""R :class:`GCN` in one pass: per layer a stacked linear map, one
    propagation of the R runs' channels, and the biases."""
    def __init__(self, models: Sequence[GCN]):
        super().__init__(len(models))
        self.dropout = _check_same(models, 'dropout', lambda m: m.dropout)
        self.lin1 = self._add('lin1', models, 'conv1.lin')
        self.lin2 = self._add('lin2', models, 'conv2.lin')
        self.bias1, self.bias2 = (Parameter(torch.stack(
            [getattr(m, conv).bias.detach() for m in models]).clone())
            for conv in ('conv1', 'conv2'))
        self._names.update(bias1='conv1.bias', bias2='conv2.bias')
        self.prop = GCNPropagation(K=1)

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_weight: OptTensor = None) -> Tensor:
        h = self._propagate(self.lin1(x, self.dropout), edge_index,
                            edge_weight)
        h = (h + self.bias1.unsqueeze(1)).relu()
        h = self._propagate(self.lin2(h, self.dropout), edge_index,
                            edge_weight)
        return _softmax(h + self.bias2.unsqueeze(1))


class StackedMLP(_Stacked):
    r"""R :class:`MLPNet` in one pass; with :obj:`propagation` (R
    :class:`APPNPNet`), the R runs' logits are propagated in one pass."""
    def __init__(self, models: Sequence[torch.nn.Module],
                 propagation: Optional[GCNPropagation] = None):
        super().__init__(len(models))
        self.dropout = _check_same(models, 'dropout', lambda m: m.dropout)
        _check_same(models, 'MLP', lambda m: (repr(m.mlp),
                                              list(m.mlp.dropout)))
        self.mlp_dropout = models[0].mlp.dropout[0]
        self.lin1 = self._add('lin1', models, 'mlp.lins.0')
        self.lin2 = self._add('lin2', models, 'mlp.lins.1')
        self.prop = propagation

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_weight: OptTensor = None) -> Tensor:
        h = self.lin1(x, self.dropout).relu()
        h = self.lin2(h, self.mlp_dropout)
        if self.prop is not None:
            h = self._propagate(h, edge_index, edge_weight)
        return _softmax(h)


class StackedSGC(_Stacked):
    r"""R :class:`SGC` in one pass: the features are propagated once (cached
    per :obj:`x`, :obj:`edge_index` and :obj:`edge_weight` tensor), then
    multiplied by the R runs' weights side by side."""
    def __init__(self, models: Sequence[SGC]):
        super().__init__(len(models))
        self.K = _check_same(models, 'K', lambda m: m.conv.K)
        self.lin = self._add('lin', models, 'conv.lin')
        self.prop = GCNPropagation(K=self.K)
        self._x = None

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_weight: OptTensor = None) -> Tensor:
        # The same tensors, unedited (identity and in-place version):
        key = [(t, None if t is None else t._version)
               for t in (x, edge_index, edge_weight)]
        if self._x is None or any(a is not b or u != v for (a, u), (b, v)
                                  in zip(key, self._x[0])):
            with torch.no_grad():
                self._x = (key, self.prop(_dense(x), edge_index,
                                          edge_weight))
        return _softmax(self.lin(self._x[1]))


def stack(models: Sequence[torch.nn.Module]) -> _Stacked:
    r"""One stacked model of R models of one kind and the same
    hyper-parameters (:class:`COIN`, :class:`GCN`, :class:`SGC`,
    :class:`APPNPNet` or :class:`MLPNet`): run :obj:`r` starts from the
    parameters of :obj:`models[r]`; the output is :obj:`[R, N, C]`."""
    models = list(models)
    if not models:
        raise ValueError("'models' must hold at least one model")
    kinds = {type(m) for m in models}
    if len(kinds) != 1:
        raise TypeError(f"The models to stack must be of one kind (got "
                        f"{sorted(k.__name__ for k in kinds)})")
    first = models[0]
    if isinstance(first, COIN):
        return StackedCOIN(models)
    if isinstance(first, GCN):
        return StackedGCN(models)
    if isinstance(first, SGC):
        return StackedSGC(models)
    if isinstance(first, MLPNet) and not isinstance(first, APPNPNet):
        return StackedMLP(models)
    if not isinstance(first, APPNPNet):
        raise TypeError(f"Cannot stack {type(first).__name__}: expected "
                        f"COIN, GCN, SGC, APPNPNet or MLPNet")
    K = _check_same(models, 'K', lambda m: m.prop.K)
    alpha = _check_same(models, 'alpha', lambda m: m.prop.alpha)
    return StackedMLP(models, GCNPropagation(K, alpha))


def stacked_masks(splits: Sequence[Sequence[Tensor]]):
    r"""The :obj:`[R, N]` :obj:`(train, val, test)` masks of
    :func:`training.fit` from R :obj:`(train, val, test)` splits."""
    return tuple(torch.stack([s[i] for s in splits]) for i in range(3))
