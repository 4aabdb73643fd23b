"""COVID-19 case forecasting with missing training data (England) with COIN.

    python benchmarks/covid_forecast.py                      # the benchmark
    python benchmarks/covid_forecast.py --days 20 --maskings 1 --seeds 1

The COIN authors' setting: each region's features are its cases of the
previous 8 days, the target is the next day's cases, both standardised per
region (as PyTorch Geometric Temporal's ``EnglandCovidDatasetLoader`` does;
the graph of a sample is the mobility graph of the first day of its window,
as there). The samples are split in time, 20% train, 20% validation, 60%
test, and ``--hidden-ratio`` (0.9) of each region's training targets are
hidden, but every region keeps at least 2 (with England's 10 training days:
8 of 10 hidden). COIN is a residual regressor followed by K=10 diffusion steps
(sigma2=0.5, dropout 0.25 before each step) over each day's graph, trained on
the MSE of the observed targets. Baselines in the same run: linear
regression, an MLP, a GCN, and the residual regressor without diffusion
(K=0). The test MSE is reported as mean ± std over maskings x initialisations.
``--dataset France`` (or Italy, Spain) runs the same on the data of another
country of the pandemic_tgnn repository.
"""
import os.path as osp
import sys
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from torch_geometric.data import Batch, Data
from torch_geometric.nn import GCNConv
from torch_geometric.nn.models import MLP

from torch_geometric_coin.datasets import PandemicTGNN
from torch_geometric_coin.nn import CoinDiffusionConv, ResidualConvection
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import reporting  # noqa: E402
from training import fit  # noqa: E402

METHODS = ('Linear regression', 'MLP', 'GCN', 'Residual (K=0)', 'COIN')
COUNTRIES = ('England', 'France', 'Italy', 'Spain')


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
    def __init__(self, in_channels, hidden_channels, dropout):
        super().__init__()
        self.conv1 = GCNConv(in_channels, hidden_channels)
        self.conv2 = GCNConv(hidden_channels, 1)
        self.dropout = dropout

    def forward(self, x, edge_index, edge_weight=None):
        x = F.dropout(x, p=self.dropout, training=self.training)
        x = self.conv1(x, edge_index, edge_weight).relu()
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
    r"""Trains all methods once; returns their validation and test MSE."""
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


def main(argv=None):
    parser = common.parser(
        __doc__, dataset=dict(default='England', choices=COUNTRIES,
                              help='the country (a folder of '
                              'pandemic_tgnn/)'), root=common.SHARED,
        seeds=dict(default=3, help='initialisations per masking'),
        hidden_channels=64, K=10, sigma2=0.5, dropout=0., lr=0.01,
        weight_decay=5e-4, epochs=300, patience=50, seed=0,
        name=dict(default=None, help='the stem of the result files (None: '
                  'covid_forecast[_<country>])'))
    parser.add_argument('--days', type=int, default=None,
                        help='use only the first DAYS days (smoke tests)')
    parser.add_argument('--lags', type=int, default=8,
                        help='days of cases in the features')
    parser.add_argument('--train-ratio', type=float, default=0.2,
                        help='first samples for training')
    parser.add_argument('--val-ratio', type=float, default=0.2,
                        help='next samples for validation')
    parser.add_argument('--hidden-ratio', type=float, default=0.9,
                        help="hidden part of each region's training targets")
    parser.add_argument('--min-keep', type=int, default=2,
                        help='training targets every region keeps')
    parser.add_argument('--maskings', type=int, default=10,
                        help='random maskings of the training targets')
    parser.add_argument('--diffusion-dropout', type=float, default=0.25,
                        help="dropout before each of COIN's diffusion steps")
    args, command = common.parse_args(parser, argv, 'covid_forecast')
    if args.name is None:
        args.name = 'covid_forecast' + ('' if args.dataset == 'England' else
                                        f'_{args.dataset.lower()}')
    start = time.perf_counter()

    root = common.writable_copy(
        osp.join(common.dataset_root(args.root), 'pandemic_tgnn'))
    snapshots = build_snapshots(PandemicTGNN(root, args.dataset),
                                args.lags, args.days)
    T, N = len(snapshots), snapshots[0].num_nodes
    num_train = int(args.train_ratio * T)
    num_val = int(args.val_ratio * T)
    if num_train < 1 or num_val < 1 or num_train + num_val >= T:
        raise ValueError(f'{T} samples are too few for the split')
    batch = Batch.from_data_list(snapshots)
    print(f'{args.dataset} COVID-19: {N} regions, {T} forecasts '
          f'({num_train} train / {num_val} val / '
          f'{T - num_train - num_val} test)')

    gen = torch.Generator().manual_seed(args.seed)
    runs = {m: [] for m in METHODS}
    bar = tqdm(total=args.maskings * args.seeds, desc='Runs')
    for masking in range(args.maskings):
        observed = hide_targets(num_train, N, args.hidden_ratio,
                                args.min_keep, gen)
        for init in range(args.seeds):
            res = run(batch, observed, num_train, num_val, args,
                      seed=args.seed + 1000 * masking + init)
            for m in METHODS:
                runs[m].append(res[m])
            bar.update(1)
    bar.close()

    table = {
        m: {
            'test_mse': reporting.summarize([r['test_mse'] for r in runs[m]]),
            'val_mse': reporting.summarize([r['val_mse'] for r in runs[m]]),
        }
        for m in METHODS
    }
    test = reporting.bold_best(
        [reporting.fmt_mean(table[m]['test_mse']) for m in METHODS],
        [table[m]['test_mse']['mean'] for m in METHODS], best=min)
    text = reporting.markdown_table(
        ['method', 'test MSE', 'val MSE'],
        [[m, cell, reporting.fmt_mean(table[m]['val_mse'])]
         for m, cell in zip(METHODS, test)])
    print(text)

    return reporting.save(args.out_dir, args.name, dict(
        command=command, args=vars(args), summary=table, runs=runs,
        seconds=time.perf_counter() - start), text)


if __name__ == '__main__':
    main()
