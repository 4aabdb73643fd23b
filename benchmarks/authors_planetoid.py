"""The COIN authors' node-classification setting (``graph/`` of
shwangtangjun/COIN at 696d1a3), step by step, re-implemented in PyG style
for ``planetoid.py --setting authors``.

1. Data: the gnn-benchmark ``.npz`` files (``cora.npz``, ``citeseer.npz``;
   :func:`load_npz`), not PyG's Planetoid files.
2. Graph: unweighted, symmetrised, self-loops removed, then the largest
   connected component (:func:`largest_component`, as gnn-benchmark's
   ``SparseGraph.standardize``). CiteSeer keeps 2,110 nodes here against
   2,120 from PyG's Planetoid files: the npz file has 3,312 nodes, the
   Planetoid files 3,327, of which 15 test nodes have no features (PyG adds
   them as zero rows). Matching the two files node by node, the shared nodes
   and their edges are identical; the 10 extra nodes of the Planetoid
   component are 10 of those 15 featureless nodes, absent from the npz file.
   Cora's component has 2,485 nodes in both.
3. Features: binary bag of words, row-normalised (:func:`load_authors`).
4. Splits: ``numpy.random.RandomState(42).randint(0, 1e6, S)`` split seeds;
   per split a ``RandomState(seed)`` draws 20 training nodes per class, then
   30 validation nodes per class among the rest, test = the rest
   (:func:`authors_split`), then ``randint(0, 1e6, I)`` torch seeds of the
   I initialisations (:func:`authors_runs`). The paper: S=100, I=20.
5. COIN (:class:`AuthorsCOIN`): the base block ``x + relu(W x)`` as wide as
   the input, no dropout, a linear classifier and a softmax, then K explicit
   steps ``u - sigma2 L u`` with ``L = diag(A_hat 1) - A_hat``,
   ``A_hat = D^-1/2 (A + I) D^-1/2``; the loss is the NLL of ``log(u)``.
   K=20, sigma2=0.35 (``train.py``'s defaults, the only values in the code).
6. Optimiser: Adam lr 0.01, weight decay 5e-4 on every parameter, at most
   10,000 epochs, patience 50 (:func:`training.fit`, whose patience rule is
   the authors' one).
7. Model kept: the last epoch whose validation loss fell below its minimum
   or whose validation accuracy rose above its maximum
   (:class:`LastImprovement`; ``fit`` itself keeps the best validation
   accuracy, so its selection is replaced by this record).
8. Baselines with their own settings (``graph/reproduce``): GCN (64 hidden,
   dropout 0.8), GAT (8 heads x 64, attention dropout 0.3, feature dropout
   0.6), MLP (64 hidden, dropout 0.5), all with Adam 0.01 / 5e-4 on every
   parameter; APPNP (Klicpera's PPNP code: 64 hidden, no biases, dropout 0.5,
   10 power iterations, alpha 0.1, Adam 0.01 with weight decay 5e-3 on the
   first layer only). Every model uses steps 6-7.

Defect kept: ``log(u)`` is NaN where an explicit step makes a probability
negative (on Cora ``I - 0.35 L`` has negative diagonal entries and
``0.35 * lambda_max(L) = 2.02 > 2``). The authors' loop then trains on NaN
parameters until patience runs out and restores the last kept model;
:func:`run` stops at the first NaN (``fit`` raises) and reports the kept
epoch, the same model, and counts such runs (``nan_epoch``). The fixed
variant ``COIN-safe`` clamps the probabilities before the logarithm
(:func:`torch_geometric_coin.nn.safe_log`, as the library's COIN).
Divergence: ``fit`` also stops when only validation or test outputs are NaN
(the authors' run would go on); such runs are counted the same way.
"""
import os.path as osp
import time
import warnings
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from scipy.sparse.csgraph import connected_components

from torch_geometric.data import Data
from torch_geometric.nn import APPNP, GATConv, GCNConv

from torch_geometric_coin.nn import CoinDiffusionConv
from torch_geometric_coin.nn._diffused_nll_loss import safe_log

NPZ_FILES = {'Cora': 'cora.npz', 'CiteSeer': 'citeseer.npz',
             'PubMed': 'pubmed.npz'}
