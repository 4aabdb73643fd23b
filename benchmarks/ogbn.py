"""COIN against GCN and GraphSAGE on an OGB node property prediction set.

    python benchmarks/ogbn.py                       # ogbn-arxiv, 10 seeds
    python benchmarks/ogbn.py --root DIR --dataset ogbn-arxiv --seeds 2
    python benchmarks/ogbn.py --mode decoupled --models COIN --dataset \
        ogbn-products --batch-size 8192 --eps 1e-4

Reads ``<root>/<name with _>`` (OGB's own on-disk format: ``raw/*.csv.gz``,
``split/<split>/*.csv.gz``, ``RELEASE_v1.txt``) through OGB's
``PygNodePropPredDataset`` after copying it to a writable cache, trains full
batch on a sparse symmetric adjacency with the official split, scores with
OGB's ``Evaluator``, and runs every model on the same seeds. GCN and SAGE are
OGB's reference models (3 layers, 256 hidden, batch norm, dropout 0.5, Adam
lr 0.01, 500 epochs). Writes ``ogbn_<dataset>.{json,md}`` into ``--out-dir``
(``ogbn_<dataset>_decoupled.*`` in decoupled mode).

``--mode decoupled`` trains COIN by mini-batches of labelled nodes over
precomputed rows of its diffusion and predicts with one full-graph diffusion
(:mod:`decoupled`; ``--eps``/``--topk`` truncate the rows, the largest
truncation bound is reported); the other models still train full batch.
``--distributed`` (decoupled COIN only) joins the process group of
``torchrun`` (see :mod:`decoupled` for the launch); rank 0 writes the results.
"""
import os
import os.path as osp
import sys

os.environ.setdefault('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')  # ogb 1.3.6

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tqdm import tqdm  # noqa: E402

import torch_geometric.transforms as T  # noqa: E402
from torch_geometric.nn import GCNConv, SAGEConv  # noqa: E402

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import decoupled  # noqa: E402
import reporting  # noqa: E402
from training import fit  # noqa: E402

from torch_geometric_coin.nn import COIN  # noqa: E402

MODELS = ('COIN', 'GCN', 'SAGE')
MODES = ('full', 'decoupled')


class OGBNet(torch.nn.Module):
    r"""OGB's reference GCN / GraphSAGE for ogbn-arxiv
    (``examples/nodeproppred/arxiv/gnn.py``): convolutions with batch norm,
    ReLU and dropout between them."""
    def __init__(self, conv, in_channels, hidden_channels, out_channels,
                 num_layers=3, dropout=0.5):
        super().__init__()
        make = {'GCN': lambda i, o: GCNConv(i, o, cached=True),
                'SAGE': lambda i, o: SAGEConv(i, o)}[conv]
        dims = [in_channels] + [hidden_channels] * (num_layers - 1)
        self.convs = torch.nn.ModuleList(
            [make(i, o) for i, o in zip(dims, dims[1:] + [out_channels])])
        self.bns = torch.nn.ModuleList(
            [torch.nn.BatchNorm1d(d) for d in dims[1:]])
        self.dropout = dropout

    def forward(self, x, adj_t):
        for conv, bn in zip(self.convs[:-1], self.bns):
            x = F.relu(bn(conv(x, adj_t)))
            x = F.dropout(x, p=self.dropout, training=self.training)
        return self.convs[-1](x, adj_t).log_softmax(dim=-1)


def load(root, name):
    from ogb.nodeproppred import PygNodePropPredDataset
    dir_name = name.replace('-', '_')
    if not osp.isdir(osp.join(root, 'ogb', dir_name)):
        raise common.missing_data(f'ogb/{dir_name}', root)
    cache = common.writable_copy(osp.join(root, 'ogb', dir_name))
    dataset = PygNodePropPredDataset(name, root=osp.dirname(cache),
                                     transform=T.ToSparseTensor())
    data = dataset[0]
    data.adj_t = data.adj_t.to_symmetric()
    data.y = data.y.view(-1)
    return dataset, data


def build(name, args, in_channels, out_channels):
    if name == 'COIN':
        return COIN(in_channels, out_channels,
                    hidden_channels=args.hidden_channels,
                    num_layers=args.num_layers - 1, K=args.K,
                    sigma2=args.sigma2, dropout=args.dropout,
                    norm='batch_norm' if args.num_layers > 1 else None,
                    cached=True, stability='ignore')
    return OGBNet(name, in_channels, args.hidden_channels, out_channels,
                  args.num_layers, args.dropout)


