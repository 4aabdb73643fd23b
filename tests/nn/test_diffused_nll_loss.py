import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torch_geometric_coin.nn import diffused_nll_loss, safe_log

PROB = torch.tensor([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]],
                    dtype=torch.float64)
TARGET = torch.tensor([1, 0, 1])
# -log of the probabilities of the targets, by hand:
LOSSES = [-math.log(0.8), -math.log(0.5), -math.log(0.1)]


def test_reductions_against_a_hand_computation():
    none = diffused_nll_loss(PROB, TARGET, reduction='none')
    assert none.shape == (3, )
    assert torch.allclose(none, torch.tensor(LOSSES, dtype=torch.float64),
                          rtol=0, atol=1e-15)
    total = diffused_nll_loss(PROB, TARGET, reduction='sum')
    assert total.shape == () and abs(float(total) - sum(LOSSES)) < 1e-15
    mean = diffused_nll_loss(PROB, TARGET, reduction='mean')
    assert mean.shape == () and abs(float(mean) - sum(LOSSES) / 3) < 1e-15
    assert torch.equal(diffused_nll_loss(PROB, TARGET), mean)  # default
    # Each reduction is its own (a loss ignoring 'reduction' fails here):
    assert abs(float(total) - 3 * float(mean)) < 1e-14
    assert float(total) != float(mean)
    # int32 targets work as well:
    assert torch.equal(diffused_nll_loss(PROB, TARGET.int(), 'sum'), total)


def test_unknown_reduction_and_shapes_are_refused():
    for reduction in ['avg', 'batchmean', None, 'MEAN', 1]:
        with pytest.raises(ValueError, match="Unknown 'reduction'"):
            diffused_nll_loss(PROB, TARGET, reduction=reduction)
    with pytest.raises(ValueError, match=r"'prob' must be a tensor of shape"):
        diffused_nll_loss(PROB[0], TARGET[:1])
    with pytest.raises(ValueError, match=r"'prob' must be a tensor of shape"):
        diffused_nll_loss(np.asarray(PROB), TARGET)
    with pytest.raises(ValueError, match=r"'target' must be a tensor of sh"):
        diffused_nll_loss(PROB, TARGET[:2])
    with pytest.raises(ValueError, match=r"'target' must be a tensor of sh"):
        diffused_nll_loss(PROB, TARGET.view(3, 1))
    with pytest.raises(TypeError, match="integer class indices"):
        diffused_nll_loss(PROB, TARGET.double())
    with pytest.raises(TypeError, match="integer class indices"):
        diffused_nll_loss(PROB, TARGET.bool())
    with pytest.raises(ValueError, match="'target' is on meta"):
        diffused_nll_loss(PROB, TARGET.to('meta'))
    # Out-of-range classes (-100 would be F.nll_loss's silently ignored
    # index):
    for bad in [-100, -1, 2]:
        target = TARGET.clone()
        target[1] = bad
        with pytest.raises(ValueError, match=r"class indices in \[0, 1\]"):
            diffused_nll_loss(PROB, target)
    # The mean of no samples (an empty mask) would be NaN:
    with pytest.raises(ValueError, match="'mean' of no samples"):
        diffused_nll_loss(PROB[:0], TARGET[:0])
    assert float(diffused_nll_loss(PROB[:0], TARGET[:0], 'sum')) == 0.0
    assert diffused_nll_loss(PROB[:0], TARGET[:0], 'none').shape == (0, )
    with pytest.raises(TypeError, match="'prob' must be a floating point"):
        safe_log(torch.ones(3, dtype=torch.long))


def test_diffused_nll_loss_is_finite_at_zero_probability():
    prob = torch.tensor([[0.0, 1.0], [0.5, 0.5], [-1e-3, 1.001]],
                        requires_grad=True)
    y = torch.tensor([0, 1, 0])
    naive = F.nll_loss(prob.log(), y)
    assert not torch.isfinite(naive)  # what the authors' code can hit
    loss = diffused_nll_loss(prob, y, 'none')
    tiny = torch.finfo(torch.float32).tiny
    assert torch.allclose(loss, torch.tensor([-math.log(tiny), math.log(2),
                                              -math.log(tiny)]))
    loss.sum().backward()
    assert bool(torch.isfinite(prob.grad).all())
    # NaN in, NaN out (not hidden by the clamp):
    nan = torch.tensor([[float('nan'), 1.0]])
    assert torch.isnan(diffused_nll_loss(nan, torch.tensor([0])))
    # float32 matches F.nll_loss away from zero:
    ok = PROB.float()
    for reduction in ['mean', 'sum', 'none']:
        assert torch.allclose(diffused_nll_loss(ok, TARGET, reduction),
                              F.nll_loss(ok.log(), TARGET,
                                         reduction=reduction))
