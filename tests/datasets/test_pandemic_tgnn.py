import csv
import json
import os.path as osp

import pytest
import torch

from torch_geometric_coin.datasets import PandemicTGNN

DATES = ['2020-03-01', '2020-03-02', '2020-03-03']
# Label-file order; 'delta' has cases but no mobility data.
LABELS = [
    ['zulu', 1, 2, 3],
    ['delta', 9, 9, 9],
    ['alpha', 0, 5, 7],
    ['mike', 4, 0, 1],
]
GRAPHS = {
    '2020-03-01': [['mike', 'alpha', 12.0], ['alpha', 'alpha', 100.0],
                   ['zulu', 'mike', 3.5]],
    '2020-03-02': [],  # A day without any movement.
    '2020-03-03': [['alpha', 'zulu', 7.0], ['zulu', 'zulu', 250.0]],
}


def write_country(root, country='Italy', labels=LABELS, graphs=GRAPHS,
                  dates=DATES, prefix='IT'):
    r"""Writes the raw files of :obj:`country` in the format of the
    pandemic_tgnn repository (Italy's label file has an unnamed index
    column) and returns the folder of the country."""
    folder = osp.join(str(root), country)
    (root / country / 'graphs').mkdir(parents=True, exist_ok=True)
    with open(osp.join(folder, f'{country.lower()}_labels.csv'), 'w',
              newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['', 'name'] + dates)
        for i, row in enumerate(labels):
            writer.writerow([i] + row)
    for day, edges in graphs.items():
        with open(osp.join(folder, 'graphs', f'{prefix}_{day}.csv'), 'w',
                  newline='') as f:
            csv.writer(f).writerows(edges)
    return folder


def test_pandemic_tgnn(tmp_path):
    write_country(tmp_path)
    dataset = PandemicTGNN(str(tmp_path), 'Italy')
    assert len(dataset) == 3
    # The regions of the mobility graphs, in the order of the label file:
    assert dataset.regions == ['zulu', 'alpha', 'mike']
    names = dataset.regions
    for t, day in enumerate(DATES):
        data = dataset[t]
        assert data.date == day and data.num_nodes == 3
        rows = {row[0]: row[1 + t] for row in LABELS}
        assert data.y.tolist() == [rows[n] for n in names]
        assert data.y.dtype == torch.float
        # Edges in the file's order, self-loops kept:
        edges = [[names[i], names[j], w] for (i, j), w in zip(
            data.edge_index.t().tolist(), data.edge_weight.tolist())]
        assert edges == GRAPHS[day]
        assert data.edge_index.dtype == torch.long
    # The day without movement has an empty graph:
    assert dataset[1].edge_index.shape == (2, 0)
    assert dataset[1].edge_weight.shape == (0, )
    # The cases of all days:
    cases = torch.stack([data.y for data in dataset])
    assert cases[:, 1].tolist() == [0, 5, 7]  # alpha
    assert 'Italy' in repr(dataset)

    # Processed once; the processed data is reused, also for another name.
    assert osp.isfile(osp.join(str(tmp_path), 'Italy', 'processed',
                               'data.pt'))
    again = PandemicTGNN(str(tmp_path), 'italy')
    assert again.regions == names
    assert torch.equal(again[2].edge_weight, dataset[2].edge_weight)


def test_pandemic_tgnn_pre_filter_and_transform(tmp_path):
    write_country(tmp_path)

    def pre_transform(data):
        data.total = data.y.sum().view(1)
        return data

    dataset = PandemicTGNN(str(tmp_path), 'Italy',
                           pre_filter=lambda d: d.edge_index.numel() > 0,
                           pre_transform=pre_transform)
    assert [data.date for data in dataset] == ['2020-03-01', '2020-03-03']
    assert dataset[1].total.tolist() == [3. + 7 + 1]
    with pytest.raises(ValueError, match="'pre_filter' rejects every day"):
        PandemicTGNN(str(tmp_path), 'Italy', pre_filter=lambda d: False,
                     force_reload=True)


def test_pandemic_tgnn_country(tmp_path):
    with pytest.raises(ValueError, match="Unknown 'country'"):
        PandemicTGNN(str(tmp_path), 'Atlantis')


