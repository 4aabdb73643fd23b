import json

import pytest

import reporting


@pytest.mark.slow
def test_planetoid_paper_tiny(bench, datasets_root, tmp_path, capsys):
    planetoid = bench('planetoid')
    out = tmp_path / 'out'
    res = planetoid.main([
        '--datasets', 'Cora', '--splits', '2', '--seeds', '2', '--epochs',
        '3', '--models', 'COIN', 'APPNP', 'GCN', '--sigma2', '0.3', '0.35',
        '--root', datasets_root, '--out-dir', str(out), '--threads', '1'])
    # Named by what it holds: protocol, data set, models, runs.
    stem = 'planetoid_paper_Cora_COINx2-APPNP-GCN_2splits_2seeds'
    saved = json.loads((out / f'{stem}.json').read_text())
    assert saved['num_nodes'] == 2485  # the npz file's largest component
    names = ['COIN s2=0.3', 'COIN s2=0.35', 'APPNP', 'GCN']
    assert list(saved['summary']) == names == list(res['Cora']['summary'])
    for name in names:
        runs = saved['records'][name]
        assert [(r['split'], r['init']) for r in runs] == [
            (0, 0), (0, 1), (1, 0), (1, 1)]
        for r in runs:  # over the 2485 - 7 * 50 test nodes of a split
            assert r['epochs'] <= 3
            assert abs(r['test_acc'] * 2135 - round(r['test_acc'] * 2135)) \
                < 1e-3
    # COIN minus each baseline, paired by split: the mean over splits of
    # the per-split means.
    comps = {(c['coin'], c['other']): c for c in saved['comparisons']}
    assert len(comps) == 4
    c = comps[('COIN s2=0.35', 'GCN')]

    def per_split(name):
        recs = saved['records'][name]
        return [sum(r['test_acc'] for r in recs if r['split'] == s) / 2
                for s in (0, 1)]

    diffs = [a - b for a, b in zip(per_split('COIN s2=0.35'),
                                   per_split('GCN'))]
    assert c['mean'] == pytest.approx(sum(diffs) / 2)
    assert c['n'] == 2 and c['verdict'] == reporting.verdict(c)
    md = (out / f'{stem}.md').read_text()
    assert 'paired by split (2 splits)' in md and 'COIN s2=0.3 | APPNP' in md
    printed = capsys.readouterr().out
    assert printed.splitlines()[-1] == f"wrote {out / f'{stem}.md'}"


@pytest.mark.slow
def test_planetoid_public_bootstrap(bench, datasets_root, tmp_path, capsys):
    planetoid = bench('planetoid')
    res = planetoid.main([
        '--datasets', 'Cora', '--protocol', 'public', '--seeds', '2',
        '--epochs', '2', '--models', 'COIN', 'SGC', '--compare', 'SGC',
        '--root', datasets_root, '--out-dir', str(tmp_path), '--threads',
        '1'])['Cora']
    stem = tmp_path / 'planetoid_public_Cora_COIN-SGC_2seeds'
    saved = json.loads(stem.with_suffix('.json').read_text())
    for name in ('COIN', 'SGC'):
        for r in res['records'][name]:  # the 1,000 public test nodes
            assert len(r['test_correct']) == 1000
            assert sum(r['test_correct']) / 1000 == pytest.approx(
                r['test_acc'])
        # The file keeps each node's accuracy over the seeds, not each run's
        # correctness:
        node = saved['test_node_accuracy'][name]
        assert len(node) == 1000 and sum(node) / 1000 == pytest.approx(
            sum(r['test_acc'] for r in res['records'][name]) / 2, abs=1e-4)
        assert all('test_correct' not in r for r in saved['records'][name])
    c, = res['comparisons']
    assert c['how'] == 'paired bootstrap over test nodes' and c['n'] == 1000
    acc = {m: sum(r['test_acc'] for r in res['records'][m]) / 2
           for m in ('COIN', 'SGC')}
    assert c['mean'] == pytest.approx(acc['COIN'] - acc['SGC'])
    assert c['ci_low'] <= c['mean'] <= c['ci_high']
    assert 'COIN' in capsys.readouterr().out


