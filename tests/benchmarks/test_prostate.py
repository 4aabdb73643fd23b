import json
import math
import os.path as osp

import pytest
import torch

SHARED = osp.join(osp.dirname(osp.abspath(__file__)), '..', '..', '..',
                  'shared', 'datasets')


def test_random_split_and_scores(load_script):
    pr = load_script('examples/prostate.py')
    y = torch.tensor([0] * 30 + [1] * 25)
    gen = torch.Generator().manual_seed(0)
    train, val, test = pr.random_split(y, 10, 5, gen)
    assert int(train.sum()) == 20 and int(val.sum()) == 10
    assert int((train & (y == 1)).sum()) == 10
    assert not bool((train & val).any() or (train & test).any())
    assert int(test.sum()) == 25
    s = pr.scores(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1,
                                                                    1]))
    assert s['accuracy'] == 0.75 and s['roc_auc'] == 0.75
    assert abs(s['average_precision'] - (1 + 2 / 3) / 2) < 1e-12
    with pytest.raises(ValueError, match='only'):
        pr.random_split(y, 20, 10, gen)


def test_prostate_example_smoke(tmp_path, load_script):
    file = osp.join(SHARED, 'prostate', 'Prostate_GE.mat')
    if not osp.isfile(file):
        pytest.skip(f'{file} is not available')
    pr = load_script('examples/prostate.py')
    res = pr.main(['--splits', '1', '--epochs', '3', '--out-dir',
                   str(tmp_path)])
    for method in pr.METHODS:
        for metric in pr.METRICS:
            v = res['summary'][method][metric]['mean']
            assert math.isfinite(v) and 0 <= v <= 1
    with open(tmp_path / 'prostate.json') as f:
        # One run: the confidence interval is NaN (NaN != NaN, so compare
        # the serialised text).
        assert json.dumps(json.load(f)['summary']) == json.dumps(
            res['summary'])
    assert '| COIN |' in (tmp_path / 'prostate.md').read_text()
