import json
import os.path as osp

import pytest
import torch

from torch_geometric_coin.datasets import dataset_root, load_england_covid


def test_load_england_covid():
    file = osp.join(dataset_root(), 'england_covid', 'england_covid.json')
    if not osp.isfile(file):
        pytest.skip(f'{file} is not available')
    data = load_england_covid()
    assert data.cases.shape == (61, 129)
    assert len(data.edge_indices) == len(data.edge_weights) == 61
    with open(file) as f:
        raw = json.load(f)
    for t in (0, 30, 60):
        pairs = raw['edge_mapping']['edge_index'][str(t)]
        assert data.edge_indices[t].t().tolist() == pairs
        assert torch.equal(data.edge_weights[t], torch.tensor(
            raw['edge_mapping']['edge_weight'][str(t)], dtype=torch.float))
    assert data.cases[:, 5].tolist() == [row[5] for row in raw['y']]
    assert all(int(e.max()) < 129 for e in data.edge_indices)
