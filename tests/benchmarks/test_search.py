import json


def test_search_tiny(bench, planetoid_root, tmp_path):
    search = bench('search')
    config = tmp_path / 'coin.json'
    config.write_text(json.dumps({
        'defaults': {'hidden_channels': 16, 'dropout': 0.5},
        'datasets': {'Cora': {'K': 1, 'sigma2': 0.1}},
    }))
    out = search.main([
        '--datasets', 'Cora', '--K', '4', '8', '--sigma2', '0.1', '1e12',
        '--splits', '1', '--epochs', '3', '--root', planetoid_root,
        '--config', str(config), '--out-dir', str(tmp_path), '--threads', '1'
    ])
    saved = json.loads(config.read_text())
    assert saved == out
    chosen = saved['datasets']['Cora']
    grid = json.loads((tmp_path / 'search_Cora.json').read_text())['grid']
    finite = [g for g in grid if g['val_acc'] == g['val_acc']]
    # sigma2 = 1e12 blows the explicit scheme up: it is never chosen.
    assert len(grid) == 4 and all(g['sigma2'] == 0.1 for g in finite)
    best = max(g['val_acc'] for g in finite)
    assert chosen['val_acc'] == round(best, 4) and chosen['sigma2'] == 0.1
    assert chosen['command'].startswith('python benchmarks/search.py')
    assert saved['defaults']['hidden_channels'] == 16
