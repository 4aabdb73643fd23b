"""The models of the benchmarks: PyG's baselines with their published
hyper-parameters, COIN with the authors' recipe (:obj:`COIN_RECIPE`),
:func:`build_model`, and many runs in one pass (:func:`stack`).

**Runs in one pass.** :func:`stack` turns R models of one kind (COIN, GCN,
SGC, APPNP, MLP) into one model whose parameters have a leading run
dimension R, so that every run starts from its own seed's initialisation.
The first linear map multiplies the shared features of all runs at once
(one dense or sparse product with the weights side by side,
:math:`[F, R \\cdot C]`), later maps are batched, and the graph part of the R
runs is one pass over :math:`[N, R \\cdot C]` channels. Dropout draws
independent masks per run. The output is :math:`[R, N, C]`
log-probabilities; :func:`training.fit` trains it with masks of shape
:math:`[R, N]`. A private implementation rather than
:func:`torch.func.stack_module_state` + :func:`torch.func.vmap`: vmap takes
neither the sparse features nor the sparse propagation of these models,
and the shared first product is what makes one pass fast (about 5-10x
fewer seconds per run on Cora, ``benchmarks/step_time.py``).
"""
import copy
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter

from torch_geometric.nn import (APPNP, MLP, GATConv, GCN2Conv, GCNConv,
                                MessagePassing, SGConv)
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.typing import OptTensor

from torch_geometric_coin.nn import COIN, safe_log
from torch_geometric_coin.nn.edge_weights import check_features
from torch_geometric_coin.nn.models.residual_convection import (
    dropout as drop_out,
)

MODELS = ('COIN', 'ResNet', 'MLP', 'GCN', 'GAT', 'APPNP', 'SGC', 'GCNII')
# The models that train all runs in one pass (stack):
STACKED = ('COIN', 'ResNet', 'MLP', 'GCN', 'SGC', 'APPNP')
# The COIN authors' recipe (graph/train.py of shwangtangjun/COIN: K=20,
# Adam 0.01 / 5e-4) at width 64 with dropout 0.5, unsearched; sigma2=0.3
# keeps 0.3 * lambda_max(L) inside the explicit scheme's stable range on
# Planetoid (the authors' 0.35 does not on Cora).
COIN_RECIPE = dict(K=20, sigma2=0.3, hidden_channels=64, num_layers=1,
                   dropout=0.5, weight_decay=5e-4)


# Models ######################################################################
# Hyper-parameters are the published ones (original papers, or PyG's
# examples/citation scripts that reproduce them). ``train`` holds the
# optimiser settings of the public protocol; the 'paper' protocol trains every
# model with Adam lr 0.01 and weight decay 5e-4, as the COIN authors do.

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
    r"""Velickovic et al. (2018): 8 heads x 8 hidden, ELU, dropout 0.6; the
    output layer averages :obj:`out_heads` heads (8 on PubMed, else 1)."""
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


class APPNPNet(torch.nn.Module):
    r"""Gasteiger et al. (2019): a 2-layer MLP (64 hidden, dropout 0.5)
    followed by :class:`~torch_geometric.nn.conv.APPNP` (K=10,
    alpha=0.1)."""
    def __init__(self, in_channels, out_channels, hidden_channels=64, K=10,
                 alpha=0.1, dropout=0.5):
        super().__init__()
        self.mlp = MLP([in_channels, hidden_channels, out_channels],
                       dropout=dropout, norm=None)
        self.dropout = dropout
        self.prop = APPNP(K, alpha, cached=True)

    def forward(self, x, edge_index):
        x = F.dropout(x, p=self.dropout, training=self.training)
        return self.prop(self.mlp(x), edge_index).log_softmax(dim=-1)


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


