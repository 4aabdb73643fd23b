import argparse
import json
import math

import pytest
import torch

from torch_geometric_coin.datasets import P1000


def test_scores(bench):
    pr = bench('prostate')
    s = pr.scores(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1,
                                                                    1]))
    assert s['accuracy'] == 0.75 and s['roc_auc'] == 0.75
    assert abs(s['average_precision'] - (1 + 2 / 3) / 2) < 1e-12


def test_prostate_smoke(tmp_path, bench, shared):
    shared('prostate', 'Prostate_GE.mat')
    pr = bench('prostate')
    res = pr.main(['--splits', '1', '--epochs', '3', '--out-dir',
                   str(tmp_path)])
    for method in pr.METHODS:
        for metric in pr.METRICS:
            v = res['summary'][method][metric]['mean']
            assert math.isfinite(v) and 0 <= v <= 1
    with open(tmp_path / 'prostate.json') as f:
        # One run: the confidence interval is NaN (NaN != NaN, so compare
        # the serialised text).
        assert json.dumps(json.load(f)['summary']) == json.dumps(
            res['summary'])
    assert '| COIN |' in (tmp_path / 'prostate.md').read_text()


# P1000 in the authors' setting (on small files in its format) ###############

def write_p1000(root, num_patients=40, num_genes=6, seed=0):
    r"""Writes random P1000 files (the authors' layout) into :obj:`root`:
    splits of 8 training, 4 validation and the rest test patients."""
    import numpy as np

    from torch_geometric_coin.datasets.p1000 import RAW_FILES

    rng = np.random.RandomState(seed)
    patients = [f'P{i}' for i in range(num_patients)]
    genes = [f'G{i}' for i in range(num_genes)]
    y = np.arange(num_patients) % 2
    mut = (rng.rand(num_patients, num_genes) < .3 + .4 * y[:, None]) * 2
    cna = rng.choice([-2, -1, 0, 1, 2], (num_patients, num_genes))
    head = ',' + ','.join(genes) + '\n'
    texts = [head + ''.join(f'{p},' + ','.join(map(str, row)) + '\n'
                            for p, row in zip(patients, table))
             for table in (mut, cna)]
    texts.append('id,response\n' + ''.join(
        f'{p},{c}\n' for p, c in zip(patients, y)))
    texts.append('genes\n' + '\n'.join(genes) + '\n')
    texts.append(''.join(f'1\t{i}\t{i + 1}\t{g}\n'
                         for i, g in enumerate(genes)))
    for i in range(10):
        order = np.random.RandomState(i).permutation(num_patients)
        for part in (order[:8], order[8:12], order[12:]):
            texts.append('id\n' + ''.join(f'P{j}\n' for j in part))
    for name, text in zip(RAW_FILES, texts):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return str(root)


def test_p1000_missing_files(tmp_path, bench):
    pr = bench('prostate')
    with pytest.raises(FileNotFoundError, match='not shipped') as info:
        pr.main(['--dataset', 'p1000', '--p1000-root', str(tmp_path),
                 '--out-dir', str(tmp_path)])
    assert 'data/response_paper.csv' in str(info.value)
    assert 'splits/test_set_9.csv' in str(info.value)


def test_setting_per_dataset(tmp_path, bench):
    pr = bench('prostate')
    with pytest.raises(SystemExit):
        pr.main(['--dataset', 'p1000', '--setting', 'ours'])
    with pytest.raises(SystemExit):
        pr.main(['--dataset', 'singh2002', '--setting', 'authors'])


