import json
import math
import os.path as osp

import pytest
import torch

SHARED = osp.join(osp.dirname(osp.abspath(__file__)), '..', '..', '..',
                  'shared', 'datasets')


def test_hide_targets(load_script):
    cf = load_script('examples/covid_forecast.py')
    gen = torch.Generator().manual_seed(0)
    mask = cf.hide_targets(10, 50, 0.9, 2, gen)
    assert mask.shape == (10, 50) and mask.sum(0).eq(2).all()
    mask = cf.hide_targets(40, 50, 0.9, 2, gen)
    assert mask.sum(0).eq(4).all()  # 10% of 40 days kept.
    assert not torch.equal(mask[:, 0], mask[:, 1]) or not torch.equal(
        mask[:, 1], mask[:, 2])
    with pytest.raises(ValueError, match='Cannot keep'):
        cf.hide_targets(1, 5, 0.9, 2, gen)


def test_covid_forecast_example_smoke(tmp_path, load_script):
    folder = osp.join(SHARED, 'pandemic_tgnn', 'England')
    if not osp.isdir(folder):
        pytest.skip(f'{folder} is not available')
    cf = load_script('examples/covid_forecast.py')
    res = cf.main(['--days', '24', '--maskings', '1', '--inits', '1',
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


def test_covid_forecast_example_other_country(tmp_path, load_script):
    folder = osp.join(SHARED, 'pandemic_tgnn', 'Spain')
    if not osp.isdir(folder):
        pytest.skip(f'{folder} is not available')
    res = load_script('examples/covid_forecast.py').main([
        '--country', 'Spain', '--days', '24', '--maskings', '1', '--inits',
        '1', '--epochs', '3', '--out-dir', str(tmp_path)])
    assert math.isfinite(res['summary']['COIN']['test_mse']['mean'])
    assert (tmp_path / 'covid_forecast_spain.json').is_file()
