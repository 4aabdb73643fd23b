r"""COVID-19 forecasting with missing data (England, France, Italy, Spain):
COIN in the COIN authors' setting and in ours, side by side.

    python benchmarks/covid_forecast.py --setting authors --dataset Spain

A sample is a day: each region's cases of the 8 days before predict its
next day's, standardised per region over all days (the authors' leak of
the test period's scale, kept in both settings), over the mobility graph of
the window's first day; split in time 20% / 20% / 60%. ``authors`` (their
``covid/`` code): their ``england_covid.json``; 90% of ALL entries hidden
(their numpy seeds), hidden inputs 0; their models (hidden 16, dropout
0.25; their GCN sees day 0's graph only, ``GCN (daily graphs)`` is the
fix); Adam for 100 epochs, the final model; 10 maskings x 10 seeds.
``ours``: 90% of each region's training targets hidden, COIN =
:class:`ResidualConvection` (hidden 64) + K=10 steps over the daily graph;
the epoch of lowest validation MSE; 10 maskings x 3 seeds.
"""
import argparse
import json
import os.path as osp
import sys
import time
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from torch_geometric.data import Batch, Data
from torch_geometric.nn.models import GCN, MLP
from torch_geometric.utils import scatter

from torch_geometric_coin.datasets import PandemicTGNN
from torch_geometric_coin.nn import CoinDiffusionConv, ResidualConvection
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import reporting  # noqa: E402
from training import fit  # noqa: E402

SETTINGS = ('authors', 'ours')
ALL = ('Linear regression', 'MLP', 'GCN', 'GCN (daily graphs)',
       'Residual (K=0)', 'COIN')
METHODS = {'authors': ALL, 'ours': ALL[:3] + ALL[4:]}
COUNTRIES = ('England', 'France', 'Italy', 'Spain')
DEFAULTS = {  # The options whose default depends on the setting.
    'authors': dict(hidden_channels=16, dropout=0.25, epochs=100, seeds=10,
                    seed=42),
    'ours': dict(hidden_channels=64, dropout=0., epochs=300, seeds=3, seed=0),
}
# Days of features, split ratios, the hidden share, entries a region keeps:
LAGS, TRAIN, VAL, HIDDEN, MIN_KEEP = 8, 0.2, 0.2, 0.9, 2
DIFFUSION_DROPOUT = 0.25  # before each of COIN's diffusion steps


class AuthorsResNet(torch.nn.Module):
    r"""The authors' :math:`\mathbf{x} \mathbf{W}_s + \mathrm{ELU}(\mathbf{x}
    \mathbf{W}_1) \mathbf{W}_2` in their order (their seeds give their
    weights), not :class:`ResidualConvection`'s shape."""
    def __init__(self, in_channels, hidden_channels):
        super().__init__()
        self.lin1 = torch.nn.Linear(in_channels, hidden_channels)
        self.lin2 = torch.nn.Linear(hidden_channels, 1)
        self.shortcut = torch.nn.Linear(in_channels, 1)

    def forward(self, x):
        return self.shortcut(x) + self.lin2(F.elu(self.lin1(x)))


class Diffused(torch.nn.Module):
    r"""COIN for regression (the package's :class:`COIN` diffuses class
    probabilities): :obj:`base`, then :class:`CoinDiffusionConv`."""
    def __init__(self, base, **kwargs):
        super().__init__()
        self.base, self.diffusion = base, CoinDiffusionConv(**kwargs)

    def forward(self, x, edge_index, edge_weight=None):
        return self.diffusion(self.base(x), edge_index, edge_weight)


def authors_graph(edge_index, edge_weight):
    r"""The authors' Laplacian as :obj:`CoinDiffusionConv(add_self_loops=
    False)`'s graph: no self-loops, edges reversed (their :math:`L_{ij} =
    -\hat{A}_{ij}` for the flow :math:`i \to j`, the out-degree)."""
    keep = edge_index[0] != edge_index[1]
    return edge_index[:, keep].flip(0), edge_weight[keep]


def standardize(cases):
    r"""Per region over all days: mean 0, population std 1 (+1e-10)."""
    return (cases - cases.mean(0)) / (cases.std(0) + 1e-10)


