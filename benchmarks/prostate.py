r"""Prostate cancer with few labels: COIN on the Singh 2002 expression data
(our experiment) or on P1000 in the COIN authors' setting.

``singh2002`` (not the paper's data, task, graph or K): 102 patients x 5,966
standardised genes, tumour vs normal, a Gaussian kNN graph; per random
split ``--per-class`` training and 10 validation patients per class; COIN
(``normalization=None``) against COIN without diffusion, an MLP and
logistic regression. ``p1000``, the paper's (:class:`P1000`'s files in
``<root>/p1000``, not shipped): the authors' ``prostrate/`` code, their 10
splits, a graph per split (:func:`authors_graph`), their ResNet alone and
with K=40 steps of its probability, SGD, the final model, 10 seeds; equal to
their code on a synthetic cohort up to float rounding (NaN weights kept).
"""
import os.path as osp
import sys
import time

import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from tqdm import tqdm

from torch_geometric.data import Data
from torch_geometric.nn.models import MLP
from torch_geometric.utils import dense_to_sparse

from torch_geometric_coin.datasets import P1000, Prostate
from torch_geometric_coin.datasets.p1000 import RAW_FILES
from torch_geometric_coin.nn import COIN, CoinDiffusionConv
from torch_geometric_coin.utils import gaussian_knn_graph

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import reporting  # noqa: E402
from training import fit  # noqa: E402

METHODS = {'singh2002': ('Logistic regression', 'MLP', 'COIN (K=0)', 'COIN'),
           'p1000': ('ResNet (K=0)', 'COIN')}
SETTINGS = {'singh2002': 'ours', 'p1000': 'authors'}
METRICS = ('accuracy', 'roc_auc', 'average_precision')
DEFAULTS = {  # The options whose default depends on the data set.
    'singh2002': dict(splits=30, K=10, sigma2=0.5, hidden_channels=64,
                      lr=0.01, epochs=200),
    'p1000': dict(splits=10, seeds=10, K=40, sigma2=0.2, hidden_channels=3,
                  lr=1.0, epochs=300),
}
VAL_PER_CLASS, N_TOP, SIGMA_K = 10, 40, 20  # singh2002; the authors' p1000


def scores(prob, y, at_half=False):
    r"""Accuracy of :obj:`prob > 0.5` (the authors' :obj:`>= 0.5` with
    :obj:`at_half`), ROC AUC and average precision."""
    y, prob = y.numpy(), prob.detach().cpu().numpy()
    pred = prob >= 0.5 if at_half else prob > 0.5
    return dict(accuracy=float((pred == y).mean()),
                roc_auc=float(roc_auc_score(y, prob)),
                average_precision=float(average_precision_score(y, prob)))


def singh2002(args):
    data = Prostate(common.writable_copy(
        osp.join(common.dataset_root(args.root), 'prostate')))[0]
    y = data.y
    x = (data.x - data.x.mean(0)) / data.x.std(0).clamp_min(1e-6)
    edge_index, edge_weight = gaussian_knn_graph(x, args.k, args.bandwidth_k)
    data = Data(x=x, y=y, edge_index=edge_index, edge_weight=edge_weight)
    same = float((y[edge_index[0]] == y[edge_index[1]]).float().mean())
    print(f'Singh 2002: {edge_index.size(1)} edges, {100 * same:.1f}% within '
          f'a class')
    h, p = args.hidden_channels, args.dropout
    models = {
        'MLP': (lambda: MLP([x.size(1), h, 2], dropout=p),
                lambda m, d: m(d.x).log_softmax(dim=-1)),
        'COIN (K=0)': (lambda: COIN(x.size(1), 2, h, K=0, dropout=p), None),
        'COIN': (lambda: COIN(x.size(1), 2, h, K=args.K, sigma2=args.sigma2,
                              normalization=None, dropout=p), None),
    }
    gen = torch.Generator().manual_seed(args.seed)
    runs = {m: [] for m in METHODS['singh2002']}
    for i in tqdm(range(args.splits), desc='Splits'):
        train, val, test = common.random_split(y, args.per_class,
                                               VAL_PER_CLASS, generator=gen)
        clf = LogisticRegression(max_iter=2000).fit(x[train].numpy(),
                                                    y[train].numpy())
        prob = torch.from_numpy(clf.predict_proba(x.numpy())[:, 1])
        runs['Logistic regression'].append(scores(prob[test], y[test]))
        for name, (make, forward) in models.items():
            torch.manual_seed(args.seed + i)
            fit(model := make(), data, train, val, test, epochs=args.epochs,
                lr=args.lr, weight_decay=args.weight_decay,
                patience=args.patience, forward=forward)
            model.eval()  # (scores detaches the output)
            out = forward(model, data) if forward else model(
                x, edge_index, edge_weight)
            runs[name].append(scores(out.exp()[test, 1], y[test]))
    return runs, dict(within_class_edge_fraction=same)


