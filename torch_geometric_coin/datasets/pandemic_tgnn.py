import os
import os.path as osp
import re
from typing import Optional

import numpy as np
import torch

from torch_geometric_coin.datasets.dataset_root import (
    dataset_file,
    dataset_root,
)
from torch_geometric_coin.datasets.england_covid import CovidMobility

COUNTRIES = ('England', 'France', 'Italy', 'Spain')


def load_pandemic_tgnn(country: str,
                       root: Optional[str] = None) -> CovidMobility:
    r"""Loads the daily COVID-19 cases and mobility graphs of one country
    from the data of `"Transfer Graph Neural Networks for Pandemic
    Forecasting" <https://arxiv.org/abs/2009.08388>`_, stored as
    :obj:`<root>/pandemic_tgnn/<Country>/<country>_labels.csv` (one row of
    daily cases per region) and :obj:`graphs/<XX>_<date>.csv` (one file of
    :obj:`source,target,weight` rows per day).

    Only the days that have a mobility graph are kept; edges between regions
    without case counts are dropped.

    Args:
        country (str): :obj:`"England"`, :obj:`"France"`, :obj:`"Italy"` or
            :obj:`"Spain"`.
        root (str, optional): The data-set folder (see
            :func:`~torch_geometric_coin.datasets.dataset_root`).
            (default: :obj:`None`)

    Returns:
        CovidMobility: :obj:`cases` of shape :obj:`[T, N]` (float32), and
        per day the :obj:`edge_index` and :obj:`edge_weight` of the mobility
        graph, with regions in the order of the label file.
    """
    import pandas as pd
    if country not in COUNTRIES:
        raise ValueError(f"Unknown 'country' {country!r}: expected one of "
                         f"{COUNTRIES}")
    labels = pd.read_csv(dataset_file(root, 'pandemic_tgnn', country,
                                      f'{country.lower()}_labels.csv'))
    labels = labels.loc[:, ~labels.columns.str.startswith('Unnamed')]
    if 'name' not in labels.columns:
        raise ValueError(f"The label file of {country} has no 'name' column")
    labels = labels.set_index('name')
    folder = osp.join(dataset_root(root), 'pandemic_tgnn', country, 'graphs')
    if not osp.isdir(folder):
        raise FileNotFoundError(f"The folder '{folder}' does not exist")
    graphs = {}
    for name in os.listdir(folder):
        match = re.fullmatch(r'[A-Z]+_(\d{4}-\d{2}-\d{2})\.csv', name)
        if match and match.group(1) in labels.columns:
            graphs[match.group(1)] = osp.join(folder, name)
    if not graphs:
        raise ValueError(f"No mobility graph of {country} matches a day of "
                         f"its label file")
    days = sorted(graphs)
    index = {name: i for i, name in enumerate(labels.index)}
    cases = torch.tensor(labels[days].to_numpy(dtype='float32').T)
    edge_indices, edge_weights = [], []
    for day in days:
        edges = pd.read_csv(graphs[day], header=None,
                            names=['source', 'target', 'weight'])
        keep = edges.source.isin(index) & edges.target.isin(index)
        edges = edges[keep]
        edge_indices.append(torch.from_numpy(np.stack([
            edges.source.map(index).to_numpy(dtype='int64'),
            edges.target.map(index).to_numpy(dtype='int64'),
        ])))
        edge_weights.append(
            torch.tensor(edges.weight.to_numpy(dtype='float32')))
    return CovidMobility(cases, edge_indices, edge_weights)
