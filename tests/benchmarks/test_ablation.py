import json
import math

import pytest
import torch


def test_dirichlet_energy(bench):
    ablation = bench('ablation')
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    adj = torch.tensor([1., 1., 2., 2.])
    u = torch.tensor([[0.], [1.], [3.]])
    # 1/2 * (1 + 1 + 2 * 4 + 2 * 4) / 3 nodes
    assert ablation.dirichlet_energy(u, edge_index, adj) == 3.0


@pytest.mark.slow
def test_ablation_tiny(bench, datasets_root, tmp_path, capsys):
    ablation = bench('ablation')
    res = ablation.main([
        '--K', '0', '4', '--sigma2', '0.1', '1e12', '--seeds', '1',
        '--epochs', '2', '--root', datasets_root, '--out-dir', str(tmp_path),
        '--threads', '1'
    ])
    saved = json.loads((tmp_path / 'ablation_Cora.json').read_text())
    assert saved['config'] == ablation.models.COIN_RECIPE
    assert saved['lambda_max'] > 5  # Cora's 'coin' Laplacian: about 5.78
    grid = {(g['K'], g['sigma2']): g for g in saved['results']['grid']}
    assert grid[(4, 1e12)]['diverged']
    assert not grid[(4, 0.1)]['diverged']
    assert grid[(0, 0.1)]['test_acc'] == grid[(0, 1e12)]['test_acc']
    for part in ('diffuse', 'edges', 'sigma2'):
        for r in saved['results'][part].values():
            assert math.isfinite(r['test_acc'])
    energy = res['smoothing']['energy']  # 2K + 1 = 41 steps of the recipe
    assert len(energy) == 41 and energy[-1] < energy[0]  # heat flow smooths
    assert saved['results']['cost']['time_ratio'][0] == 1.0
    for part in ablation.PARTS:
        assert (tmp_path / f'ablation_Cora_{part}.png').stat().st_size > 1000
    written = [line[len('wrote '):] for line in
               capsys.readouterr().out.splitlines()[-8:]]
    assert written == [str(tmp_path / f'ablation_Cora.{ext}')
                       for ext in ('json', 'md')] + [
        str(tmp_path / f'ablation_Cora_{part}.png')
        for part in ablation.PARTS]
