"""COIN against GCN and GraphSAGE on an OGB node property prediction set.

    python benchmarks/ogbn.py --root DIR --dataset ogbn-arxiv --seeds 2
    python benchmarks/ogbn.py --decoupled --dataset ogbn-products --eps 1e-4

Reads ``<root>/ogb/<name with _>`` (OGB's format), trains every model full
batch (``training.fit``) on the symmetric adjacency, official split, same
seeds, scored by OGB's ``Evaluator``; GCN and SAGE as OGB's reference (3
layers, 256 hidden, batch norm, dropout 0.5, Adam lr 0.01, 500 epochs).
``--decoupled``: COIN trains on the diffusion rows of the training nodes
(``--eps``/``--topk`` truncate them) and is evaluated on the full graph.
"""
import os
import os.path as osp
import sys
import time

os.environ.setdefault('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')  # ogb 1.3.6

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import torch_geometric.transforms as T  # noqa: E402
from torch_geometric.nn import GCN, GraphSAGE  # noqa: E402

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import reporting  # noqa: E402
from training import fit  # noqa: E402

from torch_geometric_coin.nn import COIN, safe_log  # noqa: E402
from torch_geometric_coin.ops import diffusion_rows  # noqa: E402


def load(root, name):
    from ogb.nodeproppred import Evaluator, PygNodePropPredDataset
    src = osp.join(root, 'ogb', name.replace('-', '_'))
    dataset = PygNodePropPredDataset(
        name, root=osp.dirname(common.writable_copy(src)),
        transform=T.ToSparseTensor())
    data = dataset[0]
    data.adj_t = data.adj_t.to_symmetric()
    data.y = data.y.view(-1)
    return dataset, data, Evaluator(name)


def forward(model, data):
    out = model(data.x, data.adj_t)  # (COIN: log-probabilities)
    return out if isinstance(model, COIN) else out.log_softmax(dim=-1)


def rows_forward(model, data, train, eps=None, topk=None):
    r"""Fit's :obj:`forward` on the diffusion rows :math:`P` of the
    :obj:`train` nodes, :math:`\log(P\,\mathrm{softmax}(f(X_U)))` on the
    nodes :math:`U` they touch (eval: the full graph), and the rows' bound."""
    conv = model.diffusion
    index, value, bound = diffusion_rows(
        data.adj_t, num_nodes=data.num_nodes, nodes=train, K=conv.K,
        sigma2=conv.sigma2_init, normalization=conv.normalization,
        add_self_loops=conv.add_self_loops, eps=eps, topk=topk)
    support, col = index[1].unique(return_inverse=True)
    P = torch.sparse_coo_tensor(
        torch.stack([index[0], col]), value, (train.numel(), support.numel()),
        check_invariants=False).coalesce()

    def forward(model, data):
        if not model.training:
            return model.inference(data.x, data.adj_t, chunk_size=65536)
        out = safe_log(torch.sparse.mm(
            P, model.base(data.x[support]).softmax(dim=-1)))
        return out.new_zeros(data.num_nodes, out.size(1)).index_copy(
            0, train, out)

    return forward, float(bound.max())


def build(name, args, in_channels, out_channels):
    if name == 'COIN':  # 3 layers: 2 residual blocks and the output
        return COIN(in_channels, out_channels, args.hidden_channels,
                    num_layers=2, K=args.K, sigma2=args.sigma2,
                    dropout=args.dropout, norm='batch_norm', cached=True,
                    stability='ignore')
    # OGB's examples/nodeproppred/arxiv/gnn.py: conv, batch norm, ReLU, drop
    return dict(GCN=GCN, SAGE=GraphSAGE)[name](
        in_channels, args.hidden_channels, 3, out_channels, args.dropout,
        norm='batch_norm', **(dict(cached=True) if name == 'GCN' else {}))


def main(argv=None):
    models = ['COIN', 'GCN', 'SAGE']
    parser = common.parser(
        __doc__, dataset='ogbn-arxiv', root=common.SHARED,
        models=dict(default=models, choices=models), seeds=10, epochs=500,
        lr=0.01, hidden_channels=256, dropout=0.5, K=10, sigma2=0.35,
        device='cpu')
    parser.add_argument('--decoupled', action='store_true', help='train COIN '
                        'on the diffusion rows of the training nodes')
    parser.add_argument('--eps', type=float, default=None, help='decoupled: '
                        'drop row entries below eps (None: exact rows)')
    parser.add_argument('--topk', type=int, default=None, help='decoupled: '
                        'keep the topk largest entries per row (None: all)')
    args, command = common.parse_args(parser, argv, 'ogbn')
    with common.data_errors(parser):
        dataset, data, evaluator = load(args.root, args.dataset)
    device = torch.device(args.device)
    data = data.to(device)
    split = [dataset.get_idx_split()[k].to(device)
             for k in ('train', 'valid', 'test')]
    score = dataset.eval_metric

    def metric(y_true, y_pred):
        return evaluator.eval({'y_true': y_true.view(-1, 1),
                               'y_pred': y_pred.view(-1, 1)})[score]

    def run(name, model):
        step, extra = forward, {}
        if name == 'COIN' and args.decoupled:
            start = time.perf_counter()
            step, extra['bound'] = rows_forward(model, data, split[0],
                                                args.eps, args.topk)
            extra['preprocess_time'] = time.perf_counter() - start
        res, = fit(model, data, *split, epochs=args.epochs, lr=args.lr,
                   weight_decay=0., forward=step, metric=metric)
        return dict(res, **extra)

    records = {m: [] for m in args.models}
    with tqdm(total=args.seeds * len(args.models), desc='runs') as bar:
        for seed in range(args.seeds):
            for name in args.models:
                torch.manual_seed(seed)
                model = build(name, args, data.num_features,
                              dataset.num_classes).to(device)
                res, peak, memory = common.measure_peak_memory(
                    lambda: run(name, model), device)
                records[name].append(dict(res, seed=seed, peak_memory=peak))
                bar.set_postfix(model=name, acc=f"{res['test_acc']:.3f}")
                bar.update()

    coin = records.get('COIN') if args.decoupled else None
    how = 'all full batch' if not coin else (
        f"COIN decoupled (eps={args.eps}, topk={args.topk}, largest row "
        f"truncation bound {max(r['bound'] for r in coin):.3g}, rows "
        f"{max(r['preprocess_time'] for r in coin):.1f} s), full batch")
    summary = reporting.summarize_runs(records)
    md = (f"**{args.dataset}** ({data.num_nodes} nodes, {data.adj_t.nnz()} "
          f"adjacency entries, official split), {args.seeds} seeds x "
          f"{args.epochs} epochs, {how}, {score} from OGB's Evaluator at the "
          f"best validation epoch; COIN K={args.K}, sigma2={args.sigma2}. "
          f"Peak memory: {memory} during training, max over runs.\n\n"
          f"Command: `{command}`\n\n" + reporting.runs_table(summary, score))
    print(md)
    stem = 'ogbn_' + args.dataset.replace('-', '_') + (
        '_decoupled' if args.decoupled else '')
    return reporting.save(args.out_dir, stem, dict(
        dataset=args.dataset, command=command, args=vars(args),
        memory=memory, summary=summary, runs=records), md)


if __name__ == '__main__':
    main()