class GCNII(torch.nn.Module):
    r"""Chen et al. (2020) with :class:`~torch_geometric.nn.conv.GCN2Conv`
    (as in PyG's ``examples/gcn2_cora.py``)."""
    def __init__(self, in_channels, out_channels, hidden_channels=64,
                 num_layers=64, alpha=0.1, theta=0.5, dropout=0.6):
        super().__init__()
        self.dropout = dropout
        self.lins = torch.nn.ModuleList([
            torch.nn.Linear(in_channels, hidden_channels),
            torch.nn.Linear(hidden_channels, out_channels),
        ])
        self.convs = torch.nn.ModuleList([
            GCN2Conv(hidden_channels, alpha, theta, layer + 1,
                     shared_weights=True, normalize=True, cached=True)
            for layer in range(num_layers)
        ])

    def forward(self, x, edge_index):
        x = F.dropout(x, self.dropout, training=self.training)
        x = x_0 = self.lins[0](x).relu()
        for conv in self.convs:
            x = F.dropout(x, self.dropout, training=self.training)
            x = conv(x, x_0, edge_index).relu()
        x = F.dropout(x, self.dropout, training=self.training)
        return self.lins[1](x).log_softmax(dim=-1)


GCNII_SETTINGS = {  # Chen et al. (2020), Table 6 / their semi-supervised runs
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
    hyper-parameters and its optimiser settings for :func:`training.fit`
    (:obj:`lr`, :obj:`weight_decay` or :obj:`param_groups`, :obj:`epochs`,
    :obj:`patience`). COIN and ResNet (COIN with :obj:`K=0`) take
    :obj:`COIN_RECIPE`, whose keys :obj:`config` overrides (also
    :obj:`scheme`, :obj:`diffuse`)."""
    train = dict(lr=0.01, weight_decay=5e-4, epochs=200, patience=None)
    if name in ('COIN', 'ResNet'):
        cfg = dict(COIN_RECIPE, **(config or {}))
        unknown = set(cfg) - set(COIN_RECIPE) - {'scheme', 'diffuse'}
        if unknown:
            raise ValueError(f"Unknown COIN options {sorted(unknown)}")
        model = COIN(in_channels, out_channels,
                     hidden_channels=cfg['hidden_channels'],
                     num_layers=cfg['num_layers'],
                     K=0 if name == 'ResNet' else cfg['K'],
                     sigma2=cfg['sigma2'], dropout=cfg['dropout'],
                     diffuse=cfg.get('diffuse', 'prob'),
                     scheme=cfg.get('scheme', 'explicit'), cached=True,
                     stability='ignore')
        train.update(weight_decay=cfg['weight_decay'])
        return model, train
    if config:
        raise ValueError(f"'config' holds COIN's options, not {name!r}'s")
    if name == 'MLP':
        model = MLPNet(in_channels, out_channels)
    elif name == 'GCN':
        model = GCN(in_channels, out_channels)
    elif name == 'GAT':
        pubmed = dataset == 'PubMed'
        model = GAT(in_channels, out_channels, out_heads=8 if pubmed else 1)
        train.update(lr=0.01 if pubmed else 0.005,
                     weight_decay=1e-3 if pubmed else 5e-4, epochs=1000,
                     patience=100)
    elif name == 'APPNP':
        model = APPNPNet(in_channels, out_channels)
    elif name == 'SGC':
        model = SGC(in_channels, out_channels)
        train.update(lr=0.2, weight_decay=5e-3, epochs=100)
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


# Building blocks #############################################################

def _is_shared(x: Tensor) -> bool:
    r"""Whether :obj:`x` is the input shared by all runs (:obj:`[N, F]`,
    dense or :obj:`torch.sparse`) rather than per-run features
    :obj:`[R, N, F]`."""
    return x.is_sparse or x.dim() == 2


def _dense(x: Tensor) -> Tensor:
    return x.to_dense() if x.is_sparse else x


class StackedLinear(torch.nn.Module):
    r"""R linear maps :math:`\mathbf{y}_r = \mathbf{x}_r \mathbf{W}_r +
    \mathbf{b}_r`, with weights :math:`[R, F_{in}, F_{out}]`, and dropout
    on their input with independent masks per run.

    On the input shared by all runs (:obj:`[N, F_in]`, dense or
    :obj:`torch.sparse`) without dropout (evaluation), it is one product
    :math:`\mathbf{x} [\mathbf{W}_1, \dots, \mathbf{W}_R]` (a CSR product
    for a sparse input). With dropout, a dense shared input is expanded to
    :obj:`[R, N, F_in]` (memory :math:`R N F_{in}`), while the non-zeros of
    a sparse one are dropped per run and multiplied as one block-diagonal
    sparse matrix :math:`[R N, R F_{in}]` (memory :math:`R \cdot
    \mathrm{nnz}`). The CSR layouts of the sparse products, and those of
    their transposes for the gradient, are cached per input tensor. Per-run
    inputs :obj:`[R, N, F_in]` are multiplied by :func:`torch.baddbmm`.

    Args:
        weight (torch.Tensor): The weights :obj:`[R, F_in, F_out]` (copied).
        bias (torch.Tensor, optional): The biases :obj:`[R, F_out]`
            (copied).

    Shapes:
        - **input:** :math:`(N, F_{in})` (shared) or :math:`(R, N, F_{in})`
        - **output:** :math:`(R, N, F_{out})`
    """
    def __init__(self, weight: Tensor, bias: OptTensor = None):
        super().__init__()
        if weight.dim() != 3 or (bias is not None and bias.shape != (
                weight.size(0), weight.size(2))):
            b = None if bias is None else list(bias.shape)
            raise ValueError(f"'weight' must have shape [R, in, out] and "
                             f"'bias' [R, out] (got {list(weight.shape)} "
                             f"and {b})")
        self.weight = Parameter(weight.detach().clone())
        self.bias = None if bias is None else Parameter(bias.detach().clone())
        self._block = None  # (x, block-diagonal indices) of a sparse input

    @classmethod
    def stack(cls, lins: Sequence[torch.nn.Module]) -> 'StackedLinear':
        r"""From R :class:`torch.nn.Linear` (or PyG :class:`Linear`)
        layers (weights :obj:`[F_out, F_in]`)."""
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
        return cls(torch.stack([w.detach().t() for w in weights]),
                   None if biases[0] is None else torch.stack(
                       [b.detach() for b in biases]))

    @property
    def num_runs(self) -> int:
        return self.weight.size(0)

    def forward(self, x: Tensor, dropout: float = 0.) -> Tensor:
        R, F_in, F_out = self.weight.shape
        drop = dropout > 0 and self.training
        if not _is_shared(x):
            x = drop_out(x, dropout, self.training)
            if self.bias is None:
                return torch.bmm(x, self.weight)
            return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)
        check_features(x, F_in, self.weight)
        N = x.size(0)
        if not drop:
            w_cat = self.weight.transpose(0, 1).reshape(F_in, R * F_out)
            if x.is_sparse:
                block, value = self._block_matrix(x, 1)
                out = _BlockMatmul.apply(block, value, w_cat)
            else:
                out = x @ w_cat
            out = out.view(N, R, F_out).transpose(0, 1)  # a view, node-major
        elif x.is_sparse:
            block, value = self._block_matrix(x, R)
            value = drop_out(value.expand(R, -1), dropout, True).reshape(-1)
            out = _BlockMatmul.apply(block, value,
                                     self.weight.reshape(R * F_in, F_out))
            out = out.view(R, N, F_out)
        else:
            out = torch.bmm(drop_out(x.expand(R, N, F_in), dropout, True),
                            self.weight)
        return out if self.bias is None else out + self.bias.unsqueeze(1)

    def _block_matrix(self, x: Tensor, R: int):
        r"""The CSR layout of the block-diagonal :obj:`[R N, R F_in]` matrix
        of R copies of the sparse :obj:`x` (and of its transpose), and the
        values of :obj:`x`; cached per tensor :obj:`x`."""
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
            layouts[R] = _Block(
                torch._convert_indices_from_coo_to_csr(row, R * N), col,
                torch._convert_indices_from_coo_to_csr(col[perm], R * F_in),
                row[perm], perm, (R * N, R * F_in))
        return layouts[R], value

    def __repr__(self) -> str:
        R, F_in, F_out = self.weight.shape
        return (f'{self.__class__.__name__}({F_in}, {F_out}, runs={R}, '
                f'bias={self.bias is not None})')


class _Block:
    r"""A fixed CSR layout and that of its transpose (:obj:`perm` orders
    the values of the matrix as those of its transpose)."""
    def __init__(self, crow, col, t_crow, t_col, perm, size):
        self.crow, self.col, self.t_crow, self.t_col = crow, col, t_crow, t_col
        self.perm, self.size = perm, size

    def matrix(self, value: Tensor, transpose: bool = False) -> Tensor:
        if transpose:
            return torch.sparse_csr_tensor(
                self.t_crow, self.t_col, value[self.perm], self.size[::-1],
                check_invariants=False)
        return torch.sparse_csr_tensor(self.crow, self.col, value, self.size,
                                       check_invariants=False)


class _BlockMatmul(torch.autograd.Function):
    r""":math:`\mathbf{S} \mathbf{W}` for a sparse :math:`\mathbf{S}` of a
    fixed layout with new (constant) values and a dense :math:`\mathbf{W}`,
    with CSR products both ways (:math:`\mathbf{S}^\top` from the cached
    layout of the transpose)."""
    @staticmethod
    def forward(ctx, block: _Block, value: Tensor, weight: Tensor) -> Tensor:
        ctx.block = block
        ctx.save_for_backward(value)
        return block.matrix(value) @ weight

    @staticmethod
    def backward(ctx, grad: Tensor):
        value, = ctx.saved_tensors
        return None, None, ctx.block.matrix(value, transpose=True) @ grad


def _to_nodes(x: Tensor) -> Tensor:
    r""":obj:`[R, N, C]` to the :obj:`[N, R * C]` channels of one
    propagation (a view when :obj:`x` is node-major already)."""
    R, N, C = x.shape
    return x.transpose(0, 1).reshape(N, R * C)


def _to_runs(x: Tensor, R: int) -> Tensor:
    N = x.size(0)
    return x.view(N, R, -1).transpose(0, 1)


class _CSRMatmul(torch.autograd.Function):
    r""":math:`\mathbf{A} \mathbf{x}` with a fixed CSR matrix and its cached
    transpose for the backward pass (torch's CSR kernel is several times
    faster than :class:`SparseTensor`'s on many channels)."""
    @staticmethod
    def forward(ctx, adj: Tensor, adj_t: Tensor, x: Tensor) -> Tensor:
        ctx.adj_t = adj_t
        return adj @ x

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, None, ctx.adj_t @ grad


class GCNPropagation(MessagePassing):
    r"""PyG's normalised propagation :math:`\hat{\mathbf{A}} = \tilde{
    \mathbf{D}}^{-1/2} (\mathbf{A} + \mathbf{I}) \tilde{\mathbf{D}}^{-1/2}`
    (:func:`gcn_norm`) as one sparse (CSR) product per step, with APPNP's
    teleport :math:`\mathbf{x}^{(k)} = (1 - \alpha) \hat{\mathbf{A}}
    \mathbf{x}^{(k-1)} + \alpha \mathbf{x}^{(0)}` (:obj:`alpha=0`: plain
    powers of :math:`\hat{\mathbf{A}}`). The normalised adjacency is cached
    per :obj:`edge_index` tensor (another tensor is normalised anew).

    Args:
        K (int, optional): Number of steps. (default: :obj:`1`)
        alpha (float, optional): Teleport probability. (default: :obj:`0.`)

    Shapes:
        - **input:** node features :math:`(N, C)`, edge indices
          :math:`(2, |\mathcal{E}|)`
        - **output:** node features :math:`(N, C)`
    """
    def __init__(self, K: int = 1, alpha: float = 0.):
        super().__init__(aggr='add')
        self.K, self.alpha = int(K), float(alpha)
        self._cache = None

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_weight: OptTensor = None) -> Tensor:
        adj = self._adjacency(x, edge_index, edge_weight)
        h = x
        for _ in range(self.K):
            x = self.propagate(adj, x=x)
            if self.alpha > 0:
                x = x * (1 - self.alpha)
                x = x + self.alpha * h
        return x

    def _adjacency(self, x, edge_index, edge_weight):
        cache = self._cache
        N = x.size(0)
        if cache is not None and cache[0] is edge_index \
                and cache[1] is edge_weight and cache[2] == N \
                and cache[3].dtype == x.dtype:
            return cache[3]
        if not isinstance(edge_index, Tensor) or edge_index.is_sparse \
                or edge_index.dim() != 2 or edge_index.size(0) != 2:
            got = getattr(edge_index, 'shape', type(edge_index).__name__)
            raise TypeError(f"Stacked GCN, APPNP and SGC take an "
                            f"'edge_index' tensor of shape [2, num_edges] "
                            f"(got {got})")
        if edge_weight is not None and edge_weight.requires_grad:
            raise ValueError("Stacked models take fixed edge weights only "
                             "(got an 'edge_weight' that requires grad)")
        index, weight = gcn_norm(edge_index, edge_weight, N, False, True,
                                 dtype=x.dtype)
        # Row i aggregates the messages of the edges j -> i:
        adj = torch.sparse_coo_tensor(index.flip(0), weight, (N, N),
                                      check_invariants=False).coalesce()
        self._cache = (edge_index, edge_weight, N, adj.to_sparse_csr(),
                       adj.t().coalesce().to_sparse_csr())
        return self._cache[3]

    def message_and_aggregate(self, adj: Tensor, x: Tensor) -> Tensor:
        return _CSRMatmul.apply(adj, self._cache[4], x)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(K={self.K}, alpha={self.alpha})'


# Stacked models ##############################################################

class _Stacked(torch.nn.Module):
    r"""The common part of the stacked models: :obj:`num_runs`, and the map
    from stacked parameters to those of one run (:meth:`run_state_dict`)."""
    def __init__(self, num_runs: int):
        super().__init__()
        self.num_runs = int(num_runs)
        self._names: Dict[str, str] = {}  # stacked name -> single name

    def _add(self, name: str, lin: StackedLinear, single: str):
        setattr(self, name, lin)
        self._names[f'{name}.weight'] = f'{single}.weight'
        if lin.bias is not None:
            self._names[f'{name}.bias'] = f'{single}.bias'

    def run_state_dict(self, run: int) -> Dict[str, Tensor]:
        r"""The parameters of run :obj:`run`, named and shaped as those of
        the single model it was stacked from (copies)."""
        if not 0 <= run < self.num_runs:
            raise ValueError(f"'run' must be in [0, {self.num_runs}) "
                             f"(got {run})")
        params = dict(self.named_parameters())
        out = {}
        for name, single in self._names.items():
            value = params[name][run].detach().clone()
            out[single] = value.t() if name.endswith('weight') else value
        return out


def _check_same(models: Sequence[torch.nn.Module], what: str, get):
    values = [get(m) for m in models]
    if any(v != values[0] for v in values[1:]):
        raise ValueError(f"The models to stack differ in {what} "
                         f"(got {values[0]!r} and another "
                         f"{next(v for v in values if v != values[0])!r})")
    return values[0]


class StackedCOIN(_Stacked):
    r"""R :class:`~torch_geometric_coin.nn.COIN` models with the same
    hyper-parameters (residual base with :obj:`norm=None`, fixed
    :math:`K` and :math:`\sigma^2`, no learned edge weights) in one pass:
    their base classifiers as stacked linear maps, their diffusions as one
    :class:`CoinDiffusionConv` (a copy of the first model's) over
    :math:`[N, R \cdot C]` channels.

    Args:
        models (Sequence[COIN]): The R models (their parameters are
            copied).
    """
    def __init__(self, models: Sequence[COIN]):
        super().__init__(len(models))
        for m in models:
            if not isinstance(m, COIN):
                raise TypeError(f"StackedCOIN stacks COIN models (got "
                                f"{type(m).__name__})")
            if m.edge_weights is not None:
                raise ValueError("Stacked COIN refuses learned edge weights "
                                 "('learn_edge_weights' must be None)")
            if m.diffusion.learn_sigma2:
                raise ValueError("Stacked COIN refuses a learned sigma2 "
                                 "('learn_sigma2' must be False)")
            if any(not isinstance(n, torch.nn.Identity)
                   for n in m.base.norms):
                raise ValueError("Stacked COIN supports norm=None only (a "
                                 "normalisation would mix the runs' "
                                 "statistics)")
            if any(True for _ in m.base.act.parameters()):
                raise ValueError("Stacked COIN needs an activation without "
                                 "parameters")
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
            self._add('lin_in', StackedLinear.stack(
                [m.base.lin_in for m in models]), 'base.lin_in')
        self.lins = torch.nn.ModuleList()
        for i in range(base.num_layers):
            self.lins.append(StackedLinear.stack(
                [m.base.lins[i] for m in models]))
            self._names[f'lins.{i}.weight'] = f'base.lins.{i}.weight'
            if self.lins[i].bias is not None:
                self._names[f'lins.{i}.bias'] = f'base.lins.{i}.bias'
        if base.lin_out is not None:
            self._add('lin_out', StackedLinear.stack(
                [m.base.lin_out for m in models]), 'base.lin_out')
        self.diffusion = copy.deepcopy(models[0].diffusion)
        self.diffusion.reset_parameters()  # forget a cached graph

    def encode(self, x: Tensor) -> Tensor:
        r"""The R residual bases without their output maps:
        :obj:`[R, N, hidden]`."""
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
            check_features(h, self.in_channels, None)
            h = _dense(h).unsqueeze(0).expand(self.num_runs, -1, -1)
        return h

    def decode(self, h: Tensor) -> Tensor:
        return h if self.lin_out is None else self.lin_out(h, self.dropout)

    def forward(self, x: Tensor, edge_index, edge_weight: OptTensor = None,
                ) -> Tensor:
        if isinstance(edge_weight, Tensor) and edge_weight.requires_grad:
            raise ValueError("Stacked COIN takes fixed edge weights only "
                             "(got an 'edge_weight' that requires grad)")
        R = self.num_runs
        if self.diffuse == 'hidden':
            h = self.diffusion(_to_nodes(self.encode(x)), edge_index,
                               edge_weight)
            return self.decode(_to_runs(h, R)).log_softmax(dim=-1)
        logits = self.decode(self.encode(x))
        if self.diffuse == 'logits':
            out = self.diffusion(_to_nodes(logits), edge_index, edge_weight)
            return _to_runs(out, R).log_softmax(dim=-1)
        prob = self.diffusion(_to_nodes(logits.softmax(dim=-1)), edge_index,
                              edge_weight)
        return safe_log(_to_runs(prob, R))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, runs='
                f'{self.num_runs}, diffuse={self.diffuse!r}, '
                f'diffusion={self.diffusion})')


