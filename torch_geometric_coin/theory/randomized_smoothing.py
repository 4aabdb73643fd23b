import math
from typing import Any, Callable, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from torch_geometric_coin._checks import check_number


class RandomizedSmoothing(torch.nn.Module):
    r"""Randomized smoothing with certified :math:`\ell_2` robustness from the
    `"Certified Adversarial Robustness via Randomized Smoothing"
    <https://arxiv.org/abs/1902.02918>`_ paper (Cohen, Rosenfeld and Kolter,
    2019). For a base classifier :math:`f`, the smoothed classifier

    .. math::
        g(\mathbf{x}) = \arg\max_c \, \mathbb{P}_{\boldsymbol{\epsilon} \sim
        \mathcal{N}(\mathbf{0}, \sigma^2 \mathbf{I})}
        \left( f(\mathbf{x} + \boldsymbol{\epsilon}) = c \right)

    is the diffused (heat-equation-smoothed) one-hot classifier at time
    :math:`t = 1/2` (see :func:`gaussian_smoothing`). If the top class has
    probability :math:`p_A \ge \underline{p_A} > 1/2`, then :math:`g` is
    constant on the ball of radius :math:`\sigma \Phi^{-1}(\underline{p_A})`.
    :meth:`predict` and :meth:`certify` estimate :math:`g` by Monte Carlo;
    each answer is wrong with probability at most :obj:`alpha`.

    The items to classify are the rows of :obj:`x`. By default the model is
    applied row-wise, :obj:`model(x)` with :obj:`x` of shape :math:`(B, *)`,
    so several noise draws are stacked into one call. For node
    classification pass :obj:`forward_fn`, e.g.
    :obj:`lambda model, x, edge_index: model(x, edge_index)`: every draw
    perturbs the whole node feature matrix and yields a prediction for every
    node, so one run certifies all nodes; the radius then bounds the
    Frobenius norm of a perturbation of the whole feature matrix.

    Args:
        model (torch.nn.Module or callable): The base classifier; returns
            logits/scores of shape :math:`(B, C)` or labels of shape
            :math:`(B)`. Put it into evaluation mode yourself.
        num_classes (int): Number of classes :math:`C`.
        sigma (float): Noise level :math:`\sigma > 0`.
        forward_fn (callable, optional): :obj:`forward_fn(model, x_noisy,
            *args)` computes the base predictions of all rows of one noisy
            copy of :obj:`x`; :obj:`*args` are those passed to
            :meth:`predict` / :meth:`certify` (e.g. :obj:`edge_index`).
            (default: :obj:`None`, row-wise :obj:`model(x_noisy)`)
    """
    ABSTAIN = -1

    def __init__(self, model: Callable[..., Tensor], num_classes: int,
                 sigma: float,
                 forward_fn: Optional[Callable[..., Tensor]] = None):
        super().__init__()
        if not callable(model):
            raise TypeError("'model' must be a module or a callable")
        check_number('num_classes', num_classes, integer=True, low=2)
        if not (isinstance(sigma, (int, float)) and math.isfinite(sigma)
                and sigma > 0):
            raise ValueError(f"'sigma' must be positive (got {sigma!r})")
        if forward_fn is not None and not callable(forward_fn):
            raise TypeError("'forward_fn' must be a callable")
        self.model = model
        self.num_classes = num_classes
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
                alpha: float = 0.001, batch_size: int = 100,
                generator: Optional[torch.Generator] = None) -> Tensor:
        r"""Cohen et al.'s PREDICT: draws :obj:`n` noisy copies, counts the
        two most frequent classes :math:`n_A \ge n_B`, and returns the top
        class unless the two-sided binomial test of :math:`n_A` out of
        :math:`n_A + n_B` against :math:`1/2` has a p-value above
        :obj:`alpha`, in which case it abstains (:obj:`-1`).

        Args:
            x (torch.Tensor): Inputs, one item per row, shape :math:`(B, *)`
                (node features :math:`(N, F)` with :obj:`forward_fn`).
            *args: Passed on to :obj:`forward_fn`.
            n (int, optional): Number of noise draws. (default: :obj:`100`)
            alpha (float, optional): Probability of returning a class other
                than :math:`g(\mathbf{x})`. (default: :obj:`0.001`)
            batch_size (int, optional): Draws per model call in row-wise
                mode (the model sees :math:`B \cdot` :obj:`batch_size`
                rows); ignored with :obj:`forward_fn`. (default: :obj:`100`)
            generator (torch.Generator, optional): Source of the noise.

        Returns:
            torch.Tensor: Predicted classes of shape :math:`(B)`, :obj:`-1`
            where abstaining.
        """
        _check_alpha(alpha)
        counts = self.sample_counts(x, *args, num=n, batch_size=batch_size,
                                    generator=generator).cpu().numpy()
        top2 = np.argsort(-counts, axis=1, kind='stable')[:, :2]
        n_a = np.take_along_axis(counts, top2[:, :1], 1)[:, 0]
        n_b = np.take_along_axis(counts, top2[:, 1:], 1)[:, 0]
        pvalue = binomial_test_half(n_a, n_a + n_b)
        pred = np.where(pvalue > alpha, self.ABSTAIN, top2[:, 0])
        return torch.from_numpy(pred).to(torch.long)

    @torch.no_grad()
    def certify(self, x: Tensor, *args: Any, n0: int = 100, n: int = 1000,
                alpha: float = 0.001, batch_size: int = 100,
                generator: Optional[torch.Generator] = None
                ) -> Tuple[Tensor, Tensor]:
        r"""Cohen et al.'s CERTIFY: guesses the top class :math:`\hat{c}_A`
        from :obj:`n0` draws, then counts it in :obj:`n` fresh draws and
        bounds its probability from below by the one-sided Clopper-Pearson
        bound :math:`\underline{p_A}` at level :math:`1 - \alpha`. Returns
        :math:`\hat{c}_A` with radius :math:`\sigma \Phi^{-1}
        (\underline{p_A})`, or abstains (class :obj:`-1`, radius :obj:`0`)
        if :math:`\underline{p_A} < 1/2`. With probability at least
        :math:`1 - \alpha` per item, a returned class is :math:`g`'s
        prediction everywhere within the radius.

        Args:
            x (torch.Tensor): Inputs, as in :meth:`predict`.
            *args: Passed on to :obj:`forward_fn`.
            n0 (int, optional): Selection draws. (default: :obj:`100`)
            n (int, optional): Estimation draws. (default: :obj:`1000`)
            alpha (float, optional): Failure probability.
                (default: :obj:`0.001`)
            batch_size (int, optional): As in :meth:`predict`.
                (default: :obj:`100`)
            generator (torch.Generator, optional): Source of the noise.

        Returns:
            (torch.Tensor, torch.Tensor): Classes of shape :math:`(B)`
            (:obj:`-1` where abstaining) and certified radii of shape
            :math:`(B)` (:obj:`0` where abstaining).
        """
        from scipy.stats import norm

        _check_alpha(alpha)
        counts0 = self.sample_counts(x, *args, num=n0, batch_size=batch_size,
                                     generator=generator)
        c_a = counts0.argmax(dim=1)
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
                      batch_size: int = 100,
                      generator: Optional[torch.Generator] = None) -> Tensor:
        r"""Counts the base classifier's predictions under :obj:`num` noise
        draws.

        Returns:
            torch.Tensor: Counts of shape :math:`(B, C)`.
        """
        if not torch.is_tensor(x) or not x.is_floating_point() or x.dim() < 1:
            raise TypeError("'x' must be a floating-point tensor with one "
                            "item per row")
        if not isinstance(num, int) or num < 1:
            raise ValueError(f"The number of draws must be a positive "
                             f"integer (got {num!r})")
        check_number('batch_size', batch_size, integer=True, low=1)
        if self.forward_fn is None and args:
            raise TypeError("Extra arguments need 'forward_fn' to say how "
                            "the model uses them")
        num_items = x.size(0)
        counts = torch.zeros(num_items, self.num_classes, dtype=torch.long,
                             device=x.device)
        done = 0
        while done < num:
            m = 1 if self.forward_fn is not None else min(
                batch_size, num - done)
            noise = torch.randn((m, ) + tuple(x.shape), dtype=x.dtype,
                                device=x.device, generator=generator)
            if self.forward_fn is None:
                noisy = (x.unsqueeze(0) + self.sigma * noise).reshape(
                    m * num_items, *x.shape[1:])
                out = self.model(noisy)
            else:
                out = self.forward_fn(self.model, x + self.sigma * noise[0],
                                      *args)
            labels = self._labels(out, m * num_items).view(m, num_items)
            counts += torch.nn.functional.one_hot(
                labels, self.num_classes).sum(0)
            done += m
        return counts

    def _labels(self, out: Tensor, num_rows: int) -> Tensor:
        if not torch.is_tensor(out) or out.size(0) != num_rows:
            raise ValueError(f"The base classifier must return one "
                             f"prediction per row ({num_rows}), got "
                             f"{getattr(out, 'shape', type(out))}")
        if out.is_floating_point():
            if out.dim() != 2 or out.size(1) != self.num_classes:
                raise ValueError(f"Scores must have shape [{num_rows}, "
                                 f"{self.num_classes}] (got "
                                 f"{tuple(out.shape)})")
            return out.argmax(dim=1)
        if out.dim() != 1:
            raise ValueError(f"Labels must have shape [{num_rows}] "
                             f"(got {tuple(out.shape)})")
        if out.numel() and (out.min() < 0 or out.max() >= self.num_classes):
            raise ValueError(f"Labels must lie in [0, {self.num_classes})")
        return out.long()

    def __repr__(self) -> str:
        name = getattr(self.model, '__class__', type(self.model)).__name__
        return (f'{self.__class__.__name__}({name}, '
                f'num_classes={self.num_classes}, sigma={self.sigma})')


