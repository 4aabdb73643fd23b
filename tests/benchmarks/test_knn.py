import json
import math

import pytest
import torch


@pytest.mark.slow
def test_knn_exact_tiny(tmp_path, bench):
    # Time cap 0: scikit-learn runs on 1,000 queries and is scaled, ours is
    # timed at the first N and scaled as N^2 at the second.
    out = bench('knn').main([
        '--parts', 'exact', '--sizes', '1500', '3000', '--exact-sizes', '300',
        '--dim', '8', '--k', '5', '--time-cap', '0', '--out-dir',
        str(tmp_path)
    ])['exact']
    assert [r['recall'] for r in out['exactness']] == [1.0]
    notes = {(r['N'], r['method']): r['note'] for r in out['rows']}
    assert notes[1500, 'ours'] == 'full run'
    assert notes[3000, 'ours'] == 'scaled as N^2 from N=1500'
    assert notes[3000, 'sklearn_brute'] == 'scaled from 1000 queries'
    for r in out['rows']:
        assert math.isfinite(r['time_s']) and r['time_s'] > 0
    for ext in ['json', 'md', 'png']:
        assert (tmp_path / f'knn_exact_gaussian8.{ext}').stat().st_size > 0
    with open(tmp_path / 'knn_exact_gaussian8.json') as f:
        assert json.load(f)['rows'][0]['N'] == 1500


@pytest.mark.slow
def test_knn_approximate_and_coin_tiny(tmp_path, bench, monkeypatch):
    # The approximate part on a tiny mixture and the COIN check on a tiny
    # synthetic "real" data set.
    pytest.importorskip('faiss')
    knn = bench('knn')
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(60)
    x = torch.randn(180, 20, generator=gen) + 4 * torch.eye(20)[y]
    monkeypatch.setattr(knn, 'load_features', lambda args: (x, y))
    out = knn.main([
        '--parts', 'approximate', 'coin', '--approx-sizes', '600', '--dim',
        '8', '--clusters', '5', '--queries', '200', '--k', '5',
        '--bandwidth-k', '3', '--nprobe', '4', '--ef-search', '16',
        '--approx', 'hnsw', 'ivf', '--coin-dim', '8', '--splits', '2',
        '--epochs', '5', '--out-dir', str(tmp_path)
    ])
    rows = out['approximate']['rows']
    assert [r['method'] for r in rows] == ['exact', 'hnsw', 'ivf']
    assert rows[0]['note'] == 'scaled from 200 queries'
    for r in rows:
        assert 0.9 <= r['recall'] <= 1 and r['time_s'] > 0
    assert all(math.isfinite(r['speedup']) for r in rows[1:])
    coin = out['coin']['rows']
    assert [r['graph'] for r in coin] == ['exact', 'hnsw', 'ivf']
    assert coin[0]['recall'] == 1.0 and coin[0]['diff']['mean'] == 0
    for r in coin:
        assert len(r['acc']) == 2 and 0 <= r['test_acc']['mean'] <= 1
    text = (tmp_path / 'knn_recall_mixture_600.md').read_text()
    assert 'speedup' in text and 'weights_s' in text
    assert 'diff' in (tmp_path / 'knn_coin_CS_2splits.md').read_text()


@pytest.mark.parametrize('method', ['hnsw', 'ivf', 'ivf_pq'])
def test_approximate_neighbors(bench, method):
    # Valid neighbours for gaussian_knn_graph, most of them the exact ones.
    pytest.importorskip('faiss')
    from torch_geometric_coin.utils import gaussian_knn_graph
    knn = bench('knn')
    x = knn.make_mixture(1200, 8, 4, seed=2)
    index = knn.approximate_neighbors(x, 6, method, nprobe=4, ef_search=32)
    assert index.shape == (1200, 6) and bool((index >= 0).all())
    assert not bool((index == torch.arange(1200).view(-1, 1)).any())
    assert knn.recall(index, knn.exact_knn(x, 6)) > 0.5
    gaussian_knn_graph(x, 6, 3, neighbors=index)


def test_knn_exact_references(bench):
    # The brute-force reference of the recall and the builder's neighbours
    # agree (as sets: the k nearest other points).
    knn = bench('knn')
    x = torch.randn(300, 4, generator=torch.Generator().manual_seed(1))
    ref = knn.exact_knn(x, 6)
    assert knn.recall(knn.builder_knn(x, 6), ref) == 1.0
    queries = torch.tensor([0, 7, 299])
    assert torch.equal(knn.exact_knn(x, 6, queries), ref[queries])
    assert not bool((ref == torch.arange(300).view(-1, 1)).any())
    assert knn.recall(ref[:, :3], ref) == 0.5