def test_coin_variants_are_named_by_what_varies(bench):
    planetoid = bench('planetoid')
    args = type('A', (), {})()
    args.sigma2, args.hidden_channels = [0.3], [64]
    assert planetoid.coin_variants(args) == {
        'COIN': dict(sigma2=0.3, hidden_channels=64)}
    args.sigma2, args.hidden_channels = [0.3, 0.35], [64, 0]
    assert list(planetoid.coin_variants(args)) == [
        'COIN s2=0.3 w=64', 'COIN s2=0.3 w=in', 'COIN s2=0.35 w=64',
        'COIN s2=0.35 w=in']
    assert planetoid.coin_variants(args)['COIN s2=0.35 w=in'] == dict(
        sigma2=0.35, hidden_channels=None)


def test_compare_pairs_by_split(bench):
    planetoid = bench('planetoid')
    args = type('A', (), {'protocol': 'paper'})()
    recs = {'COIN': [dict(split=s, test_acc=a) for s, a in
                     [(0, .8), (0, .9), (1, .7), (1, .7), (2, .6), (2, .8)]],
            'GCN': [dict(split=s, test_acc=a) for s, a in
                    [(0, .8), (0, .8), (1, .6), (1, .7), (2, .6), (2, .6)]]}
    c = planetoid.compare(args, recs, 'COIN', 'GCN')
    ref = reporting.summarize([0.05, 0.05, 0.1])
    assert c['mean'] == pytest.approx(ref['mean'])
    assert c['ci_low'] == pytest.approx(ref['ci_low'])
    assert c['verdict'] == reporting.verdict(ref) == 'ties'  # 3 splits


@pytest.mark.slow
def test_planetoid_reuse_combines_processes(bench, datasets_root, tmp_path,
                                            capsys):
    planetoid = bench('planetoid')
    common = ['--datasets', 'Cora', '--splits', '2', '--seeds', '2',
              '--epochs', '3', '--runs-per-pass', '2', '--root',
              datasets_root, '--threads', '1']

    def run(out, *extra):
        return planetoid.main(common + ['--out-dir', str(tmp_path / out),
                                        *extra])['Cora']

    whole = run('whole', '--models', 'COIN', 'APPNP', 'GCN')
    run('a', '--models', 'COIN', 'APPNP')
    run('b', '--models', 'GCN')
    paths = [tmp_path / 'a' / 'planetoid_paper_Cora_COIN-APPNP_2splits_'
             '2seeds.json',
             tmp_path / 'b' / 'planetoid_paper_Cora_GCN_2splits_2seeds.json']
    files = [str(p) for p in paths]
    combined = run('c', '--models', 'COIN', 'APPNP', 'GCN', '--reuse',
                   *files)
    saved = {name: recs for p in paths
             for name, recs in json.loads(p.read_text())['records'].items()}
    for name in ('COIN', 'APPNP', 'GCN'):
        # Taken from the files (timings included), not trained again ...
        assert combined['records'][name] == saved[name]
        # ... and the runs the command trains in one process:
        acc = [r['test_acc'] for r in combined['records'][name]]
        assert acc == [r['test_acc'] for r in whole['records'][name]]
    assert [c['mean'] for c in combined['comparisons']] == pytest.approx(
        [c['mean'] for c in whole['comparisons']])
    # A COIN is known by its configuration: 'COIN' of a one-sigma2 file is
    # 'COIN s2=...' of a two-sigma2 command (and its APPNP is not asked for).
    run('d', '--models', 'COIN', '--sigma2', '0.35')
    other = tmp_path / 'd' / 'planetoid_paper_Cora_COIN_2splits_2seeds.json'
    two = run('e', '--models', 'COIN', '--sigma2', '0.3', '0.35', '--reuse',
              files[0], str(other))
    assert two['records']['COIN s2=0.3'] == saved['COIN']
    assert two['records']['COIN s2=0.35'] == json.loads(
        other.read_text())['records']['COIN']
    # Other runs, or a public split, are refused by name:
    for extra, message in [(['--splits', '3'], '--splits'),
                           (['--runs-per-pass', '4'], '--runs-per-pass'),
                           (['--sigma2', '0.35'],
                            "none of its models (COIN {"),
                           (['--device', 'meta'], '--device'),
                           (['--models', 'GCN'], 'none of its models'),
                           ([files[0]], 'another file gives'),
                           (['--protocol', 'public'], 'paper protocol')]:
        with pytest.raises(SystemExit):
            planetoid.main(common + ['--models', 'COIN', '--reuse',
                                     files[0]] + extra)
        assert message in capsys.readouterr().err