MODELS = ('COIN', 'COIN-safe', 'MLP', 'GCN', 'GAT', 'APPNP')
K, SIGMA2 = 20, 0.35  # graph/train.py defaults
MAX_EPOCHS, PATIENCE = 10000, 50
SEED = 42  # graph/train.py --seed


# Data ########################################################################

def load_npz(path: str) -> Dict:
    r"""Reads a gnn-benchmark ``.npz`` file: the CSR adjacency
    (``adj_data``, ``adj_indices``, ``adj_indptr``, ``adj_shape``), the CSR
    attributes (``attr_*``) and ``labels``. Returns a dictionary with
    :obj:`adj`, :obj:`attr` (``scipy.sparse.csr_matrix``, float32) and
    :obj:`labels`."""
    if not osp.isfile(path):
        raise FileNotFoundError(f"No gnn-benchmark file '{path}': pass the "
                                f"folder that holds it as --npz-root")
    with np.load(path, allow_pickle=True) as f:
        f = dict(f)
    adj = sp.csr_matrix((f['adj_data'], f['adj_indices'], f['adj_indptr']),
                        shape=tuple(f['adj_shape'])).astype(np.float32)
    attr = sp.csr_matrix((f['attr_data'], f['attr_indices'],
                          f['attr_indptr']),
                         shape=tuple(f['attr_shape'])).astype(np.float32)
    return dict(adj=adj, attr=attr, labels=np.asarray(f['labels']))


def largest_component(adj: sp.spmatrix) -> Tuple[sp.csr_matrix, np.ndarray]:
    r"""gnn-benchmark's ``standardize``: every weight set to one, the
    matrix symmetrised (:math:`A + A^\top`, non-zeros set to one),
    self-loops removed, then the nodes of the largest connected component
    (sorted). Returns :obj:`(adjacency of the component, kept nodes)`."""
    adj = sp.csr_matrix(adj, dtype=np.float32, copy=True)
    adj.data[:] = 1
    adj = (adj + adj.T).tocsr()
    adj.data[:] = 1
    adj = adj.tolil()
    adj.setdiag(0)
    adj = adj.tocsr()
    adj.eliminate_zeros()
    _, comp = connected_components(adj)
    sizes = np.bincount(comp)
    # gnn-benchmark keeps argsort(sizes)[::-1][:1] (ties: the last index).
    keep = np.nonzero(comp == np.argsort(sizes)[::-1][0])[0]
    return adj[keep][:, keep].tocsr(), keep


def load_authors(root: str, name: str) -> Data:
    r"""The authors' graph for :obj:`name`: :obj:`<root>/<name>.npz`
    (lower case), its largest component (:func:`largest_component`),
    binary features row-normalised (empty rows stay zero). Returns a
    :class:`Data` with :obj:`x`, :obj:`edge_index` (both directions,
    row-major order of the adjacency), :obj:`y`, :obj:`num_classes` and
    :obj:`x_sparse` (the same features as a sparse CSR tensor)."""
    if name not in NPZ_FILES:
        raise ValueError(f'Unknown data set {name!r}: expected one of '
                         f'{tuple(NPZ_FILES)}')
    raw = load_npz(osp.join(root, NPZ_FILES[name]))
    adj, keep = largest_component(raw['adj'])
    attr = raw['attr'][keep].tocsr()
    attr.data[:] = 1  # to_binary_bag_of_words (a no-op on 0/1 files)
    rowsum = np.asarray(attr.sum(1)).ravel()
    inv = np.zeros_like(rowsum)
    inv[rowsum > 0] = 1 / rowsum[rowsum > 0]
    attr = sp.diags(inv) @ attr
    labels = raw['labels'][keep]
    # binarize_labels + argmax: classes renumbered by sorted value.
    _, y = np.unique(labels, return_inverse=True)
    row, col = adj.nonzero()
    coo = attr.tocoo()
    x_sparse = torch.sparse_coo_tensor(
        np.vstack([coo.row, coo.col]), coo.data.astype(np.float32),
        coo.shape, check_invariants=True).coalesce()
    data = Data(x=x_sparse.to_dense(),
                edge_index=torch.from_numpy(np.vstack([row, col])).long(),
                y=torch.from_numpy(y).long())
    with warnings.catch_warnings():  # "CSR support is in beta state"
        warnings.simplefilter('ignore', UserWarning)
        data.x_sparse = x_sparse.to_sparse_csr()
    data.num_classes = int(y.max()) + 1
    return data