def hide_entries(z, rng, hidden=HIDDEN, min_keep=MIN_KEEP, tries=100000):
    r"""The authors' mask of hidden entries of :obj:`z` :obj:`[T, N]`:
    :obj:`int(hidden * z.size)` drawn without replacement, again until every
    region keeps :obj:`min_keep` entries of spread above 1e-9."""
    for _ in range(tries):
        mask = np.isin(np.arange(z.size), rng.choice(
            z.size, int(hidden * z.size), replace=False)).reshape(z.shape)
        if (~mask).sum(0).min() >= max(min_keep, 1) and \
                np.nanstd(np.where(mask, np.nan, z), axis=0).min() > 1e-9:
            return mask
    raise ValueError(f'No masking in {tries} draws keeps {min_keep} '
                     f'distinct entries of every region')


def split_sizes(S):
    r""":obj:`temporal_signal_split` twice, as the authors call it."""
    num_train = int(TRAIN * S)
    return num_train, int(VAL / (1 - TRAIN) * (S - num_train))


def authors_samples(z, mask, graphs):
    r"""The authors' features :obj:`[S, N, LAGS]` (hidden ones 0), targets
    :obj:`[S, N]` (hidden ones NaN up to sample :obj:`2 * int(TRAIN * S)`),
    and :class:`Data` with the day's graph, day 0's (that their cached GCN
    uses) and COIN's."""
    S, N = z.shape[0] - LAGS, z.shape[1]
    masked = np.where(mask, np.nan, z)
    x = np.stack([np.nan_to_num(masked[i:i + LAGS], nan=0.).T
                  for i in range(S)])
    y = masked[LAGS:].copy()
    start = 2 * int(S * TRAIN)
    y[start:] = z[LAGS + start:]
    coin = [authors_graph(*graph) for graph in graphs]
    return x, y, [Data(
        x=torch.from_numpy(x[i]).float(), y=torch.from_numpy(y[i]).float(),
        edge_index=graphs[i][0], edge_weight=graphs[i][1],
        day0_index=graphs[0][0], day0_weight=graphs[0][1],
        coin_edge_index=coin[i][0], coin_edge_weight=coin[i][1], num_nodes=N)
        for i in range(S)]


def snapshot_mse(out, target):
    r"""The authors' loss and metric: the mean over samples of their MSE
    (:obj:`target[:, 1]` the sample of each target)."""
    _, sample = target[:, 1].unique(return_inverse=True)
    return scatter((out.view(-1) - target[:, 0]).square(), sample, 0,
                   reduce='mean').mean()


def least_squares(x, y, train):
    r"""Predictions of least squares with an intercept in float64 (as
    scikit-learn's) fitted on the rows :obj:`train`."""
    X = torch.cat([x, torch.ones(x.size(0), 1, dtype=x.dtype)], 1).double()
    coef = torch.linalg.lstsq(X[train], y[train].double(),
                              driver='gelsd').solution
    return X @ coef


def on_x(model, data):
    return model(data.x)


