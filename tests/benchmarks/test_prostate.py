import math

import numpy as np
import pytest
import torch

from torch_geometric_coin.datasets.p1000 import RAW_FILES


def test_scores(bench):
    pr = bench('prostate')
    s = pr.scores(torch.tensor([.1, .4, .35, .8]), torch.tensor([0, 0, 1, 1]))
    assert s['accuracy'] == 0.75 and s['roc_auc'] == 0.75
    assert abs(s['average_precision'] - (1 + 2 / 3) / 2) < 1e-12
    prob, y = torch.tensor([.5, .4, .6, .2]), torch.tensor([1, 0, 1, 1])
    assert pr.scores(prob, y)['accuracy'] == 0.5
    assert pr.scores(prob, y, at_half=True)['accuracy'] == 0.75  # theirs


def test_authors_model(bench):
    pr = bench('prostate')
    torch.manual_seed(3)
    model = pr.AuthorsCOIN(num_genes=4, hidden_channels=3, K=5, sigma2=0.2)
    # Their order: the feature weights (Xavier normal of a [1, 12] matrix),
    # then the three linear layers.
    torch.manual_seed(3)
    weight = torch.nn.init.xavier_normal_(torch.empty(1, 12))
    lin1, lin2, shortcut = (torch.nn.Linear(4, 3), torch.nn.Linear(3, 1),
                            torch.nn.Linear(4, 1))
    x = torch.randn(7, 12)
    h = torch.stack([(x[:, 3 * g:3 * g + 3] * weight[0, 3 * g:3 * g + 3])
                     .sum(dim=1) for g in range(4)], dim=1)
    assert torch.allclose(model.embed(x), h, atol=1e-6)
    u = torch.sigmoid(shortcut(h) + lin2(torch.relu(lin1(h))))
    assert torch.allclose(model(x), u, atol=1e-6)
    # K explicit steps u <- u - 0.2 L u over the given weights:
    a = torch.rand(7, 7) * (torch.rand(7, 7) < .5)
    a = (a + a.t()) / 2 + torch.diag(torch.rand(7))
    for _ in range(5):
        u = u - 0.2 * (torch.diag(a.sum(dim=1)) - a) @ u
    out = model(x, a.nonzero().t(), a[a != 0])
    assert torch.allclose(out, u, atol=1e-6)


def test_authors_adjacency(bench):
    pr = bench('prostate')
    points = np.random.RandomState(0).randn(9, 3)
    dist = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))
    # By hand: row i keeps the distances strictly below its 4th smallest
    # (itself included: 3 entries), scaled by its 2nd smallest.
    w = np.zeros((9, 9))
    for i in range(9):
        ranked = np.sort(dist[i])
        keep = dist[i] < ranked[3]
        w[i, keep] = np.exp(-(dist[i, keep] / ranked[1]) ** 2)
    assert (w > 0).sum(axis=1).tolist() == [3] * 9 and np.diag(w).all()
    d = w.sum(axis=1) ** -.5
    w = d[:, None] * w * d[None, :]
    out = pr.authors_adjacency(torch.from_numpy(dist), n_top=4, sigma=2)
    np.testing.assert_allclose(out.numpy(), (w + w.T) / 2, rtol=1e-12)


def test_train_authors(bench):
    pr = bench('prostate')
    torch.manual_seed(0)
    x, y = torch.randn(6, 3), torch.tensor([[0.], [1.], [1.], [0.]])
    model = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Sigmoid())
    w, b = (p.detach().clone() for p in model.parameters())
    pr.train_authors(model, lambda: model(x), y, epochs=8, lr=1.0,
                     weight_decay=0.1)
    # By hand: gradient steps with weight decay on the first 4 rows; the
    # rate is 1, divided by 10 at epoch 4 and again at epoch 6.
    for lr in [1.] * 4 + [.1] * 2 + [.01] * 2:
        w.requires_grad_(), b.requires_grad_()
        p = torch.sigmoid(x[:4] @ w.t() + b)
        loss = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
        gw, gb = torch.autograd.grad(loss, (w, b))
        w, b = (w - lr * (gw + .1 * w)).detach(), (b - lr * (gb + .1 * b)
                                                   ).detach()
    assert torch.allclose(model[0].weight, w, atol=1e-6)
    assert torch.allclose(model[0].bias, b, atol=1e-6)


def write_p1000(root, n=52, genes=6):
    r"""Random P1000 files in the authors' layout: splits of 8 training, 4
    validation and the rest test patients."""
    rng, y, G = np.random.RandomState(0), np.arange(n) % 2, range(genes)
    tables = [(rng.rand(n, genes) < .3 + .4 * y[:, None]) * 2,
              rng.choice([-2, -1, 0, 1, 2], (n, genes))]
    texts = [''.join(f',G{g}' for g in G) + '\n' + ''.join(
        f'P{i},' + ','.join(map(str, row)) + '\n' for i, row in enumerate(t))
        for t in tables] + [
        'id,response\n' + ''.join(f'P{i},{c}\n' for i, c in enumerate(y)),
        'genes\n' + ''.join(f'G{g}\n' for g in G),
        ''.join(f'1\t{g}\t{g + 1}\tG{g}\n' for g in G)]
    orders = [np.random.RandomState(i).permutation(n) for i in range(10)]
    texts += ['id\n' + ''.join(f'P{j}\n' for j in part)
              for o in orders for part in (o[:8], o[8:12], o[12:])]
    for name, text in zip(RAW_FILES, texts):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.mark.slow
def test_p1000_smoke(tmp_path, bench, monkeypatch, capsys):
    pr, args = bench('prostate'), ['--dataset', 'p1000', '--root',
                                   str(tmp_path), '--out-dir', str(tmp_path)]
    with pytest.raises(SystemExit):  # the files are not shipped
        pr.main(args)
    assert 'splits/test_set_9.csv' in capsys.readouterr().err
    write_p1000(tmp_path / 'p1000')
    seen, graph = [], pr.authors_graph
    monkeypatch.setattr(pr, 'authors_graph', lambda *a: seen.append(a) or
                        graph(*a))
    res = pr.main(args + ['--splits', '2', '--seeds', '2', '--epochs', '3'])
    # The graph is over the training then test patients (no validation):
    assert [(len(a[0]), len(a[2])) for a in seen] == [(8, 40)] * 2
    assert [len(r) for r in res['runs'].values()] == [4, 4]  # 2 x 2 seeds
    assert 'setting: authors' in (
        tmp_path / 'prostate_p1000_authors.md').read_text()


@pytest.mark.slow
def test_prostate_smoke(tmp_path, bench, shared):
    pr, _ = bench('prostate'), shared('prostate', 'Prostate_GE.mat')
    res = pr.main(['--splits', '1', '--epochs', '3', '--out-dir',
                   str(tmp_path)])
    assert all(math.isfinite(s[k]['mean']) for s in res['summary'].values()
               for k in pr.METRICS)
    assert '| COIN |' in (tmp_path / 'prostate.md').read_text()
