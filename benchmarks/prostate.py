r"""Prostate cancer classification with few labels: COIN on the Singh 2002
expression data (our experiment) or on P1000 in the COIN authors' setting.

    python benchmarks/prostate.py                   # Singh 2002 (30 splits)
    python benchmarks/prostate.py --splits 1 --epochs 5
    python benchmarks/prostate.py --dataset p1000 --p1000-root PATH

``--dataset singh2002`` (default; ``--setting ours``): an experiment of this
repository, not one of the COIN paper. The data are the gene expression
profiles of 102 patients x 5,966 genes of Singh et al. (2002), tumour vs
normal tissue (:class:`~torch_geometric_coin.datasets.Prostate`). The genes
are standardised, a Gaussian kNN graph is built over all patients
(transductive), and each random split labels ``--per-class`` patients per
class for training, ``--val-per-class`` per class for validation and leaves
the rest for testing. COIN (a residual base classifier whose class
probabilities are diffused over the graph) is compared, on the same splits,
with the same model without diffusion (K=0), an MLP and logistic regression;
accuracy, ROC AUC and average precision on the test patients, mean ± std.
Its data, task (tumour vs normal), features, graph and K differ from the
paper's prostate experiment, so its ranking says nothing about that one.

``--dataset p1000`` (``--setting authors``): the COIN paper's prostate
experiment, following the authors' ``prostrate/train.py``, ``coin.py`` and
``load_data.py`` step by step. The data (P1000, primary vs metastatic) is not
shipped and was not available when this was written: the path runs when the
files of :class:`~torch_geometric_coin.datasets.P1000` are in
``--p1000-root`` (default ``<root>/p1000``) and stops with an error naming
the missing files otherwise. It was tested on small synthetic files only.

1. Features: :class:`P1000` (mutated / deep deletion / high amplification
   per protein-coding expressed gene, in the authors' shuffled gene order).
2. Splits: the authors' 10 fixed splits (20 training patients); the
   validation patients are not used anywhere (not even in the graph), as
   there.
3. Graph, per split, over the training then the test patients
   (:func:`authors_graph`): a :class:`GeneResNet` (seed 0, hidden width 3)
   trained on the training patients as below; the Euclidean distances of
   its per-gene features; per patient, the patients strictly closer than
   its ``--n-top``-th (40) smallest distance (itself included, so 39
   without ties) with weights
   :math:`\exp(-(d / d_{20})^2)`, :math:`d_{20}` its ``--sigma-k``-th (20)
   smallest distance; symmetric degree normalisation, then the mean of the
   matrix and its transpose. A patient with 20 identical neighbours gives
   :math:`d_{20} = 0` and NaN weights, as there (not fixed).
4. Models: :class:`GeneResNet` (a weight per feature, the three features of
   a gene summed plus a bias, then a linear shortcut plus a 3-wide ReLU
   branch, sigmoid) alone ("ResNet", K=0) and followed by K=40 explicit
   diffusion steps :math:`u \leftarrow u - 0.2\, L u` of the metastasis
   probability with :math:`L = \mathrm{diag}(A 1) - A`
   (:class:`~torch_geometric_coin.nn.CoinDiffusionConv` with
   ``normalization=None``).
5. Training: binary cross-entropy on the training patients, full batch, SGD
   (lr 1.0, weight decay 5e-4, no momentum) for 300 epochs with the rate
   divided by 10 at epochs 150 and 225; the final model is kept (no
   validation).
6. Runs: 10 splits x 10 initialisations (seeds 0..9, the same seed for both
   models); accuracy (probability >= 0.5), ROC AUC and average precision on
   the test patients; the authors print the mean over the 100 runs.

Checked on a synthetic cohort in this format against the authors' own
``load_data.py`` and ``train.py`` (run on CPU): the same features, patients
and gene order, the same ResNet scores; the COIN scores differ at the level
of float rounding (sparse instead of dense products over 40 steps x 300
epochs). The authors' defects are kept (validation patients unused, NaN
weights from ties); no variant of ours is run on P1000, since the data could
not be run here. The authors ran on a GPU (``--device cuda``); on a
CPU the 10 x 10 runs of the full-size cohort take hours.
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

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402
import reporting  # noqa: E402
from training import fit  # noqa: E402

METHODS = ('Logistic regression', 'MLP', 'COIN (K=0)', 'COIN')
AUTHORS_METHODS = ('ResNet (K=0)', 'COIN')
METRICS = ('accuracy', 'roc_auc', 'average_precision')
DATASETS = ('singh2002', 'p1000')
SETTINGS = {'singh2002': 'ours', 'p1000': 'authors'}
# The options whose default depends on the data set:
DEFAULTS = {
    'singh2002': dict(splits=30, K=10, sigma2=0.5, hidden_channels=64,
                      lr=0.01, weight_decay=5e-4, epochs=200),
    'p1000': dict(splits=10, seeds=10, K=40, sigma2=0.2, hidden_channels=3,
                  lr=1.0, weight_decay=5e-4, epochs=300),
}


def scores(prob, y):
    r"""Test metrics from the tumour probabilities :obj:`prob`."""
    y, prob = y.numpy(), prob.detach().numpy()
    return {
        'accuracy': float(((prob > 0.5) == y).mean()),
        'roc_auc': float(roc_auc_score(y, prob)),
        'average_precision': float(average_precision_score(y, prob)),
    }


# Singh 2002 (our experiment) #################################################

def run(data, split, args, seed):
    train, val, test = split
    res = {}
    clf = LogisticRegression(C=args.C, max_iter=2000)
    clf.fit(data.x[train].numpy(), data.y[train].numpy())
    prob = torch.from_numpy(clf.predict_proba(data.x.numpy())[:, 1])
    res['Logistic regression'] = scores(prob[test], data.y[test])

    F_in, hidden = data.num_features, args.hidden_channels
    models = {
        'MLP': lambda: MLP([F_in, hidden, 2], dropout=args.dropout),
        'COIN (K=0)': lambda: COIN(F_in, 2, hidden, K=0,
                                   dropout=args.dropout),
        'COIN': lambda: COIN(F_in, 2, hidden, K=args.K,
                             sigma2=args.sigma2, normalization=None,
                             dropout=args.dropout),
    }
    forwards = {'MLP': lambda m, d: m(d.x).log_softmax(dim=-1)}
    for name, make in models.items():
        torch.manual_seed(seed)
        model = make()
        forward = forwards.get(name)
        fit(model, data, train, val, test, epochs=args.epochs, lr=args.lr,
            weight_decay=args.weight_decay, patience=args.patience,
            forward=forward)
        model.eval()
        with torch.no_grad():
            out = forward(model, data) if forward else model(
                data.x, data.edge_index, data.edge_weight)
        res[name] = scores(out.exp()[test, 1], data.y[test])
    return res


def singh2002(args):
    data = Prostate(common.writable_copy(
        osp.join(common.dataset_root(args.root), 'prostate')))[0]
    x, y = data.x, data.y
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    edge_index, edge_weight = gaussian_knn_graph(x, args.k, args.bandwidth_k)
    data = Data(x=x, y=y, edge_index=edge_index, edge_weight=edge_weight)
    same = (y[edge_index[0]] == y[edge_index[1]]).float().mean()
    print(f'Prostate (Singh 2002): {x.size(0)} patients, {x.size(1)} genes, '
          f'kNN graph with {edge_index.size(1)} edges '
          f'({100 * float(same):.1f}% within a class)')

    gen = torch.Generator().manual_seed(args.seed)
    runs = {m: [] for m in METHODS}
    for i in tqdm(range(args.splits), desc='Splits'):
        split = common.random_split(y, args.per_class, args.val_per_class,
                                    generator=gen)
        res = run(data, split, args, seed=args.seed + i)
        for m in METHODS:
            runs[m].append(res[m])
    return runs, dict(within_class_edge_fraction=float(same))


# P1000 in the authors' setting ###############################################

class GeneResNet(torch.nn.Module):
    r"""The authors' base classifier of the prostate experiment: a weight
    per input feature, the :obj:`types` features of each gene summed plus a
    bias per gene (:meth:`embed`), then :math:`\sigma(W_s h + W_2
    \mathrm{ReLU}(W_1 h))`. Initialised as there, in this order: the
    feature weights Xavier-normal (as a :obj:`[1, types * genes]` matrix),
    the gene biases zero, then :math:`W_1`, :math:`W_2`, :math:`W_s` as
    :class:`torch.nn.Linear` layers."""
    def __init__(self, num_genes: int, hidden_channels: int = 3,
                 out_channels: int = 1, types: int = 3):
        super().__init__()
        self.types = types
        self.weight = torch.nn.Parameter(torch.empty(1, types * num_genes))
        self.bias = torch.nn.Parameter(torch.zeros(num_genes))
        torch.nn.init.xavier_normal_(self.weight)
        self.lin1 = torch.nn.Linear(num_genes, hidden_channels)
        self.lin2 = torch.nn.Linear(hidden_channels, out_channels)
        self.shortcut = torch.nn.Linear(num_genes, out_channels)

    def embed(self, x):
        h = (x * self.weight).view(x.size(0), -1, self.types).sum(dim=-1)
        return h + self.bias

    def forward(self, x):
        h = self.embed(x)
        return torch.sigmoid(self.shortcut(h) + self.lin2(self.lin1(h).relu()))


class AuthorsCOIN(torch.nn.Module):
    r""":class:`GeneResNet` followed by :obj:`K` explicit diffusion steps of
    its probabilities over fixed, already normalised weights (:obj:`K=0`:
    the base classifier alone, the authors' "ResNet")."""
    def __init__(self, num_genes: int, hidden_channels: int = 3,
                 K: int = 40, sigma2: float = 0.2):
        super().__init__()
        self.base = GeneResNet(num_genes, hidden_channels)
        self.diffusion = CoinDiffusionConv(
            K, sigma2, normalization=None, add_self_loops=False,
            cached=True, stability='ignore') if K > 0 else None

    def forward(self, x, edge_index=None, edge_weight=None):
        u = self.base(x)
        if self.diffusion is not None:
            u = self.diffusion(u, edge_index, edge_weight)
        return u


def train_authors(model, forward, y_train, epochs=300, lr=1.0,
                  weight_decay=5e-4):
    r"""The authors' training: binary cross-entropy of
    :obj:`forward()[:len(y_train)]`, full batch, SGD (no momentum) with the
    rate divided by 10 at half and three quarters of :obj:`epochs`; the
    final model is kept."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr,
                                weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=[int(.5 * epochs), int(.75 * epochs)],
        gamma=0.1)
    for _ in range(epochs):
        model.train()
        optimizer.zero_grad()
        out = forward()[:y_train.size(0)]
        loss = F.binary_cross_entropy(out, y_train)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return model


def authors_adjacency(distance, n_top=40, sigma=20):
    r"""The authors' weights from a dense distance matrix: per row
    :math:`i`, the entries strictly below its :obj:`n_top`-th smallest
    distance (itself included) weigh :math:`\exp(-(d_{ij} /
    s_i)^2)`, :math:`s_i` its :obj:`sigma`-th smallest distance, the others
    0; then :math:`D^{-1/2} W D^{-1/2}` (row sums) and
    :math:`(W + W^\top) / 2`. Dense products, as there (a zero row sum
    spreads NaN)."""
    top = distance.kthvalue(n_top, dim=1, keepdim=True).values
    scale = distance.kthvalue(sigma, dim=1, keepdim=True).values
    d = distance.where(distance < top,
                       torch.tensor(float('inf'), dtype=distance.dtype))
    weight = torch.exp(-(d / scale).pow(2))
    deg = torch.diag(weight.sum(dim=1).pow(-0.5))
    weight = deg @ weight @ deg
    return (weight + weight.t()) / 2


def authors_graph(x_train, y_train, x_test, n_top=40, sigma=20, epochs=300,
                  lr=1.0, weight_decay=5e-4, hidden_channels=3):
    r"""The authors' graph of one split over :obj:`[x_train; x_test]`: the
    per-gene features (:meth:`GeneResNet.embed`) of a :class:`GeneResNet`
    trained with seed 0 on the training patients (:func:`train_authors`),
    their Euclidean distances and :func:`authors_adjacency`. Returns the
    dense adjacency."""
    torch.manual_seed(0)
    model = GeneResNet(x_train.size(1) // 3, hidden_channels)
    train_authors(model, lambda: model(x_train), y_train, epochs, lr,
                  weight_decay)
    with torch.no_grad():
        h = model.embed(torch.cat([x_train, x_test], dim=0))
        distance = torch.cdist(h, h,
                               compute_mode='donot_use_mm_for_euclid_dist')
    return authors_adjacency(distance, n_top, sigma)


def authors_scores(prob, y):
    r"""The authors' test metrics: accuracy of :obj:`prob >= 0.5`, ROC AUC
    and average precision."""
    y, prob = y.numpy(), prob.detach().numpy()
    return {
        'accuracy': float(((prob >= 0.5) == y).mean()),
        'roc_auc': float(roc_auc_score(y, prob)),
        'average_precision': float(average_precision_score(y, prob)),
    }


def p1000_split(data, i, args):
    r"""One split of the authors' setting: the graph, then
    :obj:`args.seeds` initialisations of ResNet and COIN. Returns
    :obj:`{method: [scores per seed]}` and the graph's statistics."""
    device = torch.device(args.device)
    train, test = data.train_mask[:, i], data.test_mask[:, i]
    x_train, x_test = data.x[train].to(device), data.x[test].to(device)
    y_train = data.y[train].float().view(-1, 1).to(device)
    y_test = data.y[test]
    adj = authors_graph(x_train, y_train, x_test, args.n_top, args.sigma_k,
                        args.epochs, args.lr, args.weight_decay,
                        args.hidden_channels)
    edge_index, edge_weight = dense_to_sparse(adj)
    x = torch.cat([x_train, x_test], dim=0)
    res = {m: [] for m in AUTHORS_METHODS}
    for seed in range(args.seed, args.seed + args.seeds):
        for name, K in (('ResNet (K=0)', 0), ('COIN', args.K)):
            torch.manual_seed(seed)
            model = AuthorsCOIN(x.size(1) // 3, args.hidden_channels, K,
                                args.sigma2).to(device)
            train_authors(model, lambda: model(x, edge_index, edge_weight),
                          y_train, args.epochs, args.lr, args.weight_decay)
            model.eval()
            with torch.no_grad():
                out = model(x, edge_index, edge_weight)
            res[name].append(authors_scores(
                out[x_train.size(0):, 0].cpu(), y_test))
    stats = dict(edges=int(edge_index.size(1)),
                 nan_weights=int(torch.isnan(adj).sum()))
    return res, stats


def p1000(args):
    folder = args.p1000_root or osp.join(common.dataset_root(args.root),
                                         'p1000')
    raw = osp.join(folder, 'raw')
    base = raw if osp.isdir(raw) else folder
    missing = [n for n in RAW_FILES if not osp.isfile(osp.join(base, n))]
    if missing:
        raise FileNotFoundError(
            f"The P1000 data is not shipped and is missing in '{base}': "
            f"{', '.join(missing)}. Get them from {P1000.source} (see "
            f"torch_geometric_coin.datasets.P1000) and pass their folder "
            f"as --p1000-root")
    dataset = P1000(common.writable_copy(folder))
    data = dataset[0]
    print(f'P1000: {data.num_nodes} patients, {len(dataset.genes)} genes x '
          f'3 features, {int(data.y.sum())} metastatic')
    runs = {m: [] for m in AUTHORS_METHODS}
    graphs = []
    for i in tqdm(range(args.splits), desc='Splits'):
        res, stats = p1000_split(data, i, args)
        graphs.append(stats)
        for m in AUTHORS_METHODS:
            runs[m].extend(res[m])
    return runs, dict(graphs=graphs)


def main(argv=None):
    def per_dataset(name, what=None):
        what = what or common.OPTIONS[name]['help']
        a, b = DEFAULTS['singh2002'].get(name), DEFAULTS['p1000'][name]
        return dict(default=None, help=(
            f'{what} (if not given: {a} on singh2002, {b} on p1000)'
            if a is not None else f'{what} (p1000 only; if not given: {b})'))

    parser = common.parser(
        __doc__, dataset=dict(default='singh2002', choices=DATASETS),
        root=common.SHARED,
        splits=per_dataset('splits', "splits (singh2002: random ones; "
                           "p1000: the first of the authors' 10)"),
        seeds=per_dataset('seeds'), K=per_dataset('K'),
        sigma2=per_dataset('sigma2'),
        hidden_channels=per_dataset('hidden_channels'), dropout=0.5,
        lr=per_dataset('lr', 'learning rate (Adam on singh2002, SGD on '
                       'p1000)'),
        weight_decay=per_dataset('weight_decay', 'weight decay (Adam on '
                                 'singh2002, SGD on p1000)'),
        epochs=per_dataset('epochs'), patience=50, seed=0, k=6,
        bandwidth_k=3, per_class=10, device='cpu',
        name=dict(default=None, help='the stem of the result files '
                  '(default: prostate on singh2002, '
                  'prostate_p1000_authors on p1000)'))
    parser.add_argument('--setting', choices=('ours', 'authors'),
                        default=None, help="'ours' (singh2002, our "
                        "experiment) or 'authors' (p1000); each data set "
                        "has one")
    parser.add_argument('--val-per-class', type=int, default=10,
                        help='validation patients per class (singh2002)')
    parser.add_argument('--C', type=float, default=1.0,
                        help='inverse L2 strength of logistic regression '
                        '(singh2002)')
    parser.add_argument('--p1000-root', default=None,
                        help="the folder of the P1000 files (that of the "
                        "authors' prostrate/: data/ and splits/; default "
                        "<root>/p1000)")
    parser.add_argument('--n-top', type=int, default=40,
                        help="p1000: neighbours kept per patient (the "
                        "authors' n_top, itself included)")
    parser.add_argument('--sigma-k', type=int, default=20,
                        help="p1000: the neighbour whose distance is the "
                        "Gaussian bandwidth (the authors' sigma)")
    args, command = common.parse_args(parser, argv, 'prostate')
    if args.setting is not None and args.setting != SETTINGS[args.dataset]:
        parser.error(f"--dataset {args.dataset} has the setting "
                     f"'{SETTINGS[args.dataset]}' only")
    args.setting = SETTINGS[args.dataset]
    for key, value in DEFAULTS[args.dataset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.dataset == 'p1000' and args.splits > 10:
        parser.error('--splits: P1000 has the 10 splits of the authors')
    if args.name is None:
        args.name = ('prostate' if args.dataset == 'singh2002' else
                     'prostate_p1000_authors')
    start = time.perf_counter()

    if args.dataset == 'singh2002':
        with common.data_errors(parser):
            runs, extra = singh2002(args)
        methods = METHODS
    else:
        runs, extra = p1000(args)
        methods = AUTHORS_METHODS

    table = {m: {metric: reporting.summarize([r[metric] for r in runs[m]])
                 for metric in METRICS}
             for m in methods}
    columns = [reporting.bold_best(
        [reporting.fmt_mean(table[m][metric]) for m in methods],
        [table[m][metric]['mean'] for m in methods]) for metric in METRICS]
    text = (f'Data: {args.dataset}, setting: {args.setting}\n\n' +
            reporting.markdown_table(
                ['method', 'accuracy', 'ROC AUC', 'average precision'],
                [[m] + [col[i] for col in columns]
                 for i, m in enumerate(methods)]))
    print(text)

    return reporting.save(args.out_dir, args.name, dict(
        command=command, args=vars(args), summary=table, runs=runs,
        seconds=time.perf_counter() - start, **extra), text)


if __name__ == '__main__':
    main()