@pytest.mark.parametrize('change,file,match', [
    (dict(labels=[['zulu', 1, 'nan', 3]] + LABELS[1:]), 'italy_labels.csv',
     'case count'),
    (dict(labels=[['zulu', 1, -2, 3]] + LABELS[1:]), 'italy_labels.csv',
     'non-negative'),
    (dict(labels=[['zulu', 1, 'many', 3]] + LABELS[1:]), 'italy_labels.csv',
     'not a number'),
    (dict(labels=LABELS + [['zulu', 0, 0, 0]]), 'italy_labels.csv',
     'twice'),
    (dict(labels=[['zulu', 1, 2]] + LABELS[1:]), 'italy_labels.csv',
     'fields'),
    (dict(graphs={**GRAPHS, '2020-03-03': [['alpha', 'zulu', -7.0]]}),
     'IT_2020-03-03.csv', 'non-negative'),
    (dict(graphs={**GRAPHS, '2020-03-03': [['alpha', 'zulu', 'inf']]}),
     'IT_2020-03-03.csv', 'non-negative'),
    (dict(graphs={**GRAPHS, '2020-03-03': [['alpha', 'zulu', 'x']]}),
     'IT_2020-03-03.csv', 'not a number'),
    (dict(graphs={**GRAPHS, '2020-03-03': [['alpha', 'zulu']]}),
     'IT_2020-03-03.csv', 'expected 3'),
    (dict(graphs={**GRAPHS, '2020-03-03': [['alpha', 'oscar', 1.0]]}),
     'IT_2020-03-03.csv', "'oscar' is not in the label file"),
    (dict(graphs={'2020-03-01': GRAPHS['2020-03-01'],
                  '2020-03-03': GRAPHS['2020-03-03']}),
     'graphs', 'between 2020-03-01 and 2020-03-03'),
    (dict(graphs={**GRAPHS, '2020-03-04': []}), 'italy_labels.csv',
     '2020-03-04'),
    (dict(graphs={day: [] for day in DATES}), 'graphs', 'no edges'),
    (dict(graphs={}), 'graphs', 'no graph file'),
    # float32 (the stored dtype) would make these inf:
    (dict(graphs={**GRAPHS, '2020-03-03': [['alpha', 'zulu', 1e39]]}),
     'IT_2020-03-03.csv', 'line 1: the weight .* exceeds the range of '
     'float32'),
    (dict(labels=[['zulu', 1, 2, '4e38']] + LABELS[1:]), 'italy_labels.csv',
     'line 2: the case count .* exceeds the range of float32'),
    # The same edge twice (would be summed by message passing):
    (dict(graphs={**GRAPHS, '2020-03-03': [['alpha', 'zulu', 1.0],
                                           ['zulu', 'zulu', 2.0],
                                           ['alpha', 'zulu', 3.0]]}),
     'IT_2020-03-03.csv', "lines 1 and 3: the edge 'alpha' -> 'zulu' "
     "occurs twice"),
])
def test_pandemic_tgnn_invalid_files(tmp_path, change, file, match):
    write_country(tmp_path, **change)
    with pytest.raises(ValueError, match=match) as info:
        PandemicTGNN(str(tmp_path), 'Italy')
    assert file in str(info.value)


def test_pandemic_tgnn_unreadable_label_files(tmp_path):
    folder = write_country(tmp_path)
    file = osp.join(folder, 'italy_labels.csv')
    with open(file, 'wb') as f:
        f.write(b'name,2020-03-01\n\xff\xfe\x00zulu,1\n')
    with pytest.raises(ValueError, match='italy_labels.csv.*not a readable'):
        PandemicTGNN(str(tmp_path), 'Italy')
    with open(file, 'w') as f:
        f.write('region,2020-03-01\nzulu,1\n')
    with pytest.raises(ValueError, match="italy_labels.csv' has no 'name'"):
        PandemicTGNN(str(tmp_path), 'Italy')
    with open(file, 'w') as f:
        f.write('')
    with pytest.raises(ValueError, match="italy_labels.csv' is empty"):
        PandemicTGNN(str(tmp_path), 'Italy')


def test_pandemic_tgnn_missing_graphs(tmp_path):
    folder = write_country(tmp_path, graphs={})
    (tmp_path / 'Italy' / 'graphs').rmdir()
    with pytest.raises(FileNotFoundError, match='graphs'):
        PandemicTGNN(str(tmp_path), 'Italy')
    assert osp.isfile(osp.join(folder, 'italy_labels.csv'))


def test_pandemic_tgnn_france(shared_copy):
    folder = shared_copy('pandemic_tgnn/France', 'france_labels.csv',
                         'graphs')
    dataset = PandemicTGNN(osp.dirname(folder), 'France')
    with open(osp.join(folder, 'france_labels.csv'), newline='') as f:
        labels = list(csv.DictReader(f))
    with open(osp.join(folder, 'graphs', 'FR_2020-03-10.csv'),
              newline='') as f:
        edges = list(csv.reader(f))
    # 81 of the 94 departments of the label file have mobility data:
    assert len(labels) == 94 and len(dataset.regions) == 81
    assert dataset.regions == [row['name'] for row in labels
                               if row['name'] in dataset.regions]
    assert len(dataset) == 64 and dataset[0].date == '2020-03-10'
    assert dataset[-1].date == '2020-05-12'
    # Day 0 is the date of the first graph file:
    cases = {row['name']: float(row['2020-03-10']) for row in labels}
    assert dataset[0].y.tolist() == [cases[n] for n in dataset.regions]
    names = dataset.regions
    src, dst = dataset[0].edge_index
    assert len(edges) == src.numel()
    assert [names[i] for i in src[:3].tolist()] == [e[0] for e in edges[:3]]
    assert [names[i] for i in dst[:3].tolist()] == [e[1] for e in edges[:3]]
    assert torch.equal(dataset[0].edge_weight[:3],
                       torch.tensor([float(e[2]) for e in edges[:3]]))


