import json
import math
import os.path as osp


def test_knn_tiny(tmp_path, bench):
    # Time cap 0: the method runs once on the probe queries and is
    # extrapolated (one subprocess), which keeps the test short.
    result = bench('knn').main([
        '--sizes', '1500', '--exact-sizes', '300', '--dim', '8', '--k', '5',
        '--methods', 'ours', '--time-cap', '0', '--probe', '200', '--out-dir',
        str(tmp_path)
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
