"""Each step of the COIN authors' node-classification setting
(benchmarks/authors_planetoid.py) against a hand or independent computation
on small synthetic gnn-benchmark .npz files."""
import json
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

import authors_planetoid as ap
from training import fit


def write_npz(path, adj, attr, labels):
    r"""A gnn-benchmark file (the keys of its ``save_sparse_graph_to_npz``)."""
    adj, attr = sp.csr_matrix(adj), sp.csr_matrix(attr)
    np.savez(path, adj_data=adj.data.astype(np.float32),
             adj_indices=adj.indices, adj_indptr=adj.indptr,
             adj_shape=np.array(adj.shape), attr_data=attr.data.astype(
                 np.float32), attr_indices=attr.indices,
             attr_indptr=attr.indptr, attr_shape=np.array(attr.shape),
             labels=np.asarray(labels, dtype=np.int8),
             node_names=np.array([f'n{i}' for i in range(adj.shape[0])]))
    return str(path)


def tiny_npz(tmp_path):
    r"""9 nodes: a weakly connected directed chain 0..4 (one edge stored in
    both directions, one with weight 2), a self-loop at 5, a component
    {5, 6, 7} and an isolated node 8."""
    n = 9
    edges = [(0, 1), (1, 0), (2, 1), (3, 2), (3, 4), (5, 5), (5, 6), (7, 6)]
    adj = sp.lil_matrix((n, n))
    for i, j in edges:
        adj[i, j] = 1
    adj[3, 4] = 2
    attr = np.zeros((n, 4))
    attr[0, [0, 1]] = 1
    attr[1, 2] = 3  # a count: binarised to 1
    attr[2, [0, 1, 2, 3]] = 1
    attr[4, 3] = 1  # node 3 keeps an empty row
    attr[5:, 0] = 1
    labels = [4, 4, 2, 2, 4, 2, 4, 2, 4]
    return write_npz(tmp_path / 'cora.npz', adj, attr, labels)


def test_largest_component_by_hand(tmp_path):
    raw = ap.load_npz(tiny_npz(tmp_path))
    assert raw['adj'].shape == (9, 9) and raw['attr'].shape == (9, 4)
    adj, keep = ap.largest_component(raw['adj'])
    assert keep.tolist() == [0, 1, 2, 3, 4]
    expected = np.zeros((5, 5))
    for i, j in [(0, 1), (1, 2), (2, 3), (3, 4)]:
        expected[i, j] = expected[j, i] = 1  # unweighted, undirected
    assert np.array_equal(adj.toarray(), expected)
    # The self-loop of node 5 is dropped before the components are counted:
    adj2, keep2 = ap.largest_component(raw['adj'][5:8][:, 5:8])
    assert keep2.tolist() == [0, 1, 2] and adj2.diagonal().sum() == 0


