"""The README's snippets run as written, in order, on Cora, and give the
numbers the README states."""
import os.path as osp
import re
import shutil

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def snippets():
    with open(osp.join(ROOT, 'README.md')) as f:
        return re.findall(r'```python\n(.*?)```', f.read(), flags=re.S)


def test_readme_snippets(tmp_path):
    from torch_geometric.datasets import Planetoid
    cora = osp.join(ROOT, '..', 'shared', 'datasets', 'planetoid', 'Cora')
    if not osp.isdir(osp.join(cora, 'raw')):
        pytest.skip(f'{cora} is not available')
    shutil.copytree(osp.join(cora, 'raw'), tmp_path / 'Cora' / 'raw')
    dataset = Planetoid(str(tmp_path), 'Cora')
    data = dataset[0]
    torch.manual_seed(0)
    # The names the snippets take as given:
    scope = dict(dataset=dataset, data=data, edge_index=data.edge_index,
                 edge_weight=None, N=data.num_nodes, x=data.x[:, :32],
                 prob=torch.randn(data.num_nodes, 7).softmax(-1),
                 train_idx=data.train_mask.nonzero().view(-1),
                 in_channels=dataset.num_features,
                 num_classes=dataset.num_classes, num_edges=data.num_edges)
    blocks = snippets()
    assert len(blocks) >= 6
    for block in blocks:
        exec(compile(block, 'README.md', 'exec'), scope)
    # "5.783 on Cora's 'coin' Laplacian, whose lambda_max is 5.780":
    assert round(float(scope['op'].lambda_max()), 3) == 5.783
    assert len(scope['stats'].forward) > 0  # the implicit solve's record
    assert scope['log_prob'].shape == (data.num_nodes, dataset.num_classes)
    assert torch.isfinite(scope['loss'])
    assert scope['bound'].shape == scope['train_idx'].shape