def main(argv=None):
    parser = common.parser(
        __doc__, dataset='ogbn-arxiv', root=common.SHARED,
        models=dict(default=list(MODELS), choices=MODELS), seeds=10,
        epochs=500, lr=0.01, hidden_channels=256, dropout=0.5, K=10,
        sigma2=0.35, device='cpu')
    parser.add_argument('--num-layers', type=int, default=3,
                        help='layers of GCN and SAGE (COIN: residual '
                        'blocks + 1)')
    parser.add_argument('--mode', default='full', choices=MODES,
                        help='how COIN trains: full batch (training.fit) or '
                        'decoupled mini-batches (decoupled.train)')
    parser.add_argument('--distributed', action='store_true',
                        help='decoupled mode, COIN only: one process of a '
                        'torchrun launch (DistributedDataParallel)')
    decoupled.add_arguments(parser)
    args, command = common.parse_args(parser, argv, 'ogbn')
    dec_kwargs = decoupled.options(parser, args)
    if args.distributed and (args.mode != 'decoupled'
                             or args.models != ['COIN']):
        parser.error("--distributed needs --mode decoupled --models COIN")

    from ogb.nodeproppred import Evaluator
    rank, device = 0, torch.device(args.device)
    if args.distributed:
        rank, _, device = decoupled.init_distributed(args.device)
    if args.distributed and rank > 0:  # Rank 0 writes processed/ first.
        torch.distributed.barrier()
    with common.data_errors(parser):
        dataset, data = load(args.root, args.dataset)
    if args.distributed and rank == 0:
        torch.distributed.barrier()
    data = data.to(device)
    split = {k: v.to(device) for k, v in dataset.get_idx_split().items()}
    evaluator = Evaluator(args.dataset)

    def metric(y_true, y_pred):
        return evaluator.eval({'y_true': y_true.view(-1, 1),
                               'y_pred': y_pred.view(-1, 1)})[
                                   dataset.eval_metric]

    def forward(model, data):
        return model(data.x, data.adj_t)

    def run(name, model, seed):
        if name == 'COIN' and args.mode == 'decoupled':
            return decoupled.train(
                model, data, split['train'], split['valid'], split['test'],
                epochs=args.epochs, lr=args.lr, weight_decay=0., seed=seed,
                metric=metric, **dec_kwargs)
        return fit(model, data, split['train'], split['valid'],
                   split['test'], epochs=args.epochs, lr=args.lr,
                   weight_decay=0., forward=forward, metric=metric)

    records = {m: [] for m in args.models}
    mem_method = None
    with tqdm(total=args.seeds * len(args.models), desc='runs',
              disable=rank > 0) as bar:
        for seed in range(args.seeds):
            for name in args.models:
                torch.manual_seed(seed)
                model = build(name, args, data.num_features,
                              dataset.num_classes).to(device)
                if args.distributed:  # (Each process measures its own.)
                    res, peak, mem_method = run(name, model, seed), None, \
                        'not measured in distributed runs'
                else:
                    res, peak, mem_method = common.measure_peak_memory(
                        lambda: run(name, model, seed), device)
                res.update(seed=seed, peak_memory=peak)
                records[name].append(res)
                bar.set_postfix(model=name, acc=f"{res['test_acc']:.3f}")
                bar.update()

    if rank > 0:
        return None
    summary = reporting.summarize_runs(records)
    how = 'full batch'
    if args.mode == 'decoupled' and 'COIN' in args.models:
        bound = max(r['bound'] for r in records['COIN'])
        how = (f"COIN decoupled (batch {args.batch_size}, eps={args.eps}, "
               f"topk={args.topk}, largest row truncation bound "
               f"{bound:.3g}, preprocessing "
               f"{max(r['preprocess_time'] for r in records['COIN']):.1f} "
               f"s) and the others full batch")
    md = (f"**{args.dataset}** ({data.num_nodes} nodes, {data.adj_t.nnz()} "
          f"adjacency entries, official split), {args.seeds} seeds x "
          f"{args.epochs} epochs, {how}, {dataset.eval_metric} from "
          f"OGB's Evaluator at the best validation epoch; COIN K={args.K}, "
          f"sigma2={args.sigma2}. Peak memory: {mem_method} during "
          f"training, max over runs.\n\nCommand: `{command}`\n\n" +
          reporting.runs_table(summary, dataset.eval_metric))
    print(md)
    stem = f"ogbn_{args.dataset.replace('-', '_')}"
    return reporting.save(
        args.out_dir, stem + ('_decoupled' if args.mode == 'decoupled'
                              else ''),
        dict(dataset=args.dataset, command=command, args=vars(args),
             memory=mem_method, summary=summary, runs=records), md)


if __name__ == '__main__':
    main()
