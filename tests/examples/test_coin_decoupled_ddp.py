import re

import pytest
import torch

SCRIPT = 'examples/multi_gpu/coin_decoupled_ddp.py'


def epochs(out):
    return [tuple(float(v) for v in m) for m in re.findall(
        r'^Epoch: \d{3}, Loss: ([\d.]+), Train: ([\d.]+), Val: ([\d.]+), '
        r'Test: ([\d.]+)$', out, re.M)]


def test_coin_decoupled_ddp_example_on_cora(capfd, load_script, cora_root):
    res = load_script(SCRIPT).main(
        ['--root', str(cora_root), '--cpu', '--world-size', '2',
         '--epochs', '15'])
    out = capfd.readouterr().out  # (rank 0 prints from its own process)
    assert 'Data: Cora, spawning 2 processes' in out
    assert re.search(r'^Ranks: 2 \(cpu\), rows per rank: 70, \d+ entries',
                     out, re.M)
    rows = epochs(out)
    assert len(rows) == 15 and rows[-1][0] < rows[0][0]  # The loss falls.
    assert res['val_acc'] == pytest.approx(max(r[2] for r in rows), abs=1e-4)
    assert res['val_acc'] > 0.6  # (chance: 1/7)


def test_coin_decoupled_ddp_matches_one_process_with_the_union_batches(
        capfd, load_script, cora_root, tmp_path):
    # The property data parallelism must keep: without dropout, from the
    # same initialization, 2 ranks at batch size 16 (rank r on its shard
    # train_idx[r::2], in order) see at step s the nodes
    # train_idx[32 s:32 (s + 1)] between them, exactly the batch s of one
    # process at batch size 32; DDP averages the two batch-mean gradients,
    # which is the gradient of the mean over the union (the batches have
    # equal sizes: 16 + 16, ..., 6 + 6 of 70 + 70 nodes). So one epoch
    # gives the same parameters up to rounding. It fails if the ranks do
    # not all-reduce (or sum instead of average) their gradients, train on
    # the wrong shard or wrong rows, or fall out of step: those give
    # differences >= 4e-3 here; rounding (the Adam steps of near-zero
    # gradients amplify it) stays below 1e-6 at this learning rate.
    script = load_script(SCRIPT)
    args = ['--root', str(cora_root), '--cpu', '--epochs', '1',
            '--dropout', '0', '--no-shuffle', '--lr', '0.001']
    script.main(args + ['--world-size', '2', '--batch-size', '16',
                        '--save', str(tmp_path / 'ddp.pt')])
    script.main(args + ['--world-size', '1', '--batch-size', '32',
                        '--save', str(tmp_path / 'one.pt')])
    (ddp_loss, *_), (one_loss, *_) = epochs(capfd.readouterr().out)
    assert ddp_loss == pytest.approx(one_loss, abs=2e-4)
    ddp = torch.load(tmp_path / 'ddp.pt')
    one = torch.load(tmp_path / 'one.pt')
    assert ddp.keys() == one.keys()
    # (and the epoch trained: the parameters moved from the initial ones)
    torch.manual_seed(12345)  # (the example's default seed)
    init = script.COIN(1433, 7, K=20, sigma2=0.3, dropout=0.).state_dict()
    assert init.keys() == ddp.keys()
    assert max(float((ddp[k] - init[k]).abs().max()) for k in init) > 1e-3
    for key in ddp:
        torch.testing.assert_close(ddp[key], one[key], rtol=0, atol=1e-5,
                                   msg=key)


def test_coin_decoupled_ddp_uneven_shards(capfd, load_script, cora_root):
    # 140 training nodes on 3 ranks: shards of 47, 47 and 46 rows, each
    # rank runs ceil(140 / 3) = 47 rows a epoch (the short shard pads with
    # its first row), at a batch size (1) below the number of ranks; the
    # ranks stay in step (a rank out of step would hang the all-reduce).
    load_script(SCRIPT).main(
        ['--root', str(cora_root), '--cpu', '--world-size', '3',
         '--epochs', '1', '--batch-size', '1'])
    out = capfd.readouterr().out
    assert re.search(r'^Ranks: 3 \(cpu\), rows per rank: 47, \d+ entries',
                     out, re.M)
    assert len(epochs(out)) == 1
