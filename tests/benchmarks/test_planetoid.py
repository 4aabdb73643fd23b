import json
import math


def test_planetoid_tiny(bench, datasets_root, tmp_path, capsys):
    planetoid = bench('planetoid')
    out = tmp_path / 'out'
    res = planetoid.main([
        '--datasets', 'Cora', '--splits', '1', '--seeds', '1', '--epochs',
        '3', '--root', datasets_root, '--out-dir', str(out), '--threads',
        '1'
    ])
    # Named by what it holds: data set, protocol, models, runs.
    stem = ('planetoid_paper_Cora_COIN-ResNet-MLP-GCN-GAT-APPNP-SGC-GCNII_'
            '1splits_1seeds')
    with open(out / f'{stem}.json') as f:
        saved = json.load(f)
    assert saved['protocol'] == 'paper' and saved['num_nodes'] == 2485
    assert set(saved['summary']) == set(res['Cora']['summary']) == {
        'COIN', 'ResNet', 'MLP', 'GCN', 'GAT', 'APPNP', 'SGC', 'GCNII'}
    for name, s in saved['summary'].items():
        assert 0 <= s['test_acc']['mean'] <= 1
        assert math.isfinite(s['time_per_epoch']) and s['time_per_epoch'] > 0
        assert s['epochs'] <= 3
        run = saved['runs'][name][0]
        # Test accuracy over the 2485 - 7 * 50 test nodes of the split:
        assert abs(run['test_acc'] * 2135 - round(run['test_acc'] * 2135)) \
            < 1e-3
    md = (out / f'{stem}.md').read_text()
    assert 'paper protocol' in md and md.count('\n| ') == 9
    assert capsys.readouterr().out.splitlines()[-2:] == [
        f"wrote {out / f'{stem}.json'}",
        f"wrote {out / f'{stem}.md'}"]


def test_planetoid_public_tiny(bench, datasets_root, tmp_path):
    planetoid = bench('planetoid')
    res = planetoid.main([
        '--datasets', 'Cora', '--protocol', 'public', '--seeds', '2',
        '--epochs', '2', '--models', 'COIN', 'SGC', '--root',
        datasets_root, '--out-dir', str(tmp_path), '--threads', '1'
    ])
    s = res['Cora']['summary']
    assert set(s) == {'COIN', 'SGC'} and s['COIN']['test_acc']['n'] == 2
    assert (tmp_path / 'planetoid_public_Cora_COIN-SGC_2seeds.md').exists()


def _tiny_cora_npz(folder):
    # A gnn-benchmark file: 7 classes x 55 nodes on a connected circulant
    # graph, 20 binary features (the class is one of them).
    import numpy as np
    import scipy.sparse as sp
    y = np.repeat(np.arange(7), 55)
    n = y.size
    rows = np.arange(n)
    adj = sp.csr_matrix((np.ones(2 * n, dtype=np.float32),
                         (np.r_[rows, rows], np.r_[(rows + 1) % n,
                                                   (rows + 5) % n])),
                        shape=(n, n))
    attr = (np.random.RandomState(0).rand(n, 20) < 0.2)
    attr[rows, y] = True
    attr = sp.csr_matrix(attr.astype(np.float32))
    np.savez(folder / 'cora.npz', adj_data=adj.data, adj_indices=adj.indices,
             adj_indptr=adj.indptr, adj_shape=np.array(adj.shape),
             attr_data=attr.data, attr_indices=attr.indices,
             attr_indptr=attr.indptr, attr_shape=np.array(attr.shape),
             labels=y.astype(np.int8))


def test_planetoid_authors_vs_ours(bench, datasets_root, tmp_path):
    planetoid = bench('planetoid')
    _tiny_cora_npz(tmp_path)
    out = tmp_path / 'out'
    res = planetoid.main([
        '--setting', 'authors', 'ours', '--datasets', 'Cora', '--npz-root',
        str(tmp_path), '--splits', '2', '--seeds', '1', '--epochs', '2',
        '--models', 'COIN', 'COIN-safe', 'GCN', '--root', datasets_root,
        '--out-dir', str(out), '--threads', '1'])
    assert set(res['Cora']) == {'authors', 'ours'}
    assert set(res['Cora']['authors']['summary']) == {'COIN', 'COIN-safe',
                                                      'GCN'}
    assert set(res['Cora']['ours']['summary']) == {'COIN', 'GCN'}
    assert res['Cora']['ours']['num_nodes'] == 2485
    assert res['Cora']['authors']['num_nodes'] == 385
    saved = json.loads(
        (out / 'planetoid_authors_vs_paper_Cora_COIN-COIN-safe-GCN_'
         '2splits_1seeds.json').read_text())
    a = [r['test_acc'] for r in res['Cora']['authors']['runs']['GCN']]
    b = [r['test_acc'] for r in res['Cora']['ours']['runs']['GCN']]
    assert math.isclose(saved['differences']['GCN']['diff'],
                        sum(b) / 2 - sum(a) / 2, abs_tol=1e-12)
    md = (out / 'planetoid_authors_vs_paper_Cora_COIN-COIN-safe-GCN_'
          '2splits_1seeds.md').read_text()
    assert md.count('\n| ') == 4 and '| COIN-safe |' in md
    assert (out / 'planetoid_paper_Cora_COIN-GCN_2splits_1seeds.json'
            ).exists()
    assert (out / 'planetoid_authors_Cora_COIN-COIN-safe-GCN_'
            '2splits_1seeds.json').exists()


