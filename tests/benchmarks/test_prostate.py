import json
import math

import torch


def test_scores(bench):
    pr = bench('prostate')
    s = pr.scores(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1,
                                                                    1]))
    assert s['accuracy'] == 0.75 and s['roc_auc'] == 0.75
    assert abs(s['average_precision'] - (1 + 2 / 3) / 2) < 1e-12


def test_prostate_smoke(tmp_path, bench, shared):
    shared('prostate', 'Prostate_GE.mat')
    pr = bench('prostate')
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
