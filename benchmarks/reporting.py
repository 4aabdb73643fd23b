"""The one owner of the benchmarks' results: summaries of repeated runs
(:func:`summarize`, :func:`summarize_runs`), the Markdown table
(:func:`markdown_table`) and its cell formats, the result files
(:func:`write_results`: JSON plus Markdown) and the closing "wrote <path>"
lines (:func:`wrote`; :func:`save` does both at the end of a script)."""
import json
import math
import os
import os.path as osp
import platform
import statistics
import time
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import torch


def summarize(values: Iterable[float]) -> Dict[str, float]:
    r"""Summarises repeated measurements (runs, splits, episodes) by their
    mean, sample standard deviation and the 95% confidence interval of the
    mean from Student's :math:`t` distribution:

    .. math::
        \bar{x} \pm t_{0.975,\, n - 1} \frac{s}{\sqrt{n}},
        \qquad s^2 = \frac{1}{n - 1} \sum_{i=1}^n (x_i - \bar{x})^2.

    For large :math:`n` (*e.g.*, 1,000 few-shot episodes) the half-width is
    the usual :math:`1.96\, s / \sqrt{n}` to three digits.

    Args:
        values (iterable of float): The measurements (at least one, all
            finite).

    Returns:
        dict: :obj:`mean`, :obj:`std` (sample standard deviation, :obj:`0.`
        for a single value), :obj:`ci_low`, :obj:`ci_high` (the interval),
        :obj:`ci95` (its half-width) and :obj:`n`. The interval is
        :obj:`nan` for a single value.
    """
    from scipy.stats import t

    if not torch.is_tensor(values):
        values = [float(v) for v in values]
    x = torch.as_tensor(values, dtype=torch.float64).flatten()
    n = x.numel()
    if n == 0:
        raise ValueError("'summarize' needs at least one value (got none)")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"'summarize' needs finite values (got "
                         f"{int((~torch.isfinite(x)).sum())} non-finite of "
                         f"{n})")
    mean = float(x.mean())
    if n > 1:
        std = float(x.std())
        half = float(t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    else:
        std, half = 0., float('nan')
    return dict(mean=mean, std=std, ci_low=mean - half, ci_high=mean + half,
                ci95=half, n=n)


def machine_info() -> str:
    r"""Describes the machine for result files and tables, *e.g.*,
    :obj:`"x86_64, 2 CPUs, 24 GiB, torch 2.13.0+cpu"`, followed by the GPU's
    name where CUDA is available."""
    parts = [platform.machine() or 'unknown machine',
             f'{os.cpu_count()} CPUs']
    try:
        mem = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
        parts.append(f'{mem / 2**30:.0f} GiB')
    except (AttributeError, ValueError, OSError):  # Not POSIX.
        pass
    parts.append(f'torch {torch.__version__}')
    if torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name())
    return ', '.join(parts)


def stamp(payload: dict) -> dict:
    r"""Adds :obj:`machine` (:func:`machine_info`) and :obj:`date`
    (:obj:`YYYY-MM-DD`, today) to :obj:`payload` where it has no such keys
    (in place) and returns it."""
    if not isinstance(payload, dict):
        raise TypeError(f"'payload' must be a dict "
                        f"(got {type(payload).__name__})")
    payload.setdefault('machine', machine_info())
    payload.setdefault('date', time.strftime('%Y-%m-%d'))
    return payload


