import json


def test_regression_tiny(tmp_path, bench, capsys):
    regression = bench('regression')
    payload = regression.main([
        '--rev', 'HEAD', '--sizes', '300:1200:4', '--K', '3', '--rounds',
        '1', '--repeats', '1', '--out-dir', str(tmp_path)
    ])
    assert len(payload['seconds']) == 3  # explicit x 2, implicit
    for here, rev in payload['seconds'].values():
        assert 0 < here < 60 and 0 < rev < 60
    saved = json.loads((tmp_path / 'regression.json').read_text())
    assert saved['rev'] == 'HEAD' and 'this / rev' in (
        tmp_path / 'regression.md').read_text()
    assert f"wrote {tmp_path / 'regression.md'}" in capsys.readouterr().out
