"""Shared plumbing of the benchmark scripts: the data folder
(:func:`dataset_root`, :func:`writable_copy`), the command line
(:func:`parser`, :func:`parse_args`), Planetoid data (both protocols) and
random splits, the model zoo with published hyper-parameters and peak
memory. The training loop is :func:`training.fit`; summaries, tables and
result files are :mod:`reporting`'s."""
import argparse
import contextlib
import gc
import hashlib
import os
import os.path as osp
import shlex
import shutil
import sys
import tempfile
from typing import Any, Callable, List, Optional

import torch

import torch_geometric.transforms as T
from torch_geometric.datasets import Planetoid

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(HERE)
RESULTS = osp.join(HERE, 'results')  # The committed figures.
RUNS = osp.join(REPO, 'runs')  # Default --out-dir: untracked, git-ignored.
ENV_VAR = 'TORCH_GEOMETRIC_COIN_DATASETS'
PLANETOID = ('Cora', 'CiteSeer', 'PubMed')
# Node classification data sets of load_node_dataset: name -> sub-folder of
# the data folder. Amazon and Coauthor: largest connected component, random
# splits; the heterophilous graphs (Platonov et al. 2023): 10 fixed splits.
HETEROPHILOUS = ('chameleon_filtered', 'squirrel_filtered', 'chameleon',
                 'squirrel', 'actor', 'cornell', 'texas', 'wisconsin')
NODE_DATASETS = dict(
    **{name: 'planetoid' for name in PLANETOID},
    Computers='amazon', Photo='amazon', CS='coauthor', Physics='coauthor',
    **{name: 'npz' for name in HETEROPHILOUS})
PROTOCOLS = ('paper', 'public')


# Data folder #################################################################

def dataset_root(root: Optional[str] = None) -> str:
    r"""Returns the folder that holds the offline data sets: :obj:`root` if
    given, else the environment variable
    :obj:`TORCH_GEOMETRIC_COIN_DATASETS` if set, else
    :obj:`../shared/datasets` relative to the repository root."""
    if root is not None:
        return str(root)
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]
    return osp.normpath(osp.join(REPO, '..', 'shared', 'datasets'))


SHARED = dataset_root()  # ../shared/datasets or $TORCH_GEOMETRIC_COIN_DATASETS


def missing_data(what: str, root: str) -> FileNotFoundError:
    r"""The one-line error of data :obj:`what` absent from the data folder
    :obj:`root`: it names :obj:`--root` and
    :obj:`TORCH_GEOMETRIC_COIN_DATASETS`."""
    return FileNotFoundError(
        f"No '{what}' under '{root}': pass the datasets folder (the one "
        f"that holds planetoid/, npz/, ogb/, ...) as --root or set "
        f"{ENV_VAR}")


@contextlib.contextmanager
def data_errors(parser: Optional[argparse.ArgumentParser] = None):
    r"""Turns a :class:`FileNotFoundError` of missing data into a one-line
    :obj:`parser.error` (exit status 2; without :obj:`parser`, a
    :class:`SystemExit` with the message) instead of a traceback."""
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
    r"""Copies the (possibly read-only) data set folder :obj:`src` once into
    a writable cache and returns the copy, so that PyG and OGB can write
    :obj:`processed/` beside :obj:`raw/`. The copy keeps the folder's name
    and lives under :obj:`cache_dir` (default:
    :obj:`$TMPDIR/torch-geometric-coin-data/<hash of src>`: not a Python
    identifier, so that it never shadows the package), so data sets from
    different roots never mix.

    Raises a :class:`FileNotFoundError` naming :obj:`src` if it is absent.
    """
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


# Command line ################################################################
# The one convention of every script: the same name, type and help for the
# same thing. A script names the options it has in ``parser(...)``.

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
    'name': dict(help='the stem of the result files'),
    'protocol': dict(default='paper', choices=PROTOCOLS,
                     help="Planetoid protocol (see load_planetoid)"),
}
# Counts of any script that must be positive (checked by parse_args):
POSITIVE = ('splits', 'seeds', 'epochs', 'patience', 'maskings', 'episodes',
            'batch_episodes', 'queries', 'trials', 'n0', 'n', 'num_nodes',
            'threads')


