"""COIN trained in mini-batches with PyG's NeighborLoader (Coauthor-Physics).

    python examples/coin_minibatch.py --root ./data/Coauthor
    python examples/coin_minibatch.py --max-nodes 3000 --epochs 1   # smoke

Each mini-batch diffuses over its sampled subgraph: K diffusion steps reach
K hops, so the loader samples K + 1 hops (fewer neighbours per hop trade
accuracy for memory); the loss is taken on the batch's seed nodes, which come
first. Evaluation runs full batch. The data set is read from (or downloaded
into) ``<root>/Physics``, a writable folder. Split: 20 training nodes per
class, 500 validation nodes, the rest for testing. Needs tqdm
(pip install '.[bench]') and, for PyG's neighbour sampling, torch-sparse or
pyg-lib (pip install --no-build-isolation '.[sparse]');
``examples/coin_decoupled.py`` trains in mini-batches without either.
"""
import argparse
import os
import os.path as osp
import stat

import torch
import torch.nn.functional as F
from tqdm import tqdm

import torch_geometric.transforms as T
from torch_geometric.datasets import Coauthor
from torch_geometric.loader import NeighborLoader
from torch_geometric.typing import WITH_PYG_LIB, WITH_TORCH_SPARSE

from torch_geometric_coin.nn import COIN


def main(argv=None):
    if not (WITH_PYG_LIB or WITH_TORCH_SPARSE):
        raise SystemExit(
            "examples/coin_minibatch.py needs torch-sparse or pyg-lib for "
            "PyG's NeighborLoader: pip install --no-build-isolation "
            "'.[sparse]' (examples/coin_decoupled.py needs neither)")
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--root', help='the data folder', default=osp.join(
        osp.dirname(osp.realpath(__file__)), '..', 'data', 'Coauthor'))
    parser.add_argument('--hidden-channels', type=int, default=64,
                        help='hidden width')
    parser.add_argument('--K', type=int, default=4, help='diffusion steps')
    parser.add_argument('--sigma2', type=float, default=0.35,
                        help='diffusion coefficient')
    parser.add_argument('--neighbors', type=int, default=10,
                        help='sampled neighbours per node and hop')
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--epochs', type=int, default=50,
                        help='training epochs')
    parser.add_argument('--max-nodes', type=int, default=None,
                        help='keep the subgraph of the first nodes (smoke '
                        'runs)')
    parser.add_argument('--seed', type=int, default=0,
                        help='random seed')
    args = parser.parse_args(argv)

    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    torch.manual_seed(args.seed)
    folder = osp.join(args.root, 'Physics')
    if osp.isdir(folder) and not os.stat(folder).st_mode & stat.S_IWUSR:
        parser.error(f'{folder} is read-only, but PyG writes processed/ '
                     f'beside raw/: copy it and pass the copy\'s parent '
                     f'folder as --root')
    try:
        data = Coauthor(args.root, 'Physics')[0]
    except OSError as e:  # Not there, and no network to download it.
        parser.error(f'Coauthor-Physics is not in {args.root} and could not '
                     f'be downloaded ({type(e).__name__}): pass --root')
    if args.max_nodes is not None:
        data = data.subgraph(torch.arange(min(args.max_nodes,
                                              data.num_nodes)))
    num_classes = int(data.y.max()) + 1
    data = T.RandomNodeSplit('test_rest', num_val=500)(data)
    print(f'Data: Coauthor-Physics, {data.num_nodes} nodes, '
          f'{data.num_edges} edges')

    loader = NeighborLoader(data, num_neighbors=[args.neighbors] *
                            (args.K + 1), batch_size=args.batch_size,
                            input_nodes=data.train_mask, shuffle=True)
    model = COIN(data.num_features, num_classes,
                 hidden_channels=args.hidden_channels, K=args.K,
                 sigma2=args.sigma2).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01,
                                 weight_decay=5e-4)
    data = data.to(device)

    best_val_acc = test_acc = 0.
    for epoch in range(1, args.epochs + 1):
        model.train()
        total_loss = total_examples = 0
        for batch in tqdm(loader, desc=f'Epoch {epoch:03d}', leave=False):
            batch = batch.to(device)
            optimizer.zero_grad()
            out = model(batch.x, batch.edge_index)[:batch.batch_size]
            loss = F.nll_loss(out, batch.y[:batch.batch_size])
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * batch.batch_size
            total_examples += batch.batch_size

        model.eval()
        with torch.no_grad():
            correct = model(data.x, data.edge_index).argmax(-1) == data.y
        train_acc, val_acc, tmp_test_acc = [
            float(correct[mask].float().mean())
            for mask in [data.train_mask, data.val_mask, data.test_mask]]
        if val_acc > best_val_acc:
            best_val_acc, test_acc = val_acc, tmp_test_acc
        print(f'Epoch: {epoch:03d}, Loss: {total_loss / total_examples:.4f}, '
              f'Train: {train_acc:.4f}, Val: {val_acc:.4f}, '
              f'Test: {test_acc:.4f}')
    return dict(val_acc=best_val_acc, test_acc=test_acc)


if __name__ == '__main__':
    main()