def write_results(
    out_dir: str,
    stem: str,
    payload: dict,
    markdown: Union[str, Callable[[dict], str]],
) -> Tuple[str, str]:
    r"""Writes the results of an experiment as :obj:`<stem>.json` and a
    Markdown table :obj:`<stem>.md` in :obj:`out_dir` (created if missing).

    :obj:`payload` gains :obj:`machine` (:func:`machine_info`) and
    :obj:`date` (:obj:`YYYY-MM-DD`, today) where it has no such keys; it is
    updated in place, so the caller's dict holds them afterwards.

    Args:
        out_dir (str): The output folder.
        stem (str): The file name without extension.
        payload (dict): The JSON-serialisable results.
        markdown (str or callable): The Markdown text, or a function that
            builds it from the completed :obj:`payload` (for tables that
            show the machine or the date).

    Returns:
        (str, str): The paths of the JSON and the Markdown file.
    """
    stamp(payload)
    text = markdown(payload) if callable(markdown) else markdown
    if not isinstance(text, str):
        raise TypeError(f"'markdown' must be a str or give one "
                        f"(got {type(text).__name__})")
    os.makedirs(out_dir, exist_ok=True)
    json_path = osp.join(out_dir, f'{stem}.json')
    md_path = osp.join(out_dir, f'{stem}.md')
    with open(json_path, 'w') as f:
        json.dump(payload, f, indent=2)
    with open(md_path, 'w') as f:
        f.write(text)
    return json_path, md_path


def paired(a: Sequence[float], b: Sequence[float]) -> Dict[str, float]:
    r"""The paired difference :obj:`a - b` of two models measured on the
    same units (*e.g.*, each split's test accuracy averaged over its
    initialisations): :func:`summarize` of the differences, so that the
    interval is the paired :math:`t` interval."""
    if len(a) != len(b):
        raise ValueError(f"'paired' needs as many values of each model "
                         f"(got {len(a)} and {len(b)})")
    return summarize([x - y for x, y in zip(a, b)])


def bootstrap_paired(a: torch.Tensor, b: torch.Tensor, num: int = 10000,
                     seed: int = 0) -> Dict[str, float]:
    r"""The paired bootstrap over test nodes of the accuracy difference of
    two models on one fixed test set: :obj:`a` and :obj:`b` are each
    model's per-node accuracy :obj:`[T]` (*e.g.*, averaged over seeds); the
    :obj:`num` resamples draw the same T nodes with replacement for both.
    Returns :obj:`mean` (the observed difference), the 2.5% and 97.5%
    quantiles :obj:`ci_low`, :obj:`ci_high`, and :obj:`n` (T)."""
    a, b = a.double().flatten(), b.double().flatten()
    if a.numel() != b.numel() or a.numel() == 0:
        raise ValueError(f"'bootstrap_paired' needs the same non-empty test "
                         f"set (got {a.numel()} and {b.numel()} nodes)")
    gen = torch.Generator().manual_seed(seed)
    d = a - b
    idx = torch.randint(d.numel(), (num, d.numel()), generator=gen)
    means = d[idx].mean(dim=1)
    low, high = torch.quantile(means, torch.tensor(
        [0.025, 0.975], dtype=torch.float64)).tolist()
    return dict(mean=float(d.mean()), ci_low=low, ci_high=high, n=d.numel())


def verdict(s: Dict[str, float]) -> str:
    r""":obj:`'wins'`, :obj:`'loses'` or :obj:`'ties'`: whether the 95%
    interval of a difference (:func:`paired`, :func:`bootstrap_paired`)
    lies above zero, below zero or covers it."""
    if s['ci_low'] > 0:
        return 'wins'
    return 'loses' if s['ci_high'] < 0 else 'ties'


def fmt_diff(s: Dict[str, float]) -> str:
    r"""A difference of accuracies in points: :obj:`+d [low, high]`."""
    return (f"{100 * s['mean']:+.2f} [{100 * s['ci_low']:+.2f}, "
            f"{100 * s['ci_high']:+.2f}]")


def wrote(*paths: str) -> None:
    r"""Prints one :obj:`wrote <path>` line per file a script wrote (the
    closing lines of every benchmark)."""
    for path in paths:
        print(f'wrote {path}')


def markdown_table(header: Sequence[str], rows: List[Sequence[Any]]) -> str:
    r"""The one Markdown table writer: a header row, a separator and one row
    per entry of :obj:`rows` (cells are formatted with :obj:`str`)."""
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f'Row {i} has {len(row)} cells, the header '
                             f'{len(header)}')
    lines = ['| ' + ' | '.join(str(c) for c in header) + ' |',
             '|' + '|'.join('---' for _ in header) + '|']
    lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
    return '\n'.join(lines) + '\n'