def parser(doc: str, **options: Any) -> argparse.ArgumentParser:
    r"""The argument parser of a script: its description is the first line
    of :obj:`doc`, every default is shown in :obj:`--help`, and it has the
    shared options named in :obj:`options` (keys of :obj:`OPTIONS`), each
    with its default, or a dictionary of :meth:`add_argument` keywords
    (*e.g.*, :obj:`default` and :obj:`choices`). A list default takes one
    or more values. :func:`parse_args` adds :obj:`--out-dir` and
    :obj:`--threads`."""
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
    r"""Adds the options every script has (:obj:`--out-dir`, by default the
    untracked :obj:`runs/` folder, and :obj:`--threads`), parses
    :obj:`argv`, checks that counts are positive, applies :obj:`--threads`
    and returns :obj:`(args, command)`, the command line to reproduce the
    run."""
    # A script may set other defaults with parser.set_defaults(...).
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


# Data ########################################################################

def load_planetoid(root: str, name: str, protocol: str,
                   normalize: bool = True):
    r"""Loads the Planetoid graph :obj:`<root>/<name>/raw` (from a writable
    copy) for a protocol.

    :obj:`'public'`: the standard split and row-normalised features.
    :obj:`'paper'`: the COIN paper's protocol (that of Shchur et al. 2018):
    the largest connected component, binary bag-of-words features
    (:math:`x > 0`), row-normalised; splits come from :func:`random_split`.
    With :obj:`normalize=False` the features are not row-normalised.
    """
    if name not in PLANETOID:
        raise ValueError(f'Unknown Planetoid data set {name!r}: expected one '
                         f'of {PLANETOID}')
    if protocol not in PROTOCOLS:
        raise ValueError(f'Unknown protocol {protocol!r}: expected one of '
                         f'{PROTOCOLS}')
    if not osp.isdir(osp.join(root, name, 'raw')):
        raise missing_data(f'{name}/raw', root)
    cache = writable_copy(osp.join(root, name))
    data = Planetoid(osp.dirname(cache), name)[0]
    if protocol == 'paper':
        data = _component_and_binary(data)
        for key in ('train_mask', 'val_mask', 'test_mask'):
            del data[key]
    if normalize:
        data = T.NormalizeFeatures()(data)
    data.num_classes = int(data.y.max()) + 1
    return data


def _component_and_binary(data):
    r"""The protocol of Shchur et al. (2018) that the COIN paper follows:
    the largest connected component, binary bag-of-words features."""
    data = T.LargestConnectedComponents()(data)
    data.x = (data.x > 0).float()
    return data


def _find_folder(root: str, family: str, name: str) -> str:
    for folder in (osp.join(root, family, name), osp.join(root, name)):
        if osp.isdir(folder):
            return folder
    raise missing_data(f'{family}/{name}', root)