def test_load_authors_by_hand(tmp_path):
    tiny_npz(tmp_path)
    data = ap.load_authors(str(tmp_path), 'Cora')
    x = np.array([[.5, .5, 0, 0], [0, 0, 1, 0], [.25, .25, .25, .25],
                  [0, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float32)
    assert np.array_equal(data.x.numpy(), x)
    assert torch.equal(data.x_sparse.to_dense(), data.x)
    assert data.y.tolist() == [1, 1, 0, 0, 1] and data.num_classes == 2
    assert data.edge_index.tolist() == [[0, 1, 1, 2, 2, 3, 3, 4],
                                        [1, 0, 2, 1, 3, 2, 4, 3]]
    with pytest.raises(FileNotFoundError, match='npz-root'):
        ap.load_authors(str(tmp_path), 'CiteSeer')


def _reference_split(state, labels, num_train, num_val):
    # gnn-benchmark's get_train_val_test_split / sample_per_class, written
    # out on a one-hot label matrix as they are.
    onehot = np.eye(labels.max() + 1)[labels]

    def per_class(num, forbidden=None):
        picked = []
        for c in range(onehot.shape[1]):
            pool = [i for i in range(onehot.shape[0]) if onehot[i, c] > 0
                    and (forbidden is None or i not in forbidden)]
            picked.append(state.choice(pool, num, replace=False))
        return np.concatenate(picked)

    train = per_class(num_train)
    val = per_class(num_val, forbidden=train)
    test = np.setdiff1d(list(range(len(labels))),
                        np.concatenate((train, val)))
    return train, val, test


def test_authors_split_and_seeds():
    y = np.random.RandomState(0).randint(0, 3, 200)
    y[:180] = np.repeat([0, 1, 2], 60)  # at least 50 per class
    for seed in (1, 77):
        got = ap.authors_split(np.random.RandomState(seed), y)
        ref = _reference_split(np.random.RandomState(seed), y, 20, 30)
        for g, r in zip(got, ref):
            assert np.array_equal(g, r)
        train, val, test = got
        assert [int((y[train] == c).sum()) for c in range(3)] == [20] * 3
        assert [int((y[val] == c).sum()) for c in range(3)] == [30] * 3
        assert len(set(train) | set(val) | set(test)) == 200
    runs = list(ap.authors_runs(torch.from_numpy(y), splits=2, inits=3))
    split_seeds = np.random.RandomState(42).randint(0, 1000000, 2)
    for k, (s, i, seed, train, val, test) in enumerate(runs):
        assert (s, i) == (k // 3, k % 3)
        state = np.random.RandomState(split_seeds[s])
        ref = _reference_split(state, y, 20, 30)
        assert seed == state.randint(0, 1000000, 3)[i]  # drawn after it
        assert train.dtype == torch.long
        assert np.array_equal(train.numpy(), ref[0])
        assert np.array_equal(test.numpy(), ref[2])


def _a_hat(edge_index, n):
    # graph/utils.py normalize_adj(adj + I): D^-1/2 (A + I) D^-1/2.
    a = sp.coo_matrix((np.ones(edge_index.shape[1]), edge_index.numpy()),
                      shape=(n, n)) + sp.eye(n)
    d = np.asarray(a.sum(1)).ravel() ** -0.5
    return (sp.diags(d) @ a @ sp.diags(d)).toarray()


def _authors_laplacian(edge_index, n):
    # graph/train.py: L = diag(A_hat 1) - A_hat.
    a_hat = _a_hat(edge_index, n)
    return np.diag(a_hat.sum(1)) - a_hat


def test_authors_coin_by_hand(tmp_path):
    torch.manual_seed(0)
    n, f = 6, 5
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 0, 2],
                               [1, 0, 2, 1, 3, 2, 4, 3, 5, 4, 2, 0]])
    x = torch.rand(n, f)
    model = ap.AuthorsCOIN(f, 3, K=4, sigma2=0.3)
    out = model(x, edge_index)
    lin, cls = model.linear, model.classifier
    u = F.softmax(cls(x + F.relu(lin(x))), dim=1).double().detach().numpy()
    lap = _authors_laplacian(edge_index, n)
    for _ in range(4):
        u = u - 0.3 * lap @ u
    assert np.allclose(out.detach().numpy(), np.log(u), atol=1e-5)
    # No dropout: training and evaluation give the same output.
    model.eval()
    assert torch.allclose(model(x, edge_index), out, atol=1e-6)
    assert torch.allclose(model(x.to_sparse(), edge_index), out, atol=1e-6)
    assert [type(m).__name__ for m in model.children()][:2] == [
        'Linear', 'Linear'] and model.linear.weight.shape == (f, f)


def test_authors_coin_nan_and_safe_variant():
    # A star with 8 leaves: 1 - sigma2 * L_00 < 0 for sigma2 = 0.9, so an
    # explicit step makes probabilities negative: log gives NaN (kept, as
    # the authors' torch.log), the fixed variant clamps.
    edge_index = torch.tensor([[0] * 8 + list(range(1, 9)),
                               list(range(1, 9)) + [0] * 8])
    x = torch.eye(9)
    theirs = ap.AuthorsCOIN(9, 2, K=1, sigma2=0.9)
    fixed = ap.AuthorsCOIN(9, 2, K=1, sigma2=0.9, safe_log=True)
    for model in (theirs, fixed):  # the hub in class 0, the leaves in 1
        with torch.no_grad():
            model.linear.weight.zero_()
            model.linear.bias.zero_()
            model.classifier.bias.zero_()
            model.classifier.weight.copy_(torch.stack(
                [10 * x[0], 10 * (1 - x[0])]))
    a, b = theirs(x, edge_index), fixed(x, edge_index)
    assert torch.isnan(a).any() and torch.isfinite(b).all()
    ok = ~torch.isnan(a)
    assert torch.allclose(a[ok], b[ok])


