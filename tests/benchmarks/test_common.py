
import pytest
import torch


def test_random_split(common):
    y = torch.arange(5).repeat_interleave(torch.tensor([60, 55, 70, 50, 80]))
    train, val, test = common.random_split(y, 20, 30, seed=3)
    for c in range(5):
        assert int(train[y == c].sum()) == 20 and int(val[y == c].sum()) == 30
    assert not (train & val).any() and not (train & test).any()
    assert int((train | val | test).sum()) == y.numel()
    again = common.random_split(y, 20, 30, seed=3)
    other = common.random_split(y, 20, 30, seed=4)
    assert torch.equal(train, again[0]) and not torch.equal(train, other[0])
    with pytest.raises(ValueError, match='Class 3 has 50 nodes'):
        common.random_split(y, 26, 26)


def test_measure_peak_memory(common):
    MiB = 2**20
    held = torch.ones(8 * MiB // 4)

    def alloc():
        x = torch.ones(64 * MiB // 4)  # +64 MiB
        y = x * 2  # +64 MiB: the peak, 128 MiB
        del y
        held.resize_(0)  # frees 8 MiB allocated before the call
        z = torch.ones(16 * MiB // 4)  # 64 + 16 = 80 MiB < 128 MiB
        return float(x.sum() + z.sum())

    out, peak, method = common.measure_peak_memory(alloc,
                                                   torch.device('cpu'))
    assert out == 80 * MiB // 4
    assert 'profiler' in method
    assert 128 * MiB <= peak < 128 * MiB + 4096, peak

    # Autograd: the saved activations and the gradients are counted.
    w = torch.randn(1024, 1024, requires_grad=True)  # 4 MiB

    def train_step():
        h = (torch.randn(4096, 1024) @ w).relu()  # input, h, mask: 16 each
        h.sum().backward()

    _, peak, _ = common.measure_peak_memory(train_step, torch.device('cpu'))
    assert 36 * MiB <= peak <= 80 * MiB, peak / MiB

    # The same figure in every run of the process, and 0 for no work.
    again = [common.measure_peak_memory(alloc, torch.device('cpu'))[1]
             for _ in range(2)]
    assert again[0] == again[1] and again[0] < 128 * MiB + 4096
    assert common.measure_peak_memory(lambda: None,
                                      torch.device('cpu'))[1] == 0


def test_load_planetoid_paper_protocol(common, planetoid_root):
    data = common.load_planetoid(planetoid_root, 'Cora', 'paper')
    assert data.num_nodes == 2485  # largest connected component of Cora
    assert 'train_mask' not in data
    rows = data.x.sum(dim=1)
    assert torch.allclose(rows, torch.ones_like(rows))
    for row in data.x[:50]:  # binary features, row-normalised
        nz = row[row > 0]
        assert torch.allclose(nz, torch.full_like(nz, 1.0 / nz.numel()))
    public = common.load_planetoid(planetoid_root, 'Cora', 'public')
    assert public.num_nodes == 2708 and int(public.train_mask.sum()) == 140
    with pytest.raises(ValueError, match='Unknown protocol'):
        common.load_planetoid(planetoid_root, 'Cora', 'full')


@pytest.mark.parametrize('name', ['MLP', 'GCN', 'GAT', 'APPNP', 'SGC',
                                  'GCNII', 'COIN', 'ResNet'])
def test_build_model(common, name):
    model, train = common.build_model(name, 'Cora', 12, 3,
                                      dict(K=3, sigma2=0.1))
    x = torch.rand(10, 12)
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]])
    out = model(x, edge_index)
    assert out.shape == (10, 3)
    assert torch.allclose(out.exp().sum(dim=-1), torch.ones(10), atol=1e-5)
    assert train['lr'] > 0 and train['epochs'] >= 100
    if name == 'ResNet':
        assert model.diffusion.K == 0
    with pytest.raises(ValueError, match='Unknown model'):
        common.build_model('GIN', 'Cora', 12, 3)
