"""COVID-19 case forecasting with missing data (England, France, Italy,
Spain) with COIN, in the COIN authors' setting and in ours, side by side.

    python benchmarks/covid_forecast.py                      # both settings
    python benchmarks/covid_forecast.py --setting authors    # one of them
    python benchmarks/covid_forecast.py --days 20 --maskings 1 --seeds 1

In both settings a sample is one day to forecast: each region's features
are its cases of the previous 8 days, the target is the next day's cases,
both standardised per region over all days (mean and population standard
deviation + 1e-10, as PyTorch Geometric Temporal's
``EnglandCovidDatasetLoader`` does), and the graph of a sample is the
mobility graph of the first day of its window (as there). The samples are
split in time, 20% train, 20% validation, 60% test. The standardisation
uses the statistics of the test period (in the authors' code, and here in
both settings): a leak of the test period's scale into the inputs, which
the comparison of the two settings does not involve.

``--setting authors`` follows the authors' code (``covid/load_data.py``,
``covid/coin.py`` and ``covid/train.py`` of shwangtangjun/COIN) step by
step:

* data: England is PyTorch Geometric Temporal's ``england_covid.json``
  (``<root>/england_covid/``), their file, in its region order (the order
  decides which entries a masking hides); the other countries, which the
  authors did not run, come from :class:`PandemicTGNN`.
* masking: ``--hidden-ratio`` (0.9) of ALL entries of the standardised
  ``[days, regions]`` table are hidden, drawn without replacement and
  redrawn until every region keeps at least ``--min-keep`` (2) entries of
  non-zero spread; hidden entries are 0 in the inputs of every split
  (training, validation and test), hidden targets are left out of the
  loss, and the targets of the test samples (from sample
  ``2 * int(0.2 * S)`` on, of ``S``) are all put back.
* random numbers: numpy's ``RandomState(--seed)`` (42) draws one seed per
  masking, each masking's ``RandomState`` draws the masking and then one
  torch seed per initialisation, as in their code, so the maskings and the
  initial weights are theirs (their dropout ran on a GPU).
* graph (COIN only): the self-loops of the daily mobility graph are removed
  (they carry 89-99% of its weight), :math:`\\hat{A} = D^{-1/2} A D^{-1/2}`
  with :math:`A_{ij}` the flow from :math:`i` to :math:`j` and :math:`D`
  the out-degree (row sums), :math:`L = \\mathrm{diag}(\\hat{A} 1) -
  \\hat{A}`, so :math:`(Lu)_i` sums over the edges leaving :math:`i`
  (:func:`authors_graph` with ``CoinDiffusionConv(normalization='coin',
  add_self_loops=False)`` builds exactly this).
* models: COIN is their base regressor (a linear shortcut plus a 16-wide
  ELU layer) followed by K=10 steps :math:`u \\leftarrow u - 0.5 L u` with
  dropout 0.25 before each step; the MLP (16 hidden, ELU, dropout 0.25 on
  its input and hidden layer); the GCN (two ``GCNConv``, 16 hidden, ELU,
  dropout 0.25, self-loops and normalisation of ``GCNConv``) with
  ``cached=True``, so that every sample, test samples included, is
  propagated over the graph of the first training day (a defect of their
  code, kept: here that day's normalised graph is given to every sample;
  ``GCN (daily graphs)`` is the fixed variant beside it); linear
  regression (least squares with an intercept, on the observed training
  targets). ``Residual (K=0)`` (their base regressor alone) is an addition.
  Not run: their temporal GNNs (DCRNN, MPNN-LSTM, GConvGRU, A3T-GCN,
  EvolveGCN of PyTorch Geometric Temporal, which is not installed here).
* training: Adam (lr 0.01, weight decay 5e-4), 100 full-batch epochs over
  the training samples, the loss the mean over samples of the MSE of their
  observed targets; the final model is kept (their validation loss is never
  used).
* metric: the test MSE (the mean over test samples of the MSE of all
  regions), mean ± std over 10 maskings x 10 initialisations (they print
  the population std, the table the sample std; the result file has both).

``--setting ours``, the setting of this script before (which its docstring
called the authors' setting; it is not): the England data of
:class:`PandemicTGNN` (another region order), only the training targets
are hidden (``--hidden-ratio`` of each region's, but every region keeps at
least ``--min-keep``: with England's 10 training days, 8 of 10 hidden),
all inputs complete; COIN is a residual regressor
(:class:`ResidualConvection`, hidden 64) followed by K=10 diffusion steps
(sigma2=0.5, dropout 0.25 before each step) over each day's graph with its
self-loops and the in-degree (``normalization='coin'``); baselines linear
regression, an MLP, a GCN over each day's graph and the residual regressor
without diffusion; Adam (lr 0.01, weight decay 5e-4), at most 300 epochs,
the epoch of lowest validation MSE (patience 50), 10 maskings x 3
initialisations; the pooled MSE of all test targets.

``--dataset France`` (or Italy, Spain) runs the same on the data of another
country of the pandemic_tgnn repository.
"""
import copy
import json
import os.path as osp
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from torch_geometric.data import Batch, Data
from torch_geometric.nn import GCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.nn.models import MLP
from torch_geometric.utils import scatter