class AuthorsCOIN(torch.nn.Module):
    r"""The authors' model, not :class:`COIN`'s shape: per gene the sum of
    its 3 weighted features plus a bias (:meth:`embed`), :math:`u = \sigma(
    W_s h + W_2 \mathrm{ReLU}(W_1 h))` (their ResNet), then :obj:`K` steps
    :math:`u - \sigma^2 L u` over the given weights; in their order."""
    def __init__(self, num_genes, hidden_channels=3, K=0, sigma2=0.2):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(1, 3 * num_genes))
        self.bias = torch.nn.Parameter(torch.zeros(num_genes))
        torch.nn.init.xavier_normal_(self.weight)
        self.lin1 = torch.nn.Linear(num_genes, hidden_channels)
        self.lin2 = torch.nn.Linear(hidden_channels, 1)
        self.shortcut = torch.nn.Linear(num_genes, 1)
        self.diffusion = CoinDiffusionConv(
            K, sigma2, normalization=None, add_self_loops=False,
            stability='ignore')

    def embed(self, x):
        return (x * self.weight).view(x.size(0), -1, 3).sum(-1) + self.bias

    def forward(self, x, edge_index=None, edge_weight=None):
        h = self.embed(x)
        u = torch.sigmoid(self.shortcut(h) + self.lin2(self.lin1(h).relu()))
        if edge_index is None or self.diffusion.K == 0:
            return u
        return self.diffusion(u, edge_index, edge_weight)


