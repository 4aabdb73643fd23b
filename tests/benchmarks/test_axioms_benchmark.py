import json
import math
import os
import os.path as osp
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_axioms_benchmark_tiny(tmp_path):
    cmd = [
        sys.executable, osp.join(ROOT, 'benchmarks', 'axioms.py'),
        '--num-nodes', '12', '--K', '3', '--trials', '2', '--out',
        str(tmp_path)
    ]
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / 'axioms.json') as f:
        out = json.load(f)
    labels = [r['label'] for r in out['results']]
    # 4 normalisations x schemes x 2 regimes + 3 PyG operators:
    assert len(labels) == 8 * len(out['schemes']) + 3
    for res in out['results']:
        for name, axiom in res['axioms'].items():
            if axiom['holds'] is not None:
                assert isinstance(axiom['violation'], str) or math.isfinite(
                    axiom['violation'])
    by_label = {r['label']: r['axioms'] for r in out['results']}
    assert by_label['GCNConv (identity weight, no bias)']['linearity'][
        'holds'] is True
    table = (tmp_path / 'axioms.md').read_text()
    assert table.count('\n| ') == len(labels) + 1
