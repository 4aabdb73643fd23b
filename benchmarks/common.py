"""Shared plumbing of the benchmark scripts: the data folder, the command
line, the data sets and their splits, and peak memory."""
import argparse
import contextlib
import copy
import gc
import hashlib
import os
import os.path as osp
import shlex
import shutil
import sys
import tempfile
import warnings
from typing import Any, Callable, List, Optional

import numpy as np
import torch

import torch_geometric.transforms as T
from torch_geometric.data import Data
from torch_geometric.datasets import Amazon, Coauthor, Planetoid
from torch_geometric.utils import to_undirected

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(HERE)
RESULTS = osp.join(HERE, 'results')  # The committed figures.
RUNS = osp.join(REPO, 'runs')  # Default --out-dir (git-ignored).
ENV_VAR = 'TORCH_GEOMETRIC_COIN_DATASETS'
PLANETOID = ('Cora', 'CiteSeer', 'PubMed')
# The data sets of load_node_dataset: name -> sub-folder of the data folder.
HETEROPHILOUS = ('chameleon_filtered', 'squirrel_filtered', 'chameleon',
                 'squirrel', 'actor', 'cornell', 'texas', 'wisconsin')
NODE_DATASETS = dict(
    **{name: 'planetoid' for name in PLANETOID},
    Computers='amazon', Photo='amazon', CS='coauthor', Physics='coauthor',
    **{name: 'npz' for name in HETEROPHILOUS})
PROTOCOLS = ('paper', 'public')
RANDOM_SPLITS = ('largest connected component, random splits 20 train / 30 '
                 'val per class / rest test')


def dataset_root(root: Optional[str] = None) -> str:
    r"""The folder of the offline data sets: :obj:`root`, else
    :obj:`$TORCH_GEOMETRIC_COIN_DATASETS`, else :obj:`../shared/datasets`
    beside the repository."""
    if root is not None:
        return str(root)
    return os.environ.get(ENV_VAR) or osp.normpath(
        osp.join(REPO, '..', 'shared', 'datasets'))


SHARED = dataset_root()  # ../shared/datasets or $TORCH_GEOMETRIC_COIN_DATASETS


def missing_data(what: str, root: str) -> FileNotFoundError:
    r"""The error of data :obj:`what` absent from the data folder
    :obj:`root`."""
    return FileNotFoundError(
        f"No '{what}' under '{root}': pass the datasets folder (the one "
        f"that holds planetoid/, npz/, ogb/, ...) as --root or set "
        f"{ENV_VAR}")


@contextlib.contextmanager
def data_errors(parser: Optional[argparse.ArgumentParser] = None):
    r"""Turns a :class:`FileNotFoundError` into a one-line
    :obj:`parser.error` (or :class:`SystemExit`) instead of a traceback."""
    try:
        yield
    except FileNotFoundError as e:
        message = str(e)
        if ENV_VAR not in message:
            message += f' (the datasets folder: --root or ${ENV_VAR})'
        if parser is None:
            raise SystemExit(f'error: {message}')
        parser.error(message)


def writable_copy(src: str, cache_dir: Optional[str] = None) -> str:
    r"""Copies the (possibly read-only) data set folder :obj:`src` once
    into :obj:`cache_dir` (default: one per :obj:`src` under
    :obj:`$TMPDIR/torch-geometric-coin-data/`) and returns the copy, where
    PyG and OGB can write :obj:`processed/`."""
    src = osp.abspath(src)
    if not osp.isdir(src):
        raise FileNotFoundError(f"The data set folder '{src}' does not exist")
    if cache_dir is None:
        key = hashlib.sha1(src.encode()).hexdigest()[:12]
        cache_dir = osp.join(tempfile.gettempdir(),
                             'torch-geometric-coin-data', key)
    dst = osp.join(cache_dir, osp.basename(src))
    if not osp.isdir(dst):
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f'{dst}.{os.getpid()}.tmp'
        shutil.copytree(src, tmp)
        for dirpath, _, filenames in os.walk(tmp):
            os.chmod(dirpath, 0o755)
            for f in filenames:
                os.chmod(osp.join(dirpath, f), 0o644)
        try:
            os.rename(tmp, dst)
        except OSError:  # Another process made the copy first.
            shutil.rmtree(tmp, ignore_errors=True)
    return dst


