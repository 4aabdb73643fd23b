import argparse
import json
import math

import pytest
import torch


def test_coin_steps(bench):
    search = bench('search')
    # Explicit below implicit_from: the fewest steps within the limit.
    assert search.coin_steps(1.0, 0.3, 8, 8) == (4, 0.25, 'explicit')
    assert search.coin_steps(0.6, 0.3, 8, 8) == (2, 0.3, 'explicit')
    assert search.coin_steps(0.1, 0.3, 8, 8) == (1, 0.1, 'explicit')
    # Implicit from implicit_from on, steps of at most implicit_step.
    assert search.coin_steps(8.0, 0.3, 8, 8) == (1, 8.0, 'implicit')
    assert search.coin_steps(32.0, 0.3, 8, 5) == (7, 32 / 7, 'implicit')
    assert search.coin_steps(32.0, 0.3, math.inf, 5)[2] == 'explicit'
    for t in (0.5, 1, 2, 4, 7.9):
        K, sigma2, _ = search.coin_steps(t, 0.347, 8, 8)
        assert sigma2 <= 0.347 and math.isclose(K * sigma2, t)
        assert (K - 1) * 0.347 < t  # no more steps than needed


def test_stability_limit(bench):
    # 2 / the largest eigenvalue of COIN's Laplacian diag(A1) - A, with
    # A = D^-1/2 (A + I) D^-1/2 (dense reference).
    search = bench('search')
    from torch_geometric.data import Data
    from torch_geometric.utils import to_undirected
    edge_index = to_undirected(torch.tensor([[0, 0, 0, 1, 2, 3],
                                             [1, 2, 3, 2, 4, 5]]))
    A = torch.eye(6, dtype=torch.float64)
    A[edge_index[0], edge_index[1]] = 1
    d = A.sum(1).rsqrt()
    A = d.view(-1, 1) * A * d.view(1, -1)
    L = torch.diag(A.sum(1)) - A
    lam = float(torch.linalg.eigvalsh(L)[-1])
    limit = search.stability_limit(Data(edge_index=edge_index, num_nodes=6))
    assert math.isclose(limit, 2 / lam, rel_tol=1e-5)


def _args(**kw):
    defaults = dict(seed=0, budget=5, t=[1, 2], diffuse=['prob', 'logits'],
                    dropout=[0.5], weight_decay=[5e-4, 5e-3],
                    hidden_channels=[8, 16], alpha=[0.1, 0.2],
                    appnp_K=[2, 4])
    defaults.update(kw)
    return argparse.Namespace(**defaults)


def test_sample_grid(bench):
    search = bench('search')
    coin = search.sample_grid(_args(), 'COIN')
    appnp = search.sample_grid(_args(), 'APPNP')
    assert len(coin) == len(appnp) == 5  # the same budget for both
    assert len({json.dumps(c, sort_keys=True) for c in coin}) == 5
    assert set(coin[0]) == {'t', 'diffuse', 'dropout', 'weight_decay',
                            'hidden_channels'}
    assert set(appnp[0]) == {'alpha', 'K', 'dropout', 'weight_decay',
                             'hidden_channels'}
    assert all(c['t'] in (1, 2) and c['hidden_channels'] in (8, 16)
               for c in coin)
    assert search.sample_grid(_args(), 'COIN') == coin  # seeded
    assert search.sample_grid(_args(seed=1), 'COIN') != coin
    whole = search.sample_grid(_args(budget=16), 'COIN')
    assert len({json.dumps(c, sort_keys=True) for c in whole}) == 16
    with pytest.raises(ValueError, match='exceeds the 16 configurations'):
        search.sample_grid(_args(budget=17), 'COIN')


def test_choose(bench):
    search = bench('search')
    nan = float('nan')
    rows = [dict(val_acc=0.7, val_loss=1.0), dict(val_acc=nan, val_loss=nan),
            dict(val_acc=0.8, val_loss=0.9), dict(val_acc=0.8, val_loss=0.5)]
    assert search.choose(rows) is rows[3]
    assert search.choose(rows[1:2]) is None


# The result files are named by what they hold (protocol, data set, models,
# budget, seed, runs):
STEM = 'search_paper_Cora_COIN-APPNP_2configs_seed0_2runs'