def authors(args, cases, graphs):
    r"""The authors' setting: yields each run's test MSE per method."""
    z = standardize(cases)
    S, N = z.shape[0] - LAGS, z.shape[1]
    num_train, num_val = split_sizes(S)
    start = num_train + num_val
    if min(num_train, num_val, S - start) < 1:
        raise ValueError(f'{S} samples are too few for the split')
    print(f'authors: {N} regions, split {num_train}/{num_val}/{S - start}')
    p, h = args.dropout, args.hidden_channels

    def gcn(index, weight):  # PyG's, with their dropout of the input too
        return (lambda: GCN(LAGS, h, 2, 1, dropout=p, act='elu'), lambda m,
                d: m(F.dropout(d.x, p, m.training), d[index], d[weight]))

    models = {  # The authors' models.
        'MLP': (lambda: torch.nn.Sequential(
            torch.nn.Dropout(p), torch.nn.Linear(LAGS, h), torch.nn.ELU(),
            torch.nn.Dropout(p), torch.nn.Linear(h, 1)), on_x),
        'GCN': gcn('day0_index', 'day0_weight'),  # (their cached=True)
        'GCN (daily graphs)': gcn('edge_index', 'edge_weight'),
        'Residual (K=0)': (lambda: AuthorsResNet(LAGS, h), on_x),
        # Their COIN: their base, then K steps u - sigma2 L u with dropout
        # before each over the loop-free graph normalised by out-degree;
        # the Gershgorin bound flags it, but I - 0.5 L has spectral radius 1.
        'COIN': (lambda: Diffused(
            AuthorsResNet(LAGS, h), K=args.K, sigma2=args.sigma2,
            add_self_loops=False, dropout=DIFFUSION_DROPOUT,
            stability='ignore'),
            lambda m, d: m(d.x, d.coin_edge_index, d.coin_edge_weight)),
    }
    # Their seeds: RandomState(seed) draws one per masking, whose
    # RandomState draws the masking, then one torch seed per run.
    for seed in np.random.RandomState(args.seed).randint(0, 1000000,
                                                         args.maskings):
        rng = np.random.RandomState(seed)
        x, y, samples = authors_samples(z, hide_entries(z, rng), graphs)
        x, y = torch.from_numpy(x).flatten(0, 1), torch.from_numpy(y).flatten()
        pred = least_squares(x, y, ~y.isnan() & (torch.arange(len(y)) <
                                                 num_train * N))
        lr = float((pred - y)[start * N:].square().mean())
        train, test = (Batch.from_data_list(samples[:num_train]),
                       Batch.from_data_list(samples[start:]))
        for data in (train, test):  # the targets and each node's sample
            data.y = torch.stack([data.y, data.batch.float()], dim=1)
        observed = ~torch.isnan(train.y[:, 0])
        for torch_seed in rng.randint(0, 1000000, args.seeds):
            res = {'Linear regression': {'test_mse': lr}}
            for name, (make, forward) in models.items():
                torch.manual_seed(int(torch_seed))
                fit(model := make(), train, observed, None, observed,
                    epochs=args.epochs, lr=args.lr,
                    weight_decay=args.weight_decay, forward=forward,
                    loss_fn=snapshot_mse, accuracy=False)
                model.eval()
                with torch.no_grad():
                    res[name] = {'test_mse': float(snapshot_mse(
                        forward(model, test), test.y))}
            yield res


def hide_targets(num_train, num_nodes, generator):
    r"""Our mask :obj:`[num_train, num_nodes]` of observed training targets:
    :obj:`HIDDEN` of each region's hidden, :obj:`MIN_KEEP` kept."""
    keep = max(MIN_KEEP, round((1 - HIDDEN) * num_train))
    scores = torch.rand(num_train, num_nodes, generator=generator)
    return scores.argsort(0).argsort(0) < keep


def ours(args, cases, graphs):
    r"""Our setting: yields each run's validation and test MSE per method."""
    cases = torch.from_numpy(cases).float()
    z = (cases - cases.mean(0)) / (cases.std(0, unbiased=False) + 1e-10)
    S, N = z.size(0) - LAGS, z.size(1)
    num_train, num_val = int(TRAIN * S), int(VAL * S)
    start = num_train + num_val
    if min(num_train, num_val, S - start) < 1:
        raise ValueError(f'{S} samples are too few for the split')
    print(f'ours: {N} regions, split {num_train}/{num_val}/{S - start}')
    batch = Batch.from_data_list([Data(
        x=z[t:t + LAGS].t().contiguous(), y=z[t + LAGS, :, None],
        edge_index=graphs[t][0], edge_weight=graphs[t][1]) for t in range(S)])
    day, y = batch.batch, batch.y
    val, test = (day >= num_train) & (day < start), day >= start
    h, p = args.hidden_channels, args.dropout
    base = partial(ResidualConvection, LAGS, h, 1, dropout=p)
    models = {
        'MLP': (lambda: MLP([LAGS, h, 1], dropout=p), on_x),
        'GCN': (lambda: GCN(LAGS, h, 2, 1, dropout=p), None),
        'Residual (K=0)': (base, on_x),
        'COIN': (lambda: Diffused(base(), K=args.K, sigma2=args.sigma2,
                                  dropout=DIFFUSION_DROPOUT), None),
    }
    gen = torch.Generator().manual_seed(args.seed)
    for masking in range(args.maskings):
        train = torch.zeros_like(day, dtype=torch.bool)
        train[:num_train * N] = hide_targets(num_train, N, gen).view(-1)
        pred = least_squares(batch.x, y, train).float()
        lr = {'val_mse': float(F.mse_loss(pred[val], y[val])),
              'test_mse': float(F.mse_loss(pred[test], y[test]))}
        for init in range(args.seeds):
            res = {'Linear regression': lr}
            for name, (make, forward) in models.items():
                torch.manual_seed(args.seed + 1000 * masking + init)
                out, = fit(make(), batch, train, val, test,
                           epochs=args.epochs, lr=args.lr,
                           weight_decay=args.weight_decay,
                           patience=args.patience, forward=forward,
                           loss_fn=F.mse_loss, accuracy=False)
                res[name] = dict(val_mse=out['val_loss'],
                                 test_mse=out['test_loss'], epoch=out['epoch'])
            yield res