OPTIONS = {
    'dataset': dict(help='the data set'),
    'datasets': dict(nargs='+', help='the data sets'),
    'root': dict(default=SHARED, help='the datasets folder, which holds '
                 'planetoid/, npz/, amazon/, coauthor/, ogb/, ... '
                 f'(default: ${ENV_VAR}, else ../shared/datasets; '
                 'read-only is fine: data sets are copied to a writable '
                 'cache)'),
    'models': dict(nargs='+', help='the models to compare'),
    'splits': dict(type=int, help='random data splits'),
    'seeds': dict(type=int, help='random initialisations (seeds) per split'),
    'seed': dict(type=int, default=0, help='the base random seed'),
    'hidden_channels': dict(type=int, help='hidden width of the models'),
    'epochs': dict(type=int, help='(maximum) training epochs'),
    'patience': dict(type=int, help='early stopping: epochs without a lower '
                     'validation loss or a higher validation accuracy'),
    'lr': dict(type=float, help='Adam learning rate'),
    'weight_decay': dict(type=float, help='Adam weight decay'),
    'dropout': dict(type=float, help='dropout of the models'),
    'k': dict(type=int, help='neighbours of each node in the kNN graph'),
    'bandwidth_k': dict(type=int, help='the neighbour whose distance is the '
                        'Gaussian bandwidth (gaussian_knn_graph)'),
    'K': dict(type=int, help='COIN diffusion steps'),
    'sigma2': dict(type=float, help='COIN diffusion coefficient sigma2'),
    'device': dict(default='cpu', help="torch device, e.g. 'cuda'"),
    'per_class': dict(type=int, help='training labels per class'),
    'protocol': dict(default='paper', choices=PROTOCOLS,
                     help="Planetoid protocol (see load_planetoid)"),
}
# Counts of any script that parse_args checks are positive:
POSITIVE = ('splits', 'seeds', 'epochs', 'patience', 'maskings', 'episodes',
            'batch_episodes', 'queries', 'trials', 'n0', 'n', 'num_nodes',
            'threads')


