import csv
import datetime
import json
import math
import os
import os.path as osp
import re
from collections import Counter
from typing import Callable, Dict, List, Optional, Tuple

import torch

from torch_geometric.data import Data
from torch_geometric_coin.datasets._offline_dataset import OfflineDataset

DATE = re.compile(r'\d{4}-\d{2}-\d{2}')
GRAPH_FILE = re.compile(r'[A-Za-z]+_(\d{4}-\d{2}-\d{2})\.csv')
FLOAT32_MAX = torch.finfo(torch.float32).max


class PandemicTGNN(OfflineDataset):
    r"""The daily COVID-19 cases and mobility graphs of the regions of
    England, France, Italy or Spain from the `"Transfer Graph Neural Networks
    for Pandemic Forecasting" <https://arxiv.org/abs/2009.08388>`_ paper,
    one graph per day (England: the data of the COIN paper's forecasting
    experiment, PyG Temporal's :obj:`EnglandCovid` in another region order).

    The raw files are those of the folder :obj:`data/<Country>` of
    `pandemic_tgnn <https://github.com/geopanag/pandemic_tgnn>`_, expected
    in :obj:`<root>/<Country>/`: :obj:`<country>_labels.csv` (a :obj:`name`
    column and one column of daily new cases per day :obj:`YYYY-MM-DD`) and
    :obj:`graphs/<XX>_<YYYY-MM-DD>.csv` (one :obj:`source,target,weight`
    row per edge, no header). As in the paper's code, the regions are those
    of the label file in the graphs, the days those of the graph files
    (consecutive). :obj:`dataset[t]` is day :obj:`t`: :obj:`y` (:obj:`[N]`)
    the new cases, :obj:`edge_index` and :obj:`edge_weight` the mobility
    graph, and :obj:`date`; :obj:`dataset.regions` names the regions.

    Args:
        root (str): Root directory that holds the folder :obj:`<Country>`.
        country (str): :obj:`"England"`, :obj:`"France"`, :obj:`"Italy"` or
            :obj:`"Spain"` (case-insensitive).
        transform, pre_transform, pre_filter, force_reload (optional): As
            in :class:`~torch_geometric.data.InMemoryDataset`, per day.
    """
    countries = ('England', 'France', 'Italy', 'Spain')

    def __init__(self, root: str, country: str,
                 transform: Optional[Callable] = None,
                 pre_transform: Optional[Callable] = None,
                 pre_filter: Optional[Callable] = None,
                 force_reload: bool = False) -> None:
        names = {c.lower(): c for c in self.countries}
        if not isinstance(country, str) or country.lower() not in names:
            raise ValueError(f"Unknown 'country' {country!r}: expected one "
                             f"of {self.countries}")
        self.country = names[country.lower()]
        super().__init__(root, transform, pre_transform, pre_filter,
                         force_reload=force_reload)
        self.regions: List[str] = self.load_json(
            self.processed_paths[1], lambda regions: (
                isinstance(regions, list)
                and all(isinstance(r, str) for r in regions)
                and len(regions) == self[0].num_nodes))

    @property
    def folder(self) -> str:
        return osp.join(self.root, self.country)

    @property
    def source(self) -> str:
        return (f'https://github.com/geopanag/pandemic_tgnn (folder '
                f'data/{self.country})')

    @property
    def raw_file_names(self) -> List[str]:
        return [f'{self.country.lower()}_labels.csv', 'graphs']

    @property
    def processed_file_names(self) -> List[str]:
        return ['data.pt', 'regions.json']

    def process(self) -> None:
        label_file = self.raw_file(self.raw_file_names[0])
        names, cases = read_labels(label_file)
        days = graph_files(self.raw_file('graphs'))
        edges = {day: read_edges(file, names) for day, file in days.items()}
        used = {n for src, dst, _ in edges.values() for n in src + dst}
        if not used:
            raise ValueError(f"The mobility graphs in "
                             f"'{self.raw_file('graphs')}' have no edges")
        regions = [name for name in names if name in used]
        index = {name: i for i, name in enumerate(regions)}

        data_list = []
        for day, file in days.items():
            if day not in cases:
                raise ValueError(f"'{label_file}' has no column for the "
                                 f"day {day} of '{file}'")
            src, dst, weight = edges[day]
            edge_index = torch.tensor([[index[n] for n in src],
                                       [index[n] for n in dst]],
                                      dtype=torch.long).view(2, -1)
            data_list.append(Data(
                y=torch.tensor([cases[day][names[n]] for n in regions],
                               dtype=torch.float),
                edge_index=edge_index,
                edge_weight=torch.tensor(weight, dtype=torch.float),
                num_nodes=len(regions), date=day))
        if self.pre_filter is not None:
            data_list = [d for d in data_list if self.pre_filter(d)]
            if not data_list:
                raise ValueError("'pre_filter' rejects every day")
        self.save_processed(data_list)
        with open(self.processed_paths[1], 'w') as f:
            json.dump(regions, f)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.country}, {len(self)})'