class StackedGCN(_Stacked):
    r"""R :class:`GCN` (two :class:`GCNConv`, ReLU, dropout) in one
    pass: each layer is a stacked linear map, one propagation of the R
    runs' channels and the biases."""
    def __init__(self, models: Sequence[GCN]):
        super().__init__(len(models))
        for m in models:
            for conv in (m.conv1, m.conv2):
                if not (conv.normalize and conv.add_self_loops
                        and not conv.improved):
                    raise ValueError("Stacked GCN needs GCNConv with "
                                     "normalize=True, add_self_loops=True, "
                                     "improved=False")
        self.dropout = _check_same(models, 'dropout', lambda m: m.dropout)
        self.lin1 = StackedLinear.stack([m.conv1.lin for m in models])
        self.lin2 = StackedLinear.stack([m.conv2.lin for m in models])
        self.bias1 = Parameter(torch.stack(
            [m.conv1.bias.detach() for m in models]).clone())
        self.bias2 = Parameter(torch.stack(
            [m.conv2.bias.detach() for m in models]).clone())
        self._names = {'lin1.weight': 'conv1.lin.weight',
                       'bias1': 'conv1.bias',
                       'lin2.weight': 'conv2.lin.weight',
                       'bias2': 'conv2.bias'}
        self.prop = GCNPropagation(K=1)

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_weight: OptTensor = None) -> Tensor:
        R = self.num_runs
        h = self.lin1(x, self.dropout)
        h = _to_runs(self.prop(_to_nodes(h), edge_index, edge_weight), R)
        h = (h + self.bias1.unsqueeze(1)).relu()
        h = self.lin2(h, self.dropout)
        h = _to_runs(self.prop(_to_nodes(h), edge_index, edge_weight), R)
        return (h + self.bias2.unsqueeze(1)).log_softmax(dim=-1)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(runs={self.num_runs})'