def test_welch_interval(bench):
    from scipy.stats import ttest_ind
    planetoid = bench('planetoid')
    a, b = [0.80, 0.82, 0.81, 0.79], [0.83, 0.85, 0.80, 0.84, 0.86]
    d, lo, hi = planetoid.welch(a, b)
    ci = ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert math.isclose(d, sum(b) / 5 - sum(a) / 4)
    assert math.isclose(lo, ci.low) and math.isclose(hi, ci.high)
    assert math.isnan(planetoid.welch([0.8], b)[1])


def _tiny_heterophilous(root):
    # npz/chameleon_filtered.npz: 3 classes x 20 nodes on a ring with
    # chords, one-hot-ish features, 10 fixed splits.
    import numpy as np
    n = 60
    y = np.arange(n) % 3
    rng = np.random.RandomState(0)
    x = (rng.rand(n, 8) < 0.3).astype(np.float32)
    x[np.arange(n), y] = 1
    edges = np.array([(i, (i + k) % n) for i in range(n) for k in (1, 3)])
    masks = np.zeros((3, 10, n), dtype=bool)
    for s in range(10):
        perm = np.random.RandomState(s).permutation(n)
        for k, part in enumerate(np.split(perm, [20, 40])):
            masks[k, s, part] = True
    (root / 'npz').mkdir(parents=True)
    np.savez(root / 'npz' / 'chameleon_filtered.npz', node_features=x,
             node_labels=y, edges=edges, train_masks=masks[0],
             val_masks=masks[1], test_masks=masks[2])


def test_planetoid_stacked_passes(bench, tmp_path):
    # The stacked models train all runs in one pass or --runs-per-pass at a
    # time; without dropout the chunking leaves every run's result as it is.
    planetoid = bench('planetoid')
    _tiny_heterophilous(tmp_path / 'data')
    config = tmp_path / 'config.json'
    config.write_text(json.dumps({'models': {
        'COIN': {'defaults': {'hidden_channels': 8, 'dropout': 0.0},
                 'datasets': {'chameleon_filtered': {
                     'K': 2, 'sigma2': 0.2, 'weight_decay': 1e-3}}},
        'APPNP': {'defaults': {}, 'datasets': {'chameleon_filtered': {
            'K': 3, 'alpha': 0.2, 'dropout': 0.0, 'hidden_channels': 8}}}}}))
    results = {}
    for per_pass, models in (('2', ['COIN', 'ResNet', 'APPNP', 'GAT']),
                             ('1', ['COIN', 'APPNP'])):
        out = tmp_path / per_pass
        res = planetoid.main([
            '--datasets', 'chameleon_filtered', '--models', *models,
            '--splits', '2', '--seeds', '1', '--epochs', '3',
            '--runs-per-pass', per_pass, '--root', str(tmp_path / 'data'),
            '--config', str(config), '--out-dir', str(out), '--threads',
            '1'])
        results[per_pass] = res = res['chameleon_filtered']
        assert res['completed_runs'] == 2 and set(res['summary']) == set(
            models)
        for name in set(models) - {'GAT'}:
            for run in res['runs'][name]:
                assert run['runs_per_pass'] == int(per_pass)
                assert math.isclose(run['time_per_epoch'] * int(per_pass),
                                    run['pass_time_per_epoch'])
        md = (out / f"planetoid_paper_chameleon_filtered_{'-'.join(models)}_"
              '2splits_1seeds.md').read_text()
        assert 'its 10 fixed splits' in md and 'COIN K=2, sigma2=0.2' in md
    assert [r['split'] for r in results['2']['runs']['GAT']] == [0, 1]
    for name in ('COIN', 'APPNP'):
        for a, b in zip(results['2']['runs'][name],
                        results['1']['runs'][name]):
            assert a['split'] == b['split'] and a['seed'] == b['seed']
            assert math.isclose(a['val_acc'], b['val_acc'], abs_tol=1e-6)
            assert math.isclose(a['test_loss'], b['test_loss'],
                                rel_tol=1e-4)
    coin = results['2']['configs']['COIN']
    assert coin['weight_decay'] == 1e-3 and coin['hidden_channels'] == 8