def test_baselines_settings():
    gcn, kw = ap.build_model('GCN', 10, 3)
    assert gcn.dropout == 0.8 and gcn.conv1.out_channels == 64
    assert kw == dict(lr=0.01, weight_decay=5e-4)
    mlp, _ = ap.build_model('MLP', 10, 3)
    assert mlp.fc1.out_features == 64
    gat, _ = ap.build_model('GAT', 10, 3)
    assert gat.conv1.heads == 8 and gat.conv1.out_channels == 64
    assert gat.conv1.dropout == 0.3 and gat.conv2.heads == 1
    appnp, kw = ap.build_model('APPNP', 10, 3)
    assert appnp.fc1.bias is None and appnp.fc2.bias is None
    groups = kw['param_groups']
    assert [g['weight_decay'] for g in groups] == [5e-3, 0.]
    assert [p for g in groups for p in g['params']] == [appnp.fc1.weight,
                                                        appnp.fc2.weight]
    # The propagation: 10 power iterations with A_hat = D^-1/2 (A+I) D^-1/2.
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    x = torch.rand(4, 10)
    appnp.eval()
    out = appnp(x, edge_index)
    h = appnp.fc2(appnp.fc1(x).relu()).double().detach().numpy()
    a_hat = _a_hat(edge_index, 4)
    z = h
    for _ in range(10):
        z = 0.9 * a_hat @ z + 0.1 * h
    expected = torch.from_numpy(z).log_softmax(dim=-1).float()
    assert torch.allclose(out, expected, atol=1e-5)
    with pytest.raises(ValueError, match='Unknown model'):
        ap.build_model('SGC', 10, 3)


def test_last_improvement_by_hand():
    sel = ap.LastImprovement()
    seq = [(1.0, 0.5), (0.9, 0.4), (0.95, 0.5), (0.95, 0.6), (0.8, 0.1),
           (float('nan'), 0.2), (0.85, 0.55)]
    for e, (loss, acc) in enumerate(seq, 1):
        sel(e, dict(val_loss=loss, val_acc=acc, test_acc=e / 10))
    # Kept: epochs 1 (first), 2 (loss fell), 4 (acc rose), 5 (loss fell);
    # 3 ties, 6 is NaN, 7 neither.
    assert sel.kept['epoch'] == 5 and sel.kept['test_acc'] == 0.5
    assert (sel.loss_min, sel.acc_max) == (0.8, 0.6)


def _toy(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 6, generator=g) + y[:, None].float()
    src = torch.arange(n)
    ei = torch.stack([torch.cat([src, (src + 2) % n]),
                      torch.cat([(src + 2) % n, src])])
    from torch_geometric.data import Data
    data = Data(x=x, edge_index=ei, y=y)
    idx = torch.randperm(n, generator=g)
    return data, idx[:10], idx[10:20], idx[20:]


def test_run_keeps_the_authors_epoch():
    data, train, val, test = _toy()
    torch.manual_seed(0)
    model, kw = ap.build_model('MLP', 6, 2)
    seen = []
    res = ap.run(lambda *a, **k: fit(*a, progress=_spy(k, seen), **k),
                 model, data, train, val, test, epochs=300, patience=5, **kw)
    sel = ap.LastImprovement()
    for e, m in seen:
        sel(e, m)
    assert res['epoch'] == sel.kept['epoch']
    assert res['test_acc'] == sel.kept['test_acc']
    if res['epochs'] < 300:  # stopped by patience, 5 epochs after it
        assert res['epochs'] == res['epoch'] + 5
    assert res['nan_epoch'] is None


