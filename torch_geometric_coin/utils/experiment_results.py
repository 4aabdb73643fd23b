import json
import math
import os
import os.path as osp
import platform
import time
from typing import Callable, Dict, Iterable, Tuple, Union

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
    if not isinstance(payload, dict):
        raise TypeError(f"'payload' must be a dict "
                        f"(got {type(payload).__name__})")
    payload.setdefault('machine', machine_info())
    payload.setdefault('date', time.strftime('%Y-%m-%d'))
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