def fmt_acc(s: Dict[str, float]) -> str:
    r"""A :func:`summarize` of accuracies in %: mean ± std [95% CI] (a
    single run has neither: mean (1 run))."""
    if s['n'] < 2:
        return f"{100 * s['mean']:.2f} (1 run)"
    return (f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f} "
            f"[{100 * s['ci_low']:.2f}, {100 * s['ci_high']:.2f}]")


def fmt_mean(s: Dict[str, float], spread: str = 'std', scale: float = 1.,
             digits: int = 4) -> str:
    r"""A :func:`summarize` as :obj:`mean ± spread` (:obj:`'std'` or
    :obj:`'ci95'`, the half-width of the 95% interval), times
    :obj:`scale` (*e.g.*, 100 for %), with :obj:`digits` decimals (a
    single run has no spread: mean (1 run))."""
    if s.get('n', 2) < 2:
        return f"{scale * s['mean']:.{digits}f} (1 run)"
    return (f"{scale * s['mean']:.{digits}f} ± "
            f"{scale * s[spread]:.{digits}f}")


def bold_best(cells: Sequence[str], values: Sequence[float],
              best: Callable[[Iterable[float]], float] = max) -> List[str]:
    r"""Returns :obj:`cells` with those whose value is the :obj:`best` of
    :obj:`values` (:obj:`max` or :obj:`min`) in bold."""
    top = best(values)
    return [f'**{c}**' if v == top else c for c, v in zip(cells, values)]


def summarize_runs(records: Dict[str, List[Dict]]) -> Dict[str, Dict]:
    r"""Per model, from the results of :func:`training.fit` (plus
    :obj:`peak_memory`): test and validation accuracy (:func:`summarize`),
    the median time per epoch and number of epochs, the largest peak
    memory (:obj:`None` where none was measured)."""
    summary = {}
    for model_name, recs in records.items():
        peaks = [r['peak_memory'] for r in recs
                 if r.get('peak_memory') is not None]
        summary[model_name] = dict(
            test_acc=summarize([r['test_acc'] for r in recs]),
            val_acc=summarize([r['val_acc'] for r in recs]),
            time_per_epoch=statistics.median(r['time_per_epoch']
                                             for r in recs),
            epochs=statistics.median(r['epochs'] for r in recs),
            peak_memory=max(peaks) if peaks else None,
        )
    return summary


def runs_table(summary: Dict[str, Dict], metric: str = 'acc') -> str:
    r"""The Markdown table of :func:`summarize_runs`: per model the test
    :obj:`metric` in % (:func:`fmt_acc`), the mean validation one, the
    median time per epoch and number of epochs, and the peak memory."""
    rows = [[m, fmt_acc(s['test_acc']), f"{100 * s['val_acc']['mean']:.2f}",
             f"{1000 * s['time_per_epoch']:.1f}", f"{s['epochs']:.0f}",
             fmt_mib(s['peak_memory'])] for m, s in summary.items()]
    return markdown_table(
        ['model', f'test {metric} % (mean ± std [95% CI])', f'val {metric} %',
         'ms / epoch (median)', 'epochs (median)', 'peak MiB'], rows)


def fmt_mib(nbytes: Optional[int]) -> str:
    r"""Bytes in MiB with one decimal, :obj:`'-'` for :obj:`None`."""
    return '-' if nbytes is None else f'{nbytes / 2**20:.1f}'


def save(out_dir: str, stem: str, payload: dict,
         markdown: Union[str, Callable[[dict], str]], *also: str) -> dict:
    r"""The end of a benchmark: writes its result files
    (:func:`write_results`), prints the :func:`wrote` line of each and of
    the files :obj:`also` written (*e.g.*, plots) and returns
    :obj:`payload`."""
    wrote(*write_results(out_dir, stem, payload, markdown), *also)
    return payload
