import os
import os.path as osp

import numpy as np
import pytest
import torch

from torch_geometric_coin.datasets import P1000
from torch_geometric_coin.datasets.p1000 import (
    CNA,
    CODING_GENES,
    MUTATIONS,
    RESPONSE,
    SELECTED_GENES,
    amplification_features,
    deletion_features,
    gene_order,
    mutation_features,
    split_file,
)

pytest.importorskip('pandas')

# A tiny cohort in the files' format. The mutation and copy-number tables
# list other patients, in other orders, and other genes; 'X' is not an
# expressed gene, 'E' not a protein-coding one; P3's response is missing.
FILES = {
    MUTATIONS: ('Tumor_Sample_Barcode,A,B,C,X\n'
                'P1,0,2,1,5\n'
                'P2,1,0,,0\n'
                'P3,3,1,0,1\n'
                'P5,1,1,1,1\n'
                'P6,1,1,1,1\n'),
    CNA: (',B,C,D,E\n'
          'P3,-2,2,-1,2\n'
          'P2,1,-1,2,-2\n'
          'P1,0,,-2,0\n'
          'P4,2,2,2,2\n'
          'P6,2,2,2,2\n'),
    RESPONSE: 'id,response\nP1,1\nP2,0\nP3,1\nP4,0\nP5,1\nP6,\n',
    SELECTED_GENES: 'genes\nA\nB\nC\nD\nE\nNA\n',
    CODING_GENES: '1\t10\t20\tA\n2\t30\t40\tB\nX\t50\t60\tC\n3\t70\t80\tD\n'
                  '4\t90\t95\tX\n',
}
# The authors' order of the genes A, B, C, D: sorted, then shuffled by
# numpy.random.RandomState(0).
GENES = ['C', 'D', 'B', 'A']
PATIENTS = ['P1', 'P2', 'P3']  # In all tables, with a response.
# Per patient and gene (mutated, deep deletion, high amplification), worked
# out by hand from the tables above:
FEATURES = {
    'P1': dict(A=(0, 0, 0), B=(1, 0, 0), C=(1, 0, 0), D=(0, 1, 0)),
    'P2': dict(A=(1, 0, 0), B=(0, 0, 0), C=(0, 0, 0), D=(0, 0, 1)),
    'P3': dict(A=(1, 0, 0), B=(1, 1, 0), C=(0, 0, 1), D=(0, 0, 0)),
}
Y = [1, 0, 1]


def split_ids(i):
    # P9 is not in the data (left out, as there); P5 has no copy numbers.
    train = ['P1', 'P3', 'P9'] if i % 2 == 0 else ['P2', 'P3']
    test = ['P2'] if i % 2 == 0 else ['P1']
    return dict(training=train, validation=['P5'], test=test)


def write_p1000(root, **replace):
    r"""Writes the files of :obj:`FILES` and the splits into :obj:`root`,
    with the contents :obj:`replace` (:obj:`None`: no file)."""
    files = dict(FILES)
    for i in range(10):
        for kind, ids in split_ids(i).items():
            files[split_file(kind, i)] = ',id,response\n' + ''.join(
                f'{j},{p},0\n' for j, p in enumerate(ids))
    files.update(replace)
    for name, text in files.items():
        if text is None:
            continue
        os.makedirs(osp.dirname(osp.join(str(root), name)), exist_ok=True)
        with open(osp.join(str(root), name), 'w') as f:
            f.write(text)
    return str(root)


def test_feature_transforms():
    v = np.array([-2., -1., 0., 1., 2., 3., -.5, .5])
    assert mutation_features(v).tolist() == [-2, -1, 0, 1, 1, 1, -.5, .5]
    # cnv_levels=3 with cnv_filter_single_event: only -2 / 2 count; other
    # values of the wrong sign stay, as in the authors' code.
    assert deletion_features(v).tolist() == [1, 0, 0, 0, 0, 0, -.5, 0]
    assert amplification_features(v).tolist() == [0, 0, 0, 0, 1, 3, 0, .5]


