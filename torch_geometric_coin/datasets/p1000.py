import csv
import itertools
import json
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set

import numpy as np
import torch

from torch_geometric.data import Data
from torch_geometric_coin.datasets._offline_dataset import OfflineDataset

MUTATIONS = 'data/P1000_final_analysis_set_cross_important_only.csv'
CNA = 'data/P1000_data_CNA_paper.csv'
RESPONSE = 'data/response_paper.csv'
SELECTED_GENES = 'data/tcga_prostate_expressed_genes_and_cancer_genes.csv'
CODING_GENES = 'data/protein-coding_gene_with_coordinate_minimal.txt'
NUM_SPLITS = 10
SPLIT_KINDS = ('training', 'validation', 'test')


def split_file(kind: str, i: int) -> str:
    r"""The file of the :obj:`kind` patients (:obj:`'training'`,
    :obj:`'validation'` or :obj:`'test'`) of split :obj:`i`."""
    return f'splits/{kind}_set_{i}.csv'


# The files P1000 reads (relative to its folder), as the authors do:
RAW_FILES = [MUTATIONS, CNA, RESPONSE, SELECTED_GENES, CODING_GENES] + [
    split_file(kind, i) for i in range(NUM_SPLITS) for kind in SPLIT_KINDS
]


class P1000(OfflineDataset):
    r"""The P1000 prostate cancer cohort of `Armenia et al. (2018)
    <https://doi.org/10.1038/s41588-018-0078-z>`_ as processed by `P-NET
    <https://doi.org/10.1038/s41586-021-03922-4>`_, the data of the COIN
    paper's prostate cancer experiment: somatic mutations and copy-number
    changes of 1,013 patients, primary (:obj:`0`) or metastatic (:obj:`1`)
    tumour, with the COIN authors' 10 fixed splits (20 training, 100
    validation, 893 test patients). The data is not shipped: :obj:`root` is
    the COIN authors' folder :obj:`prostrate/` (`shwangtangjun/COIN
    <https://github.com/shwangtangjun/COIN>`_) with P-NET's three processed
    tables in :obj:`data/` (the files :obj:`RAW_FILES`).

    :obj:`dataset[0]` has no edges: :obj:`x` (:obj:`[N, 3 G]`, float32,
    :func:`p1000_features`), :obj:`y` (:obj:`[N]`, :obj:`1` = metastatic)
    and :obj:`train_mask`, :obj:`val_mask`, :obj:`test_mask`
    (:obj:`[N, 10]`, a column per split; patients of a split file missing
    from the data are left out). :obj:`dataset.patients` and
    :obj:`dataset.genes` name the rows and genes.

    Args:
        root (str): The folder of the files; :obj:`processed/` is written
            there.
        transform, pre_transform, force_reload (optional): As in
            :class:`~torch_geometric.data.InMemoryDataset`.
    """
    source = ('P-NET (https://github.com/marakeby/pnet_prostate_paper, '
              'its _database/prostate/processed/ files) and the COIN '
              "authors' folder prostrate/ "
              '(https://github.com/shwangtangjun/COIN: data/ gene lists and '
              'splits/)')

    def __init__(self, root: str, transform: Optional[Callable] = None,
                 pre_transform: Optional[Callable] = None,
                 force_reload: bool = False) -> None:
        super().__init__(root, transform, pre_transform,
                         force_reload=force_reload)
        meta = self.load_json(self.processed_paths[1], lambda m: (
            isinstance(m, dict) and isinstance(m.get('patients'), list)
            and isinstance(m.get('genes'), list) and len(m['genes']) > 0
            and len(m['patients']) == self[0].num_nodes))
        self.patients: List[str] = meta['patients']
        self.genes: List[str] = meta['genes']

    @property
    def raw_file_names(self) -> List[str]:
        return list(RAW_FILES)

    @property
    def processed_file_names(self) -> List[str]:
        return ['data.pt', 'meta.json']

    def process(self) -> None:
        files = [self.raw_file(name) for name in RAW_FILES[:5]]
        patients, genes, x, y = p1000_features(
            read_table(files[0]), read_table(files[1]),
            read_response(files[2]), read_gene_column(files[3]),
            read_coding_genes(files[4]), files)
        masks = split_masks(patients, {
            (kind, i): self.raw_file(split_file(kind, i))
            for i in range(NUM_SPLITS) for kind in SPLIT_KINDS
        })
        self.save_processed([Data(
            x=torch.from_numpy(x.astype(np.float32)), y=torch.from_numpy(y),
            train_mask=masks['training'], val_mask=masks['validation'],
            test_mask=masks['test'])])
        with open(self.processed_paths[1], 'w') as f:
            json.dump(dict(patients=patients, genes=genes), f)


