from typing import Any, Callable, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from torch_geometric_coin._checks import check_number

from ._gaussian_smoothing import check_finite, check_generator


class RandomizedSmoothing(torch.nn.Module):
    r"""Randomized smoothing with certified :math:`\ell_2` robustness from the
    `"Certified Adversarial Robustness via Randomized Smoothing"
    <https://arxiv.org/abs/1902.02918>`_ paper: the smoothed classifier

    .. math::
        g(\mathbf{x}) = \arg\max_c \, \mathbb{P}_{\boldsymbol{\epsilon} \sim
        \mathcal{N}(\mathbf{0}, \sigma^2 \mathbf{I})}
        \left( f(\mathbf{x} + \boldsymbol{\epsilon}) = c \right)

    is constant on the ball of radius :math:`\sigma
    \Phi^{-1}(\underline{p_A})` if its top class has probability
    :math:`p_A \ge \underline{p_A} > 1/2`. :meth:`predict` and
    :meth:`certify` estimate :math:`g` for the rows of :obj:`x` by Monte
    Carlo, each answer wrong with probability at most :obj:`alpha`. With
    :obj:`forward_fn` (node classification), each draw perturbs the whole
    feature matrix and the radius bounds its Frobenius norm.

    Args:
        model (torch.nn.Module or callable): The base classifier, in
            evaluation mode: scores :math:`(B, C)` or labels :math:`(B)`.
        num_classes (int): Number of classes :math:`C \ge 2`.
        sigma (float): Noise level :math:`\sigma > 0`.
        forward_fn (callable, optional): :obj:`forward_fn(model, x_noisy,
            *args)` classifies the rows of a noisy copy of :obj:`x`
            given the :obj:`*args` of :meth:`predict`; with a
            :obj:`batch_size`, of :math:`m` stacked copies
            :math:`(m, B, *)`, giving :math:`(m, B, C)` or :math:`(m, B)`.
            (default: :obj:`None`, row-wise :obj:`model(x_noisy)`)
    """
    ABSTAIN = -1

    def __init__(self, model: Callable[..., Tensor], num_classes: int,
                 sigma: float, forward_fn: Optional[Callable] = None):
        super().__init__()
        if not callable(model):
            raise TypeError("'model' must be a module or a callable")
        check_number('num_classes', num_classes, integer=True, low=2)
        check_number('sigma', sigma, low=0, open_low=True)
        if forward_fn is not None and not callable(forward_fn):
            raise TypeError("'forward_fn' must be a callable")
        self.model = model
        self.num_classes = int(num_classes)
        self.sigma = float(sigma)
        self.forward_fn = forward_fn

    def reset_parameters(self):
        r"""Resets the parameters of the base classifier, if it has any."""
        if hasattr(self.model, 'reset_parameters'):
            self.model.reset_parameters()

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        r"""Same as :meth:`predict`."""
        return self.predict(x, *args, **kwargs)

    @torch.no_grad()
    def predict(self, x: Tensor, *args: Any, n: int = 100,
                alpha: float = 0.001, batch_size: Optional[int] = None,
                generator: Optional[torch.Generator] = None) -> Tensor:
        r"""Cohen et al.'s PREDICT: the most frequent of :obj:`n` noisy
        predictions, unless the two-sided binomial test of its count
        :math:`n_A` out of :math:`n_A + n_B` (the runner-up's) against
        :math:`1/2` has a p-value above :obj:`alpha` (then :obj:`-1`).

        Args:
            x (torch.Tensor): Finite inputs :math:`(B, *)`, one per row.
            *args: Passed on to :obj:`forward_fn`.
            n (int, optional): Number of noise draws. (default: :obj:`100`)
            alpha (float, optional): Probability of returning a class other
                than :math:`g(\mathbf{x})`. (default: :obj:`0.001`)
            batch_size (int, optional): Noise draws per call (stacked for
                :obj:`forward_fn`). (default: :obj:`100`; :obj:`1` with
                :obj:`forward_fn`)
            generator (torch.Generator, optional): Source of the noise.

        Returns:
            torch.Tensor: Classes :math:`(B)`, :obj:`-1` where abstaining.
        """
        check_number('n', n, integer=True, low=1)
        check_number('alpha', alpha, low=0, high=1, open_low=True)
        counts = self.sample_counts(x, *args, num=n, batch_size=batch_size,
                                    generator=generator).cpu().numpy()
        top2 = np.argsort(-counts, axis=1, kind='stable')[:, :2]
        n_a, n_b = np.take_along_axis(counts, top2, 1).T
        pvalue = binomial_test_half(n_a, n_a + n_b)
        pred = np.where(pvalue > alpha, self.ABSTAIN, top2[:, 0])
        return torch.from_numpy(pred).to(torch.long)

    @torch.no_grad()
    def certify(self, x: Tensor, *args: Any, n0: int = 100, n: int = 1000,
                alpha: float = 0.001, batch_size: Optional[int] = None,
                generator: Optional[torch.Generator] = None
                ) -> Tuple[Tensor, Tensor]:
        r"""Cohen et al.'s CERTIFY: the top class :math:`\hat{c}_A` of
        :obj:`n0` draws, with radius :math:`\sigma \Phi^{-1}
        (\underline{p_A})` from the one-sided Clopper-Pearson bound
        :math:`\underline{p_A}` of its frequency in :obj:`n` fresh draws,
        or :obj:`-1` and :obj:`0` if :math:`\underline{p_A} < 1/2`.

        Args:
            x (torch.Tensor): Inputs, as in :meth:`predict`.
            *args: Passed on to :obj:`forward_fn`.
            n0 (int, optional): Selection draws. (default: :obj:`100`)
            n (int, optional): Estimation draws. (default: :obj:`1000`)
            alpha (float, optional): Failure probability.
                (default: :obj:`0.001`)
            batch_size (int, optional): As in :meth:`predict`.
            generator (torch.Generator, optional): Source of the noise.

        Returns:
            (torch.Tensor, torch.Tensor): Classes :math:`(B)` and certified
            radii :math:`(B)` (:obj:`-1` and :obj:`0` where abstaining).
        """
        from scipy.stats import norm

        check_number('n0', n0, integer=True, low=1)
        check_number('n', n, integer=True, low=1)
        check_number('alpha', alpha, low=0, high=1, open_low=True)
        c_a = self.sample_counts(x, *args, num=n0, batch_size=batch_size,
                                 generator=generator).argmax(dim=1)
        counts = self.sample_counts(x, *args, num=n, batch_size=batch_size,
                                    generator=generator)
        n_a = counts.gather(1, c_a.view(-1, 1)).view(-1).cpu().numpy()
        p_lower = clopper_pearson_lower(n_a, n, alpha)
        certified = p_lower >= 0.5
        radius = np.where(certified,
                          self.sigma * norm.ppf(np.maximum(p_lower, 0.5)), 0.)
        pred = np.where(certified, c_a.cpu().numpy(), self.ABSTAIN)
        return (torch.from_numpy(pred).to(torch.long),
                torch.from_numpy(radius).to(torch.float64))

    @torch.no_grad()
    def sample_counts(self, x: Tensor, *args: Any, num: int,
                      batch_size: Optional[int] = None,
                      generator: Optional[torch.Generator] = None) -> Tensor:
        r"""Counts the base classifier's predictions :math:`(B, C)` under
        :obj:`num` noise draws, :obj:`batch_size` at a time."""
        if not torch.is_tensor(x) or not x.is_floating_point() or x.dim() < 1:
            raise TypeError("'x' must be a floating-point tensor with one "
                            "item per row")
        check_number('num', num, integer=True, low=1)
        stacked = self.forward_fn is None or batch_size is not None
        batch_size = 100 if batch_size is None else batch_size
        check_number('batch_size', batch_size, integer=True, low=1)
        check_generator(generator, x.device)
        if self.forward_fn is None and args:
            raise TypeError("Extra arguments need 'forward_fn' to say how "
                            "the model uses them")
        check_finite('x', x)
        B = x.size(0)
        counts = torch.zeros(B, self.num_classes, dtype=torch.long,
                             device=x.device)
        nan = torch.zeros((), dtype=torch.bool, device=x.device)
        done = 0
        while done < num:
            m = min(batch_size, num - done) if stacked else 1
            noise = torch.randn((m, ) + tuple(x.shape), dtype=x.dtype,
                                device=x.device, generator=generator)
            noisy = x.unsqueeze(0) + self.sigma * noise
            if self.forward_fn is None:
                out = self.model(noisy.reshape(m * B, *x.shape[1:]))
                lead = (m * B, )
            elif stacked:
                out, lead = self.forward_fn(self.model, noisy, *args), (m, B)
            else:
                out, lead = self.forward_fn(self.model, noisy[0], *args), (B, )
            labels, is_nan = self._labels(out, lead, stacked)
            nan = nan if is_nan is None else nan | is_nan
            counts += torch.nn.functional.one_hot(
                labels.reshape(m, B), self.num_classes).sum(0)
            done += m
        if bool(nan):
            raise ValueError("The base classifier returned NaN scores, which "
                             "have no class: nothing can be certified")
        return counts

    def _labels(self, out: Tensor, lead: Tuple[int, ...],
                stacked: bool) -> Tuple[Tensor, Optional[Tensor]]:
        r"""The labels of the base classifier's output, and for scores
        whether any is NaN (a tensor: no synchronisation)."""
        scores = torch.is_tensor(out) and out.is_floating_point()
        labels = torch.is_tensor(out) and not (scores or out.is_complex())
        want = list(lead) + ([self.num_classes] if scores else [])
        if not (scores or labels) or list(out.shape) != want:
            who = ("'forward_fn'" if self.forward_fn is not None else
                   'The base classifier')
            lead_s = ', '.join(map(str, lead))
            got = (f'{out.shape}, {out.dtype}' if scores or labels else
                   getattr(out, 'shape', type(out).__name__))
            raise ValueError(
                f"{who} must return one prediction per row: float scores of "
                f"shape [{lead_s}, {self.num_classes}] or integer labels of "
                f"shape [{lead_s}] (got {got})" +
                (" (with 'batch_size', 'forward_fn' gets x_noisy stacked as "
                 "[m, B, *])" if self.forward_fn is not None and stacked
                 else ''))
        if scores:
            return out.argmax(dim=-1).reshape(-1), torch.isnan(out).any()
        out = out.reshape(-1).long()
        if out.numel() and (out.min() < 0 or out.max() >= self.num_classes):
            raise ValueError(f"Labels must lie in [0, {self.num_classes})")
        return out, None

    def __repr__(self) -> str:
        name = getattr(self.model, '__class__', type(self.model)).__name__
        return (f'{self.__class__.__name__}({name}, '
                f'num_classes={self.num_classes}, sigma={self.sigma})')


