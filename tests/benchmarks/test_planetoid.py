import json
import math


def test_planetoid_tiny(bench, planetoid_root, tmp_path, capsys):
    planetoid = bench('planetoid')
    out = tmp_path / 'out'
    res = planetoid.main([
        '--datasets', 'Cora', '--splits', '1', '--seeds', '1', '--epochs',
        '3', '--root', planetoid_root, '--out-dir', str(out), '--threads',
        '1'
    ])
    with open(out / 'planetoid_paper_Cora.json') as f:
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
    md = (out / 'planetoid_paper_Cora.md').read_text()
    assert 'paper protocol' in md and md.count('\n| ') == 9
    assert capsys.readouterr().out.splitlines()[-2:] == [
        f"wrote {out / 'planetoid_paper_Cora.json'}",
        f"wrote {out / 'planetoid_paper_Cora.md'}"]


def test_planetoid_public_tiny(bench, planetoid_root, tmp_path):
    planetoid = bench('planetoid')
    res = planetoid.main([
        '--datasets', 'Cora', '--protocol', 'public', '--seeds', '2',
        '--epochs', '2', '--models', 'COIN', 'SGC', '--root',
        planetoid_root, '--out-dir', str(tmp_path), '--threads', '1'
    ])
    s = res['Cora']['summary']
    assert set(s) == {'COIN', 'SGC'} and s['COIN']['test_acc']['n'] == 2
    assert (tmp_path / 'planetoid_public_Cora.md').exists()
