import json
import math

import pytest


@pytest.mark.slow
def test_axioms_tiny(bench, tmp_path):
    out = bench('axioms').main(['--num-nodes', '12', '--K', '3', '--trials',
                                '2', '--out-dir', str(tmp_path)])
    with open(tmp_path / 'axioms.json') as f:
        assert json.load(f)['results'] == out['results']
    labels = [r['label'] for r in out['results']]
    # 4 normalisations x schemes x 2 regimes + 3 PyG operators:
    assert len(labels) == 8 * len(out['schemes']) + 3
    for res in out['results']:
        for axiom in res['axioms'].values():
            if axiom['holds'] is not None:
                assert isinstance(axiom['violation'], str) or math.isfinite(
                    axiom['violation'])
    by_label = {r['label']: r['axioms'] for r in out['results']}
    assert by_label['GCNConv (identity weight, no bias)']['linearity'][
        'holds'] is True
    # The verdicts the theory predicts for our layer: the explicit scheme
    # loses the comparison principle past its stability limit (the implicit
    # one never does), 'sym' does not keep constants, 'rw' is not
    # self-adjoint; everything is linear and a semigroup.
    ours = [lab for lab in by_label if lab.startswith('CoinDiffusionConv')]
    assert len(ours) == 8 * len(out['schemes'])
    for label in ours:
        verdict = {k: v['holds'] for k, v in by_label[label].items()}
        assert verdict == dict(
            comparison=not ('explicit' in label and 'unstable' in label),
            constants="'sym'" not in label, linearity=True, semigroup=True,
            symmetry="'rw'" not in label), (label, verdict)
    appnp = by_label[next(lab for lab in by_label if lab.startswith('APPNP'))]
    assert appnp['constants']['holds'] is False
    assert appnp['semigroup']['holds'] is False
    table = (tmp_path / 'axioms.md').read_text()
    assert table.count('\n| ') == len(labels) + 1