def read_rows(file: str) -> List[Tuple[int, List[str]]]:
    r"""Returns the line number and fields of each non-empty row of a CSV
    file, or raises a :class:`ValueError` that names the file."""
    try:
        with open(file, newline='', encoding='utf-8-sig') as f:
            reader = csv.reader(f)
            return [(reader.line_num, row) for row in reader if row]
    except (UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"'{file}' is not a readable CSV file: "
                         f"{err}") from err


def parse_count(value: str, file: str, line: int, what: str) -> float:
    try:
        out = float(value)
    except ValueError as err:
        raise ValueError(f"'{file}', line {line}: the {what} {value!r} is "
                         f"not a number") from err
    if not math.isfinite(out) or out < 0:
        raise ValueError(f"'{file}', line {line}: the {what} {value!r} is "
                         f"not a finite non-negative number")
    if out > FLOAT32_MAX:  # Stored in float32, it would become inf.
        raise ValueError(f"'{file}', line {line}: the {what} {value!r} "
                         f"exceeds the range of float32")
    return out


def read_labels(file: str
                ) -> Tuple[Dict[str, int], Dict[str, List[float]]]:
    r"""Returns the row of each region and the cases of each day of a label
    file."""
    rows = read_rows(file)
    if not rows:
        raise ValueError(f"'{file}' is empty")
    header = rows[0][1]
    if 'name' not in header:
        raise ValueError(f"'{file}' has no 'name' column in its header")
    col = header.index('name')
    dates = [(j, h) for j, h in enumerate(header) if DATE.fullmatch(h)]
    if not dates:
        raise ValueError(f"'{file}' has no column of a day (YYYY-MM-DD)")
    for day, count in Counter(day for _, day in dates).items():
        if count > 1:
            raise ValueError(f"'{file}' has two columns of the day {day}")
    names: Dict[str, int] = {}
    cases: Dict[str, List[float]] = {day: [] for _, day in dates}
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise ValueError(f"'{file}', line {line}: {len(row)} fields, "
                             f"but the header has {len(header)}")
        if row[col] in names:
            raise ValueError(f"'{file}', line {line}: the region "
                             f"{row[col]!r} occurs twice")
        names[row[col]] = len(names)
        for j, day in dates:
            cases[day].append(parse_count(row[j], file, line, 'case count'))
    if not names:
        raise ValueError(f"'{file}' has no region")
    return names, cases


def graph_files(folder: str) -> Dict[str, str]:
    r"""Returns the mobility graph file of each day, in order, checking that
    the days are consecutive."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f"'{folder}' is not a folder")
    days: Dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        match = GRAPH_FILE.fullmatch(name)
        if match is None:
            continue
        file, day = osp.join(folder, name), match.group(1)
        try:
            datetime.date.fromisoformat(day)
        except ValueError as err:
            raise ValueError(f"'{file}' is not named after a valid "
                             f"date") from err
        if day in days:
            raise ValueError(f"'{file}' and '{days[day]}' are graphs of "
                             f"the same day")
        days[day] = file
    if not days:
        raise ValueError(f"'{folder}' has no graph file named "
                         f"<XX>_<YYYY-MM-DD>.csv")
    days = dict(sorted(days.items()))
    dates = [datetime.date.fromisoformat(day) for day in days]
    for prev, day in zip(dates, dates[1:]):
        if (day - prev).days != 1:
            raise ValueError(f"'{folder}' has no graph file for the days "
                             f"between {prev} and {day}")
    return days


def read_edges(file: str, names: Dict[str, int]
               ) -> Tuple[List[str], List[str], List[float]]:
    r"""Returns the sources, targets and weights of a mobility graph file."""
    src, dst, weight = [], [], []
    seen: Dict[Tuple[str, str], int] = {}  # The line of each edge.
    for line, row in read_rows(file):
        if len(row) != 3:
            raise ValueError(f"'{file}', line {line}: {len(row)} fields, "
                             f"expected 3 (source,target,weight)")
        for region in row[:2]:
            if region not in names:
                raise ValueError(f"'{file}', line {line}: the region "
                                 f"{region!r} is not in the label file")
        if (row[0], row[1]) in seen:
            raise ValueError(f"'{file}', lines {seen[row[0], row[1]]} and "
                             f"{line}: the edge {row[0]!r} -> {row[1]!r} "
                             f"occurs twice")
        seen[row[0], row[1]] = line
        src.append(row[0])
        dst.append(row[1])
        weight.append(parse_count(row[2], file, line, 'weight'))
    return src, dst, weight