class StackedMLP(_Stacked):
    r"""R :class:`MLPNet` (dropout, linear, ReLU, dropout, linear) in
    one pass; with :obj:`propagation` (R :class:`APPNPNet`), the
    logits of the R runs are propagated as one :math:`[N, R \cdot C]`
    tensor."""
    def __init__(self, models: Sequence[torch.nn.Module],
                 propagation: Optional[GCNPropagation] = None):
        super().__init__(len(models))
        self.dropout = _check_same(models, 'dropout', lambda m: m.dropout)
        _check_same(models, 'MLP', lambda m: (
            repr(m.mlp), list(m.mlp.dropout), m.mlp.plain_last,
            repr(m.mlp.act), all(isinstance(n, torch.nn.Identity)
                                 for n in m.mlp.norms)))
        mlp = models[0].mlp
        if not (len(mlp.lins) == 2 and mlp.plain_last and all(
                isinstance(n, torch.nn.Identity) for n in mlp.norms)
                and isinstance(mlp.act, torch.nn.ReLU)):
            raise ValueError("Stacked MLP needs a 2-layer MLP with ReLU, "
                             "norm=None and plain_last=True")
        self.mlp_dropout = mlp.dropout[0]
        self._add('lin1', StackedLinear.stack([m.mlp.lins[0]
                                               for m in models]),
                  'mlp.lins.0')
        self._add('lin2', StackedLinear.stack([m.mlp.lins[1]
                                               for m in models]),
                  'mlp.lins.1')
        self.prop = propagation

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_weight: OptTensor = None) -> Tensor:
        h = self.lin1(x, self.dropout).relu()
        h = self.lin2(h, self.mlp_dropout)
        if self.prop is not None:
            h = _to_runs(self.prop(_to_nodes(h), edge_index, edge_weight),
                         self.num_runs)
        return h.log_softmax(dim=-1)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(runs={self.num_runs}, '
                f'propagation={self.prop})')