def clopper_pearson_lower(successes, trials: int, alpha: float) -> np.ndarray:
    r"""One-sided Clopper-Pearson lower confidence bound: the :math:`\alpha`
    quantile of :math:`\mathrm{Beta}(k, n - k + 1)` (:obj:`0` for
    :math:`k = 0`), so that :math:`\mathbb{P}(\underline{p} \le p) \ge 1 -
    \alpha` for :math:`k \sim \mathrm{Bin}(n, p)`.

    Args:
        successes (array-like): Counts :math:`k`.
        trials (int): Number of trials :math:`n`.
        alpha (float): Failure probability.
    """
    from scipy.stats import beta

    _check_alpha(alpha)
    k = np.asarray(successes, dtype=np.float64)
    if np.any(k < 0) or np.any(k > trials):
        raise ValueError(f"Counts must lie in [0, {trials}]")
    with np.errstate(invalid='ignore'):
        bound = beta.ppf(alpha, k, trials - k + 1)
    return np.where(k == 0, 0.0, bound)


def binomial_test_half(successes, trials) -> np.ndarray:
    r"""Two-sided p-value of the exact binomial test of :math:`k` successes in
    :math:`n` trials against :math:`p = 1/2`, vectorised (what
    :func:`scipy.stats.binomtest` returns); :obj:`1` for :math:`n = 0`."""
    from scipy.stats import binom

    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    tail = binom.cdf(np.minimum(k, n - k), n, 0.5)
    return np.where(n == 0, 1.0, np.minimum(1.0, 2 * tail))


def _check_alpha(alpha: float):
    if not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"'alpha' must lie in (0, 1) (got {alpha!r})")
