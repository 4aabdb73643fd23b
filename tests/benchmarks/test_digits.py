import json
import math

import pytest


@pytest.mark.slow
def test_digits_tiny(tmp_path, capsys, bench):
    result = bench('digits').main(
        ['--splits', '2', '--epochs', '5', '--out-dir', str(tmp_path)])
    methods = [r['method'] for r in result['results']]
    assert methods == ['ResNet', 'COIN', 'LabelPropagation']
    for r in result['results']:
        assert len(r['runs']) == 2
        assert all(math.isfinite(v) and 0 <= v <= 1 for v in r['runs'])
    # Label propagation over the kNN graph is far better than chance:
    assert result['results'][2]['mean'] > 0.8
    with open(tmp_path / 'digits.json') as f:
        assert json.load(f)['num_nodes'] == 1797
    assert '| COIN |' in (tmp_path / 'digits.md').read_text()
    out = capsys.readouterr().out
    assert 'LabelPropagation: test accuracy' in out
    assert out.splitlines()[-2:] == [f"wrote {tmp_path / 'digits.json'}",
                                     f"wrote {tmp_path / 'digits.md'}"]