def _sample_per_class(state: np.random.RandomState, y: np.ndarray, num: int,
                      forbidden: Optional[np.ndarray] = None) -> np.ndarray:
    out = []
    for c in range(int(y.max()) + 1):
        idx = [i for i in np.nonzero(y == c)[0]
               if forbidden is None or i not in forbidden]
        out.append(state.choice(idx, num, replace=False))
    return np.concatenate(out)


def authors_split(state: np.random.RandomState, y: np.ndarray,
                  num_train: int = 20, num_val: int = 30):
    r"""gnn-benchmark's ``get_train_val_test_split`` with per-class
    counts: :obj:`num_train` nodes per class (classes in order, each drawn
    with :obj:`state.choice(..., replace=False)` from its nodes in
    ascending order), then :obj:`num_val` per class among the others, the
    rest as test (sorted). Returns index arrays :obj:`(train, val, test)`
    in the order drawn."""
    y = np.asarray(y)
    train = _sample_per_class(state, y, num_train)
    val = _sample_per_class(state, y, num_val, forbidden=train)
    test = np.setdiff1d(np.arange(y.shape[0]),
                        np.concatenate([train, val]))
    return train, val, test


def authors_runs(y: torch.Tensor, splits: int, inits: int,
                 seed: int = SEED) -> Iterator[Tuple]:
    r"""Yields :obj:`(split, init, torch_seed, train, val, test)` in the
    authors' order: split seeds from ``RandomState(seed).randint(0,
    1000000, splits)``; per split, ``RandomState(split_seed)`` draws the
    split, then ``randint(0, 1000000, inits)`` torch seeds. The index
    arrays are ``torch.long`` tensors."""
    split_seeds = np.random.RandomState(seed).randint(0, 1000000, splits)
    y = y.cpu().numpy()
    for s, split_seed in enumerate(split_seeds):
        state = np.random.RandomState(split_seed)
        masks = tuple(torch.from_numpy(np.asarray(m, dtype=np.int64))
                      for m in authors_split(state, y))
        torch_seeds = state.randint(0, 1000000, inits)
        for i in range(inits):
            yield (s, i, int(torch_seeds[i])) + masks


# Models ######################################################################

class AuthorsCOIN(torch.nn.Module):
    r"""The authors' COIN (``graph/coin.py``): :math:`\mathbf{u} =
    \mathrm{softmax}(\mathbf{W}_2(\mathbf{x} + \mathrm{relu}(\mathbf{W}_1
    \mathbf{x} + \mathbf{b}_1)) + \mathbf{b}_2)`, no dropout, then K steps
    :math:`\mathbf{u} \leftarrow \mathbf{u} - \sigma^2 \mathbf{L}
    \mathbf{u}` (the library's :class:`CoinDiffusionConv`, whose
    :obj:`'coin'` Laplacian is theirs). Returns :math:`\log \mathbf{u}`:
    :func:`torch.log` (NaN for negative entries, the authors' behaviour)
    or, with :obj:`safe_log=True`, clamped (the fixed variant). Takes dense
    or sparse features (the same numbers; sparse is faster)."""
    def __init__(self, in_channels: int, out_channels: int, K: int = K,
                 sigma2: float = SIGMA2, safe_log: bool = False):
        super().__init__()
        self.linear = torch.nn.Linear(in_channels, in_channels)
        self.classifier = torch.nn.Linear(in_channels, out_channels)
        self.diffusion = CoinDiffusionConv(K=K, sigma2=sigma2,
                                           normalization='coin', cached=True,
                                           stability='ignore')
        self.safe_log = safe_log

    def forward(self, x, edge_index):
        if x.layout != torch.strided:
            h = torch.sparse.mm(x, self.linear.weight.t()) + \
                self.linear.bias
            x = x.to_dense()
        else:
            h = self.linear(x)
        u = self.classifier(x + h.relu()).softmax(dim=-1)
        u = self.diffusion(u, edge_index)
        return safe_log(u) if self.safe_log else torch.log(u)