# Reading the files ###########################################################

def _read_csv(file: str, columns: Sequence[str] = (), **kwargs):
    try:
        import pandas as pd
    except ImportError as err:  # pragma: no cover
        raise ImportError("P1000 reads its files with pandas: pip install "
                          "pandas") from err
    try:
        df = pd.read_csv(file, **kwargs)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise ValueError(f"'{file}' is not a readable CSV file: {err}") \
            from err
    for column in columns:
        if column not in df.columns:
            raise ValueError(f"'{file}' has no column '{column}'")
    return df


def read_table(file: str):
    r"""Reads a patients x genes table :obj:`P1000_*.csv` as
    :obj:`(patients, genes, values)` (float64, missing values NaN)."""
    try:
        with open(file, newline='', encoding='utf-8') as f:
            header = next(csv.reader(f), None)
    except (UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"'{file}' is not a readable CSV file: {err}") \
            from err
    if not header or len(header) < 2:
        raise ValueError(f"'{file}' has no header row of genes (the first "
                         f"column the patient, then one column per gene)")
    genes = header[1:]
    if len(set(genes)) != len(genes):
        dup = sorted({g for g in genes if genes.count(g) > 1})[:5]
        raise ValueError(f"'{file}' has duplicate gene columns {dup}")
    if 'response' in genes:  # The authors' join would fail on it.
        raise ValueError(f"'{file}' has a column 'response'")
    df = _read_csv(file, index_col=0, dtype={header[0]: str})
    if df.shape[0] == 0:
        raise ValueError(f"'{file}' has no patients")
    if df.index.hasnans:
        raise ValueError(f"'{file}' has a row without a patient id")
    if df.index.has_duplicates:
        dup = sorted(set(df.index[df.index.duplicated()]))[:5]
        raise ValueError(f"'{file}' has duplicate patients {dup}")
    bad = [c for c, t in df.dtypes.items() if t.kind not in 'biuf']
    if bad:
        raise ValueError(f"'{file}' has non-numeric values in the column(s) "
                         f"{bad[:5]}")
    values = df.to_numpy(dtype=np.float64)
    if np.isinf(values).any():
        raise ValueError(f"'{file}' has infinite values")
    return list(df.index), genes, values


def read_response(file: str) -> Dict[str, int]:
    r"""Reads :obj:`response_paper.csv` (:obj:`id`, :obj:`response`) as a
    dictionary, without the rows lacking a response."""
    df = _read_csv(file, ('id', 'response'), dtype={'id': str})
    df = df[df['response'].notna() & df['id'].notna()]
    try:
        response = df['response'].astype(float)
        valid = bool(response.isin((0, 1)).all())
    except (ValueError, TypeError):
        valid = False
    if not valid:
        raise ValueError(f"'{file}' must hold responses 0 (primary) or 1 "
                         f"(metastatic), got "
                         f"{sorted(map(str, df['response'].unique()))[:5]}")
    if df['id'].duplicated().any():
        dup = sorted(set(df['id'][df['id'].duplicated()]))[:5]
        raise ValueError(f"'{file}' has duplicate ids {dup}")
    return dict(zip(df['id'], response.astype(int)))


def _genes(file: str, column) -> Set[str]:
    genes = set(column.dropna())
    if not genes:
        raise ValueError(f"'{file}' lists no genes")
    return genes


def read_gene_column(file: str) -> Set[str]:
    r"""Reads the column :obj:`genes` of
    :obj:`tcga_prostate_expressed_genes_and_cancer_genes.csv`."""
    return _genes(file, _read_csv(file, ('genes', ), dtype=str)['genes'])


def read_coding_genes(file: str) -> Set[str]:
    r"""Reads the gene names (4th column) of the tab-separated
    :obj:`protein-coding_gene_with_coordinate_minimal.txt`."""
    df = _read_csv(file, sep='\t', header=None, dtype=str)
    if df.shape[1] != 4:
        raise ValueError(f"'{file}' must have 4 tab-separated columns (chr, "
                         f"start, end, name), got {df.shape[1]}")
    return _genes(file, df[3])


