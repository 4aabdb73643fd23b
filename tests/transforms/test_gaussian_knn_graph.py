import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data

from torch_geometric_coin.transforms import GaussianKNNGraph
from torch_geometric_coin.utils import gaussian_knn_graph


def test_gaussian_knn_graph_transform():
    torch.manual_seed(0)
    transform = GaussianKNNGraph(k=6, bandwidth_k=3)
    assert str(transform) == "GaussianKNNGraph(k=6, bandwidth_k=3, attr='x')"
    x = torch.randn(50, 4)
    data = transform(Data(x=x))
    edge_index, edge_weight = gaussian_knn_graph(x, 6, 3)
    assert torch.equal(data.edge_index, edge_index)
    assert torch.equal(data.edge_weight, edge_weight)

    # From positions, with the self-tuning kernel:
    pos = torch.randn(40, 3)
    transform = GaussianKNNGraph(5, 2, attr='pos', kernel='self_tuning')
    assert str(transform) == ("GaussianKNNGraph(k=5, bandwidth_k=2, "
                              "attr='pos', kernel='self_tuning')")
    data = transform(Data(x=torch.randn(40, 7), pos=pos))
    edge_index, edge_weight = gaussian_knn_graph(pos, 5, 2,
                                                 kernel='self_tuning')
    assert torch.equal(data.edge_index, edge_index)
    assert torch.equal(data.edge_weight, edge_weight)


@pytest.mark.parametrize('kwargs', [
    dict(loop=False), dict(normalize=False), dict(symmetrize=False),
    dict(loop=False, normalize=False, symmetrize=False),
    dict(kernel='self_tuning', chunk_size=7),
])
def test_gaussian_knn_graph_transform_options(kwargs):
    # Every option reaches the function (and changes the graph):
    torch.manual_seed(2)
    x = torch.randn(40, 5)
    data = GaussianKNNGraph(5, 2, **kwargs)(Data(x=x))
    edge_index, edge_weight = gaussian_knn_graph(x, 5, 2, **kwargs)
    assert torch.equal(data.edge_index, edge_index)
    assert torch.equal(data.edge_weight, edge_weight)
    default = gaussian_knn_graph(x, 5, 2)
    assert default[0].shape != edge_index.shape or \
        not torch.equal(default[0], edge_index) or \
        not torch.allclose(default[1], edge_weight)


def test_gaussian_knn_graph_transform_batch():
    torch.manual_seed(1)
    graphs = [Data(x=torch.randn(n, 3)) for n in (20, 30)]
    batch = GaussianKNNGraph(k=4, bandwidth_k=2)(Batch.from_data_list(graphs))
    src, dst = batch.edge_index
    assert bool((batch.batch[src] == batch.batch[dst]).all())
    first = GaussianKNNGraph(k=4, bandwidth_k=2)(graphs[0].clone())
    mask = dst < 20
    assert torch.equal(batch.edge_index[:, mask], first.edge_index)
    assert torch.allclose(batch.edge_weight[mask], first.edge_weight)


def test_gaussian_knn_graph_transform_errors():
    with pytest.raises(ValueError, match="Unknown 'attr'"):
        GaussianKNNGraph(attr='edge_attr')
    with pytest.raises(TypeError, match="'kernal'"):
        GaussianKNNGraph(kernal='self_tuning')  # A typo is not ignored.
    with pytest.raises(TypeError, match="'batch'"):
        GaussianKNNGraph(batch=None)  # Taken from 'data.batch'.
    with pytest.raises(TypeError, match="'neighbors'"):
        GaussianKNNGraph(neighbors=None)  # Per data set: call the function.
    with pytest.raises(ValueError, match="'bandwidth_k' must be an integer"):
        GaussianKNNGraph(bandwidth_k=0)
    with pytest.raises(ValueError, match='data.pos'):
        GaussianKNNGraph(attr='pos')(Data(x=torch.randn(10, 2)))
    with pytest.raises(ValueError, match='smaller than the number of nodes'):
        GaussianKNNGraph(k=10)(Data(x=torch.randn(10, 2)))


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(k=3, bandwidth_k=4), ValueError, r"'bandwidth_k' must be .* < 4"),
    (dict(kernel='box'), ValueError, "Unknown 'kernel' 'box'"),
    (dict(loop='no'), TypeError, "'loop' must be True or False"),
    (dict(normalize=None), TypeError, "'normalize' must be True or False"),
    (dict(chunk_size=0), ValueError, "'chunk_size' must be an integer"),
    (dict(chunk_size=2.0), ValueError, "'chunk_size' must be an integer"),
    (dict(k=True), ValueError, "'k' must be an integer"),
])
def test_options_are_checked_at_construction(kwargs, error, match):
    # Not only when the first graph comes (maybe hours later in a loader):
    with pytest.raises(error, match=match):
        GaussianKNNGraph(**kwargs)


def test_errors_name_the_attribute():
    transform = GaussianKNNGraph(3, 1, attr='pos')
    with pytest.raises(TypeError, match="'data.pos' must be a floating"):
        transform(Data(pos=torch.arange(20).view(10, 2)))
    pos = torch.randn(10, 2)
    pos[3, 1] = float('nan')
    with pytest.raises(ValueError, match="'data.pos' contains NaN"):
        transform(Data(pos=pos))


def test_stale_edge_attr_is_removed():
    # Edge features of the replaced edges would no longer match them:
    torch.manual_seed(3)
    data = Data(x=torch.randn(10, 2), edge_index=torch.tensor([[0], [1]]),
                edge_attr=torch.ones(1, 4))
    data = GaussianKNNGraph(3, 1)(data)
    assert 'edge_attr' not in data
    assert data.edge_index.size(1) == data.edge_weight.numel()


def test_large_magnitudes_and_numpy_scalars():
    torch.manual_seed(4)
    x = torch.randn(40, 8, dtype=torch.float64)
    transform = GaussianKNNGraph(np.int64(5), np.int32(2),
                                 loop=np.bool_(False))
    assert str(transform) == ("GaussianKNNGraph(k=5, bandwidth_k=2, "
                              "attr='x', loop=False)")
    ref = gaussian_knn_graph(x, 5, 2, loop=False)
    data = transform(Data(x=(x * 1e20).float()))  # Squares overflow.
    assert torch.equal(data.edge_index, ref[0])
    torch.testing.assert_close(data.edge_weight.double(), ref[1], rtol=0,
                               atol=1e-6)