def load(args, setting):
    r"""The cases :obj:`[T, N]` (float64) and each day's graph: the
    authors' England from their file (PyTorch Geometric Temporal's), all
    else from :class:`PandemicTGNN`."""
    root = common.dataset_root(args.root)
    if setting == 'authors' and args.dataset == 'England':
        with open(osp.join(root, 'england_covid', 'england_covid.json')) as f:
            raw = json.load(f)
        cases, edges = np.asarray(raw['y'], np.float64), raw['edge_mapping']
        graphs = [(torch.tensor(edges['edge_index'][str(t)]).view(-1, 2).t(),
                   torch.tensor(edges['edge_weight'][str(t)]).float())
                  for t in range(int(raw['time_periods']))]
    else:
        dataset = PandemicTGNN(common.writable_copy(
            osp.join(root, 'pandemic_tgnn')), args.dataset)
        cases = torch.stack([d.y for d in dataset]).double().numpy()
        graphs = [(d.edge_index, d.edge_weight) for d in dataset]
    return cases, graphs


def markdown(summary):
    r"""Per method, each setting's test MSE and ours - authors."""
    mean = {s: {m: t['test_mse']['mean'] for m, t in table.items()}
            for s, table in summary.items()}
    cells = {s: dict(zip(table, reporting.bold_best(
        [reporting.fmt_mean(t['test_mse']) for t in table.values()],
        list(mean[s].values()), best=min))) for s, table in summary.items()}
    both = len(summary) == 2
    return reporting.markdown_table(
        ['method'] + [f'{s}: test MSE' for s in summary] +
        ['ours - authors'] * both,
        [[m] + [cells[s].get(m, '-') for s in summary] + [
            f"{mean['ours'][m] - mean['authors'][m]:+.4f}"
            if m in mean['ours'] else '-'] * both for m in ALL])


def main(argv=None):
    parser = common.parser(
        __doc__, dataset=dict(default='England', choices=COUNTRIES),
        root=common.SHARED, K=10, sigma2=0.5, lr=0.01, weight_decay=5e-4,
        patience=dict(default=50, help='early stopping (ours)'),
        **{k: dict(default=None, help=common.OPTIONS[k]['help'] + (
            ' (None: authors {}, ours {})'.format(*(
                DEFAULTS[s][k] for s in SETTINGS))))
           for k in DEFAULTS['ours']})
    parser.add_argument('--setting', default='both',
                        choices=SETTINGS + ('both', ),
                        help="the authors' setting, ours, or both")
    parser.add_argument('--maskings', type=int, default=10,
                        help='random maskings')
    args, command = common.parse_args(parser, argv, 'covid_forecast')
    name = 'covid_forecast' + ('' if args.dataset == 'England' else
                               f'_{args.dataset.lower()}')
    start = time.perf_counter()
    settings = SETTINGS if args.setting == 'both' else (args.setting, )
    runs, params, summary = {}, {}, {}
    for s in settings:
        sargs = argparse.Namespace(**dict(vars(args), **{
            k: v for k, v in DEFAULTS[s].items() if getattr(args, k) is None}))
        params[s] = {k: getattr(sargs, k) for k in DEFAULTS[s]}
        with common.data_errors(parser):
            data = load(sargs, s)
        recs = list(tqdm((authors if s == 'authors' else ours)(sargs, *data),
                         total=sargs.maskings * sargs.seeds,
                         desc=f'Runs ({s})'))
        runs[s] = {m: [r[m] for r in recs] for m in METHODS[s]}
        summary[s] = {m: {k: reporting.summarize([r[k] for r in recs])
                          for k in ('test_mse', 'val_mse') if k in recs[0]}
                      for m, recs in runs[s].items()}
        for m, recs in runs[s].items():  # (the authors print this std)
            summary[s][m]['test_mse']['std_population'] = float(
                np.std([r['test_mse'] for r in recs]))
    text = markdown(summary)
    print(text)
    return reporting.save(args.out_dir, name, dict(
        command=command, args=vars(args), params=params, summary=summary,
        runs=runs, seconds=time.perf_counter() - start), text)


if __name__ == '__main__':
    main()