def read_split(file: str) -> List[str]:
    r"""Reads the patient ids (column :obj:`id`) of a split file."""
    return list(_read_csv(file, ('id', ), dtype={'id': str})['id'].dropna())


# The authors' features ######################################################

def mutation_features(values: np.ndarray) -> np.ndarray:
    r"""The authors' :obj:`mut_important` with :obj:`mut_binary`: counts
    above :obj:`1` become :obj:`1`."""
    return np.where(values > 1., 1., values)


def deletion_features(values: np.ndarray) -> np.ndarray:
    r"""The authors' :obj:`cnv_del` (:obj:`cnv_levels=3`): :obj:`-2`
    becomes :obj:`1`, :obj:`-1` and non-negative calls :obj:`0`."""
    out = np.where(values >= 0., 0., values)
    out[out == -1.] = 0.
    out[out == -2.] = 1.
    return out


def amplification_features(values: np.ndarray) -> np.ndarray:
    r"""The authors' :obj:`cnv_amp` (:obj:`cnv_levels=3`): :obj:`2`
    becomes :obj:`1`, :obj:`1` and non-positive calls :obj:`0`."""
    out = np.where(values <= 0., 0., values)
    out[out == 1.] = 0.
    out[out == 2.] = 1.
    return out


def gene_order(genes: Iterable[str], coding: Set[str]) -> List[str]:
    r"""The authors' gene order: the protein-coding :obj:`genes`, sorted,
    then shuffled by :obj:`numpy.random.RandomState(0)`."""
    order = sorted(set(genes) & set(coding))
    np.random.RandomState(0).shuffle(order)
    return order


def p1000_features(mutations, cna, response: Dict[str, int],
                   selected: Set[str], coding: Set[str],
                   files: Sequence[str]):
    r"""The authors' :obj:`load_final(['mut_important', 'cnv_del',
    'cnv_amp'], cnv_levels=3)`: :obj:`(patients, genes, x, y)` for the
    patients of both tables with a response and the expressed genes of
    either table (in :func:`gene_order`); :obj:`x` is :obj:`[N, 3 G]` with
    missing values :obj:`0`. The errors name :obj:`files`."""
    order = gene_order({g for table in (mutations, cna) for g in table[1]
                        if g in selected}, coding)
    if not order:
        raise ValueError(f"No gene of '{files[0]}' or '{files[1]}' is both "
                         f"in '{files[3]}' and in '{files[4]}'")
    in_cna = set(cna[0])
    patients = [p for p in mutations[0] if p in response and p in in_cna]
    if not patients:
        raise ValueError(f"No patient of '{files[2]}' is both in "
                         f"'{files[0]}' and in '{files[1]}'")
    x = np.zeros((len(patients), len(order), 3))
    for t, ((names, genes, values), transform) in enumerate([
            (mutations, mutation_features), (cna, deletion_features),
            (cna, amplification_features)]):
        row = {p: i for i, p in enumerate(names)}
        col = {g: j for j, g in enumerate(genes)}
        have = [g for g, gene in enumerate(order) if gene in col]
        x[:, have, t] = transform(values[np.ix_(
            [row[p] for p in patients], [col[order[g]] for g in have])])
    x = np.nan_to_num(x, nan=0.).reshape(len(patients), -1)
    return patients, order, x, np.array([response[p] for p in patients],
                                        dtype=np.int64)


def split_masks(patients: Sequence[str], files: Dict):
    r"""The masks :obj:`[N, S]` of the split files :obj:`files`
    (:obj:`{(kind, i): path}`) over :obj:`patients`."""
    index = {p: i for i, p in enumerate(patients)}
    num_splits = 1 + max(i for _, i in files)
    masks = {kind: torch.zeros(len(patients), num_splits, dtype=torch.bool)
             for kind, _ in files}
    for i in range(num_splits):
        ids = {kind: read_split(files[kind, i])
               for kind in SPLIT_KINDS if (kind, i) in files}
        for a, b in itertools.combinations(ids, 2):
            both = set(ids[a]) & set(ids[b])
            if both:
                raise ValueError(f"'{files[a, i]}' and '{files[b, i]}' "
                                 f"share the patients {sorted(both)[:5]}")
        for kind, members in ids.items():
            rows = [index[p] for p in members if p in index]
            if not rows and kind in ('training', 'test'):
                raise ValueError(f"'{files[kind, i]}' has no patient of "
                                 f"the data")
            masks[kind][rows, i] = True
    return masks
