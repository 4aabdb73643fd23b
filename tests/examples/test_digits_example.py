import json
import math


def test_digits_example_tiny(tmp_path, capsys, load_script):
    result = load_script('examples/digits.py').main(
        ['--runs', '2', '--epochs', '5', '--out', str(tmp_path)])
    methods = [r['method'] for r in result['results']]
    assert methods == ['ResNet', 'COIN', 'LabelPropagation']
    for r in result['results']:
        assert len(r['runs']) == 2
        assert all(math.isfinite(v) and 0 <= v <= 1 for v in r['runs'])
    # Label propagation over the kNN graph is far better than chance:
    assert result['results'][2]['mean'] > 0.8
    with open(tmp_path / 'digits.json') as f:
        assert json.load(f)['num_nodes'] == 1797
    assert '| COIN |' in (tmp_path / 'digits.md').read_text()
    assert 'LabelPropagation: test accuracy' in capsys.readouterr().out


def test_label_propagation_reference(load_script):
    # Against a dense implementation of the same iteration:
    import torch

    from torch_geometric_coin.utils import gaussian_knn_graph
    module = load_script('examples/digits.py')
    torch.manual_seed(0)
    x = torch.randn(60, 3)
    y = torch.randint(0, 3, (60, ))
    train = torch.rand(60) < 0.3
    edge_index, edge_weight = gaussian_knn_graph(x, 5, 2)
    W = torch.zeros(60, 60)
    W[edge_index[1], edge_index[0]] = edge_weight
    Y = torch.zeros(60, 3)
    Y[train, y[train]] = 1
    F = Y
    for _ in range(50):
        F = 0.9 * W @ F + 0.1 * Y
    pred = module.label_propagation(edge_index, edge_weight, y, train,
                                    alpha=0.9)
    assert torch.equal(pred, F.argmax(dim=-1))