class StackedSGC(_Stacked):
    r"""R :class:`SGC` in one pass: the features are propagated once
    (:math:`\hat{\mathbf{A}}^K \mathbf{x}`, cached per :obj:`x` and
    :obj:`edge_index` tensor; a sparse :obj:`x` is made dense for it), then
    multiplied by the R runs' weights side by side."""
    def __init__(self, models: Sequence[SGC]):
        super().__init__(len(models))
        self.K = _check_same(models, 'K', lambda m: m.conv.K)
        if not all(m.conv.add_self_loops for m in models):
            raise ValueError("Stacked SGC needs add_self_loops=True")
        self._add('lin', StackedLinear.stack([m.conv.lin for m in models]),
                  'conv.lin')
        self.prop = GCNPropagation(K=self.K)
        self._x = None

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_weight: OptTensor = None) -> Tensor:
        cache = self._x
        if cache is None or cache[0] is not x or cache[1] is not edge_index \
                or cache[2] is not edge_weight:
            with torch.no_grad():
                h = self.prop(_dense(x), edge_index, edge_weight)
            self._x = cache = (x, edge_index, edge_weight, h)
        return self.lin(cache[3]).log_softmax(dim=-1)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(runs={self.num_runs}, K={self.K})'


def stack(models: Sequence[torch.nn.Module]) -> _Stacked:
    r"""One stacked model of R models of the same kind and
    hyper-parameters (:class:`COIN`, :class:`GCN`,
    :class:`SGC`, :class:`APPNPNet` or
    :class:`MLPNet`, as :func:`build_model` gives them), with
    their parameters copied: run :obj:`r` starts where :obj:`models[r]`
    does. Its output is :obj:`[R, N, C]` log-probabilities."""
    models = list(models)
    if not models:
        raise ValueError("'models' must hold at least one model")
    kinds = {type(m) for m in models}
    if len(kinds) != 1:
        raise TypeError(f"The models to stack must be of one kind (got "
                        f"{sorted(k.__name__ for k in kinds)})")
    first = models[0]
    if isinstance(first, COIN):
        out = StackedCOIN(models)
    elif isinstance(first, GCN):
        out = StackedGCN(models)
    elif isinstance(first, SGC):
        out = StackedSGC(models)
    elif isinstance(first, APPNPNet):
        for m in models:
            if m.prop.dropout > 0 or not m.prop.normalize \
                    or not m.prop.add_self_loops:
                raise ValueError("Stacked APPNP needs APPNP with dropout=0, "
                                 "normalize=True and add_self_loops=True")
        K = _check_same(models, 'K', lambda m: m.prop.K)
        alpha = _check_same(models, 'alpha', lambda m: m.prop.alpha)
        out = StackedMLP(models, GCNPropagation(K, alpha))
    elif isinstance(first, MLPNet):
        out = StackedMLP(models)
    else:
        raise TypeError(f"Cannot stack {type(first).__name__}: expected "
                        f"COIN, GCN, SGC, APPNPNet or MLPNet")
    return out


def stacked_masks(splits: Sequence[Sequence[Tensor]]):
    r"""The :obj:`[R, N]` masks of :func:`training.fit` from R
    :obj:`(train, val, test)` boolean masks: :obj:`(train, val, test)`."""
    return tuple(torch.stack([s[i] for s in splits]) for i in range(3))