def train_authors(model, forward, y_train, epochs=300, lr=1.0,
                  weight_decay=5e-4):
    r"""The authors' training, not :func:`training.fit`'s (Adam): binary
    cross-entropy of :obj:`forward()[:len(y_train)]`, full batch, SGD, the
    rate / 10 at half and three quarters of :obj:`epochs`, the final model."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr,
                                weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, [int(.5 * epochs), int(.75 * epochs)], gamma=0.1)
    for _ in range(epochs):
        model.train()
        optimizer.zero_grad()
        F.binary_cross_entropy(forward()[:y_train.size(0)], y_train).backward()
        optimizer.step()
        scheduler.step()


def authors_adjacency(distance, n_top=N_TOP, sigma=SIGMA_K):
    r"""The authors' dense weights: per row, the distances below its
    :obj:`n_top`-th smallest give :math:`\exp(-(d_{ij} / s_i)^2)`, :math:`s_i`
    its :obj:`sigma`-th smallest; then :math:`D^{-1/2} W D^{-1/2}` and
    :math:`(W + W^\top) / 2`."""
    top = distance.kthvalue(n_top, dim=1, keepdim=True).values
    scale = distance.kthvalue(sigma, dim=1, keepdim=True).values
    d = distance.where(distance < top, float('inf'))
    weight = torch.exp(-(d / scale).pow(2))
    deg = torch.diag(weight.sum(dim=1).pow(-0.5))
    weight = deg @ weight @ deg
    return (weight + weight.t()) / 2


def authors_graph(x_train, y_train, x_test, args):
    r"""The authors' graph over :obj:`[x_train; x_test]`: the distances of
    the genes (:meth:`~AuthorsCOIN.embed`) of their ResNet trained with seed
    0 on the training patients, weighted by :func:`authors_adjacency`."""
    torch.manual_seed(0)
    model = AuthorsCOIN(x_train.size(1) // 3, args.hidden_channels).to(
        x_train.device)
    train_authors(model, lambda: model(x_train), y_train, args.epochs,
                  args.lr, args.weight_decay)
    with torch.no_grad():
        h = model.embed(torch.cat([x_train, x_test], dim=0))
        distance = torch.cdist(h, h,
                               compute_mode='donot_use_mm_for_euclid_dist')
    return authors_adjacency(distance, N_TOP, SIGMA_K)


def p1000(args):
    r"""The authors' setting: per split its graph, then :obj:`args.seeds`
    initialisations of ResNet and COIN."""
    folder = osp.join(common.dataset_root(args.root), 'p1000')
    base = osp.join(folder, 'raw') if osp.isdir(osp.join(folder, 'raw')) \
        else folder
    missing = [n for n in RAW_FILES if not osp.isfile(osp.join(base, n))]
    if missing:
        raise FileNotFoundError(
            f"The P1000 data is not shipped and is missing in '{base}': "
            f"{', '.join(missing)}. Get them from {P1000.source}")
    dataset = P1000(common.writable_copy(folder))
    data, device = dataset[0], torch.device(args.device)
    print(f'P1000: {data.num_nodes} patients, {len(dataset.genes)} genes')
    runs, graphs = {m: [] for m in METHODS['p1000']}, []
    for i in tqdm(range(args.splits), desc='Splits'):
        train, test = data.train_mask[:, i], data.test_mask[:, i]
        x_train, x_test = data.x[train].to(device), data.x[test].to(device)
        y_train = data.y[train].float().view(-1, 1).to(device)
        adj = authors_graph(x_train, y_train, x_test, args)
        edge_index, edge_weight = dense_to_sparse(adj)
        graphs.append(dict(edges=int(edge_index.size(1)),
                           nan_weights=int(torch.isnan(adj).sum())))
        x = torch.cat([x_train, x_test], dim=0)
        for seed in range(args.seed, args.seed + args.seeds):
            for name, K in zip(runs, (0, args.K)):
                torch.manual_seed(seed)
                model = AuthorsCOIN(x.size(1) // 3, args.hidden_channels, K,
                                    args.sigma2).to(device)
                train_authors(model, lambda: model(x, edge_index, edge_weight),
                              y_train, args.epochs, args.lr, args.weight_decay)
                model.eval()
                with torch.no_grad():
                    out = model(x, edge_index, edge_weight)[len(x_train):, 0]
                runs[name].append(scores(out, data.y[test], at_half=True))
    return runs, dict(graphs=graphs)


def main(argv=None):
    parser = common.parser(
        __doc__, dataset=dict(default='singh2002', choices=tuple(SETTINGS)),
        root=common.SHARED, dropout=0.5, weight_decay=5e-4, patience=50,
        seed=0, k=6, bandwidth_k=3, per_class=10, device='cpu', **{
            k: dict(default=None, help=common.OPTIONS[k]['help'] +
                    ' (None: singh2002 {}, p1000 {})'.format(*(
                        DEFAULTS[d].get(k) for d in DEFAULTS)))
            for k in DEFAULTS['p1000']})
    args, command = common.parse_args(parser, argv, 'prostate')
    vars(args).update({k: v for k, v in DEFAULTS[args.dataset].items()
                       if getattr(args, k) is None})
    if args.dataset == 'p1000' and args.splits > 10:
        parser.error('--splits: P1000 has the 10 splits of the authors')
    args.setting = SETTINGS[args.dataset]
    start = time.perf_counter()
    with common.data_errors(parser):
        runs, extra = (singh2002 if args.dataset == 'singh2002' else
                       p1000)(args)
    methods = METHODS[args.dataset]
    table = {m: {k: reporting.summarize([r[k] for r in runs[m]])
                 for k in METRICS} for m in methods}
    columns = [reporting.bold_best(
        [reporting.fmt_mean(table[m][k]) for m in methods],
        [table[m][k]['mean'] for m in methods]) for k in METRICS]
    text = f'Data: {args.dataset}, setting: {args.setting}\n\n' + \
        reporting.markdown_table(
            ['method', 'accuracy', 'ROC AUC', 'average precision'],
            [[m, *row] for m, row in zip(methods, zip(*columns))])
    print(text)
    name = 'prostate' + ('_p1000_authors' if args.dataset == 'p1000' else '')
    return reporting.save(args.out_dir, name, dict(
        command=command, args=vars(args), summary=table, runs=runs,
        seconds=time.perf_counter() - start, **extra), text)


if __name__ == '__main__':
    main()
