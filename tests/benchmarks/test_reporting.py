import json
import math
import re

import numpy as np
import pytest
import scipy.stats
import torch

from torch_geometric_coin.utils import machine_info, summarize, write_results


def test_summarize_hand_computed():
    s = summarize([1, 2, 3, 4])
    # mean 2.5; s^2 = (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5 / 3;
    # t_{0.975, 3} = 3.182446; half-width = 3.182446 * sqrt(5/3) / 2.
    assert s['n'] == 4
    assert s['mean'] == 2.5
    assert math.isclose(s['std'], math.sqrt(5 / 3), rel_tol=1e-12)
    assert math.isclose(s['ci95'], 2.0542603, rel_tol=1e-6)
    assert math.isclose(s['ci_low'], 2.5 - 2.0542603, rel_tol=1e-6)
    assert math.isclose(s['ci_high'], 2.5 + 2.0542603, rel_tol=1e-6)


def test_summarize_against_scipy():
    rng = np.random.default_rng(0)
    for n in [2, 7, 1000]:
        x = rng.normal(3., 2., n)
        s = summarize(torch.from_numpy(x))
        low, high = scipy.stats.t.interval(0.95, n - 1, loc=x.mean(),
                                           scale=scipy.stats.sem(x))
        assert math.isclose(s['mean'], x.mean(), rel_tol=1e-12)
        assert math.isclose(s['std'], x.std(ddof=1), rel_tol=1e-12)
        assert math.isclose(s['ci_low'], low, rel_tol=1e-9)
        assert math.isclose(s['ci_high'], high, rel_tol=1e-9)
        assert math.isclose(s['ci95'], (high - low) / 2, rel_tol=1e-9)
    # Many episodes: the normal approximation 1.96 s / sqrt(n).
    assert abs(s['ci95'] - 1.96 * x.std(ddof=1) / math.sqrt(1000)) < 1e-3


def test_summarize_single_value_and_errors():
    s = summarize([0.7])
    assert s['mean'] == 0.7 and s['std'] == 0. and s['n'] == 1
    assert math.isnan(s['ci95'])
    assert math.isnan(s['ci_low']) and math.isnan(s['ci_high'])
    with pytest.raises(ValueError, match='at least one'):
        summarize([])
    with pytest.raises(ValueError, match='finite'):
        summarize([1., float('nan')])


def test_machine_info():
    info = machine_info()
    assert f'{__import__("os").cpu_count()} CPUs' in info
    assert f'torch {torch.__version__}' in info


def test_write_results(tmp_path):
    payload = {'summary': summarize([0.5, 0.75]), 'date': '2000-01-01'}
    json_path, md_path = write_results(str(tmp_path / 'out'), 'exp', payload,
                                       '| a |\n|---|\n| 1 |\n')
    assert json_path == str(tmp_path / 'out' / 'exp.json')
    assert md_path == str(tmp_path / 'out' / 'exp.md')
    with open(json_path) as f:
        loaded = json.load(f)
    assert loaded == payload
    assert loaded['date'] == '2000-01-01'  # Kept where given.
    assert loaded['machine'] == machine_info()
    assert loaded['summary']['mean'] == 0.625
    assert (tmp_path / 'out' / 'exp.md').read_text() == '| a |\n|---|\n| 1 |\n'

    # A Markdown builder sees the completed payload:
    payload = {'x': 1}
    write_results(str(tmp_path), 'b', payload,
                  lambda p: f"{p['machine']}; {p['date']}\n")
    assert re.fullmatch(r'\d{4}-\d{2}-\d{2}', payload['date'])
    assert (tmp_path / 'b.md').read_text() == \
        f"{payload['machine']}; {payload['date']}\n"
    with pytest.raises(TypeError, match='payload'):
        write_results(str(tmp_path), 'c', [1], '')