def test_pandemic_tgnn_england_is_england_covid(shared_copy):
    r"""England is PyTorch Geometric Temporal's England COVID-19 data set
    (:obj:`england_covid.json`) with its regions in another order."""
    json_file = osp.join(shared_copy('england_covid', 'england_covid.json'),
                         'england_covid.json')
    folder = shared_copy('pandemic_tgnn/England', 'england_labels.csv',
                         'graphs')
    dataset = PandemicTGNN(osp.dirname(folder), 'England')
    with open(json_file) as f:
        raw = json.load(f)
    assert len(dataset) == raw['time_periods'] == 61
    assert len(dataset.regions) == len(raw['y'][0]) == 129
    cases = torch.stack([data.y for data in dataset])
    assert cases.shape == (61, 129)
    # The JSON's region of each index, from the edges of day 0:
    perm = {}
    pairs = raw['edge_mapping']['edge_index']['0']
    assert len(pairs) == dataset[0].edge_index.size(1)
    for (i, j), (a, b) in zip(pairs, dataset[0].edge_index.t().tolist()):
        assert perm.setdefault(i, a) == a and perm.setdefault(j, b) == b
    perm = torch.tensor([perm[i] for i in range(129)])
    assert perm.unique().numel() == 129
    assert torch.equal(cases[:, perm], torch.tensor(raw['y']).float())
    for t in range(61):
        pairs = torch.tensor(raw['edge_mapping']['edge_index'][str(t)])
        assert torch.equal(perm[pairs].t(), dataset[t].edge_index)
        assert torch.equal(
            dataset[t].edge_weight,
            torch.tensor(raw['edge_mapping']['edge_weight'][str(t)]).float())


def test_pandemic_tgnn_duplicate_day_column(tmp_path):
    # The cases of a day given twice would be interleaved silently:
    write_country(tmp_path, labels=[row + [99] for row in LABELS],
                  dates=DATES + ['2020-03-02'])
    with pytest.raises(ValueError, match="italy_labels.csv' has two columns "
                       "of the day 2020-03-02"):
        PandemicTGNN(str(tmp_path), 'Italy')


@pytest.mark.parametrize('empty', [b'', b'\n\r\n\n'])
def test_pandemic_tgnn_days_without_edges(tmp_path, empty):
    # Legitimate days without movement, first and last, give empty graphs of
    # the right shapes and dtypes, which batch with the others.
    from torch_geometric.data import Batch
    graphs = {'2020-03-01': [], '2020-03-02': GRAPHS['2020-03-01'],
              '2020-03-03': []}
    folder = write_country(tmp_path, graphs=graphs)
    for day in ['2020-03-01', '2020-03-03']:
        with open(osp.join(folder, 'graphs', f'IT_{day}.csv'), 'wb') as f:
            f.write(empty)
    dataset = PandemicTGNN(str(tmp_path), 'Italy')
    assert dataset.regions == ['zulu', 'alpha', 'mike']
    for t in [0, 2]:
        data = dataset[t]
        assert data.edge_index.shape == (2, 0)
        assert data.edge_index.dtype == torch.long
        assert data.edge_weight.shape == (0, )
        assert data.edge_weight.dtype == torch.float
        assert data.num_nodes == 3 and data.y.shape == (3, )
    batch = Batch.from_data_list(list(dataset))
    assert batch.num_nodes == 9 and batch.edge_index.size(1) == 3
    assert batch.edge_index.tolist() == [[5, 4, 3], [4, 4, 5]]
    assert batch.edge_weight.tolist() == [12.0, 100.0, 3.5]


@pytest.mark.parametrize('file,content', [
    ('regions.json', b'["zulu", '),  # Truncated.
    ('regions.json', b'\xff\xfe\x00'),  # Not UTF-8.
    ('regions.json', b'{"zulu": 0}'),  # Not a list.
    ('regions.json', b'["zulu", "alpha"]'),  # A region missing.
    ('data.pt', b''),
    ('data.pt', b'PK\x03\x04garbage'),
])
def test_pandemic_tgnn_damaged_processed_files(tmp_path, file, content):
    write_country(tmp_path)
    ref = PandemicTGNN(str(tmp_path), 'Italy')
    path = osp.join(str(tmp_path), 'Italy', 'processed', file)
    with open(path, 'wb') as f:
        f.write(content)
    with pytest.raises(ValueError) as info:
        PandemicTGNN(str(tmp_path), 'Italy')
    assert f"processed file '{path}'" in str(info.value)
    assert 'force_reload=True' in str(info.value)
    dataset = PandemicTGNN(str(tmp_path), 'Italy', force_reload=True)
    assert dataset.regions == ref.regions
    assert torch.equal(dataset[2].edge_weight, ref[2].edge_weight)
