import json
import math
import re
import statistics

import numpy as np
import pytest
import scipy.stats
import torch

import reporting

from reporting import (
    bold_best,
    fmt_acc,
    fmt_mean,
    fmt_mib,
    machine_info,
    markdown_table,
    save,
    stamp,
    summarize,
    summarize_runs,
    write_results,
    wrote,
)


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


def test_markdown_table():
    text = markdown_table(['a', 'b'], [[1, 'x'], [2.5, None]])
    assert text == '| a | b |\n|---|---|\n| 1 | x |\n| 2.5 | None |\n'
    assert markdown_table(['a'], []) == '| a |\n|---|\n'
    with pytest.raises(ValueError, match='Row 1 has 1 cells, the header 2'):
        markdown_table(['a', 'b'], [[1, 2], [3]])


def test_cell_formats():
    s = summarize([0.5, 0.7])
    assert fmt_mean(s) == f"0.6000 ± {s['std']:.4f}"
    assert fmt_mean(s, 'ci95', 100, 1) == f"60.0 ± {100 * s['ci95']:.1f}"
    assert fmt_acc(s) == (f"60.00 ± {100 * s['std']:.2f} "
                          f"[{100 * s['ci_low']:.2f}, "
                          f"{100 * s['ci_high']:.2f}]")
    assert fmt_mib(None) == '-' and fmt_mib(3 * 2**20 // 2) == '1.5'
    cells = bold_best(['a', 'b', 'c'], [0.2, 0.9, 0.9])
    assert cells == ['a', '**b**', '**c**']
    assert bold_best(['a', 'b'], [0.2, 0.9], best=min) == ['**a**', 'b']


def test_summarize_runs():
    runs = {'COIN': [
        dict(test_acc=0.8, val_acc=0.7, time_per_epoch=0.1, epochs=10,
             peak_memory=100),
        dict(test_acc=0.6, val_acc=0.5, time_per_epoch=0.3, epochs=30,
             peak_memory=300),
        dict(test_acc=0.7, val_acc=0.6, time_per_epoch=0.2, epochs=20,
             peak_memory=None),
    ], 'GCN': [dict(test_acc=0.5, val_acc=0.5, time_per_epoch=0.1,
                    epochs=5, peak_memory=None)]}
    s = summarize_runs(runs)
    assert math.isclose(s['COIN']['test_acc']['mean'], 0.7)
    assert s['COIN']['val_acc']['n'] == 3
    assert s['COIN']['time_per_epoch'] == 0.2 and s['COIN']['epochs'] == 20
    assert s['COIN']['peak_memory'] == 300
    assert s['GCN']['peak_memory'] is None


def test_wrote(capsys):
    wrote('a.json', 'b.md')
    assert capsys.readouterr().out == 'wrote a.json\nwrote b.md\n'


def test_save_writes_then_says_so(tmp_path, capsys):
    png = tmp_path / 'plot.png'
    png.write_bytes(b'x')
    payload = save(str(tmp_path), 'exp', {'a': 1}, lambda p: f"{p['a']}\n",
                   str(png))
    assert payload['a'] == 1 and payload == stamp(dict(payload))
    assert json.loads((tmp_path / 'exp.json').read_text()) == payload
    assert (tmp_path / 'exp.md').read_text() == '1\n'
    assert capsys.readouterr().out.splitlines() == [
        f"wrote {tmp_path / 'exp.json'}", f"wrote {tmp_path / 'exp.md'}",
        f'wrote {png}']
    with pytest.raises(TypeError, match='payload'):
        stamp([1])


def test_single_run_has_no_interval_in_tables():
    from reporting import fmt_acc, fmt_mean, summarize
    s = summarize([0.82])
    assert fmt_acc(s) == '82.00 (1 run)'  # not "[nan, nan]"
    assert fmt_mean(s, 'ci95', scale=100, digits=2) == '82.00 (1 run)'
    s = summarize([0.8, 0.9])
    assert 'nan' not in fmt_acc(s) and fmt_acc(s).startswith('85.00 ± 7.07')


def test_paired_is_the_t_interval_of_the_differences():
    a, b = [0.8, 0.7, 0.9, 0.85], [0.75, 0.7, 0.8, 0.8]
    s = reporting.paired(a, b)
    d = [0.05, 0.0, 0.1, 0.05]
    half = 3.182446305284263 * statistics.stdev(d) / 2  # t(0.975, 3)
    assert s['mean'] == pytest.approx(0.05)
    assert s['ci_high'] - s['mean'] == pytest.approx(half)
    assert reporting.verdict(s) == 'ties'
    assert reporting.verdict(reporting.paired([1., 1.1, 1.2],
                                              [0., 0.1, 0.1])) == 'wins'
    assert reporting.verdict(reporting.paired([0., 0.1, 0.1],
                                              [1., 1.1, 1.2])) == 'loses'
    with pytest.raises(ValueError, match='as many values'):
        reporting.paired([1.], [1., 2.])


def test_bootstrap_paired():
    gen = torch.Generator().manual_seed(0)
    a = (torch.rand(2000, generator=gen) < 0.8).double()
    same = reporting.bootstrap_paired(a, a)
    assert same['mean'] == same['ci_low'] == same['ci_high'] == 0
    # b is a with 100 of its correct nodes wrong: +5 points, and every
    # resample keeps a >= b.
    b = a.clone()
    b[a.nonzero().view(-1)[:100]] = 0
    s = reporting.bootstrap_paired(a, b)
    assert s['mean'] == pytest.approx(0.05) and s['n'] == 2000
    assert 0 < s['ci_low'] < 0.05 < s['ci_high']
    # About the normal interval of a mean of 0/1 differences:
    half = 1.96 * math.sqrt(0.05 * 0.95 / 2000)
    assert s['ci_high'] - s['ci_low'] == pytest.approx(2 * half, rel=0.1)
    assert reporting.fmt_diff(s).startswith('+5.00 [')
    with pytest.raises(ValueError, match='same non-empty test set'):
        reporting.bootstrap_paired(a, a[:10])
