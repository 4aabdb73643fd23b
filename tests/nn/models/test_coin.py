import pytest
import torch
import torch.nn.functional as F

from torch_geometric_coin.nn import COIN, diffused_nll_loss


def two_blobs(n=60, seed=0):
    r"""Two classes on a graph of two communities with noisy features."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = F.one_hot(y, 2).float() + 1.5 * torch.randn(n, 2, generator=gen)
    x = torch.cat([x, torch.randn(n, 6, generator=gen)], dim=1)
    src = torch.randint(n, (6 * n, ), generator=gen)
    dst = torch.randint(n, (6 * n, ), generator=gen)
    keep = (y[src] == y[dst]) & (src != dst)
    edge_index = torch.stack([src[keep], dst[keep]])
    edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    return x, edge_index, y


def test_coin_outputs_log_probabilities():
    x, edge_index, y = two_blobs()
    for diffuse in ['prob', 'logits', 'hidden']:
        model = COIN(8, 2, K=5, sigma2=0.2, diffuse=diffuse)
        out = model(x, edge_index)
        assert out.size() == (60, 2)
        assert torch.allclose(out.exp().sum(-1), torch.ones(60), atol=1e-5)
        F.nll_loss(out, y).backward()
        assert all(p.grad is not None for p in model.parameters())


def test_coin_with_k0_is_the_base_classifier():
    x, edge_index, _ = two_blobs()
    model = COIN(8, 2, K=0).eval()
    assert torch.allclose(model(x, edge_index),
                          model.base(x).log_softmax(-1), atol=1e-6)
    assert str(model) == ("COIN(8, 2, diffuse='prob', diffusion="
                          "CoinDiffusionConv(K=0, sigma2=0.35, "
                          "normalization='coin'))")


def test_coin_diffuses_the_probabilities():
    x, edge_index, _ = two_blobs()
    model = COIN(8, 2, K=3, sigma2=0.2).eval()
    prob = model.base(x).softmax(-1)
    expected = model.diffusion(prob, edge_index).log()
    assert torch.allclose(model(x, edge_index), expected, atol=1e-6)


def test_coin_diffuses_logits_and_hidden_features():
    x, edge_index, _ = two_blobs()
    model = COIN(8, 2, K=3, sigma2=0.2, diffuse='logits').eval()
    expected = model.diffusion(model.base(x), edge_index).log_softmax(-1)
    assert torch.allclose(model(x, edge_index), expected, atol=1e-6)
    assert not torch.allclose(model(x, edge_index),
                              model.base(x).log_softmax(-1), atol=1e-3)

    model = COIN(8, 2, hidden_channels=16, K=3, sigma2=0.2,
                 diffuse='hidden').eval()
    h = model.diffusion(model.base.encode(x), edge_index)
    expected = model.base.lin_out(h).log_softmax(-1)
    assert torch.allclose(model(x, edge_index), expected, atol=1e-6)
    # In training, the hidden path drops out before the output map, as the
    # base classifier does (the same random draws give the same output):
    model.train()
    torch.manual_seed(1)
    out = model(x, edge_index)
    torch.manual_seed(1)
    h = model.diffusion(model.base.encode(x), edge_index)
    h = F.dropout(h, p=0.5, training=True)
    assert torch.allclose(out, model.base.lin_out(h).log_softmax(-1),
                          atol=1e-6)


def test_diffusion_helps_on_a_homophilous_graph():
    x, edge_index, y = two_blobs(n=200)
    train = torch.zeros(200, dtype=torch.bool)
    train[:20] = True
    val = torch.zeros(200, dtype=torch.bool)
    val[20:60] = True
    test = torch.zeros(200, dtype=torch.bool)
    test[60:] = True
    accs = {}
    for K in [0, 10]:
        torch.manual_seed(0)
        model = COIN(8, 2, K=K, sigma2=0.3, dropout=0.2)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01,
                                     weight_decay=5e-4)
        best_val = -1.0
        for _ in range(60):
            model.train()
            optimizer.zero_grad()
            F.nll_loss(model(x, edge_index)[train], y[train]).backward()
            optimizer.step()
            model.eval()
            pred = model(x, edge_index).argmax(-1)
            val_acc = float((pred[val] == y[val]).float().mean())
            if val_acc > best_val:
                best_val = val_acc
                accs[K] = float((pred[test] == y[test]).float().mean())
    assert accs[10] > accs[0] + 0.1, accs


def test_diffused_nll_loss_is_finite_at_zero_probability():
    prob = torch.tensor([[0.0, 1.0], [0.5, 0.5], [-1e-3, 1.001]],
                        requires_grad=True)
    y = torch.tensor([0, 1, 0])
    naive = F.nll_loss(prob.log(), y)
    assert not torch.isfinite(naive)  # what the authors' code can hit
    loss = diffused_nll_loss(prob, y)
    assert torch.isfinite(loss)
    loss.backward()
    assert bool(torch.isfinite(prob.grad).all())
    ok = torch.tensor([[0.2, 0.8], [0.5, 0.5]])
    assert torch.allclose(diffused_nll_loss(ok, y[:2]),
                          F.nll_loss(ok.log(), y[:2]))
    for reduction in ['sum', 'none']:
        assert torch.allclose(diffused_nll_loss(ok, y[:2], reduction),
                              F.nll_loss(ok.log(), y[:2],
                                         reduction=reduction))


def test_coin_learned_edge_weights_and_reset_parameters():
    x, edge_index, y = two_blobs()
    for learn, kwargs in [('kernel', {}),
                          ('per_edge', dict(num_edges=edge_index.size(1)))]:
        torch.manual_seed(0)
        model = COIN(8, 2, K=4, sigma2=0.2, learn_edge_weights=learn,
                     learn_sigma2=True, cached=True, **kwargs).eval()
        out = model(x, edge_index)
        F.nll_loss(out, y).backward()
        params = dict(model.named_parameters())
        assert all(p.grad is not None for p in params.values())
        weight = model.edge_weights(x, edge_index) if learn == 'kernel' \
            else model.edge_weights(edge_index)
        ref = model.diffusion(model.base(x).softmax(-1), edge_index,
                              weight).log()
        assert torch.allclose(out, ref, atol=1e-6)
        # reset_parameters resets every part, the diffusion included:
        init = {k: v.detach().clone() for k, v in params.items()}
        with torch.no_grad():
            for p in params.values():
                p.add_(1.0)
        model.reset_parameters()
        assert model.diffusion._cached_op is None
        assert abs(float(model.diffusion.sigma2) - 0.2) < 1e-6
        if learn == 'per_edge':
            assert torch.allclose(model.edge_weights.weight,
                                  init['edge_weights.weight'])
        else:
            assert not torch.allclose(model.edge_weights.lin.weight,
                                      init['edge_weights.lin.weight'] + 1)
    with pytest.raises(ValueError, match="'num_edges' is needed for"):
        COIN(8, 2, learn_edge_weights='per_edge')
    with pytest.raises(ValueError, match="Unknown 'learn_edge_weights'"):
        COIN(8, 2, learn_edge_weights='foo')


def test_coin_errors():
    with pytest.raises(ValueError, match="Unknown 'diffuse'"):
        COIN(8, 2, diffuse='foo')
