import re


def test_coin_knn_example(capsys, load_script):
    res = load_script('examples/coin_knn.py').main(['--epochs', '40'])
    out = capsys.readouterr().out
    assert 'Data: 1797 digits' in out and '100 training labels' in out
    losses = [float(v) for v in re.findall(
        r'^Epoch: \d{3}, Loss: ([\d.]+), Val: [\d.]+, Test: [\d.]+$', out,
        re.M)]
    assert len(losses) == 40 and losses[-1] < losses[0]
    # 10 labels per class, diffusion over the kNN graph: far above chance.
    assert res['test_acc'] > 0.8