class AuthorsGCN(torch.nn.Module):
    r"""``reproduce/mlp_gcn_gat_graphsage``: two :class:`GCNConv` (64
    hidden), dropout 0.8 before each."""
    def __init__(self, in_channels, out_channels, hidden_channels=64,
                 dropout=0.8):
        super().__init__()
        self.dropout = dropout
        self.conv1 = GCNConv(in_channels, hidden_channels, cached=True)
        self.conv2 = GCNConv(hidden_channels, out_channels, cached=True)

    def forward(self, x, edge_index):
        x = F.dropout(x, self.dropout, training=self.training)
        x = self.conv1(x, edge_index).relu()
        x = F.dropout(x, self.dropout, training=self.training)
        return self.conv2(x, edge_index).log_softmax(dim=-1)


class AuthorsGAT(torch.nn.Module):
    r"""``reproduce/mlp_gcn_gat_graphsage``: 8 heads x 64 hidden, ELU, one
    output head, attention dropout 0.3, feature dropout 0.6."""
    def __init__(self, in_channels, out_channels, hidden_channels=64,
                 heads=8):
        super().__init__()
        self.conv1 = GATConv(in_channels, hidden_channels, heads,
                             dropout=0.3)
        self.conv2 = GATConv(hidden_channels * heads, out_channels, heads=1,
                             concat=False, dropout=0.3)

    def forward(self, x, edge_index):
        x = F.dropout(x, 0.6, training=self.training)
        x = F.elu(self.conv1(x, edge_index))
        x = F.dropout(x, 0.6, training=self.training)
        return self.conv2(x, edge_index).log_softmax(dim=-1)


class AuthorsMLP(torch.nn.Module):
    r"""``reproduce/mlp_gcn_gat_graphsage``: 64 hidden, dropout 0.5 before
    each layer."""
    def __init__(self, in_channels, out_channels, hidden_channels=64):
        super().__init__()
        self.fc1 = torch.nn.Linear(in_channels, hidden_channels)
        self.fc2 = torch.nn.Linear(hidden_channels, out_channels)

    def forward(self, x, edge_index):
        x = F.dropout(x, 0.5, training=self.training)
        x = self.fc1(x).relu()
        x = F.dropout(x, 0.5, training=self.training)
        return self.fc2(x).log_softmax(dim=-1)


class AuthorsAPPNP(torch.nn.Module):
    r"""``reproduce/appnp`` (Klicpera et al.'s PPNP code): two linear layers
    without biases (64 hidden, ReLU), dropout 0.5 on the input and on the
    hidden layer, then 10 power iterations :math:`\mathbf{z} \leftarrow
    (1 - \alpha) \hat{\mathbf{A}} \mathbf{z} + \alpha \mathbf{h}`,
    :math:`\alpha = 0.1` (PyG's :class:`APPNP`, the same operator). Its
    optimiser regularises the first layer only (:func:`build_model`)."""
    def __init__(self, in_channels, out_channels, hidden_channels=64, K=10,
                 alpha=0.1, dropout=0.5):
        super().__init__()
        self.dropout = dropout
        self.fc1 = torch.nn.Linear(in_channels, hidden_channels, bias=False)
        self.fc2 = torch.nn.Linear(hidden_channels, out_channels, bias=False)
        self.prop = APPNP(K, alpha, cached=True)

    def forward(self, x, edge_index):
        x = F.dropout(x, self.dropout, training=self.training)
        x = self.fc1(x).relu()
        x = F.dropout(x, self.dropout, training=self.training)
        return self.prop(self.fc2(x), edge_index).log_softmax(dim=-1)


def build_model(name: str, in_channels: int, out_channels: int,
                K: int = K, sigma2: float = SIGMA2):
    r"""Returns :obj:`(model, fit_kwargs)`: the authors' model :obj:`name`
    and its optimiser settings for :func:`training.fit` (without
    :obj:`epochs` and :obj:`patience`)."""
    train = dict(lr=0.01, weight_decay=5e-4)
    if name in ('COIN', 'COIN-safe'):
        model = AuthorsCOIN(in_channels, out_channels, K, sigma2,
                            safe_log=name == 'COIN-safe')
    elif name == 'MLP':
        model = AuthorsMLP(in_channels, out_channels)
    elif name == 'GCN':
        model = AuthorsGCN(in_channels, out_channels)
    elif name == 'GAT':
        model = AuthorsGAT(in_channels, out_channels)
    elif name == 'APPNP':
        model = AuthorsAPPNP(in_channels, out_channels)
        train['param_groups'] = [
            dict(params=model.fc1.parameters(), weight_decay=5e-3),
            dict(params=model.fc2.parameters(), weight_decay=0.),
        ]
    else:
        raise ValueError(f'Unknown model {name!r}: expected one of {MODELS}')
    return model, train