def node_dataset_path(root: str, name: str) -> str:
    r"""The folder (or :obj:`.npz` file) of the data set :obj:`name` of
    :obj:`NODE_DATASETS` that :func:`load_node_dataset` reads from the data
    folder :obj:`root`, or a :func:`missing_data` error: to check the data
    of a long run before it starts."""
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
    r"""A gnn-benchmark :obj:`.npz` graph (Shchur et al. 2018; the COIN
    authors' Cora and CiteSeer) as gnn-benchmark's :obj:`standardize`
    prepares it: unweighted, symmetric, no self-loops, the largest connected
    component (nodes in their order), binary features row-normalised (empty
    rows stay zero), classes renumbered by sorted label. CiteSeer keeps
    2,110 nodes (PyG's Planetoid files: 2,120, ten of them featureless test
    nodes the npz file lacks); Cora 2,485 in both."""
    import numpy as np
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components
    from torch_geometric.data import Data
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
    r"""Loads a node classification data set of :obj:`NODE_DATASETS` from
    the data folder :obj:`root` (:func:`dataset_root`), which holds
    :obj:`planetoid/`, :obj:`amazon/`, :obj:`coauthor/` and :obj:`npz/`
    (a Planetoid folder itself, the former :obj:`--root`, is accepted for
    Cora, CiteSeer and PubMed). The splits of :func:`runs` follow the data
    set:

    - Cora, CiteSeer, PubMed: :func:`load_planetoid` with :obj:`protocol`
      (:obj:`'paper'`: random splits; :obj:`'public'`: the public split).
    - Amazon :obj:`'Computers'`, :obj:`'Photo'`, Coauthor :obj:`'CS'`,
      :obj:`'Physics'` (:class:`~torch_geometric.datasets.Amazon`,
      :class:`~torch_geometric.datasets.Coauthor`, from a writable copy):
      the protocol of Shchur et al. (2018), as :obj:`'paper'` on Planetoid:
      the largest connected component, the binary bag-of-words features
      row-normalised, random splits of 20 train / 30 validation nodes per
      class and the rest as test (:func:`random_split`), under either
      protocol (they have no public split).
    - The heterophilous graphs of Platonov et al. (2023)
      (:obj:`HETEROPHILOUS`, :obj:`npz/<name>.npz` with
      :obj:`node_features`, :obj:`node_labels`, :obj:`edges`,
      :obj:`train/val/test_masks`): the features as they are in the file
      (not normalised, the convention of these benchmarks), the edges made
      undirected (both directions, duplicates and self-loops removed),
      every node kept,
      and their 10 fixed splits (:obj:`data.train_masks` etc. of shape
      :obj:`[10, N]`; split :obj:`s` is row :obj:`s`) under either
      protocol.

    :obj:`data.split_text` says which splits :func:`runs` draws.
    """
    if name not in NODE_DATASETS:
        raise ValueError(f'Unknown data set {name!r}: expected one of '
                         f'{tuple(NODE_DATASETS)}')
    if protocol not in PROTOCOLS:
        raise ValueError(f'Unknown protocol {protocol!r}: expected one of '
                         f'{PROTOCOLS}')
    family = NODE_DATASETS[name]
    if family == 'planetoid' and protocol == 'paper' and name in NPZ_FILES:
        data = load_npz_graph(osp.join(root, 'npz', NPZ_FILES[name]))
        data.split_text = ('gnn-benchmark npz file, largest connected '
                           'component, random splits 20 train / 30 val per '
                           'class / rest test')
        return data
    if family == 'planetoid':
        folder = _find_folder(root, family, name)
        data = load_planetoid(osp.dirname(folder), name, protocol)
        data.split_text = (
            'largest connected component, random splits 20 train / 30 val '
            'per class / rest test' if protocol == 'paper' else
            'the public split')
        return data
    if family in ('amazon', 'coauthor'):
        from torch_geometric.datasets import Amazon, Coauthor
        folder = _find_folder(root, family, name)
        cache = writable_copy(folder)
        cls = Amazon if family == 'amazon' else Coauthor
        data = cls(osp.dirname(cache), name)[0]
        data = T.NormalizeFeatures()(_component_and_binary(data))
        data.split_text = ('largest connected component, random splits 20 '
                           'train / 30 val per class / rest test')
    else:
        import numpy as np
        from torch_geometric.data import Data
        from torch_geometric.utils import to_undirected
        path = osp.join(root, 'npz', f'{name}.npz')
        if not osp.isfile(path):
            path = osp.join(root, f'{name}.npz')
        if not osp.isfile(path):
            raise missing_data(f'npz/{name}.npz', root)
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
    r"""The node features :obj:`data.x` as a :obj:`torch.sparse_csr` tensor
    (for models that take sparse features, such as COIN)."""
    import warnings
    with warnings.catch_warnings():  # "Sparse CSR tensor support is beta"
        warnings.simplefilter('ignore', UserWarning)
        return data.x.to_sparse_csr()


X_LAYOUTS = ('auto', 'sparse', 'dense')
SPARSE_BELOW = 0.2  # 'auto': sparse features below this share of non-zeros


def stacked_features(data, x_layout: str = 'auto'):
    r"""A shallow copy of :obj:`data` for the stacked models of
    :mod:`stacked`, whose features are :obj:`torch.sparse` (COO) for
    :obj:`x_layout='sparse'`, or for :obj:`'auto'` when under
    :obj:`SPARSE_BELOW` (20%) of them are non-zero (the bag-of-words of
    Cora, CiteSeer, PubMed (10%), Coauthor and the heterophilous graphs;
    not Amazon's 35%, where dense products are faster), and dense
    otherwise."""
    import copy
    if x_layout not in X_LAYOUTS:
        raise ValueError(f"Unknown 'x_layout' {x_layout!r}: expected one of "
                         f"{X_LAYOUTS}")
    out = copy.copy(data)
    x = data.x.to_dense() if data.x.is_sparse else data.x
    if x_layout == 'auto':
        nonzero = float((x != 0).sum()) / max(x.numel(), 1)
        x_layout = 'sparse' if nonzero < SPARSE_BELOW else 'dense'
    out.x = x.to_sparse() if x_layout == 'sparse' else x
    return out