def test_gene_resnet(bench):
    pr = bench('prostate')
    torch.manual_seed(3)
    model = pr.GeneResNet(num_genes=4, hidden_channels=3)
    # The authors' initialisation order: the feature weights (Xavier
    # normal of a [1, 12] matrix), then the three linear layers.
    torch.manual_seed(3)
    weight = torch.nn.init.xavier_normal_(torch.empty(1, 12))
    lin1 = torch.nn.Linear(4, 3)
    lin2 = torch.nn.Linear(3, 1)
    shortcut = torch.nn.Linear(4, 1)
    assert torch.equal(model.weight, weight)
    assert model.bias.tolist() == [0.] * 4
    for ours, ref in [(model.lin1, lin1), (model.lin2, lin2),
                      (model.shortcut, shortcut)]:
        assert torch.equal(ours.weight, ref.weight)
        assert torch.equal(ours.bias, ref.bias)

    with torch.no_grad():
        model.bias.copy_(torch.tensor([.1, .2, .3, .4]))
    x = torch.randn(5, 12)
    h = torch.stack([(x[:, 3 * g:3 * g + 3] * weight[0, 3 * g:3 * g + 3])
                     .sum(dim=1) + .1 * (g + 1) for g in range(4)], dim=1)
    assert torch.allclose(model.embed(x), h, atol=1e-6)
    out = torch.sigmoid(shortcut(h) + lin2(torch.relu(lin1(h))))
    assert torch.allclose(model(x), out, atol=1e-6)


def test_authors_adjacency(bench):
    import numpy as np

    pr = bench('prostate')
    rng = np.random.RandomState(0)
    points = rng.randn(9, 3)
    dist = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))
    n_top, sigma = 4, 2
    # By hand: row i keeps the distances strictly below its 4th smallest
    # (itself included: 3 entries), scaled by its 2nd smallest.
    w = np.zeros((9, 9))
    for i in range(9):
        ranked = np.sort(dist[i])
        for j in range(9):
            if dist[i, j] < ranked[n_top - 1]:
                w[i, j] = np.exp(-(dist[i, j] / ranked[sigma - 1]) ** 2)
    assert (w > 0).sum(axis=1).tolist() == [3] * 9 and np.diag(w).all()
    d = w.sum(axis=1) ** -.5
    w = d[:, None] * w * d[None, :]
    expected = (w + w.T) / 2
    out = pr.authors_adjacency(torch.from_numpy(dist), n_top, sigma)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)


def test_authors_graph_distances(bench, monkeypatch):
    pr = bench('prostate')
    seen = {}

    def adjacency(distance, n_top, sigma):
        seen['distance'], seen['args'] = distance, (n_top, sigma)
        return distance

    monkeypatch.setattr(pr, 'authors_adjacency', adjacency)
    x_train, x_test = torch.rand(6, 9), torch.rand(4, 9)
    y_train = torch.tensor([[0.], [1.], [0.], [1.], [1.], [0.]])
    pr.authors_graph(x_train, y_train, x_test, 5, 3, epochs=4)
    # The features of the model trained with seed 0 on the training rows:
    torch.manual_seed(0)
    model = pr.GeneResNet(3, 3)
    pr.train_authors(model, lambda: model(x_train), y_train, epochs=4)
    h = model.embed(torch.cat([x_train, x_test])).detach()
    assert seen['args'] == (5, 3)
    assert torch.allclose(seen['distance'],
                          (h[:, None] - h[None]).norm(dim=-1), atol=1e-6)
    assert seen['distance'].diagonal().tolist() == [0.] * 10


def test_train_authors(bench):
    pr = bench('prostate')
    torch.manual_seed(0)
    x, y = torch.randn(6, 3), torch.tensor([[0.], [1.], [1.], [0.], [1.],
                                            [0.]])
    model = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Sigmoid())
    w, b = (p.detach().clone() for p in model.parameters())
    pr.train_authors(model, lambda: model(x), y[:4], epochs=8, lr=1.0,
                     weight_decay=0.1)
    # By hand: plain gradient steps with weight decay on the first 4 rows;
    # the rate is 1, divided by 10 at epoch 4 and again at epoch 6.
    for lr in [1.] * 4 + [.1] * 2 + [.01] * 2:
        w.requires_grad_(), b.requires_grad_()
        p = torch.sigmoid(x[:4] @ w.t() + b)
        loss = -(y[:4] * p.log() + (1 - y[:4]) * (1 - p).log()).mean()
        gw, gb = torch.autograd.grad(loss, (w, b))
        w, b = (w - lr * (gw + .1 * w)).detach(), (b - lr * (gb + .1 * b)
                                                   ).detach()
    assert torch.allclose(model[0].weight, w, atol=1e-6)
    assert torch.allclose(model[0].bias, b, atol=1e-6)