from torch_geometric_coin.datasets import PandemicTGNN
from torch_geometric_coin.nn import CoinDiffusionConv, ResidualConvection
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import reporting  # noqa: E402
from training import fit  # noqa: E402

SETTINGS = ('authors', 'ours')
METHODS = {
    'authors': ('Linear regression', 'MLP', 'GCN', 'GCN (daily graphs)',
                'Residual (K=0)', 'COIN'),
    'ours': ('Linear regression', 'MLP', 'GCN', 'Residual (K=0)', 'COIN'),
}
ALL_METHODS = METHODS['authors']  # The rows of the table, in order.
COUNTRIES = ('England', 'France', 'Italy', 'Spain')
# The options whose default depends on the setting:
DEFAULTS = {
    'authors': dict(hidden_channels=16, dropout=0.25, epochs=100, seeds=10,
                    seed=42),
    'ours': dict(hidden_channels=64, dropout=0., epochs=300, seeds=3,
                 seed=0),
}


# The authors' setting ########################################################

class AuthorsResNet(torch.nn.Module):
    r"""The authors' base regressor: a linear shortcut plus a one-hidden-layer
    ELU network, :math:`\mathbf{x} \mathbf{W}_s + \mathrm{ELU}(\mathbf{x}
    \mathbf{W}_1) \mathbf{W}_2` (with biases), created in their order, so
    that a torch seed gives their initial weights."""
    def __init__(self, in_channels, hidden_channels, out_channels):
        super().__init__()
        self.lin1 = torch.nn.Linear(in_channels, hidden_channels)
        self.lin2 = torch.nn.Linear(hidden_channels, out_channels)
        self.shortcut = torch.nn.Linear(in_channels, out_channels)

    def forward(self, x):
        return self.shortcut(x) + self.lin2(F.elu(self.lin1(x)))


class AuthorsCOIN(torch.nn.Module):
    r"""The authors' COIN regressor: :class:`AuthorsResNet`, then :obj:`K`
    steps :math:`\mathbf{u} \leftarrow \mathbf{u} - \sigma^2 \mathbf{L}
    \mathbf{u}` with dropout before each, over a graph of
    :func:`authors_graph` (no self-loops added, the degree of the reversed
    graph's targets: the out-degree). The stability check is off: for this
    non-symmetric :math:`\mathbf{L}` it has only the Gershgorin bound
    (:math:`\sigma^2 \lambda_{\max} \leq 3.1` on England's days, above 2),
    while the spectral radius of :math:`\mathbf{I} - 0.5 \mathbf{L}` is 1 on
    every day."""
    def __init__(self, in_channels, hidden_channels, K, sigma2, dropout):
        super().__init__()
        self.base = AuthorsResNet(in_channels, hidden_channels, 1)
        self.diffusion = CoinDiffusionConv(
            K=K, sigma2=sigma2, normalization='coin', add_self_loops=False,
            dropout=dropout, cached=True, stability='ignore')

    def forward(self, x, edge_index, edge_weight=None):
        return self.diffusion(self.base(x), edge_index, edge_weight).view(-1)


