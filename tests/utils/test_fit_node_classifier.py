import pytest
import torch

from torch_geometric.data import Data

from torch_geometric_coin.nn import COIN
from torch_geometric_coin.utils import fit_node_classifier


def test_fit_node_classifier_early_stopping():
    torch.manual_seed(0)
    data = Data(x=torch.randn(30, 4), edge_index=torch.empty(2, 0).long(),
                y=torch.randint(2, (30, )))
    mask = torch.rand(30) < 0.5
    model = COIN(4, 2, K=0)
    calls = []
    res = fit_node_classifier(model, data, mask, ~mask, ~mask, epochs=500,
                              patience=5,
                              progress=lambda e, m: calls.append(m))
    assert res['epochs'] < 500 and len(calls) == res['epochs']
    assert 1 <= res['epoch'] <= res['epochs']
    # The reported epoch is the one of best validation accuracy:
    best = max(m['val_acc'] for m in calls)
    assert res['val_acc'] == best
    assert res['time_per_epoch'] > 0
    with pytest.raises(ValueError, match="'epochs' must be positive"):
        fit_node_classifier(model, data, mask, ~mask, ~mask, epochs=0)
