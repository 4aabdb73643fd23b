import copy

import pytest
import torch

import common
import decoupled
from training import fit

from torch_geometric.data import Data

from torch_geometric_coin.nn import COIN

# 'fork' starts the processes in a second; spawn() defaults to 'spawn' (as
# mp.spawn), which re-imports torch in each process (15 s here).
START = 'fork'


def _data(num_nodes=30, num_classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    edge_index = common.random_graph(num_nodes, 4 * num_nodes, seed=seed)
    y = torch.randint(num_classes, (num_nodes, ), generator=gen)
    x = torch.randn(num_nodes, 5, generator=gen) + y.view(-1, 1)
    train = torch.zeros(num_nodes, dtype=torch.bool)
    train[:num_nodes // 2] = True
    val = torch.zeros_like(train)
    val[num_nodes // 2:3 * num_nodes // 4] = True
    return Data(x=x, y=y, edge_index=edge_index), train, val, ~(train | val)


def _model(seed=0, **kwargs):
    torch.manual_seed(seed)
    kwargs = dict(dict(hidden_channels=8, K=3, sigma2=0.3, dropout=0.,
                       cached=True, stability='ignore'), **kwargs)
    return COIN(5, 3, **kwargs)


def _assert_same_parameters(a, b, atol=1e-5):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=atol, rtol=1e-4), name


def test_one_batch_steps_equal_fit():
    data, train, _, test = _data()
    full, dec = _model(), _model()
    kwargs = dict(epochs=4, lr=0.05, weight_decay=0.01)
    fit(full, data, train, None, test, **kwargs)
    res = decoupled.train(dec, data, train, None, test,
                          batch_size=int(train.sum()), **kwargs)
    _assert_same_parameters(full, dec)
    changed = _model()
    with pytest.raises(AssertionError):
        _assert_same_parameters(changed, dec)
    assert res['epochs'] == res['epoch'] == 4 and res['bound'] == 0
    assert set(res) >= {'train_acc', 'test_acc', 'train_loss', 'test_loss',
                        'time_per_epoch', 'preprocess_time', 'predict_time'}


def test_batch_loss_is_the_full_forward():
    data, train, _, _ = _data()
    model = _model().eval()
    seeds = train.nonzero().view(-1)
    rows = decoupled.preprocess(model, data.edge_index, data.num_nodes,
                                seeds)
    positions = torch.tensor([3, 0, 7, 11])
    out = decoupled.batch_log_prob(model.base, data.x, rows, positions)
    ref = model(data.x, data.edge_index)[seeds[positions]]
    assert torch.allclose(out, ref, atol=1e-5)
    y = data.y[seeds[positions]]
    assert torch.allclose(torch.nn.functional.nll_loss(out, y),
                          torch.nn.functional.nll_loss(ref, y), atol=1e-6)


def test_predict_in_chunks():
    data, _, _, _ = _data()
    model = _model(hidden_channels=4).eval()
    ref = model(data.x, data.edge_index)
    for max_memory in (None, 1):  # 1 byte: one class at a time
        out = decoupled.predict(model, data.x, data.edge_index,
                                chunk_size=7, max_memory=max_memory)
        assert torch.allclose(out, ref, atol=1e-6)


def test_schedule_covers_every_seed_once():
    parts = decoupled.shards(11, 2, seed=0)
    assert sorted(torch.cat(parts).tolist()) == list(range(11))
    steps = decoupled.epoch_batches([p.numel() for p in parts], 4, 1, 0)
    for r, p in enumerate(parts):
        seen = torch.cat([s[r] for s in steps])
        assert sorted(seen.tolist()) == list(range(p.numel()))
    assert all(sum(s.numel() for s in step) <= 4 for step in steps)


def test_two_processes_equal_one():
    data, train, val, test = _data()
    one, two = _model(), _model()
    kwargs = dict(epochs=2, lr=0.05, weight_decay=0.01, batch_size=6,
                  seed=1)
    res_one = decoupled.train(one, data, train, val, test, num_shards=2,
                              **kwargs)
    res_two = decoupled.spawn(2, two, data, train, val, test, timeout=120,
                              start_method=START,
                              **kwargs)
    _assert_same_parameters(one, two)
    for key in ('test_acc', 'val_acc', 'epoch'):
        assert res_one[key] == pytest.approx(res_two[key], abs=1e-6), key
    assert res_two['nnz'] < res_one['nnz']  # rank 0 held its shard only


def test_truncation_and_errors():
    data, train, val, test = _data()
    res = decoupled.train(_model(), data, train, val, test, epochs=2,
                          eps=1e-2)
    assert 0 < res['bound'] < 1
    with pytest.raises(ValueError, match='learn_sigma2'):
        decoupled.train(_model(learn_sigma2=True), data, train, val, test)
    with pytest.raises(ValueError, match="'batch_size'"):
        decoupled.train(_model(), data, train, val, test, batch_size=0)
    with pytest.raises(ValueError, match="'num_shards'"):
        decoupled.train(copy.deepcopy(_model()), data, train, val, test,
                        num_shards=100)