def test_gene_order():
    assert gene_order(['D', 'B', 'A', 'C', 'E'], {'A', 'B', 'C', 'D'}) \
        == GENES
    genes = [f'G{i}' for i in range(50)]
    expected = sorted(genes)
    np.random.seed(0)  # The authors' calls.
    np.random.shuffle(expected)
    assert gene_order(genes[::-1], set(genes)) == expected


def test_p1000(tmp_path):
    dataset = P1000(write_p1000(tmp_path))
    data = dataset[0]
    assert dataset.patients == PATIENTS and dataset.genes == GENES
    expected = [[v for g in GENES for v in FEATURES[p][g]] for p in PATIENTS]
    assert data.x.dtype == torch.float and data.x.tolist() == expected
    assert data.y.tolist() == Y
    assert data.train_mask.shape == (3, 10) and data.edge_index is None
    for i in range(10):
        ids = split_ids(i)
        for mask, kind in [(data.train_mask, 'training'),
                           (data.val_mask, 'validation'),
                           (data.test_mask, 'test')]:
            assert mask[:, i].tolist() == [p in ids[kind] for p in PATIENTS]
    # From the processed files:
    again = P1000(str(tmp_path))
    assert again.patients == PATIENTS and again[0].x.tolist() == expected


def test_p1000_raw_folder(tmp_path):
    write_p1000(tmp_path / 'raw')
    assert P1000(str(tmp_path)).genes == GENES


def test_p1000_missing_file(tmp_path):
    write_p1000(tmp_path, **{split_file('test', 7): None})
    with pytest.raises(FileNotFoundError, match='test_set_7.csv') as info:
        P1000(str(tmp_path))
    assert 'P-NET' in str(info.value)


@pytest.mark.parametrize('name,text,match', [
    (MUTATIONS, 'Tumor_Sample_Barcode,A,B\nP1,0,x\n', 'non-numeric'),
    (MUTATIONS, 'Tumor_Sample_Barcode,A,A\nP1,0,1\n', 'duplicate gene'),
    (MUTATIONS, 'Tumor_Sample_Barcode,A\nP1,0\nP1,1\n', 'duplicate pat'),
    (MUTATIONS, 'Tumor_Sample_Barcode,A\nP1,inf\n', 'infinite'),
    (MUTATIONS, '', 'no header'),
    (CNA, ',B\nP1,0\n,1\n', 'without a patient id'),
    (RESPONSE, 'id,response\nP1,2\n', 'responses 0'),
    (RESPONSE, 'id,label\nP1,1\n', "no column 'response'"),
    (RESPONSE, 'id,response\nP1,1\nP1,1\n', 'duplicate ids'),
    (SELECTED_GENES, 'gene\nA\n', "no column 'genes'"),
    (CODING_GENES, 'A\tB\n', '4 tab-separated columns'),
    (split_file('training', 3), 'patient\nP1\n', "no column 'id'"),
    (split_file('training', 4), 'id\nP9\n', 'no patient of the data'),
    (split_file('test', 5), 'id\nP1\nP2\n', 'share the patients'),
])
def test_p1000_invalid_file(tmp_path, name, text, match):
    write_p1000(tmp_path, **{name: text})
    with pytest.raises(ValueError, match=match) as info:
        P1000(str(tmp_path))
    assert osp.basename(name) in str(info.value)


def test_p1000_no_common_gene(tmp_path):
    write_p1000(tmp_path, **{CODING_GENES: '1\t1\t2\tZ\n'})
    with pytest.raises(ValueError, match='No gene') as info:
        P1000(str(tmp_path))
    assert 'protein-coding_gene_with_coordinate_minimal.txt' in str(
        info.value)


def test_p1000_no_common_patient(tmp_path):
    write_p1000(tmp_path, **{RESPONSE: 'id,response\nP4,1\nP5,0\n'})
    with pytest.raises(ValueError, match='No patient') as info:
        P1000(str(tmp_path))
    assert 'response_paper.csv' in str(info.value)


def test_p1000_damaged_meta(tmp_path):
    P1000(write_p1000(tmp_path))
    with open(tmp_path / 'processed' / 'meta.json', 'w') as f:
        f.write('{"patients": ["P1"], "genes": []}')
    with pytest.raises(ValueError, match='meta.json.*damaged'):
        P1000(str(tmp_path))
