import json
from typing import List, NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from torch_geometric_coin.datasets.dataset_root import dataset_file


class CovidMobility(NamedTuple):
    r"""Daily COVID-19 cases of the regions of a country and the daily
    mobility graphs between them (see :func:`load_england_covid` and
    :func:`~torch_geometric_coin.datasets.load_pandemic_tgnn`)."""
    cases: Tensor  # [T, N] daily new cases
    edge_indices: List[Tensor]  # T x [2, E_t] daily mobility edges
    edge_weights: List[Tensor]  # T x [E_t] daily number of people moving


def load_england_covid(root: Optional[str] = None) -> CovidMobility:
    r"""Loads the England COVID-19 data set of `"Transfer Graph Neural
    Networks for Pandemic Forecasting" <https://arxiv.org/abs/2009.08388>`_
    as distributed by PyTorch Geometric Temporal: daily new cases in 129
    regions over 61 days, and one weighted, directed mobility graph per day,
    from :obj:`<root>/england_covid/england_covid.json`.

    Args:
        root (str, optional): The data-set folder (see
            :func:`~torch_geometric_coin.datasets.dataset_root`).
            (default: :obj:`None`)

    Returns:
        CovidMobility: :obj:`cases` of shape :obj:`[61, 129]` (float32),
        and per day the :obj:`edge_index` (:obj:`[2, E_t]`, long) and the
        :obj:`edge_weight` (:obj:`[E_t]`, float32) of the mobility graph.
    """
    with open(dataset_file(root, 'england_covid', 'england_covid.json')) as f:
        raw = json.load(f)
    cases = torch.tensor(np.asarray(raw['y'], dtype=np.float32))
    T, N = cases.size()
    if T != int(raw['time_periods']):
        raise ValueError(f"'england_covid.json' has {T} days of cases but "
                         f"'time_periods' = {raw['time_periods']}")
    edge_indices, edge_weights = [], []
    for t in range(T):
        index = np.asarray(raw['edge_mapping']['edge_index'][str(t)],
                           dtype=np.int64).reshape(-1, 2).T
        weight = np.asarray(raw['edge_mapping']['edge_weight'][str(t)],
                            dtype=np.float32)
        if index.shape[1] != weight.shape[0] or index.max() >= N:
            raise ValueError(f"Malformed mobility graph of day {t} in "
                             f"'england_covid.json'")
        edge_indices.append(torch.from_numpy(np.ascontiguousarray(index)))
        edge_weights.append(torch.from_numpy(weight))
    return CovidMobility(cases, edge_indices, edge_weights)