def _spy(kwargs, seen):
    inner = kwargs.pop('progress')

    def progress(epoch, metrics):
        seen.append((epoch, dict(metrics)))
        inner(epoch, metrics)
    return progress


class _Poisoned(torch.nn.Module):
    # Becomes NaN at its third training forward pass.
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(6, 2)
        self.calls = 0

    def forward(self, x, edge_index):
        out = self.lin(x).log_softmax(dim=-1)
        if self.training:
            self.calls += 1
            if self.calls >= 3:
                out = out * float('nan')
        return out


def test_run_nan_keeps_last_model():
    data, train, val, test = _toy()
    res = ap.run(fit, _Poisoned(), data, train, val, test, epochs=50,
                 patience=5)
    assert res['nan_epoch'] == 3 and res['epochs'] == 3
    assert res['epoch'] in (1, 2) and math.isfinite(res['time_per_epoch'])


def _two_classes(folder):
    # 120 nodes, 2 classes of 60, a connected circulant graph.
    y = np.repeat([0, 1], 60)
    n = y.size
    rng = np.random.RandomState(0)
    adj = sp.lil_matrix((n, n))
    for i in range(n):
        adj[i, (i + 1) % n] = 1
        adj[i, (i + 7) % n] = 1
    attr = (rng.rand(n, 12) < 0.3) | (np.eye(n, 12) > 0)
    attr[:, 0] = y  # an informative word
    write_npz(folder / 'citeseer.npz', adj, attr.astype(float), y)
    return n


def test_records_of_tiny(tmp_path):
    n = _two_classes(tmp_path)
    data = ap.load_authors(str(tmp_path), 'CiteSeer')
    assert data.num_nodes == n
    recs = ap.records_of(fit, data, ['COIN', 'COIN-safe', 'GCN', 'APPNP'],
                         splits=2, inits=1, epochs=4, K=2, sigma2=0.3)
    assert [r['split'] for r in recs['GCN']] == [0, 1]
    for name, rs in recs.items():
        for r in rs:
            assert 0 <= r['test_acc'] <= 1 and r['epochs'] <= 4
            # Test nodes: 120 - 2 * 50.
            assert abs(r['test_acc'] * 20 - round(r['test_acc'] * 20)) < 1e-6
    # COIN and its fixed variant share the seed: same start, same kept run
    # while no probability is negative.
    assert recs['COIN'][0]['epoch'] == recs['COIN-safe'][0]['epoch']


@pytest.mark.parametrize('name,nodes', [('Cora', 2485), ('CiteSeer', 2110)])
def test_real_component_sizes(shared, name, nodes):
    data = ap.load_authors(shared('npz'), name)
    assert data.num_nodes == nodes


def test_planetoid_authors_setting(bench, tmp_path, capsys):
    planetoid = bench('planetoid')
    npz = tmp_path / 'npz'
    npz.mkdir()
    _two_classes(npz)
    out = tmp_path / 'out'
    res = planetoid.main([
        '--setting', 'authors', '--datasets', 'CiteSeer', '--npz-root',
        str(npz), '--splits', '2', '--seeds', '1', '--epochs', '3',
        '--models', 'COIN', 'GCN', 'APPNP', 'SGC', '--K', '2', '--out-dir',
        str(out), '--threads', '1'])
    stem = 'planetoid_authors_CiteSeer_COIN-GCN-APPNP_2splits_1seeds'
    saved = json.loads((out / f'{stem}.json').read_text())
    assert saved['setting'] == 'authors' and saved['K'] == 2
    assert saved['sigma2'] == 0.35 and saved['epochs'] == 3
    assert set(saved['summary']) == {'COIN', 'GCN', 'APPNP'}  # no SGC
    assert saved['summary']['GCN']['test_acc']['n'] == 2
    assert set(res['CiteSeer']) == {'authors'}
    md = (out / f'{stem}.md').read_text()
    assert "the COIN authors' setting" in md and md.count('\n| ') == 4
    assert capsys.readouterr().out.splitlines()[-1] == \
        f"wrote {out / f'{stem}.md'}"