def random_graph(num_nodes: int, num_edges: int, device='cpu',
                 seed: int = 0) -> torch.Tensor:
    r"""A seeded random undirected graph of :obj:`num_nodes` nodes and
    about :obj:`num_edges` edges (:obj:`num_edges // 2` random pairs
    without self-loops, both directions), for timing."""
    from torch_geometric.utils import to_undirected
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(num_nodes, (2, num_edges // 2), generator=gen)
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    return to_undirected(edge_index, num_nodes=num_nodes).to(device)


def random_split(y: torch.Tensor, num_train_per_class: int = 20,
                 num_val_per_class: int = 30, seed: int = 0,
                 generator: Optional[torch.Generator] = None):
    r"""Random split with :obj:`num_train_per_class` training and
    :obj:`num_val_per_class` validation nodes per class, the rest as test.
    Draws from :obj:`generator` (successive splits from one generator) or,
    without one, from a generator seeded with :obj:`seed`. Returns boolean
    masks :obj:`(train, val, test)`."""
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
    r"""Yields :obj:`(split, init, seed, train_mask, val_mask, test_mask)`:
    :obj:`splits` splits x :obj:`seeds` initialisations, where split
    :obj:`s` is the random split of seed :obj:`s` (:func:`random_split`;
    :obj:`'paper'`, or a data set without a public split), or the fixed
    split :obj:`s` of a data set that has them (:obj:`data.train_masks` of
    :func:`load_node_dataset`; a :class:`ValueError` if :obj:`splits`
    exceeds their number); for :obj:`'public'` on a data set with a public
    split (:obj:`data.train_mask`), that split with :obj:`seeds`
    initialisations."""
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


# Measurement #################################################################

@contextlib.contextmanager
def quiet_stderr():
    r"""Silences file descriptor 2 (Kineto prints two lines at every
    profiler start and stop, which would break the progress bars)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, 'w') as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _cpu_allocation_peak(events) -> int:
    r"""The highest running total of the CPU allocator's byte counts (the
    profiler's :obj:`[memory]` events, positive for an allocation and
    negative for a free), in time order."""
    deltas = sorted((e.start_ns(), e.nbytes()) for e in events
                    if e.name() == '[memory]' and e.device_type()
                    == torch.autograd.DeviceType.CPU)
    total = peak = 0
    for _, nbytes in deltas:
        total += nbytes
        peak = max(peak, total)
    return peak


def measure_peak_memory(fn: Callable[[], Any], device: torch.device):
    r"""Runs :obj:`fn()` and returns :obj:`(result, peak_bytes, method)`:
    the peak of the memory that PyTorch's allocator holds for tensors during
    the call, above what it held before.

    CUDA: :func:`torch.cuda.max_memory_allocated` above
    :func:`torch.cuda.memory_allocated` before the call. CPU: PyTorch keeps
    no such counter, so the call runs under :class:`torch.profiler.profile`
    with :obj:`profile_memory=True`, which records every allocation and free
    of the CPU allocator; the peak is the highest running total of the bytes
    allocated during the call (a free of memory allocated before the call is
    not recorded, so it does not lower the figure). Both count
    tensor bytes, not pages, do not depend on the kernel or on memory the C
    allocator kept from earlier work, and read the same in every run of a
    process. The profiler adds a few microseconds per operator, which leaves
    the per-epoch times of the benchmarks unchanged (checked on Cora)."""
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
    peak = _cpu_allocation_peak(prof.profiler.kineto_results.events())
    # The profiler's results sit in reference cycles: without a collection
    # every measured call keeps its events (about 1 KiB per operator), which
    # grew a 10-seed Planetoid run to 24 GiB.
    del prof
    gc.collect()
    return out, peak, 'CPU allocator peak (torch.profiler)'