class AuthorsMLP(torch.nn.Module):
    r"""The authors' MLP: dropout, linear, ELU, dropout, linear."""
    def __init__(self, in_channels, hidden_channels, dropout):
        super().__init__()
        self.fc1 = torch.nn.Linear(in_channels, hidden_channels)
        self.fc2 = torch.nn.Linear(hidden_channels, 1)
        self.dropout = dropout

    def forward(self, x):
        x = F.dropout(x, p=self.dropout, training=self.training)
        x = F.elu(self.fc1(x))
        x = F.dropout(x, p=self.dropout, training=self.training)
        return self.fc2(x).view(-1)


def authors_graph(edge_index, edge_weight):
    r"""The mobility graph of the authors' COIN Laplacian, for
    :obj:`CoinDiffusionConv(normalization='coin', add_self_loops=False)`:
    the self-loops removed and the edges reversed. Their :math:`L` has
    :math:`L_{ij} = -\hat{A}_{ij}` for the flow :math:`i \to j` and the
    out-degree in :math:`\hat{A} = D^{-1/2} A D^{-1/2}`; in PyG's convention
    (an entry :math:`L_{ij}` belongs to the edge :math:`j \to i`, degrees of
    the targets) that is the reversed graph."""
    keep = edge_index[0] != edge_index[1]
    return edge_index[:, keep].flip(0), edge_weight[keep]


def read_england_covid(file):
    r"""Reads PyTorch Geometric Temporal's :obj:`england_covid.json`: returns
    the cases :obj:`[T, N]` (float64) and the mobility graph
    :obj:`(edge_index, edge_weight)` of each day."""
    with open(file) as f:
        raw = json.load(f)
    cases = np.asarray(raw['y'], dtype=np.float64)
    T = int(raw['time_periods'])
    if cases.ndim != 2 or cases.shape[0] != T:
        raise ValueError(f"'{file}': 'y' is not [time_periods, regions]")
    graphs = []
    for t in range(T):
        pairs = raw['edge_mapping']['edge_index'][str(t)]
        edge_index = torch.tensor(pairs, dtype=torch.long).view(-1, 2).t()
        edge_weight = torch.tensor(
            raw['edge_mapping']['edge_weight'][str(t)], dtype=torch.float)
        graphs.append((edge_index.contiguous(), edge_weight))
    return cases, graphs


def standardize(cases):
    r"""Per region over all days: mean 0, population std 1 (+1e-10)."""
    return (cases - cases.mean(0)) / (cases.std(0) + 1e-10)


def hide_entries(z, hidden, min_keep, rng, max_tries=100000):
    r"""The authors' masking: hides :obj:`int(hidden * z.size)` entries of
    the table :obj:`z` :obj:`[T, N]`, drawn from the numpy
    :obj:`RandomState` :obj:`rng` without replacement, again until every
    region keeps at least :obj:`min_keep` entries whose spread exceeds
    1e-9. Returns the boolean mask of the hidden entries."""
    for _ in range(max_tries):
        idx = rng.choice(z.size, int(hidden * z.size), replace=False)
        mask = np.zeros(z.size, dtype=bool)
        mask[idx] = True
        mask = mask.reshape(z.shape)
        masked = np.where(mask, np.nan, z)
        with np.errstate(invalid='ignore', divide='ignore'):
            count = (~mask).sum(0)
            spread = np.nanstd(masked, axis=0) if count.min() > 0 else 0.
        if count.min() >= min_keep and np.min(spread) > 1e-9:
            return mask
    raise ValueError(f'No masking in {max_tries} draws keeps {min_keep} '
                     f'distinct entries of every region')


def split_sizes(S, train_ratio, val_ratio):
    r"""PyTorch Geometric Temporal's :obj:`temporal_signal_split`, twice as
    the authors call it: :obj:`(num_train, num_val)` of :obj:`S`
    samples."""
    num_train = int(train_ratio * S)
    num_val = int(val_ratio / (1 - train_ratio) * (S - num_train))
    return num_train, num_val


