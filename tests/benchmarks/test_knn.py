import json
import math
import os.path as osp

import pytest
import torch


def test_knn_tiny(tmp_path, bench):
    # Time cap 0: the method runs once on the probe queries and is
    # extrapolated (one subprocess), which keeps the test short.
    result = bench('knn').main([
        '--parts', 'exactness', 'speed', '--sizes', '1500', '--exact-sizes',
        '300', '--dim', '8', '--k', '5', '--methods', 'ours', '--time-cap',
        '0', '--probe', '200', '--out-dir', str(tmp_path)
    ])
    assert [r['recall'] for r in result['exactness']] == [1.0]
    assert [r['method'] for r in result['speed']] == ['ours']
    for r in result['speed']:
        assert math.isfinite(r['time_s']) and r['time_s'] > 0
        assert r['extrapolated'] and r['measured_queries'] == 200
        assert r['peak_rss_mib'] > 0
    for name in ['knn.json', 'knn.md', 'knn.png']:
        assert osp.getsize(tmp_path / name) > 0
    with open(tmp_path / 'knn.json') as f:
        assert json.load(f)['speed'][0]['N'] == 1500


def test_knn_approximate_and_coin_tiny(tmp_path, bench, monkeypatch):
    # The approximate part on a tiny mixture (all queries: exact recall
    # reference in full) and the COIN check on a tiny synthetic "real" set.
    pytest.importorskip('faiss')
    knn = bench('knn')
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(60)
    x = torch.randn(180, 20, generator=gen) + 4 * torch.eye(20)[y]
    monkeypatch.setattr(knn, 'load_features', lambda args: (x, y))
    result = knn.main([
        '--parts', 'approximate', 'coin', '--approx-sizes', '600', '--dim',
        '8', '--clusters', '5', '--queries', '200', '--k', '5',
        '--bandwidth-k', '3', '--nprobe', '4', '--ef-search', '16',
        '--approx', 'hnsw', 'ivf', '--coin-dim', '8', '--splits', '2',
        '--epochs', '5', '--out-dir', str(tmp_path)
    ])
    rows = result['approximate']
    assert [r['method'] for r in rows] == ['exact', 'hnsw', 'ivf']
    assert rows[0]['extrapolated'] and rows[0]['measured_queries'] == 200
    assert rows[1]['options'] == dict(hnsw_m=32, ef_construction=80,
                                      ef_search=16)
    assert rows[2]['options'] == dict(nlist=None, nprobe=4)
    for r in rows:
        assert 0.9 <= r['recall'] <= 1 and r['time_s'] > 0
        assert math.isfinite(r['speedup'])
    coin = result['coin']
    assert coin['num_nodes'] == 180 and coin['dim'] == 8
    assert [r['graph'] for r in coin['rows']] == ['exact', 'hnsw', 'ivf']
    assert coin['rows'][0]['recall'] == 1.0
    assert coin['rows'][0]['diff']['mean'] == 0
    for r in coin['rows']:
        assert len(r['acc']) == 2 and 0 <= r['summary']['mean'] <= 1
    assert not (tmp_path / 'knn.png').exists()
    with open(tmp_path / 'knn.md') as f:
        text = f.read()
    assert 'speed-up vs exact' in text and 'difference to exact' in text


@pytest.mark.parametrize('method', ['hnsw', 'ivf', 'ivf_pq'])
def test_approximate_neighbors_stay_in_their_graph(bench, method):
    # One index per graph: valid neighbours of gaussian_knn_graph (which
    # refuses nodes of another graph), most of them the exact ones.
    pytest.importorskip('faiss')
    from torch_geometric_coin.utils import gaussian_knn_graph
    from torch_geometric_coin.utils._gaussian_knn_graph import _exact_knn
    knn = bench('knn')
    x = torch.from_numpy(knn.make_mixture(1200, 8, 4, seed=2))
    batch = torch.arange(1200) % 3
    options = dict(hnsw_m=16, ef_construction=40, ef_search=32, nlist=None,
                   nprobe=4, pq_m=4)
    index = knn.approximate_neighbors(x, 6, method, options, batch)
    assert bool((batch[index] == batch.view(-1, 1)).all())
    assert knn.recall(index, _exact_knn(x, 6, batch)) > 0.5
    gaussian_knn_graph(x, 6, 3, batch=batch, neighbors=index)


def test_knn_exact_neighbours_of_queries(bench):
    # The reference of the recall: k nearest *other* points of the queries.
    from torch_geometric_coin.utils._gaussian_knn_graph import _exact_knn
    knn = bench('knn')
    x = torch.from_numpy(knn.make_mixture(300, 4, 3, seed=1))
    queries = torch.tensor([0, 7, 299])
    index, _ = knn.exact_on_queries(x, 6, queries)
    assert torch.equal(index, _exact_knn(x, 6)[queries])
    assert knn.recall(index, index) == 1.0
    assert knn.recall(index[:, :3], index) == 0.5