def test_search_tiny(bench, datasets_root, tmp_path):
    search = bench('search')
    config = tmp_path / 'search_paper.json'
    config.write_text(json.dumps({'models': {'COIN': {
        'defaults': {}, 'datasets': {'PubMed': {'K': 1, 'sigma2': 0.1}}}}}))
    before = config.read_text()
    out_dir = tmp_path / 'out'
    out = search.main([
        '--datasets', 'Cora', '--budget', '2', '--splits', '2', '--seeds',
        '1', '--epochs', '3', '--t', '0.5', '16', '--implicit-from', '8',
        '--hidden-channels', '8',
        '--root', datasets_root, '--config', str(config), '--out-dir',
        str(out_dir), '--threads', '1'
    ])
    # The configuration goes to --out-dir; the input one is left as it was.
    assert config.read_text() == before
    saved = json.loads((out_dir / 'search_paper.json').read_text())
    assert saved == out and saved['protocol'] == 'paper'
    assert saved['models']['COIN']['datasets']['PubMed'] == {'K': 1,
                                                             'sigma2': 0.1}
    result = json.loads((out_dir / f'{STEM}.json').read_text())
    limit = result['sigma2_max']
    assert 0.3 < limit < 0.4  # Cora: lambda_max about 5.78
    for model in ('COIN', 'APPNP'):
        grid = result['grid'][model]
        assert len(grid) == 2  # the same budget
        chosen = saved['models'][model]['datasets']['Cora']
        best = max(grid, key=lambda r: (r['val_acc'], -r['val_loss']))
        assert chosen['val_acc'] == round(best['val_acc'], 4)
        assert chosen['runs'] == 2
        assert {k: chosen[k] for k in best['config']} == best['config']
        assert chosen['command'].startswith('python benchmarks/search.py')
        for row in grid:
            assert 0 < row['val_acc'] <= 1 and row['epochs'] == 3
            cfg = row['config']
            assert cfg['hidden_channels'] == 8
            if model == 'COIN':
                assert math.isclose(cfg['K'] * cfg['sigma2'], cfg['t'])
                if cfg['t'] == 0.5:
                    assert cfg['scheme'] == 'explicit'
                    assert cfg['sigma2'] <= limit and cfg['K'] == 2
                else:
                    assert (cfg['scheme'], cfg['K']) == ('implicit', 2)
    md = (out_dir / f'{STEM}.md').read_text()
    assert '**COIN** (chosen:' in md and '**APPNP** (chosen:' in md


def test_search_one_run_is_fit(bench, planetoid_root, datasets_root,
                               tmp_path):
    # A configuration's validation accuracy is that of training.fit on the
    # stacked runs (here one run, checked against a single model).
    search, common = bench('search'), bench('common')
    from training import fit
    out = search.main([
        '--datasets', 'Cora', '--models', 'APPNP', '--budget', '1',
        '--splits', '1', '--seeds', '1', '--epochs', '4', '--dropout', '0',
        '--x-layout', 'dense', '--root', datasets_root, '--out-dir',
        str(tmp_path), '--config-out', str(tmp_path / 'c.json'),
        '--threads', '1'])
    chosen = out['models']['APPNP']['datasets']['Cora']
    data = common.load_node_dataset(planetoid_root, 'Cora', 'paper')
    (_, _, seed, *masks), = common.runs(data, 'paper', 1, 1)
    torch.manual_seed(seed)
    cfg = {k: chosen[k] for k in ('K', 'alpha', 'dropout', 'weight_decay',
                                  'hidden_channels')}
    model, kw = common.build_model('APPNP', 'Cora', data.num_features,
                                   data.num_classes, config=cfg)
    res = fit(model, data, *masks, epochs=4, weight_decay=kw['weight_decay'],
              patience=50)
    assert math.isclose(chosen['val_acc'], round(res['val_acc'], 4),
                        abs_tol=1e-4)


def test_search_config_out(bench, datasets_root, tmp_path):
    # --config-out names the file to update, e.g. the committed one.
    config = tmp_path / 'search_public.json'
    config.write_text(json.dumps({'models': {'APPNP': {
        'defaults': {'K': 10},
        'datasets': {'Cora': {'alpha': 0.1}, 'PubMed': {'alpha': 0.3}}}}}))
    search = bench('search')
    search.main([
        '--datasets', 'Cora', '--models', 'APPNP', '--protocol', 'public',
        '--budget', '1', '--seeds', '2', '--epochs', '2', '--alpha', '0.2',
        '--root', datasets_root, '--config', str(config), '--config-out',
        str(config), '--out-dir', str(tmp_path / 'out'), '--threads', '1'
    ])
    saved = json.loads(config.read_text())
    apps = saved['models']['APPNP']['datasets']
    assert apps['Cora']['alpha'] == 0.2 and apps['Cora']['runs'] == 2
    assert apps['PubMed'] == {'alpha': 0.3} and saved['protocol'] == 'public'
    assert not (tmp_path / 'out' / 'search_public.json').exists()
    with pytest.raises(SystemExit):  # a budget beyond a grid
        search.main(['--budget', '1000', '--out-dir', str(tmp_path)])
