import csv
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
DATA_TYPES = ('mut_important', 'cnv_del', 'cnv_amp')
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
    <https://doi.org/10.1038/s41588-018-0078-z>`_ in the form of `P-NET
    (Elmarakeby et al. 2021) <https://doi.org/10.1038/s41586-021-03922-4>`_
    and of the COIN paper's prostate cancer experiment: the somatic
    mutations and copy-number changes of 1,013 patients, primary (:obj:`0`)
    or metastatic (:obj:`1`) tumour, with the COIN authors' 10 fixed splits
    of 20 training, 100 validation and 893 test patients.

    .. note::

        The data is **not shipped** with this package and was not available
        when it was written (the class is tested on small files in the same
        format only): point :obj:`root` at the P-NET data, laid out as the
        COIN authors' folder :obj:`prostrate/` of
        `shwangtangjun/COIN <https://github.com/shwangtangjun/COIN>`_, which
        holds the two gene lists and the splits:

        * :obj:`data/P1000_final_analysis_set_cross_important_only.csv`
          (mutation counts, patients x genes, first column the patient),
          :obj:`data/P1000_data_CNA_paper.csv` (copy-number calls
          :obj:`-2 .. 2`, patients x genes) and :obj:`data/response_paper.csv`
          (columns :obj:`id`, :obj:`response`): P-NET's
          :obj:`_database/prostate/processed/`,
        * :obj:`data/tcga_prostate_expressed_genes_and_cancer_genes.csv`
          (column :obj:`genes`) and
          :obj:`data/protein-coding_gene_with_coordinate_minimal.txt`
          (tab-separated :obj:`chr, start, end, name`, no header),
        * :obj:`splits/{training,validation,test}_set_{0..9}.csv` (a column
          :obj:`id`).

        The files may also be in :obj:`<root>/raw/`. The preparation of the
        first three from the supplementary tables of Armenia et al. (their
        :obj:`prepare_*` functions) is not done here.

    The features follow the authors' :obj:`load_final(['mut_important',
    'cnv_del', 'cnv_amp'], cnv_levels=3)` (:func:`p1000_features`): the
    patients with a response in all three tables, the genes of the
    expression list present in a table and in the protein-coding list,
    sorted and shuffled by :obj:`numpy.random.RandomState(0)`; per gene
    three features: mutated (count clipped at :obj:`1`), deep deletion
    (:obj:`-2`) and high amplification (:obj:`2`). Missing values and
    genes absent from a table are :obj:`0` (as there).

    :obj:`dataset[0]` is a :class:`~torch_geometric.data.Data` without
    edges: :obj:`x` (:obj:`[N, 3 G]`, float32, the three features of gene
    :obj:`g` in columns :obj:`3g, 3g + 1, 3g + 2`), :obj:`y` (:obj:`[N]`,
    :obj:`1` = metastatic) and :obj:`train_mask`, :obj:`val_mask`,
    :obj:`test_mask` (:obj:`[N, 10]`, one column per split; the patients of
    a split file that are not in the data are left out, as there). The
    patient ids are :obj:`dataset.patients` and the genes
    :obj:`dataset.genes`.

    Args:
        root (str): The folder of the files (see above); :obj:`processed/`
            is written there.
        transform (callable, optional): A function/transform applied to the
            :class:`~torch_geometric.data.Data` at every access.
            (default: :obj:`None`)
        pre_transform (callable, optional): A function/transform applied to
            the :class:`~torch_geometric.data.Data` before it is saved.
            (default: :obj:`None`)
        force_reload (bool, optional): Whether to re-process the dataset.
            (default: :obj:`False`)
    """
    source = ('P-NET (https://github.com/marakeby/pnet_prostate_paper, '
              'its _database/prostate/processed/ files) and the COIN '
              "authors' folder prostrate/ "
              '(https://github.com/shwangtangjun/COIN: data/ gene lists and '
              'splits/)')

    def __init__(
        self,
        root: str,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        force_reload: bool = False,
    ) -> None:
        super().__init__(root, transform, pre_transform,
                         force_reload=force_reload)
        self.load(self.processed_paths[0])
        meta = self.load_json(self.processed_paths[1])
        if (not isinstance(meta, dict)
                or not isinstance(meta.get('patients'), list)
                or not isinstance(meta.get('genes'), list)
                or len(meta['patients']) != self[0].num_nodes
                or not meta['genes']):
            raise self._damaged(self.processed_paths[1], ValueError(
                'not the patients and genes of the data'))
        self.patients: List[str] = meta['patients']
        self.genes: List[str] = meta['genes']

    @property
    def raw_file_names(self) -> List[str]:
        return list(RAW_FILES)

    @property
    def processed_file_names(self) -> List[str]:
        return ['data.pt', 'meta.json']

    def process(self) -> None:
        f = self.raw_file
        files = [f(n) for n in (MUTATIONS, CNA, RESPONSE, SELECTED_GENES,
                                CODING_GENES)]
        patients, genes, x, y = p1000_features(
            read_table(files[0]), read_table(files[1]),
            read_response(files[2]), read_gene_column(files[3]),
            read_coding_genes(files[4]), files)
        masks = split_masks(patients, {
            (kind, i): f(split_file(kind, i))
            for i in range(NUM_SPLITS) for kind in SPLIT_KINDS
        })
        data = Data(x=torch.from_numpy(x.astype(np.float32)),
                    y=torch.from_numpy(y), train_mask=masks['training'],
                    val_mask=masks['validation'], test_mask=masks['test'])
        if self.pre_transform is not None:
            data = self.pre_transform(data)
        self.save([data], self.processed_paths[0])
        with open(self.processed_paths[1], 'w') as fp:
            json.dump(dict(patients=patients, genes=genes), fp)


# Reading the files ###########################################################

def _pandas():
    try:
        import pandas
    except ImportError as err:  # pragma: no cover
        raise ImportError("P1000 reads its files with pandas: pip install "
                          "pandas") from err
    return pandas


def _read_csv(file: str, **kwargs):
    pd = _pandas()
    try:
        return pd.read_csv(file, **kwargs)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise ValueError(f"'{file}' is not a readable CSV file: {err}") \
            from err


def read_table(file: str):
    r"""Reads a patients x genes table (:obj:`P1000_*.csv`: the first column
    the patient, a header row of genes) as :obj:`(patients, genes,
    values)`, the values float64 with missing ones NaN (as pandas reads
    them)."""
    try:
        with open(file, newline='', encoding='utf-8') as fp:
            header = next(csv.reader(fp), None)
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
    r"""Reads :obj:`response_paper.csv` (columns :obj:`id` and
    :obj:`response`, :obj:`0` = primary, :obj:`1` = metastatic) as a
    dictionary; rows without a response are left out (as there)."""
    df = _read_csv(file, dtype={'id': str})
    for column in ('id', 'response'):
        if column not in df.columns:
            raise ValueError(f"'{file}' has no column '{column}'")
    df = df[df['response'].notna() & df['id'].notna()]
    response = _pandas().to_numeric(df['response'], errors='coerce')
    if response.isna().any() or not response.isin((0, 1)).all():
        raise ValueError(f"'{file}' must hold responses 0 (primary) or 1 "
                         f"(metastatic), got "
                         f"{sorted(map(str, df['response'].unique()))[:5]}")
    if df['id'].duplicated().any():
        dup = sorted(set(df['id'][df['id'].duplicated()]))[:5]
        raise ValueError(f"'{file}' has duplicate ids {dup}")
    return dict(zip(df['id'], response.astype(int)))


def read_gene_column(file: str) -> Set[str]:
    r"""Reads the column :obj:`genes` of
    :obj:`tcga_prostate_expressed_genes_and_cancer_genes.csv` (names that
    pandas reads as missing, such as :obj:`NA`, are dropped: they match no
    gene there either)."""
    df = _read_csv(file, dtype=str)
    if 'genes' not in df.columns:
        raise ValueError(f"'{file}' has no column 'genes'")
    genes = set(df['genes'].dropna())
    if not genes:
        raise ValueError(f"'{file}' lists no genes")
    return genes


def read_coding_genes(file: str) -> Set[str]:
    r"""Reads the gene names (4th column) of
    :obj:`protein-coding_gene_with_coordinate_minimal.txt` (tab-separated,
    no header)."""
    df = _read_csv(file, sep='\t', header=None, dtype=str)
    if df.shape[1] != 4:
        raise ValueError(f"'{file}' must have 4 tab-separated columns (chr, "
                         f"start, end, name), got {df.shape[1]}")
    genes = set(df[3].dropna())
    if not genes:
        raise ValueError(f"'{file}' lists no genes")
    return genes


def read_split(file: str) -> List[str]:
    r"""Reads the patient ids (column :obj:`id`) of a split file."""
    df = _read_csv(file, dtype={'id': str})
    if 'id' not in df.columns:
        raise ValueError(f"'{file}' has no column 'id'")
    return list(df['id'].dropna())


# The authors' features ######################################################

def mutation_features(values: np.ndarray) -> np.ndarray:
    r"""The authors' :obj:`mut_important` with :obj:`mut_binary`: counts
    above :obj:`1` become :obj:`1`."""
    return np.where(values > 1., 1., values)


def deletion_features(values: np.ndarray) -> np.ndarray:
    r"""The authors' :obj:`cnv_del` with :obj:`cnv_levels=3` and
    :obj:`cnv_filter_single_event`: :obj:`-2` (deep deletion) becomes
    :obj:`1`; :obj:`-1` and non-negative calls :obj:`0`; other negative
    values stay (as there)."""
    out = np.where(values >= 0., 0., values)
    out[out == -1.] = 0.
    out[out == -2.] = 1.
    return out


def amplification_features(values: np.ndarray) -> np.ndarray:
    r"""The authors' :obj:`cnv_amp` with :obj:`cnv_levels=3` and
    :obj:`cnv_filter_single_event`: :obj:`2` (high amplification) becomes
    :obj:`1`; :obj:`1` and non-positive calls :obj:`0`; other positive
    values stay (as there)."""
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
                   files: Sequence[str] = ('the mutation table',
                                           'the copy-number table',
                                           'the responses',
                                           'the expressed genes',
                                           'the protein-coding genes')):
    r"""The authors' design matrix from the mutation and copy-number tables
    (:func:`read_table`), the responses, the expressed genes and the
    protein-coding genes. Returns :obj:`(patients, genes, x, y)`: the
    patients in all tables with a response (in the order of the mutation
    table), the genes (:func:`gene_order`), :obj:`x` (:obj:`[N, 3 G]`,
    the features :obj:`mut_important, cnv_del, cnv_amp` of each gene side
    by side) and :obj:`y` (int64). :obj:`files` name the five inputs in
    the errors."""
    tables = [(mutations, mutation_features), (cna, deletion_features),
              (cna, amplification_features)]
    blocks = []
    for (patients, genes, values), transform in tables:
        rows = [i for i, p in enumerate(patients) if p in response]
        cols = {g: j for j, g in enumerate(genes) if g in selected}
        blocks.append(([patients[i] for i in rows], cols,
                       transform(values[rows][:, sorted(cols.values())]),
                       sorted(cols.values())))
    order = gene_order(
        set(blocks[0][1]) | set(blocks[1][1]), coding)
    if not order:
        raise ValueError(f"No gene of '{files[0]}' or '{files[1]}' is both "
                         f"in '{files[3]}' and in '{files[4]}'")
    common = set(blocks[0][0]) & set(blocks[1][0])
    patients = [p for p in blocks[0][0] if p in common]
    if not patients:
        raise ValueError(f"No patient of '{files[2]}' is both in "
                         f"'{files[0]}' and in '{files[1]}'")
    x = np.zeros((len(patients), len(order), len(blocks)))
    for t, (rows, cols, values, kept) in enumerate(blocks):
        row = {p: i for i, p in enumerate(rows)}
        position = {j: k for k, j in enumerate(kept)}
        r = [row[p] for p in patients]
        for g, gene in enumerate(order):
            if gene in cols:
                x[:, g, t] = values[r, position[cols[gene]]]
    x = np.nan_to_num(x, nan=0.).reshape(len(patients), -1)
    y = np.array([response[p] for p in patients], dtype=np.int64)
    return patients, order, x, y


def split_masks(patients: Sequence[str], files: Dict):
    r"""The masks :obj:`[N, S]` of the split files :obj:`files`
    (:obj:`{(kind, i): path}`) over :obj:`patients`; a split whose three
    files share a patient, or that has no training or test patient in the
    data, raises a :class:`ValueError` naming the files."""
    index = {p: i for i, p in enumerate(patients)}
    num_splits = 1 + max(i for _, i in files)
    masks = {kind: torch.zeros(len(patients), num_splits, dtype=torch.bool)
             for kind, _ in files}
    for i in range(num_splits):
        ids = {kind: read_split(files[(kind, i)])
               for kind in SPLIT_KINDS if (kind, i) in files}
        kinds = list(ids)
        for a in range(len(kinds)):
            for b in range(a + 1, len(kinds)):
                both = set(ids[kinds[a]]) & set(ids[kinds[b]])
                if both:
                    raise ValueError(
                        f"'{files[(kinds[a], i)]}' and "
                        f"'{files[(kinds[b], i)]}' share the patients "
                        f"{sorted(both)[:5]}")
        for kind, members in ids.items():
            rows = [index[p] for p in members if p in index]
            if not rows and kind in ('training', 'test'):
                raise ValueError(f"'{files[(kind, i)]}' has no patient of "
                                 f"the data")
            masks[kind][rows, i] = True
    return masks
