import json
import math

import pytest
import torch


def test_hide_targets(bench):
    cf = bench('covid_forecast')
    gen = torch.Generator().manual_seed(0)
    mask = cf.hide_targets(10, 50, 0.9, 2, gen)
    assert mask.shape == (10, 50) and mask.sum(0).eq(2).all()
    mask = cf.hide_targets(40, 50, 0.9, 2, gen)
    assert mask.sum(0).eq(4).all()  # 10% of 40 days kept.
    assert not torch.equal(mask[:, 0], mask[:, 1]) or not torch.equal(
        mask[:, 1], mask[:, 2])
    with pytest.raises(ValueError, match='Cannot keep'):
        cf.hide_targets(1, 5, 0.9, 2, gen)


def test_covid_forecast_smoke(tmp_path, bench, shared):
    shared('pandemic_tgnn', 'England')
    cf = bench('covid_forecast')
    res = cf.main(['--days', '24', '--maskings', '1', '--seeds', '1',
                   '--epochs', '5', '--out-dir', str(tmp_path)])
    for method in cf.METHODS:
        assert math.isfinite(res['summary'][method]['test_mse']['mean'])
        assert len(res['runs'][method]) == 1
        assert res['summary'][method]['test_mse']['n'] == 1
    assert res['summary']['Linear regression']['test_mse']['mean'] > 0
    with open(tmp_path / 'covid_forecast.json') as f:
        # One run: the confidence interval is NaN (NaN != NaN, so compare
        # the serialised text).
        assert json.dumps(json.load(f)['summary']) == json.dumps(
            res['summary'])
    assert '| COIN |' in (tmp_path / 'covid_forecast.md').read_text()


def test_covid_forecast_other_country(tmp_path, bench, shared):
    shared('pandemic_tgnn', 'Spain')
    res = bench('covid_forecast').main([
        '--dataset', 'Spain', '--days', '24', '--maskings', '1', '--seeds',
        '1', '--epochs', '3', '--out-dir', str(tmp_path)])
    assert math.isfinite(res['summary']['COIN']['test_mse']['mean'])
    assert (tmp_path / 'covid_forecast_spain.json').is_file()