def parser(doc: str, **options: Any) -> argparse.ArgumentParser:
    r"""A script's parser, described by the first paragraph of :obj:`doc`,
    defaults shown, with the shared :obj:`OPTIONS` named in :obj:`options`,
    each given its default or a dictionary of :meth:`add_argument`
    keywords (a list default takes one or more values)."""
    p = argparse.ArgumentParser(
        description=doc.strip().split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for name, value in options.items():
        if name not in OPTIONS:
            raise ValueError(f'Unknown shared option {name!r}: expected one '
                             f'of {sorted(OPTIONS)}')
        kwargs = dict(OPTIONS[name])
        kwargs.update(value if isinstance(value, dict) else dict(
            default=value))
        if isinstance(kwargs.get('default'), (list, tuple)):
            kwargs['nargs'] = kwargs.get('nargs', '+')
        p.add_argument('--' + name.replace('_', '-'), **kwargs)
    return p


def parse_args(parser: argparse.ArgumentParser, argv: Optional[List[str]],
               script: str):
    r"""Adds :obj:`--out-dir` and :obj:`--threads` (a script may change
    their defaults with :meth:`set_defaults`), parses :obj:`argv`, checks
    that counts are positive, applies :obj:`--threads` and returns
    :obj:`(args, command)`, the command line of the run."""
    parser.add_argument('--out-dir',
                        default=parser.get_default('out_dir') or RUNS,
                        help='where the results go (the committed ones: '
                        'benchmarks/results)')
    parser.add_argument('--threads', type=int,
                        default=parser.get_default('threads'),
                        help="torch CPU threads (1 is fastest on a busy "
                        "machine; None: torch's choice)")
    args = parser.parse_args(argv)
    for name in POSITIVE:
        value = getattr(args, name, None)
        if isinstance(value, int) and value < 1:
            parser.error(f"--{name} must be positive (got {value})")
    if args.threads:
        torch.set_num_threads(args.threads)
    command = f'python benchmarks/{script}.py ' + shlex.join(
        sys.argv[1:] if argv is None else argv)
    return args, command.rstrip()


def _check_choice(what: str, value: Any, choices: tuple):
    if value not in choices:
        raise ValueError(f'Unknown {what} {value!r}: expected one of '
                         f'{choices}')


def load_planetoid(root: str, name: str, protocol: str,
                   normalize: bool = True):
    r"""Loads the Planetoid graph :obj:`<root>/<name>/raw`: with the public
    split (:obj:`'public'`), or as in the COIN paper (:obj:`'paper'`,
    Shchur et al. 2018): the largest connected component with binary
    features and no split. Features are row-normalised if
    :obj:`normalize`."""
    _check_choice('Planetoid data set', name, PLANETOID)
    _check_choice('protocol', protocol, PROTOCOLS)
    if not osp.isdir(osp.join(root, name, 'raw')):
        raise missing_data(f'{name}/raw', root)
    cache = writable_copy(osp.join(root, name))
    data = Planetoid(osp.dirname(cache), name)[0]
    if protocol == 'paper':
        data = T.LargestConnectedComponents()(data)
        data.x = (data.x > 0).float()
        for key in ('train_mask', 'val_mask', 'test_mask'):
            del data[key]
    if normalize:
        data = T.NormalizeFeatures()(data)
    data.num_classes = int(data.y.max()) + 1
    return data


def _find_folder(root: str, family: str, name: str) -> str:
    for folder in (osp.join(root, family, name), osp.join(root, name)):
        if osp.isdir(folder):
            return folder
    raise missing_data(f'{family}/{name}', root)


def node_dataset_path(root: str, name: str) -> str:
    r"""The folder (or :obj:`.npz` file) of the data set :obj:`name` under
    :obj:`root`, or a :func:`missing_data` error (to check a long run's
    data before it starts)."""
    family = NODE_DATASETS[name]
    if family == 'npz':
        for path in (osp.join(root, 'npz', f'{name}.npz'),
                     osp.join(root, f'{name}.npz')):
            if osp.isfile(path):
                return path
        raise missing_data(f'npz/{name}.npz', root)
    folder = _find_folder(root, family, name)
    if not osp.isdir(osp.join(folder, 'raw')):
        raise missing_data(f'{family}/{name}/raw', root)
    return folder


NPZ_FILES = {'Cora': 'cora.npz', 'CiteSeer': 'citeseer.npz'}


def load_npz_graph(path: str):
    r"""A gnn-benchmark :obj:`.npz` graph (the COIN authors' Cora and
    CiteSeer) as gnn-benchmark's :obj:`standardize` prepares it:
    unweighted, symmetric, no self-loops, the largest connected component,
    binary features row-normalised, classes renumbered by sorted label."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components
    if not osp.isfile(path):
        raise missing_data(osp.join(*path.split(os.sep)[-2:]),
                           osp.dirname(osp.dirname(path)))
    with np.load(path, allow_pickle=True) as f:
        f = dict(f)

    def csr(key):
        return sp.csr_matrix((f[f'{key}_data'], f[f'{key}_indices'],
                              f[f'{key}_indptr']),
                             shape=tuple(f[f'{key}_shape']))

    adj = csr('adj')
    adj = ((adj + adj.T) != 0).astype(np.float32).tolil()
    adj.setdiag(0)
    adj = adj.tocsr()
    adj.eliminate_zeros()
    _, comp = connected_components(adj)
    # gnn-benchmark keeps argsort(sizes)[::-1][0] (ties: the last index).
    keep = np.nonzero(comp == np.argsort(np.bincount(comp))[::-1][0])[0]
    adj = adj[keep][:, keep].tocoo()
    x = torch.from_numpy((csr('attr')[keep] != 0).toarray()).float()
    _, y = np.unique(np.asarray(f['labels'])[keep], return_inverse=True)
    data = Data(x=x / x.sum(1, keepdim=True).clamp(min=1),
                edge_index=torch.from_numpy(np.vstack([adj.row, adj.col]))
                .long(), y=torch.from_numpy(y).long())
    data.num_classes = int(data.y.max()) + 1
    return data


def load_node_dataset(root: str, name: str, protocol: str = 'paper'):
    r"""Loads a data set of :obj:`NODE_DATASETS` from the data folder
    :obj:`root` (or a Planetoid folder): Planetoid by
    :func:`load_planetoid` (:obj:`'paper'`: Cora and CiteSeer from the
    authors' :obj:`npz/` files); Amazon and Coauthor as :obj:`'paper'`
    Planetoid; the heterophilous graphs (Platonov et al. 2023) with their
    fixed splits (:obj:`data.train_masks` etc., :obj:`[num_splits, N]`).
    :obj:`data.split_text` says which splits :func:`runs` draws."""
    _check_choice('data set', name, tuple(NODE_DATASETS))
    _check_choice('protocol', protocol, PROTOCOLS)
    family = NODE_DATASETS[name]
    if family == 'planetoid' and protocol == 'paper' and name in NPZ_FILES:
        data = load_npz_graph(osp.join(root, 'npz', NPZ_FILES[name]))
        data.split_text = 'gnn-benchmark npz file, ' + RANDOM_SPLITS
        return data
    if family == 'planetoid':
        folder = _find_folder(root, family, name)
        data = load_planetoid(osp.dirname(folder), name, protocol)
        data.split_text = (RANDOM_SPLITS if protocol == 'paper' else
                           'the public split')
        return data
    if family in ('amazon', 'coauthor'):
        cache = writable_copy(_find_folder(root, family, name))
        cls = Amazon if family == 'amazon' else Coauthor
        data = cls(osp.dirname(cache), name)[0]
        data = T.LargestConnectedComponents()(data)
        data.x = (data.x > 0).float()
        data = T.NormalizeFeatures()(data)
        data.split_text = RANDOM_SPLITS
    else:
        path = node_dataset_path(root, name)
        with np.load(path) as f:
            arrays = {k: torch.from_numpy(f[k]) for k in (
                'node_features', 'node_labels', 'edges', 'train_masks',
                'val_masks', 'test_masks')}
        n = arrays['node_labels'].numel()
        edge_index = arrays['edges'].long().t()
        edge_index = to_undirected(edge_index[:, edge_index[0]
                                              != edge_index[1]], num_nodes=n)
        data = Data(x=arrays['node_features'].float(), edge_index=edge_index,
                    y=arrays['node_labels'].long())
        for key in ('train', 'val', 'test'):
            masks = arrays[f'{key}_masks'].bool()
            if masks.dim() != 2 or masks.size(1) != n:
                raise ValueError(f"'{key}_masks' of {path} must have shape "
                                 f"[num_splits, {n}] (got "
                                 f"{list(masks.shape)})")
            data[f'{key}_masks'] = masks
        data.split_text = (f'its {data.train_masks.size(0)} fixed splits, '
                           f'undirected edges, features as given')
    data.num_classes = int(data.y.max()) + 1
    return data


def sparse_features(data) -> torch.Tensor:
    r"""The node features :obj:`data.x` as a :obj:`torch.sparse_csr`
    tensor."""
    with warnings.catch_warnings():  # "Sparse CSR tensor support is beta"
        warnings.simplefilter('ignore', UserWarning)
        return data.x.to_sparse_csr()


X_LAYOUTS = ('auto', 'sparse', 'dense')
SPARSE_BELOW = 0.2  # 'auto': sparse features below this share of non-zeros


def stacked_features(data, x_layout: str = 'auto'):
    r"""A shallow copy of :obj:`data` for stacked models, with sparse (COO)
    features for :obj:`'sparse'` (:obj:`'auto'`: if under
    :obj:`SPARSE_BELOW` of them are non-zero), else dense ones."""
    _check_choice("'x_layout'", x_layout, X_LAYOUTS)
    out = copy.copy(data)
    x = data.x.to_dense() if data.x.is_sparse else data.x
    if x_layout == 'auto':
        nonzero = float((x != 0).sum()) / max(x.numel(), 1)
        x_layout = 'sparse' if nonzero < SPARSE_BELOW else 'dense'
    out.x = x.to_sparse() if x_layout == 'sparse' else x
    return out


def random_graph(num_nodes: int, num_edges: int, device='cpu',
                 seed: int = 0) -> torch.Tensor:
    r"""A seeded random undirected graph of about :obj:`num_edges` edges
    (no self-loops), for timing."""
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(num_nodes, (2, num_edges // 2), generator=gen)
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    return to_undirected(edge_index, num_nodes=num_nodes).to(device)


def random_split(y: torch.Tensor, num_train_per_class: int = 20,
                 num_val_per_class: int = 30, seed: int = 0,
                 generator: Optional[torch.Generator] = None):
    r"""Boolean masks :obj:`(train, val, test)` of a random split per class,
    the rest as test, drawn from :obj:`generator` or else from
    :obj:`seed`."""
    gen = generator or torch.Generator().manual_seed(seed)
    train = torch.zeros_like(y, dtype=torch.bool)
    val = torch.zeros_like(y, dtype=torch.bool)
    for c in range(int(y.max()) + 1):
        idx = (y == c).nonzero().view(-1)
        need = num_train_per_class + num_val_per_class
        if idx.numel() < need:
            raise ValueError(f'Class {c} has {idx.numel()} nodes, fewer than '
                             f'the {need} a split needs')
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        train[idx[:num_train_per_class]] = True
        val[idx[num_train_per_class:need]] = True
    return train, val, ~(train | val)


def runs(data, protocol: str, splits: int, seeds: int):
    r"""Yields :obj:`(split, init, seed, train_mask, val_mask, test_mask)`
    for :obj:`splits` x :obj:`seeds` runs: split :obj:`s` is the fixed
    split :obj:`s` of the data set if it has them, else the random split of
    seed :obj:`s`; for :obj:`'public'`, the public split if any."""
    fixed = 'train_masks' in data
    public = protocol == 'public' and 'train_mask' in data and not fixed
    if fixed and splits > data.train_masks.size(0):
        raise ValueError(f"The data set has {data.train_masks.size(0)} "
                         f"fixed splits, fewer than --splits={splits}")
    for s in range(1 if public else splits):
        if public:
            masks = (data.train_mask, data.val_mask, data.test_mask)
        elif fixed:
            masks = (data.train_masks[s], data.val_masks[s],
                     data.test_masks[s])
        else:
            masks = random_split(data.y, seed=s)
        for i in range(seeds):
            yield (s, i, 1000 * s + i) + tuple(masks)


@contextlib.contextmanager
def quiet_stderr():
    r"""Silences file descriptor 2 (Kineto's lines at every profiler start
    and stop)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, 'w') as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def measure_peak_memory(fn: Callable[[], Any], device: torch.device):
    r"""Runs :obj:`fn()` and returns :obj:`(result, peak_bytes, method)`:
    the peak tensor memory of PyTorch's allocator during the call, above
    what it held before (CUDA: its peak counter; CPU: the highest running
    total of the allocations and frees that :class:`torch.profiler`
    records)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        out = fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        return out, peak, 'torch.cuda.max_memory_allocated'
    if device.type != 'cpu':
        return fn(), None, f'unavailable on {device.type}'
    from torch.profiler import ProfilerActivity, profile
    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with quiet_stderr():
        prof.start()
    try:
        out = fn()
    finally:
        with quiet_stderr():
            prof.stop()
    total = peak = 0
    for _, nbytes in sorted((e.start_ns(), e.nbytes()) for e in
                            prof.profiler.kineto_results.events()
                            if e.name() == '[memory]' and e.device_type()
                            == torch.autograd.DeviceType.CPU):
        total += nbytes
        peak = max(peak, total)
    # The profiler's results sit in reference cycles: collect them (else
    # about 1 KiB per operator stays behind).
    del prof
    gc.collect()
    return out, peak, 'CPU allocator peak (torch.profiler)'