# Model selection #############################################################

class LastImprovement:
    r"""The authors' model selection, as a :obj:`progress` callback of
    :func:`training.fit`: keeps the metrics of the last epoch whose
    validation loss fell below the running minimum or whose validation
    accuracy rose above the running maximum (maximum starting at 0,
    minimum at infinity; both updated at such an epoch). With
    :obj:`fit(..., patience=50)`, training stops 50 epochs after that epoch,
    as in the authors' loop, and :obj:`kept` holds the model they test.
    Comparisons with NaN are false, as in numpy."""
    def __init__(self):
        self.loss_min, self.acc_max = float('inf'), 0.
        self.kept: Optional[Dict[str, float]] = None
        self.epochs = 0

    def __call__(self, epoch: int, metrics: Dict[str, float]) -> None:
        self.epochs = epoch
        loss, acc = metrics['val_loss'], metrics['val_acc']
        if loss < self.loss_min or acc > self.acc_max:
            self.loss_min = min(loss, self.loss_min)
            self.acc_max = max(acc, self.acc_max)
            self.kept = dict(metrics, epoch=epoch)


def run(fit, model, data, train, val, test, epochs: int = MAX_EPOCHS,
        patience: int = PATIENCE, forward=None, **kwargs) -> Dict:
    r"""Trains :obj:`model` with :func:`training.fit` and returns the
    metrics of the model the authors keep (:class:`LastImprovement`), with
    :obj:`epochs` (run), :obj:`time_per_epoch` and :obj:`nan_epoch` (the
    epoch where a NaN stopped the run, else :obj:`None`; there
    :obj:`time_per_epoch` is the mean wall time of an epoch, evaluation
    included)."""
    select = LastImprovement()
    start = time.perf_counter()
    try:
        res = fit(model, data, train, val, test, epochs=epochs,
                  patience=patience, progress=select, forward=forward,
                  **kwargs)
        nan_epoch, extra = None, dict(epochs=res['epochs'],
                                      time_per_epoch=res['time_per_epoch'])
    except FloatingPointError:
        if select.kept is None:
            raise
        nan_epoch = select.epochs + 1
        # (fit's step times are lost: the mean time of an epoch, evaluation
        # included.)
        extra = dict(epochs=nan_epoch, time_per_epoch=(
            time.perf_counter() - start) / nan_epoch)
    return dict(select.kept, nan_epoch=nan_epoch, **extra)


def coin_forward(model, data):
    r"""Calls COIN on the sparse features (faster; the same numbers)."""
    return model(data.x_sparse, data.edge_index)


def records_of(fit, data, models: List[str], splits: int, inits: int,
               epochs: int = MAX_EPOCHS, patience: int = PATIENCE,
               K: int = K, sigma2: float = SIGMA2, seed: int = SEED,
               after_run=None) -> Dict[str, List[Dict]]:
    r"""Every model of :obj:`models` on the authors' :obj:`splits` x
    :obj:`inits` runs (:func:`authors_runs`); calls
    :obj:`after_run(model_name, result)` after each."""
    records = {m: [] for m in models}
    for split, init, seed_, train, val, test in authors_runs(
            data.y, splits, inits, seed):
        for name in models:
            torch.manual_seed(seed_)
            model, kw = build_model(name, data.num_features,
                                    data.num_classes, K, sigma2)
            fwd = coin_forward if name.startswith('COIN') else None
            res = run(fit, model, data, train, val, test, epochs, patience,
                      forward=fwd, **kw)
            res.update(split=split, init=init, seed=seed_)
            records[name].append(res)
            if after_run is not None:
                after_run(name, res)
    return records


if __name__ == '__main__':
    import common
    common.module_main(
        __doc__, 'authors_planetoid',
        'benchmarks/planetoid.py --setting authors')