def authors_samples(z, mask, graphs, lags, train_ratio):
    r"""The authors' samples: features :obj:`[N, lags]` with the hidden
    entries 0 (in every split), targets with the hidden ones NaN, but all
    targets of the samples from :obj:`2 * int(train_ratio * S)` on (the
    test split) put back. Returns the float64 features :obj:`[S, N, lags]`
    and targets :obj:`[S, N]` and the list of :class:`Data`, with the day's
    graph (:obj:`edge_index`, :obj:`edge_weight`), COIN's
    (:obj:`coin_edge_*`, :func:`authors_graph`), and the GCN's, normalised
    by :func:`gcn_norm` with self-loops as in their :obj:`GCNConv`: the
    day's (:obj:`gcn_daily_*`) and, as their :obj:`cached=True` GCN sees
    every sample, the first day's (:obj:`gcn_day0_*`)."""
    S = z.shape[0] - lags
    masked = np.where(mask, np.nan, z)
    x = np.stack([np.nan_to_num(masked[i:i + lags], nan=0.).T
                  for i in range(S)])
    y = masked[lags:].copy()
    start = 2 * int(S * train_ratio)
    y[start:] = z[lags + start:]
    N = z.shape[1]
    day0_index, day0_weight = gcn_norm(*graphs[0], N, add_self_loops=True)
    samples = []
    for i in range(S):
        edge_index, edge_weight = graphs[i]
        coin_index, coin_weight = authors_graph(edge_index, edge_weight)
        gcn_index, gcn_weight = gcn_norm(edge_index, edge_weight, N,
                                         add_self_loops=True)
        samples.append(Data(
            x=torch.from_numpy(x[i]).float(),
            y=torch.from_numpy(y[i]).float(),
            edge_index=edge_index, edge_weight=edge_weight,
            coin_edge_index=coin_index, coin_edge_weight=coin_weight,
            gcn_daily_index=gcn_index, gcn_daily_weight=gcn_weight,
            gcn_day0_index=day0_index, gcn_day0_weight=day0_weight,
            num_nodes=N))
    return x, y, samples


def snapshot_mse(out, target):
    r"""The authors' loss and metric: the MSE of each sample over the
    selected nodes, averaged over the samples. :obj:`target[:, 0]` holds
    the targets, :obj:`target[:, 1]` the sample of each node."""
    _, sample = target[:, 1].unique(return_inverse=True)
    err = (out - target[:, 0]).square()
    return scatter(err, sample, 0, reduce='mean').mean()


def linear_regression(x, y, num_train, test_start):
    r"""Least squares with an intercept (float64, as scikit-learn's
    :obj:`LinearRegression` that the authors use) on the observed training
    targets; returns the test MSE."""
    x = torch.from_numpy(x)
    y = torch.from_numpy(y)
    X = torch.cat([x, torch.ones(*x.shape[:2], 1, dtype=x.dtype)], -1)
    x_train, y_train = X[:num_train].flatten(0, 1), y[:num_train].flatten()
    seen = ~torch.isnan(y_train)
    coef = torch.linalg.lstsq(x_train[seen], y_train[seen],
                              driver='gelsd').solution
    pred = X[test_start:] @ coef
    return float((pred - y[test_start:]).square().mean())


def with_samples(batch):
    r"""The :class:`Batch` of some samples with :obj:`y` :obj:`[n, 2]`, the
    targets and the sample of each node (see :func:`snapshot_mse`)."""
    data = copy.copy(batch)
    data.y = torch.stack([batch.y, batch.batch.to(batch.y.dtype)], dim=1)
    return data


@torch.no_grad()
def evaluate(model, forward, data):
    r"""The authors' test MSE of :obj:`model` on the samples of
    :obj:`data` (:func:`with_samples`). COIN's diffusion layer (which has no
    parameters) drops the graph it cached in training first."""
    for module in model.modules():
        if isinstance(module, CoinDiffusionConv):
            module.reset_parameters()
    model.eval()
    return float(snapshot_mse(forward(model, data), data.y))


