import json

import pytest


@pytest.mark.slow
def test_regression_tiny(tmp_path, bench, capsys):
    regression = bench('regression')
    payload = regression.main([
        '--rev', 'HEAD', '--sizes', '300:1200:4', '--K', '3', '--rounds',
        '1', '--repeats', '1', '--out-dir', str(tmp_path)
    ])
    assert len(payload['seconds']) == 3  # explicit x 2, implicit
    for here, rev in payload['seconds'].values():
        assert 0 < here < 60 and 0 < rev < 60
    stem = tmp_path / f"regression_{payload['rev']}"
    saved = json.loads(stem.with_suffix('.json').read_text())
    assert saved['rev'] == payload['rev'] != 'HEAD'
    assert 'this / rev' in stem.with_suffix('.md').read_text()
    assert f"wrote {stem}.md" in capsys.readouterr().out
