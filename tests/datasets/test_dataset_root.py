import os.path as osp

import pytest

from torch_geometric_coin.datasets import (
    dataset_file,
    dataset_root,
    load_england_covid,
    load_omniglot,
    load_omniglot_runs,
    load_pandemic_tgnn,
    load_prostate,
)


def test_dataset_root(monkeypatch, tmp_path):
    monkeypatch.delenv('TORCH_GEOMETRIC_COIN_DATASETS', raising=False)
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    assert dataset_root() == osp.normpath(
        osp.join(repo, '..', 'shared', 'datasets'))
    monkeypatch.setenv('TORCH_GEOMETRIC_COIN_DATASETS', str(tmp_path))
    assert dataset_root() == str(tmp_path)
    assert dataset_root('/some/where') == '/some/where'
    (tmp_path / 'a').mkdir()
    (tmp_path / 'a' / 'b.txt').write_text('x')
    assert dataset_file(None, 'a', 'b.txt') == str(tmp_path / 'a' / 'b.txt')


@pytest.mark.parametrize('load,missing', [
    (load_omniglot, 'images_background_small1.zip'),
    (load_omniglot_runs, 'all_runs.zip'),
    (load_england_covid, 'england_covid.json'),
    (load_prostate, 'Prostate_GE.mat'),
    (lambda root: load_pandemic_tgnn('Italy', root), 'italy_labels.csv'),
])
def test_missing_data_names_the_file(tmp_path, load, missing):
    with pytest.raises(FileNotFoundError, match=missing):
        load(str(tmp_path))