def run_authors(train, test, args, seed):
    r"""Trains the neural models of the authors' setting once on the
    :class:`Batch` of the training samples and returns their MSE on the
    :class:`Batch` of the test samples. The torch seed :obj:`seed` is set
    before each model is built, as they do. :func:`training.fit` trains
    (its own final evaluation, on the training nodes, is not used: the
    test samples are another batch). The GCNs take the normalised graphs of
    :func:`authors_samples`."""
    train, test = with_samples(train), with_samples(test)
    observed = ~torch.isnan(train.y[:, 0])
    assert bool(torch.isfinite(test.y).all())
    hidden, p = args.hidden_channels, args.dropout
    models = {
        'MLP': (lambda: AuthorsMLP(args.lags, hidden, p),
                lambda m, d: m(d.x)),
        'GCN': (lambda: GCN(args.lags, hidden, p, 'elu', normalize=False),
                lambda m, d: m(d.x, d.gcn_day0_index, d.gcn_day0_weight)),
        'GCN (daily graphs)': (
            lambda: GCN(args.lags, hidden, p, 'elu', normalize=False),
            lambda m, d: m(d.x, d.gcn_daily_index, d.gcn_daily_weight)),
        'Residual (K=0)': (lambda: AuthorsResNet(args.lags, hidden, 1),
                           lambda m, d: m(d.x).view(-1)),
        'COIN': (lambda: AuthorsCOIN(args.lags, hidden, args.K, args.sigma2,
                                     args.diffusion_dropout),
                 lambda m, d: m(d.x, d.coin_edge_index, d.coin_edge_weight)),
    }
    res = {}
    for name, (make, forward) in models.items():
        torch.manual_seed(seed)
        model = make()
        fit(model, train, observed, None, observed, epochs=args.epochs,
            lr=args.lr, weight_decay=args.weight_decay, forward=forward,
            loss_fn=snapshot_mse, accuracy=False)
        res[name] = evaluate(model, forward, test)
    return res


def main_authors(args, cases, graphs):
    r"""The authors' setting on the cases :obj:`[T, N]` (float64) and daily
    graphs; returns the test MSE of each method over all runs."""
    z = standardize(cases)
    S = z.shape[0] - args.lags
    num_train, num_val = split_sizes(S, args.train_ratio, args.val_ratio)
    test_start = num_train + num_val
    if num_train < 1 or num_val < 1 or test_start >= S or \
            2 * int(S * args.train_ratio) > test_start:
        raise ValueError(f'{S} samples are too few for the split')
    print(f'authors: {z.shape[1]} regions, {S} forecasts ({num_train} train '
          f'/ {num_val} val / {S - test_start} test)')
    rng = np.random.RandomState(args.seed)
    masking_seeds = rng.randint(0, 1000000, args.maskings)
    runs = {m: [] for m in METHODS['authors']}
    bar = tqdm(total=args.maskings * args.seeds, desc='Runs (authors)')
    for masking_seed in masking_seeds:
        rng = np.random.RandomState(masking_seed)
        mask = hide_entries(z, args.hidden_ratio, args.min_keep, rng)
        x, y, samples = authors_samples(z, mask, graphs, args.lags,
                                        args.train_ratio)
        train = Batch.from_data_list(samples[:num_train])
        test = Batch.from_data_list(samples[test_start:])
        lr = linear_regression(x, y, num_train, test_start)
        for torch_seed in rng.randint(0, 1000000, args.seeds):
            res = run_authors(train, test, args, int(torch_seed))
            res['Linear regression'] = lr  # the same for each init
            for m in METHODS['authors']:
                runs[m].append({'test_mse': res[m]})
            bar.update(1)
    bar.close()
    return runs


# Our setting #################################################################

