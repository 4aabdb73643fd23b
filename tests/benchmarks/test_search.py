import json


def test_search_tiny(bench, planetoid_root, tmp_path):
    search = bench('search')
    config = tmp_path / 'coin.json'
    config.write_text(json.dumps({
        'defaults': {'hidden_channels': 16, 'dropout': 0.5},
        'datasets': {'Cora': {'K': 1, 'sigma2': 0.1}},
    }))
    before = config.read_text()
    out_dir = tmp_path / 'out'
    out = search.main([
        '--datasets', 'Cora', '--K', '4', '8', '--sigma2', '0.1', '1e12',
        '--splits', '1', '--epochs', '3', '--root', planetoid_root,
        '--config', str(config), '--out-dir', str(out_dir), '--threads', '1'
    ])
    # The configuration goes to --out-dir; the input one is left as it was.
    assert config.read_text() == before
    saved = json.loads((out_dir / 'coin.json').read_text())
    assert saved == out
    chosen = saved['datasets']['Cora']
    grid = json.loads((out_dir / 'search_Cora.json').read_text())['grid']
    finite = [g for g in grid if g['val_acc'] == g['val_acc']]
    # sigma2 = 1e12 blows the explicit scheme up: it is never chosen.
    assert len(grid) == 4 and all(g['sigma2'] == 0.1 for g in finite)
    best = max(g['val_acc'] for g in finite)
    assert chosen['val_acc'] == round(best, 4) and chosen['sigma2'] == 0.1
    assert chosen['command'].startswith('python benchmarks/search.py')
    assert saved['defaults']['hidden_channels'] == 16


def test_search_config_out(bench, planetoid_root, tmp_path):
    # --config-out names the file to update, e.g. the committed one.
    config = tmp_path / 'coin_paper_width.json'
    config.write_text(json.dumps({
        'defaults': {'hidden_channels': 8},
        'datasets': {'Cora': {'K': 1, 'sigma2': 0.1}},
    }))
    bench('search').main([
        '--datasets', 'Cora', '--K', '2', '--sigma2', '0.2', '--splits', '1',
        '--epochs', '2', '--root', planetoid_root, '--config', str(config),
        '--config-out', str(config), '--out-dir', str(tmp_path / 'out'),
        '--threads', '1'
    ])
    chosen = json.loads(config.read_text())['datasets']['Cora']
    assert (chosen['K'], chosen['sigma2']) == (2, 0.2)
    assert not (tmp_path / 'out' / 'coin_paper_width.json').exists()
