import os.path as osp

import pandas as pd
import pytest
import torch

from torch_geometric_coin.datasets import dataset_root, load_pandemic_tgnn


def test_load_pandemic_tgnn():
    folder = osp.join(dataset_root(), 'pandemic_tgnn', 'France')
    if not osp.isdir(folder):
        pytest.skip(f'{folder} is not available')
    data = load_pandemic_tgnn('France')
    labels = pd.read_csv(osp.join(folder, 'france_labels.csv'))
    T, N = data.cases.shape
    assert N == len(labels) and T == len(data.edge_indices) == 64
    # Day 0 is the date of the first graph file:
    edges = pd.read_csv(osp.join(folder, 'graphs', 'FR_2020-03-10.csv'),
                        header=None)
    names = labels['name'].tolist()
    assert data.cases[0].tolist() == labels['2020-03-10'].tolist()
    src, dst = data.edge_indices[0]
    assert [names[i] for i in src[:3].tolist()] == edges[0][:3].tolist()
    assert [names[i] for i in dst[:3].tolist()] == edges[1][:3].tolist()
    assert torch.equal(data.edge_weights[0][:3],
                       torch.tensor(edges[2][:3].tolist()))
    with pytest.raises(ValueError, match="Unknown 'country'"):
        load_pandemic_tgnn('Atlantis')