class CoinRegressor(torch.nn.Module):
    r"""A residual regressor whose output is diffused over the graph."""
    def __init__(self, in_channels, hidden_channels, K, sigma2, dropout,
                 diffusion_dropout):
        super().__init__()
        self.base = ResidualConvection(in_channels, hidden_channels, 1,
                                       dropout=dropout)
        self.diffusion = CoinDiffusionConv(K=K, sigma2=sigma2,
                                           dropout=diffusion_dropout)

    def forward(self, x, edge_index, edge_weight=None):
        out = self.diffusion(self.base(x), edge_index, edge_weight)
        return out.view(-1)


class GCN(torch.nn.Module):
    r"""Two :class:`GCNConv` layers; with :obj:`normalize=False` they take
    graphs already normalised by :func:`gcn_norm` (the same, computed
    once)."""
    def __init__(self, in_channels, hidden_channels, dropout, act='relu',
                 normalize=True):
        super().__init__()
        self.conv1 = GCNConv(in_channels, hidden_channels,
                             normalize=normalize)
        self.conv2 = GCNConv(hidden_channels, 1, normalize=normalize)
        self.dropout = dropout
        self.act = {'relu': F.relu, 'elu': F.elu}[act]

    def forward(self, x, edge_index, edge_weight=None):
        x = F.dropout(x, p=self.dropout, training=self.training)
        x = self.act(self.conv1(x, edge_index, edge_weight))
        x = F.dropout(x, p=self.dropout, training=self.training)
        return self.conv2(x, edge_index, edge_weight).view(-1)


def build_snapshots(dataset, lags=8, days=None):
    r"""Turns the daily graphs of a :class:`PandemicTGNN` into one graph
    per forecast: features :obj:`[N, lags]`, target :obj:`[N]`,
    standardised per region."""
    cases = torch.stack([data.y for data in dataset])
    cases = cases if days is None else cases[:days]
    z = (cases - cases.mean(0)) / (cases.std(0, unbiased=False) + 1e-10)
    snapshots = []
    for t in range(cases.size(0) - lags):
        snapshots.append(Data(x=z[t:t + lags].t().contiguous(),
                              y=z[t + lags],
                              edge_index=dataset[t].edge_index,
                              edge_weight=dataset[t].edge_weight))
    return snapshots


def hide_targets(num_train, num_nodes, hidden, min_keep, generator):
    r"""Returns a :obj:`[num_train, num_nodes]` mask of the observed training
    targets: :obj:`hidden` of them are hidden, every region keeps at least
    :obj:`min_keep`."""
    keep = max(min_keep, round((1 - hidden) * num_train))
    if keep > num_train:
        raise ValueError(f"Cannot keep {keep} targets per region out of "
                         f"{num_train} training days")
    scores = torch.rand(num_train, num_nodes, generator=generator)
    ranks = scores.argsort(0).argsort(0)
    return ranks < keep


def run(batch, observed, num_train, num_val, args, seed):
    r"""Trains all methods of our setting once; returns their validation
    and test MSE."""
    N = observed.size(1)
    day = batch.batch
    train_mask = observed.view(-1)
    train_mask = torch.cat([train_mask, train_mask.new_zeros(
        batch.num_nodes - train_mask.numel())])
    val_mask = (day >= num_train) & (day < num_train + num_val)
    test_mask = day >= num_train + num_val
    assert int(train_mask.sum()) > 0 and N > 0

    res = {}
    # Linear regression, closed form (least squares with an intercept):
    X = torch.cat([batch.x, torch.ones(batch.num_nodes, 1)], dim=1).double()
    coef = torch.linalg.lstsq(X[train_mask], batch.y[train_mask].double(),
                              driver='gelsd').solution
    pred = (X @ coef).float()
    res['Linear regression'] = {
        'val_mse': float(F.mse_loss(pred[val_mask], batch.y[val_mask])),
        'test_mse': float(F.mse_loss(pred[test_mask], batch.y[test_mask])),
    }

    hidden = args.hidden_channels
    models = {
        'MLP': lambda: MLP([args.lags, hidden, 1], dropout=args.dropout),
        'GCN': lambda: GCN(args.lags, hidden, args.dropout),
        'Residual (K=0)': lambda: CoinRegressor(args.lags, hidden, 0,
                                                args.sigma2, args.dropout,
                                                0.),
        'COIN': lambda: CoinRegressor(args.lags, hidden, args.K,
                                      args.sigma2, args.dropout,
                                      args.diffusion_dropout),
    }
    forwards = {
        'MLP': lambda m, d: m(d.x).view(-1),
    }
    for name, make in models.items():
        torch.manual_seed(seed)
        model = make()
        out = fit(
            model, batch, train_mask, val_mask, test_mask,
            epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
            patience=args.patience, forward=forwards.get(name),
            loss_fn=F.mse_loss, accuracy=False)
        res[name] = {'val_mse': out['val_loss'], 'test_mse': out['test_loss'],
                     'epoch': out['epoch']}
    return res


