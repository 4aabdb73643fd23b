"""Prostate cancer classification from gene expression with few labels (COIN).

    python benchmarks/prostate.py                  # the benchmark (30 splits)
    python benchmarks/prostate.py --splits 1 --epochs 5

102 patients x 5,966 genes (Singh et al. 2002), tumour vs normal. The genes
are standardised, a Gaussian kNN graph is built over all patients
(transductive), and each random split labels ``--per-class`` patients per
class for training, ``--val-per-class`` per class for validation and leaves
the rest for testing. COIN (a residual base classifier whose class
probabilities are diffused over the graph) is compared, on the same splits,
with the same model without diffusion (K=0), an MLP and logistic regression;
accuracy, ROC AUC and average precision on the test patients, mean ± std.
"""
import os.path as osp
import sys
import time

import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from tqdm import tqdm

from torch_geometric.data import Data
from torch_geometric.nn.models import MLP

from torch_geometric_coin.datasets import Prostate
from torch_geometric_coin.nn import COIN
from torch_geometric_coin.utils import gaussian_knn_graph

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402
import reporting  # noqa: E402
from training import fit  # noqa: E402

METHODS = ('Logistic regression', 'MLP', 'COIN (K=0)', 'COIN')
METRICS = ('accuracy', 'roc_auc', 'average_precision')


def scores(prob, y):
    r"""Test metrics from the tumour probabilities :obj:`prob`."""
    y, prob = y.numpy(), prob.detach().numpy()
    return {
        'accuracy': float(((prob > 0.5) == y).mean()),
        'roc_auc': float(roc_auc_score(y, prob)),
        'average_precision': float(average_precision_score(y, prob)),
    }


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


def main(argv=None):
    parser = common.parser(
        __doc__, root=common.SHARED, splits=30, K=10, sigma2=0.5,
        hidden_channels=64, dropout=0.5, lr=0.01, weight_decay=5e-4,
        epochs=200, patience=50, seed=0, k=6, bandwidth_k=3, per_class=10,
        name='prostate')
    parser.add_argument('--val-per-class', type=int, default=10,
                        help='validation patients per class')
    parser.add_argument('--C', type=float, default=1.0,
                        help='inverse L2 strength of logistic regression')
    args, command = common.parse_args(parser, argv, 'prostate')
    start = time.perf_counter()

    data = Prostate(common.writable_copy(
        osp.join(common.dataset_root(args.root), 'prostate')))[0]
    x, y = data.x, data.y
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    edge_index, edge_weight = gaussian_knn_graph(x, args.k, args.bandwidth_k)
    data = Data(x=x, y=y, edge_index=edge_index, edge_weight=edge_weight)
    same = (y[edge_index[0]] == y[edge_index[1]]).float().mean()
    print(f'Prostate: {x.size(0)} patients, {x.size(1)} genes, kNN graph '
          f'with {edge_index.size(1)} edges ({100 * float(same):.1f}% '
          f'within a class)')

    gen = torch.Generator().manual_seed(args.seed)
    runs = {m: [] for m in METHODS}
    for i in tqdm(range(args.splits), desc='Splits'):
        split = common.random_split(y, args.per_class, args.val_per_class,
                                    generator=gen)
        res = run(data, split, args, seed=args.seed + i)
        for m in METHODS:
            runs[m].append(res[m])

    table = {m: {metric: reporting.summarize([r[metric] for r in runs[m]])
                 for metric in METRICS}
             for m in METHODS}
    columns = [reporting.bold_best(
        [reporting.fmt_mean(table[m][metric]) for m in METHODS],
        [table[m][metric]['mean'] for m in METHODS]) for metric in METRICS]
    text = reporting.markdown_table(
        ['method', 'accuracy', 'ROC AUC', 'average precision'],
        [[m] + [col[i] for col in columns] for i, m in enumerate(METHODS)])
    print(text)

    return reporting.save(args.out_dir, args.name, dict(
        command=command, args=vars(args), summary=table, runs=runs,
        within_class_edge_fraction=float(same),
        seconds=time.perf_counter() - start), text)


if __name__ == '__main__':
    main()