def _integer_array(name: str, value) -> np.ndarray:
    r"""Non-negative integer counts (not booleans) as an int64 array."""
    arr = np.asarray(value.detach().cpu().numpy()
                     if torch.is_tensor(value) else value)
    if arr.dtype == np.bool_ or arr.dtype.kind not in 'iuf':
        raise TypeError(f"'{name}' must be integer counts (got "
                        f"{arr.dtype} values)")
    if arr.dtype.kind == 'f' and not (np.all(np.isfinite(arr))
                                      and np.all(arr == np.round(arr))):
        raise ValueError(f"'{name}' must be integer counts (got {value!r})")
    if np.any(arr < 0):
        raise ValueError(f"'{name}' must be non-negative (got {value!r})")
    return arr.astype(np.int64)


def clopper_pearson_lower(successes, trials: int, alpha: float) -> np.ndarray:
    r"""One-sided Clopper-Pearson lower confidence bound: the :math:`\alpha`
    quantile of :math:`\mathrm{Beta}(k, n - k + 1)` (:obj:`0` for
    :math:`k = 0`).

    Args:
        successes (array-like): Counts :math:`k`, integers in :math:`[0, n]`.
        trials (int): Number of trials :math:`n \ge 0`.
        alpha (float): Failure probability, in :math:`(0, 1)`.
    """
    from scipy.stats import beta

    check_number('trials', trials, integer=True, low=0)
    check_number('alpha', alpha, low=0, high=1, open_low=True)
    k = _integer_array('successes', successes)
    if np.any(k > trials):
        raise ValueError(f"'successes' must lie in [0, {trials}] (got "
                         f"{successes!r})")
    with np.errstate(invalid='ignore'):
        bound = beta.ppf(alpha, k, trials - k + 1)
    return np.where(k == 0, 0.0, bound)


def binomial_test_half(successes, trials) -> np.ndarray:
    r"""Two-sided p-value of the exact binomial test of :math:`k` successes in
    :math:`n` trials against :math:`p = 1/2`; :obj:`1` for :math:`n = 0`.

    Args:
        successes (array-like): Counts :math:`k`, integers in :math:`[0, n]`.
        trials (array-like): Numbers of trials :math:`n`, integers,
            broadcastable against :obj:`successes`.
    """
    from scipy.stats import binom

    k = _integer_array('successes', successes)
    n = _integer_array('trials', trials)
    try:
        k, n = np.broadcast_arrays(k, n)
    except ValueError:
        raise ValueError(f"'successes' and 'trials' must have broadcastable "
                         f"shapes (got {k.shape} and {n.shape})") from None
    if np.any(k > n):
        raise ValueError("'successes' must not exceed 'trials'")
    tail = binom.cdf(np.minimum(k, n - k), n, 0.5)
    return np.where(n == 0, 1.0, np.minimum(1.0, 2 * tail))