def main_ours(args, dataset):
    r"""Our setting on a :class:`PandemicTGNN`; returns the validation and
    test MSE of each method over all runs."""
    snapshots = build_snapshots(dataset, args.lags, args.days)
    T, N = len(snapshots), snapshots[0].num_nodes
    num_train = int(args.train_ratio * T)
    num_val = int(args.val_ratio * T)
    if num_train < 1 or num_val < 1 or num_train + num_val >= T:
        raise ValueError(f'{T} samples are too few for the split')
    batch = Batch.from_data_list(snapshots)
    print(f'ours: {N} regions, {T} forecasts ({num_train} train / {num_val} '
          f'val / {T - num_train - num_val} test)')

    gen = torch.Generator().manual_seed(args.seed)
    runs = {m: [] for m in METHODS['ours']}
    bar = tqdm(total=args.maskings * args.seeds, desc='Runs (ours)')
    for masking in range(args.maskings):
        observed = hide_targets(num_train, N, args.hidden_ratio,
                                args.min_keep, gen)
        for init in range(args.seeds):
            res = run(batch, observed, num_train, num_val, args,
                      seed=args.seed + 1000 * masking + init)
            for m in METHODS['ours']:
                runs[m].append(res[m])
            bar.update(1)
    bar.close()
    return runs


# Both ########################################################################

def setting_args(args, setting):
    r"""The options of one setting: those given, else the setting's
    defaults (:obj:`DEFAULTS`)."""
    out = copy.copy(args)
    for key, value in DEFAULTS[setting].items():
        if getattr(args, key) is None:
            setattr(out, key, value)
    return out


def load_authors_data(args):
    r"""The cases :obj:`[T, N]` (float64) and daily graphs of the authors'
    setting: their :obj:`england_covid.json` for England, else the
    :class:`PandemicTGNN` data."""
    root = common.dataset_root(args.root)
    if args.dataset == 'England':
        cases, graphs = read_england_covid(
            osp.join(root, 'england_covid', 'england_covid.json'))
    else:
        dataset = load_pandemic_tgnn(args)
        cases = torch.stack([d.y for d in dataset]).double().numpy()
        graphs = [(d.edge_index, d.edge_weight) for d in dataset]
    if args.days is not None:
        cases, graphs = cases[:args.days], graphs[:args.days]
    return cases, graphs


def load_pandemic_tgnn(args):
    root = common.writable_copy(
        osp.join(common.dataset_root(args.root), 'pandemic_tgnn'))
    return PandemicTGNN(root, args.dataset)


def summarize(runs):
    table = {}
    for m, recs in runs.items():
        table[m] = {k: reporting.summarize([r[k] for r in recs])
                    for k in ('test_mse', 'val_mse') if k in recs[0]}
        pstd = float(np.std([r['test_mse'] for r in recs]))
        table[m]['test_mse']['std_population'] = pstd
    return table


