"""A newcomer's first commands: every script's --help, --root as the
datasets folder with a one-line error on missing data, result files named
by what they hold, progress bars."""
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest

import common

BENCHMARKS = common.HERE
ROOT = common.REPO

# The shared helper modules; every other file of benchmarks/ is a script.
HELPERS = ('common', 'models', 'reporting', 'training')
SCRIPTS = sorted(
    osp.basename(p)[:-3] for p in glob.glob(osp.join(BENCHMARKS, '*.py'))
    if osp.basename(p)[:-3] not in HELPERS)


@pytest.fixture(scope='module')
def helps():
    r"""Runs every script's :obj:`--help` (two at a time: each imports
    torch) and returns :obj:`{script: CompletedProcess-like (rc, out)}`."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    results, pending = {}, list(SCRIPTS)
    running = []
    while pending or running:
        while pending and len(running) < 2:
            name = pending.pop(0)
            running.append((name, subprocess.Popen(
                [sys.executable, osp.join('benchmarks', f'{name}.py'),
                 '--help'], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True,
                stdin=subprocess.DEVNULL)))
        name, proc = running.pop(0)
        out, err = proc.communicate(timeout=120)
        results[name] = (proc.returncode, out, err)
    return results


@pytest.mark.parametrize('script', SCRIPTS)
def test_help(helps, script):
    rc, out, err = helps[script]
    assert rc == 0, err[-2000:]
    assert 'usage:' in out
    # Defaults are shown, the default --out-dir is the untracked runs/.
    flat = ''.join(out.split())
    assert '(default:' in out
    assert '--out-dir' in out and ''.join(common.RUNS.split()) in flat


# (script, arguments besides --root and --out-dir) that need data:
NEEDS_DATA = [
    ('planetoid', ['--datasets', 'Cora', '--models', 'COIN']),
    ('planetoid', ['--protocol', 'public', '--datasets', 'Cora']),
    ('planetoid', ['--datasets', 'chameleon_filtered']),
    ('ablation', []),
    ('certify', []),
    ('knn', ['--parts', 'coin']),
    ('step_time', []),
    ('ogbn', []),
    ('few_shot', []),
    ('prostate', []),
    ('covid_forecast', []),
    ('scale', ['--real']),
]


@pytest.mark.parametrize('script,argv', NEEDS_DATA,
                         ids=[f'{s}-{i}' for i, (s, _) in
                              enumerate(NEEDS_DATA)])
def test_missing_data_is_one_line(bench, script, argv, tmp_path, capsys):
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(SystemExit) as info:
        bench(script).main(argv + ['--root', str(empty), '--out-dir',
                                   str(tmp_path / 'out')])
    code = info.value.code
    message = capsys.readouterr().err + ('' if isinstance(code, int)
                                         else str(code))
    assert code != 0
    assert '--root' in message and common.ENV_VAR in message, message
    assert 'Traceback' not in message
    assert not (tmp_path / 'out').exists()


def test_root_is_the_datasets_folder(bench, monkeypatch):
    # One meaning of --root: the folder that holds planetoid/, npz/, ogb/,
    # ... (by default $TORCH_GEOMETRIC_COIN_DATASETS or ../shared/datasets).
    for script in ('planetoid', 'ablation', 'certify', 'step_time', 'ogbn',
                   'few_shot', 'prostate', 'scale'):
        module = bench(script)
        seen = {}

        def parse_args(parser, argv, name, seen=seen):
            seen['root'] = parser.get_default('root')
            raise SystemExit(0)

        monkeypatch.setattr(common, 'parse_args', parse_args)
        with pytest.raises(SystemExit):
            module.main([])
        monkeypatch.undo()
        assert seen['root'] == common.SHARED, script


def test_planetoid_runs_keep_their_files(bench, datasets_root, tmp_path,
                                         capsys):
    planetoid = bench('planetoid')
    out = tmp_path / 'out'
    for models in (['SGC'], ['MLP']):
        planetoid.main([
            '--datasets', 'Cora', '--protocol', 'public', '--seeds', '1',
            '--epochs', '1', '--models', *models, '--root', datasets_root,
            '--out-dir', str(out), '--threads', '1'])
    assert sorted(os.listdir(out)) == [
        f'planetoid_public_Cora_{m}_1seeds.{ext}'
        for m in ('MLP', 'SGC') for ext in ('json', 'md')]
    printed = capsys.readouterr().out
    assert f"wrote {out / 'planetoid_public_Cora_MLP_1seeds.md'}" in printed


def test_axioms_progress_bar(bench, tmp_path, capsys):
    axioms = bench('axioms')
    axioms.main(['--num-nodes', '8', '--K', '2', '--trials', '1',
                 '--out-dir', str(tmp_path)])
    err = capsys.readouterr().err
    cases = len(axioms.NORMALIZATIONS) * len(axioms.SCHEMES) * 2 + 3
    assert 'operators' in err and f'{cases}/{cases}' in err