def test_authors_coin_diffusion(bench):
    pr = bench('prostate')
    torch.manual_seed(0)
    n = 7
    a = torch.rand(n, n) * (torch.rand(n, n) < .5)
    a = (a + a.t()) / 2 + torch.diag(torch.rand(n))  # With self-loops.
    edge_index, edge_weight = a.nonzero().t(), a[a != 0]
    x = torch.rand(n, 6)
    torch.manual_seed(1)
    base = pr.AuthorsCOIN(2, 3, K=0)(x)
    torch.manual_seed(1)
    out = pr.AuthorsCOIN(2, 3, K=5, sigma2=0.2)(x, edge_index, edge_weight)
    u, lap = base, torch.diag(a.sum(dim=1)) - a
    for _ in range(5):
        u = u - 0.2 * lap @ u
    assert torch.allclose(out, u, atol=1e-6)


def test_authors_scores(bench):
    pr = bench('prostate')
    s = pr.authors_scores(torch.tensor([0.5, 0.4, 0.6, 0.2]),
                          torch.tensor([1, 0, 1, 1]))
    assert s['accuracy'] == 0.75  # 0.5 counts as metastatic.
    assert s['roc_auc'] == pytest.approx(2 / 3)


def test_p1000_split_nodes(tmp_path, bench, monkeypatch):
    pr = bench('prostate')
    data = P1000(write_p1000(tmp_path / 'p1000'))[0]
    seen = {}
    graph = pr.authors_graph

    def spy(x_train, y_train, x_test, *args):
        seen.update(train=x_train, test=x_test, y=y_train, args=args)
        return graph(x_train, y_train, x_test, *args)

    monkeypatch.setattr(pr, 'authors_graph', spy)
    args = argparse.Namespace(
        device='cpu', n_top=6, sigma_k=3, epochs=2, lr=1.0,
        weight_decay=5e-4, hidden_channels=3, seed=0, seeds=2, K=4,
        sigma2=0.2)
    res, stats = pr.p1000_split(data, 2, args)
    # The graph is over the training then the test patients, without the
    # validation ones:
    train, test = data.train_mask[:, 2], data.test_mask[:, 2]
    assert torch.equal(seen['train'], data.x[train])
    assert torch.equal(seen['test'], data.x[test])
    assert seen['y'].view(-1).tolist() == data.y[train].float().tolist()
    assert seen['args'] == (6, 3, 2, 1.0, 5e-4, 3)
    assert {k: len(v) for k, v in res.items()} == {'ResNet (K=0)': 2,
                                                   'COIN': 2}
    assert stats['nan_weights'] == 0


def test_p1000_smoke(tmp_path, bench):
    pr = bench('prostate')
    root = write_p1000(tmp_path / 'p1000')
    res = pr.main(['--dataset', 'p1000', '--p1000-root', root, '--splits',
                   '2', '--seeds', '2', '--epochs', '3', '--n-top', '10',
                   '--sigma-k', '5', '--out-dir', str(tmp_path)])
    assert res['args']['setting'] == 'authors'
    assert res['args']['K'] == 40 and res['args']['lr'] == 1.0
    for method in pr.AUTHORS_METHODS:
        assert len(res['runs'][method]) == 4  # 2 splits x 2 seeds.
        for metric in pr.METRICS:
            v = res['summary'][method][metric]['mean']
            assert math.isfinite(v) and 0 <= v <= 1
    text = (tmp_path / 'prostate_p1000_authors.md').read_text()
    assert 'setting: authors' in text and '| COIN |' in text