def markdown(summary):
    r"""One row per method, the test MSE of each setting run and, with both,
    the difference ours - authors (the best of each setting in bold)."""
    settings = list(summary)
    cols = {}
    for s in settings:
        methods = [m for m in ALL_METHODS if m in summary[s]]
        cells = reporting.bold_best(
            [reporting.fmt_mean(summary[s][m]['test_mse']) for m in methods],
            [summary[s][m]['test_mse']['mean'] for m in methods], best=min)
        cols[s] = dict(zip(methods, cells))
    header = ['method'] + [f'{s}: test MSE' for s in settings]
    if len(settings) == 2:
        header.append('ours - authors')
    rows = []
    for m in ALL_METHODS:
        row = [m] + [cols[s].get(m, '-') for s in settings]
        if len(settings) == 2:
            if all(m in summary[s] for s in settings):
                diff = (summary['ours'][m]['test_mse']['mean'] -
                        summary['authors'][m]['test_mse']['mean'])
                row.append(f'{diff:+.4f}')
            else:
                row.append('-')
        rows.append(row)
    return reporting.markdown_table(header, rows)


def parse(argv=None):
    r"""Returns :obj:`(args, command)` of the command line."""
    parser = common.parser(
        __doc__, dataset=dict(default='England', choices=COUNTRIES,
                              help='the country (a folder of '
                              'pandemic_tgnn/)'), root=common.SHARED,
        seeds=dict(default=None, help='initialisations per masking (None: '
                   'authors 10, ours 3)'),
        hidden_channels=dict(default=None, help='hidden width of the models '
                             '(None: authors 16, ours 64)'),
        K=10, sigma2=0.5,
        dropout=dict(default=None, help='dropout of the models (None: '
                     'authors 0.25, ours 0)'),
        lr=0.01, weight_decay=5e-4,
        epochs=dict(default=None, help='(maximum) training epochs (None: '
                    'authors 100, ours 300)'),
        patience=dict(default=50, help='early stopping of our setting (the '
                      "authors' keeps the final model)"),
        seed=dict(default=None, help='the base random seed (None: authors '
                  '42, ours 0)'),
        name=dict(default=None, help='the stem of the result files (None: '
                  'covid_forecast[_<country>])'))
    parser.add_argument('--setting', default='both',
                        choices=SETTINGS + ('both', ),
                        help="the authors' setting, ours, or both side by "
                        "side")
    parser.add_argument('--days', type=int, default=None,
                        help='use only the first DAYS days (smoke tests)')
    parser.add_argument('--lags', type=int, default=8,
                        help='days of cases in the features')
    parser.add_argument('--train-ratio', type=float, default=0.2,
                        help='first samples for training')
    parser.add_argument('--val-ratio', type=float, default=0.2,
                        help='next samples for validation')
    parser.add_argument('--hidden-ratio', type=float, default=0.9,
                        help="hidden part of all entries (authors) or of "
                        "each region's training targets (ours)")
    parser.add_argument('--min-keep', type=int, default=2,
                        help='entries (authors) or training targets (ours) '
                        'every region keeps')
    parser.add_argument('--maskings', type=int, default=10,
                        help='random maskings')
    parser.add_argument('--diffusion-dropout', type=float, default=0.25,
                        help="dropout before each of COIN's diffusion steps")
    return common.parse_args(parser, argv, 'covid_forecast')


def main(argv=None):
    args, command = parse(argv)
    if args.name is None:
        args.name = 'covid_forecast' + ('' if args.dataset == 'England' else
                                        f'_{args.dataset.lower()}')
    start = time.perf_counter()
    settings = SETTINGS if args.setting == 'both' else (args.setting, )
    print(f'{args.dataset} COVID-19')

    runs, params = {}, {}
    for setting in settings:
        sargs = setting_args(args, setting)
        params[setting] = {k: getattr(sargs, k) for k in DEFAULTS[setting]}
        with common.data_errors():
            data = (load_authors_data(sargs) if setting == 'authors' else
                    (load_pandemic_tgnn(sargs), ))
        if setting == 'authors':
            runs[setting] = main_authors(sargs, *data)
        else:
            runs[setting] = main_ours(sargs, *data)
    summary = {s: summarize(runs[s]) for s in settings}
    text = markdown(summary)
    print(text)

    return reporting.save(args.out_dir, args.name, dict(
        command=command, args=vars(args), params=params, summary=summary,
        runs=runs, seconds=time.perf_counter() - start), text)


if __name__ == '__main__':
    main()
