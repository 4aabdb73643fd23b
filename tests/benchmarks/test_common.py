import os
import os.path as osp
import stat
import subprocess

import common
import pytest
import numpy as np
import scipy.sparse as sp
import torch


def test_random_split():
    y = torch.arange(5).repeat_interleave(torch.tensor([60, 55, 70, 50, 80]))
    train, val, test = common.random_split(y, 20, 30, seed=3)
    for c in range(5):
        assert int(train[y == c].sum()) == 20 and int(val[y == c].sum()) == 30
    assert not (train & val).any() and not (train & test).any()
    assert int((train | val | test).sum()) == y.numel()
    again = common.random_split(y, 20, 30, seed=3)
    other = common.random_split(y, 20, 30, seed=4)
    assert torch.equal(train, again[0]) and not torch.equal(train, other[0])
    with pytest.raises(ValueError, match='Class 3 has 50 nodes'):
        common.random_split(y, 26, 26)
    # Successive splits from one generator: the first equals the split of a
    # generator with the same seed, the second differs from it.
    gen = torch.Generator().manual_seed(3)
    first = common.random_split(y, 20, 30, generator=gen)
    second = common.random_split(y, 20, 30, generator=gen)
    assert torch.equal(first[0], train) and not torch.equal(second[0], train)


def test_measure_peak_memory():
    MiB = 2**20
    held = torch.ones(8 * MiB // 4)

    def alloc():
        x = torch.ones(64 * MiB // 4)  # +64 MiB
        y = x * 2  # +64 MiB: the peak, 128 MiB
        del y
        held.resize_(0)  # frees 8 MiB allocated before the call
        z = torch.ones(16 * MiB // 4)  # 64 + 16 = 80 MiB < 128 MiB
        return float(x.sum() + z.sum())

    out, peak, method = common.measure_peak_memory(alloc,
                                                   torch.device('cpu'))
    assert out == 80 * MiB // 4
    assert 'profiler' in method
    assert 128 * MiB <= peak < 128 * MiB + 4096, peak

    # Autograd: the saved activations and the gradients are counted.
    w = torch.randn(1024, 1024, requires_grad=True)  # 4 MiB

    def train_step():
        h = (torch.randn(4096, 1024) @ w).relu()  # input, h, mask: 16 each
        h.sum().backward()

    _, peak, _ = common.measure_peak_memory(train_step, torch.device('cpu'))
    assert 36 * MiB <= peak <= 80 * MiB, peak / MiB

    # The same figure in every run of the process, and 0 for no work.
    again = [common.measure_peak_memory(alloc, torch.device('cpu'))[1]
             for _ in range(2)]
    assert again[0] == again[1] and again[0] < 128 * MiB + 4096
    assert common.measure_peak_memory(lambda: None,
                                      torch.device('cpu'))[1] == 0


def test_load_planetoid_paper_protocol(tmp_cache, planetoid_root):
    data = common.load_planetoid(planetoid_root, 'Cora', 'paper')
    assert data.num_nodes == 2485  # largest connected component of Cora
    assert 'train_mask' not in data
    rows = data.x.sum(dim=1)
    assert torch.allclose(rows, torch.ones_like(rows))
    for row in data.x[:50]:  # binary features, row-normalised
        nz = row[row > 0]
        assert torch.allclose(nz, torch.full_like(nz, 1.0 / nz.numel()))
    public = common.load_planetoid(planetoid_root, 'Cora', 'public')
    assert public.num_nodes == 2708 and int(public.train_mask.sum()) == 140
    with pytest.raises(ValueError, match='Unknown protocol'):
        common.load_planetoid(planetoid_root, 'Cora', 'full')
    raw = common.load_planetoid(planetoid_root, 'Cora', 'public',
                                normalize=False)
    assert raw.x.max() == 1 and raw.x.sum() > raw.num_nodes  # bag of words
    with pytest.raises(FileNotFoundError, match="No 'Cora/raw' under"):
        common.load_planetoid(str(tmp_cache / 'nowhere'), 'Cora', 'public')


def test_dataset_root(monkeypatch, tmp_path):
    monkeypatch.delenv('TORCH_GEOMETRIC_COIN_DATASETS', raising=False)
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    assert common.dataset_root() == osp.normpath(
        osp.join(repo, '..', 'shared', 'datasets'))
    monkeypatch.setenv('TORCH_GEOMETRIC_COIN_DATASETS', str(tmp_path))
    assert common.dataset_root() == str(tmp_path)
    assert common.dataset_root('/some/where') == '/some/where'


def test_writable_copy(tmp_path):
    src = tmp_path / 'shared' / 'Toy'
    (src / 'raw').mkdir(parents=True)
    (src / 'raw' / 'a.txt').write_text('x')
    for path in [src / 'raw' / 'a.txt', src / 'raw', src]:  # read-only
        path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        dst = common.writable_copy(str(src), str(tmp_path / 'cache'))
        assert dst == str(tmp_path / 'cache' / 'Toy')
        assert (tmp_path / 'cache' / 'Toy' / 'raw' / 'a.txt').read_text() \
            == 'x'
        os.makedirs(osp.join(dst, 'processed'))  # PyG can write beside raw/
        (tmp_path / 'cache' / 'Toy' / 'raw' / 'a.txt').write_text('y')
        # A second call reuses the copy:
        assert common.writable_copy(str(src), str(tmp_path / 'cache')) == dst
        assert osp.isdir(osp.join(dst, 'processed'))
        # By default, the cache of each source folder is its own:
        other = tmp_path / 'elsewhere' / 'Toy'
        other.mkdir(parents=True)
        a = common.writable_copy(str(src))
        b = common.writable_copy(str(other))
        assert osp.basename(a) == osp.basename(b) == 'Toy' and a != b
    finally:
        for path in [src, src / 'raw', src / 'raw' / 'a.txt']:
            path.chmod(stat.S_IRWXU)
    with pytest.raises(FileNotFoundError, match='missing'):
        common.writable_copy(str(tmp_path / 'missing'))


def test_parser_shares_names_and_shows_defaults(capsys):
    parser = common.parser(
        'First line.\n\nMore.', dataset=dict(default='Cora',
                                             choices=common.PLANETOID),
        seeds=3, K=[1, 2], hidden_channels=16)
    args, command = common.parse_args(parser, ['--K', '4', '8'], 'tool')
    assert args.dataset == 'Cora' and args.seeds == 3 and args.K == [4, 8]
    assert args.hidden_channels == 16 and args.threads is None
    assert args.out_dir == common.RUNS
    assert command == 'python benchmarks/tool.py --K 4 8'
    with pytest.raises(SystemExit):
        parser.parse_args(['--help'])
    help_text = capsys.readouterr().out
    assert help_text.count('(default:') >= 6 and 'First line.' in help_text
    assert 'More.' not in help_text and '--hidden-channels' in help_text
    assert '(default: ' + common.RUNS in ' '.join(help_text.split())
    with pytest.raises(ValueError, match="Unknown shared option 'hiden'"):
        common.parser('x', hiden=3)
    # Counts must be positive:
    parser = common.parser('x', seeds=3)
    with pytest.raises(SystemExit):
        common.parse_args(parser, ['--seeds', '0'], 'tool')
    assert '--seeds must be positive (got 0)' in capsys.readouterr().err
    # A script's own defaults of the common options:
    parser = common.parser('x')
    parser.set_defaults(threads=1)
    threads = torch.get_num_threads()
    try:
        assert common.parse_args(parser, [], 'tool')[0].threads == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_default_out_dir_is_ignored_by_git():
    # Scripts never overwrite a tracked file by default.
    if not osp.isdir(osp.join(common.REPO, '.git')):
        pytest.skip('not a git checkout')
    out = subprocess.run(['git', 'check-ignore', '-q',
                          osp.join(common.RUNS, 'x.json')],
                         cwd=common.REPO)
    assert out.returncode == 0


def test_measure_peak_memory_frees_the_profiler():
    # The profiler's results sit in reference cycles; a measured call must
    # not leave them behind (they held ~1 KiB per operator: a 10-seed
    # Planetoid run grew to 24 GiB and was killed).
    import gc

    def alive():
        return sum(isinstance(o, torch.profiler.profile)
                   for o in gc.get_objects())

    gc.collect()
    before = alive()
    x = torch.randn(64, 64)
    for _ in range(3):
        common.measure_peak_memory(lambda: (x @ x).relu().sum(),
                                   torch.device('cpu'))
    assert alive() == before


def _gnn_benchmark_npz(path, y, edges, num_features=6, seed=0):
    # A file of the gnn-benchmark layout (Amazon, Coauthor): CSR adjacency
    # and attributes, labels.
    import numpy as np
    import scipy.sparse as sp
    n = y.size
    adj = sp.csr_matrix((np.ones(len(edges), dtype=np.float32),
                         tuple(np.array(edges).T)), shape=(n, n))
    attr = np.random.RandomState(seed).randint(0, 3, (n, num_features))
    attr[:, 0] = 1  # no empty row
    attr = sp.csr_matrix(attr.astype(np.float32))
    os.makedirs(osp.dirname(path), exist_ok=True)
    np.savez(path, adj_data=adj.data, adj_indices=adj.indices,
             adj_indptr=adj.indptr, adj_shape=np.array(adj.shape),
             attr_data=attr.data, attr_indices=attr.indices,
             attr_indptr=attr.indptr, attr_shape=np.array(attr.shape),
             labels=y)


@pytest.mark.parametrize('family,name,file', [
    ('amazon', 'Computers', 'amazon_electronics_computers.npz'),
    ('coauthor', 'CS', 'ms_academic_cs.npz')])
def test_load_node_dataset_random_splits(tmp_cache, family, name, file):
    import numpy as np
    root = tmp_cache / 'data'
    # A ring of 2 classes x 60 nodes, and a 3-node path aside (dropped: not
    # in the largest connected component).
    y = np.r_[np.repeat([0, 1], 60), [0, 1, 0]]
    edges = [(i, (i + 1) % 120) for i in range(120)]
    edges += [(120, 121), (121, 122)]
    _gnn_benchmark_npz(str(root / family / name / 'raw' / file), y, edges)
    for protocol in ('paper', 'public'):
        data = common.load_node_dataset(str(root), name, protocol)
        assert data.num_nodes == 120 and data.num_classes == 2
        assert data.num_edges == 240  # both directions
        # Binary features, row-normalised:
        rows = data.x.sum(dim=1)
        assert torch.allclose(rows, torch.ones_like(rows))
        for row in data.x:
            nz = row[row > 0]
            assert torch.allclose(nz, torch.full_like(nz, 1 / nz.numel()))
        # Random 20/30/rest splits under both protocols (no public split):
        got = list(common.runs(data, protocol, 3, 2))
        assert len(got) == 6
        for s, i, seed, train, val, test in got:
            ref = common.random_split(data.y, seed=s)
            assert seed == 1000 * s + i
            assert all(torch.equal(a, b) for a, b in
                       zip((train, val, test), ref))
    with pytest.raises(FileNotFoundError, match="No 'amazon/Photo'"):
        common.load_node_dataset(str(root), 'Photo')


def test_load_node_dataset_heterophilous(tmp_cache):
    import numpy as np
    root = tmp_cache / 'data'
    os.makedirs(root / 'npz')
    n = 12
    x = np.random.RandomState(0).rand(n, 5).astype(np.float32)
    # Directed edges, a duplicate, a reverse duplicate and a self-loop:
    edges = np.array([[0, 1], [1, 2], [0, 1], [2, 1], [3, 3], [4, 5]])
    masks = np.zeros((3, 10, n), dtype=bool)
    for s in range(10):
        perm = np.random.RandomState(s).permutation(n)
        for k, part in enumerate(np.split(perm, [4, 8])):
            masks[k, s, part] = True
    np.savez(root / 'npz' / 'chameleon_filtered.npz', node_features=x,
             node_labels=np.arange(n) % 3, edges=edges,
             train_masks=masks[0], val_masks=masks[1], test_masks=masks[2])
    data = common.load_node_dataset(str(root), 'chameleon_filtered',
                                    'public')
    assert torch.equal(data.x, torch.from_numpy(x))  # features as given
    assert data.num_nodes == n and data.num_classes == 3
    assert sorted(map(tuple, data.edge_index.t().tolist())) == [
        (0, 1), (1, 0), (1, 2), (2, 1), (4, 5), (5, 4)]
    for protocol in ('paper', 'public'):
        got = list(common.runs(data, protocol, 10, 2))
        assert len(got) == 20
        for s, i, seed, *split in got:
            for k in range(3):
                assert torch.equal(split[k], torch.from_numpy(masks[k, s]))
    with pytest.raises(ValueError, match='10 fixed splits, fewer than'):
        list(common.runs(data, 'paper', 11, 1))
    with pytest.raises(ValueError, match='Unknown data set'):
        common.load_node_dataset(str(root), 'chameleon_unfiltered')


def test_load_node_dataset_planetoid(tmp_cache, planetoid_root):
    # The data folder (planetoid/ under it) or a Planetoid folder itself.
    data = common.load_node_dataset(osp.dirname(planetoid_root), 'Cora')
    assert data.num_nodes == 2485 and 'train_mask' not in data
    public = common.load_node_dataset(planetoid_root, 'Cora', 'public')
    assert len(list(common.runs(public, 'public', 5, 3))) == 3
    (_, _, _, train, _, _), = common.runs(public, 'public', 5, 1)
    assert torch.equal(train, public.train_mask)


def test_stacked_features():
    from torch_geometric.data import Data
    x = torch.zeros(10, 20)
    x[torch.arange(10), torch.arange(10)] = 1.  # 5% non-zeros
    data = Data(x=x, edge_index=torch.zeros(2, 0, dtype=torch.long))
    auto = common.stacked_features(data)
    assert auto.x.is_sparse and torch.equal(auto.x.to_dense(), x)
    assert data.x is x  # a copy: data keeps its features
    assert not common.stacked_features(data, 'dense').x.is_sparse
    dense = Data(x=torch.rand(10, 20))
    assert not common.stacked_features(dense).x.is_sparse
    assert common.stacked_features(dense, 'sparse').x.is_sparse
    with pytest.raises(ValueError, match="Unknown 'x_layout'"):
        common.stacked_features(data, 'csr')


def _tiny_npz(path):
    # A gnn-benchmark file: 3 classes (labels 2, 5, 9) of 60 nodes on a
    # directed path, one duplicated edge, a self-loop and a 2-node component
    # apart; binary and weighted features.
    n = 62
    y = np.r_[np.repeat([2, 5, 9], 20), 9, 9]
    row = np.r_[np.arange(59), 3, 7, 60]
    col = np.r_[np.arange(1, 60), 4, 7, 61]
    adj = sp.csr_matrix((np.ones(row.size, np.float32), (row, col)),
                        shape=(n, n))
    attr = sp.csr_matrix(np.random.RandomState(0).rand(n, 6) *
                         (np.random.RandomState(1).rand(n, 6) < 0.5))
    np.savez(path, adj_data=adj.data, adj_indices=adj.indices,
             adj_indptr=adj.indptr, adj_shape=np.array(adj.shape),
             attr_data=attr.data, attr_indices=attr.indices,
             attr_indptr=attr.indptr, attr_shape=np.array(attr.shape),
             labels=y)
    return attr.toarray()


def test_load_npz_graph(tmp_path):
    attr = _tiny_npz(tmp_path / 'cora.npz')
    data = common.load_npz_graph(str(tmp_path / 'cora.npz'))
    # The largest component: the 60-node path, unweighted, both
    # directions, no self-loop, the duplicate merged.
    assert data.num_nodes == 60 and data.num_edges == 2 * 59
    assert data.is_undirected() and not data.has_self_loops()
    assert data.y.tolist() == [0] * 20 + [1] * 20 + [2] * 20
    binary = torch.from_numpy(attr[:60] != 0).float()
    ref = binary / binary.sum(1, keepdim=True).clamp(min=1)
    torch.testing.assert_close(data.x, ref)
    with pytest.raises(FileNotFoundError, match='--root'):
        common.load_npz_graph(str(tmp_path / 'npz' / 'citeseer.npz'))


def test_paper_protocol_reads_the_authors_files(tmp_cache, shared):
    root = shared()
    shared('npz', 'citeseer.npz')
    data = common.load_node_dataset(root, 'CiteSeer', 'paper')
    assert (data.num_nodes, data.num_classes) == (2110, 6)
    assert 'npz' in data.split_text
