"""Transductive few-shot classification on Omniglot with COIN: the authors'
setting and ours, side by side on the same episodes.

    python benchmarks/few_shot.py                     # both settings
    python benchmarks/few_shot.py --setting authors   # the authors' only
    python benchmarks/few_shot.py --epochs 1 --episodes 4 --val-episodes 4

The defaults are the authors' 10,000 episodes per shape (hours on a 2-core
CPU; BENCHMARKS.md gives the command and time of a shorter run).

**Backbone (not the authors').** The COIN authors (``fewshot/`` of
shwangtangjun/COIN) use features of a ResNet-18 / WRN pretrained on the base
classes of miniImageNet, tieredImageNet or CUB. Those are not available
here, so a small CNN (:class:`ConvNet`) is trained on the characters of some
Omniglot background alphabets (``--base-alphabets``); episodes come from the
characters of other background alphabets (the reported classes), and the 20
official 20-way one-shot runs (``all_runs.zip``, evaluation alphabets) are
scored as well. Characters of ``--val-alphabets`` (default: Greek) are seen
neither by the backbone nor in the reported episodes: they are the
validation classes on which every hyper-parameter that is not the authors'
is chosen (:func:`select`). Both settings use the same backbone, the same
base-class mean and the same test episodes.

**The authors' setting** (``--setting authors``; ``fewshot/train.py``,
``coin.py``, ``utils.py``), step by step:

1. Episodes: 5-way, 1 or 5 shots, 15 queries per class, 10,000 episodes
   (``--episodes``; the support first, class by class), accuracy on the
   queries, mean and ``1.96 * std / sqrt(n)`` (population std), stored as
   ``ci95_authors`` beside our Student-t ``ci95``. (They draw with
   Python's ``random`` from seed 1, here ``torch`` generators from
   ``--seed``: the same distribution of episodes, not the same episodes.)
2. Features (:func:`preprocess`): centred by the mean embedding of the
   base-class images, L2-normalised, then the *query shift* ("cross-domain
   shift"): the queries move by the support mean minus the query mean, so
   that both have the same mean.
3. Graph (:func:`episode_graph`): over support plus query, each node keeps
   the nodes closer than its 8th nearest (itself included: 6 neighbours),
   weights :math:`\\exp(-(d/s_i)^2)` with :math:`s_i` the distance to its
   4th nearest (the 3rd neighbour), a self weight 1, symmetric degree
   normalisation, then :math:`(W + W^T)/2` and :math:`L = \\mathrm{diag}(W
   1) - W` (``gaussian_knn_graph(k=6, bandwidth_k=3)`` and
   ``normalization=None``).
4. Head (:class:`EpisodeCOIN`): ``x + relu(W1 x + b1)``, a linear
   classifier, softmax, then K=10 steps :math:`u \\leftarrow u -
   \\sigma^2 L u` (sigma2=0.5); the loss is the NLL of ``torch.log`` of the
   diffused probabilities. **Authors' defect kept:** the plain logarithm is
   NaN where a diffused probability is negative and ``-inf`` where it is 0
   (their loop never checks); such episodes are counted
   (``nonfinite``). Our setting uses :func:`safe_log` instead.
5. Training (:func:`train_episodes_authors`): SGD, lr 0.1, momentum 0.9,
   weight decay 1e-4, 100 full-batch epochs on the support labels,
   learning rate x0.1 after epochs 50 and 75 (``MultiStepLR``); the final
   model predicts the queries.
6. Baselines in the same episodes, features and graph (the authors report
   published numbers instead): the head without diffusion (K=0, their
   ``layer_num=0``, same training), the nearest class mean and PyG's
   :class:`LabelPropagation` (alpha chosen on the validation classes).

**Our setting** (``--setting ours``): the same backbone, centring, L2
normalisation, graph, K and sigma2, but *no query shift*, :func:`safe_log`,
and the heads trained with Adam (:func:`train_episodes`, the one training
loop :func:`training.fit`) whose learning rate, weight decay and number of
steps are chosen per head and per episode shape on the validation classes
from ``--grid-*`` (without ``--val-alphabets`` the fixed ``--lr``,
``--weight-decay``, ``--steps`` are used: values picked earlier *without*
validation classes). The tables report each setting and the paired
difference ours - authors (same episodes).

``run_episodes`` (built on ``sample_episodes`` and ``evaluate_episodes``)
takes any ``(embeddings, labels)``, so other backbones plug in directly.
Heads of many episodes are trained at once (one set of weights per episode,
vectorised with ``torch.func.vmap``; the graphs of the episodes form one
disjoint graph), each exactly as it would train alone.
"""
import copy
import itertools
import math
import os.path as osp
import sys
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from torch_geometric.data import Data
from torch_geometric.nn.models import LabelPropagation

from torch_geometric_coin.datasets import Omniglot
from torch_geometric_coin.nn import COIN, safe_log
from torch_geometric_coin.utils import gaussian_knn_graph

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import reporting  # noqa: E402
from training import fit  # noqa: E402

BASE_ALPHABETS = ('Balinese', 'Early_Aramaic', 'Korean', 'Latin')
VAL_ALPHABETS = ('Greek', )
METHODS = ('NCM', 'Head (K=0)', 'LabelProp', 'COIN')
HEADS = ('Head (K=0)', 'COIN')
SETTINGS = ('authors', 'ours')
# The authors' fewshot/train.py (defaults of its argparse and its loop):
AUTHORS = dict(ways=5, shots=(1, 5), queries=15, episodes=10000, K=10,
               sigma2=0.5, k=6, bandwidth_k=3, lr=0.1, momentum=0.9,
               weight_decay=1e-4, epochs=100, milestones=(0.5, 0.75),
               gamma=0.1)
# Our Adam head before validation classes existed (used only without
# --val-alphabets): chosen on the reported classes, not validated.
OURS = dict(lr=0.02, weight_decay=5e-4, steps=50)
GRID = dict(lr=(0.01, 0.02, 0.05, 0.1), weight_decay=(0., 5e-4, 5e-3),
            steps=(25, 50, 100))
LP_ALPHAS = (0.5, 0.8, 0.9, 0.99)


class ConvNet(torch.nn.Module):
    r"""Four blocks of 3x3 convolution, batch norm, ReLU and 2x2 max pooling
    (the "Conv-4" backbone of few-shot learning)."""
    def __init__(self, channels=(32, 64, 64, 64), num_classes=None):
        super().__init__()
        layers, in_channels = [], 1
        for out_channels in channels:
            layers += [
                torch.nn.Conv2d(in_channels, out_channels, 3, padding=1),
                torch.nn.BatchNorm2d(out_channels),
                torch.nn.ReLU(),
                torch.nn.MaxPool2d(2),
            ]
            in_channels = out_channels
        self.features = torch.nn.Sequential(*layers,
                                            torch.nn.AdaptiveAvgPool2d(1),
                                            torch.nn.Flatten())
        self.out_channels = in_channels
        self.classifier = torch.nn.Linear(in_channels, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


def train_backbone(images, labels, epochs, rotations, batch_size=64, lr=1e-3,
                   seed=0):
    r"""Trains :class:`ConvNet` with the cross-entropy over the base classes
    (each rotation by 90 degrees counts as a class of its own)."""
    torch.manual_seed(seed)
    num_classes = int(labels.max()) + 1
    if rotations:
        images = torch.cat([torch.rot90(images, r, dims=(2, 3))
                            for r in range(4)])
        labels = torch.cat([labels + r * num_classes for r in range(4)])
        num_classes *= 4
    model = ConvNet(num_classes=num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(images.size(0))
        total = correct = 0
        bar = tqdm(perm.split(batch_size), desc=f'Backbone epoch {epoch}',
                   leave=False)
        for idx in bar:
            optimizer.zero_grad()
            out = model(images[idx])
            loss = F.cross_entropy(out, labels[idx])
            loss.backward()
            optimizer.step()
            total += idx.numel()
            correct += int((out.argmax(-1) == labels[idx]).sum())
        print(f'Backbone epoch {epoch}: train accuracy {correct / total:.4f}')
    return model


@torch.no_grad()
def embed(model, images, batch_size=512):
    model.eval()
    return torch.cat([model.features(b) for b in images.split(batch_size)])


def sample_episodes(embeddings, labels, ways, shots, queries, num_episodes,
                    generator=None):
    r"""Samples :obj:`num_episodes` episodes from :obj:`(embeddings,
    labels)`: :obj:`ways` classes, :obj:`shots` support and :obj:`queries`
    query samples per class. Returns :obj:`x` of shape :obj:`[B, n, d]` and
    episode labels :obj:`y` of shape :obj:`[B, n]` in :obj:`0..ways-1`, the
    :obj:`ways * shots` support samples first (as the authors'
    :obj:`sample_task`)."""
    classes = labels.unique()
    members = [torch.nonzero(labels == c).view(-1) for c in classes]
    if ways > classes.numel():
        raise ValueError(f"'ways' ({ways}) exceeds the number of classes "
                         f"({classes.numel()})")
    if min(m.numel() for m in members) < shots + queries:
        raise ValueError(f"Some classes have fewer than shots + queries = "
                         f"{shots + queries} samples")
    xs, ys = [], []
    for _ in range(num_episodes):
        chosen = torch.randperm(classes.numel(), generator=generator)[:ways]
        idx = torch.stack([
            members[c][torch.randperm(members[c].numel(),
                                      generator=generator)[:shots + queries]]
            for c in chosen.tolist()
        ])  # [ways, shots + queries]
        idx = torch.cat([idx[:, :shots].reshape(-1),
                         idx[:, shots:].reshape(-1)])
        y = torch.arange(ways).repeat_interleave(shots)
        y = torch.cat([y, torch.arange(ways).repeat_interleave(queries)])
        xs.append(embeddings[idx])
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)


def preprocess(x, num_support, center=None, query_shift=False):
    r"""The features of episodes :obj:`x` :obj:`[B, n, d]` (support first):
    minus :obj:`center` (the base-class mean), L2-normalised, and with
    :obj:`query_shift` (the authors' "cross-domain shift") the queries
    moved by the support mean minus the query mean of their episode."""
    if center is not None:
        x = x - center
    x = F.normalize(x, dim=-1)
    if query_shift:
        support, query = x[:, :num_support], x[:, num_support:]
        eta = support.mean(1, keepdim=True) - query.mean(1, keepdim=True)
        x = torch.cat([support, query + eta], dim=1)
    return x


def episode_graph(x, k=6, bandwidth_k=3):
    r"""The Gaussian kNN graph of each episode of :obj:`x` :obj:`[B, n, d]`
    (the authors' :obj:`calculate_weight` with :obj:`n_top=k+2,
    sigma=bandwidth_k+1`), as one disjoint graph. Returns the flat
    features :obj:`[B * n, d]`, :obj:`edge_index`, :obj:`edge_weight` and
    the episode of each node."""
    B, n, d = x.size()
    flat = x.reshape(B * n, d)
    batch = torch.arange(B).repeat_interleave(n)
    edge_index, edge_weight = gaussian_knn_graph(flat, k, bandwidth_k,
                                                 batch=batch)
    return flat, edge_index, edge_weight, batch


class EpisodeCOIN(torch.nn.Module):
    r"""One :class:`COIN` per episode, evaluated for all episodes at once: the
    residual base classifiers run under :obj:`torch.func.vmap` with stacked
    weights, and the diffusion runs over the disjoint union of the episode
    graphs (which keeps episodes apart). With :obj:`log='plain'` the output
    is :obj:`torch.log` of the diffused probabilities (the authors', NaN or
    :obj:`-inf` where they are not positive), with :obj:`'safe'`
    :func:`safe_log`."""
    def __init__(self, num_episodes, in_channels, ways, K, sigma2, dropout,
                 log='safe'):
        super().__init__()
        if log not in ('safe', 'plain'):
            raise ValueError(f"'log' must be 'safe' or 'plain' (got {log!r})")
        template = COIN(in_channels, ways, None, K=K, sigma2=sigma2,
                        normalization=None, dropout=dropout)
        bases = []
        for _ in range(num_episodes):
            base = copy.deepcopy(template.base)
            base.reset_parameters()
            bases.append(base)
        params, _ = torch.func.stack_module_state(bases)
        self.names = list(params)
        self.params = torch.nn.ParameterList(params.values())
        # Not a sub-module: only the stacked weights are trained.
        self.template = (template.base.to('meta'), )
        self.diffusion = template.diffusion
        self.num_episodes = num_episodes
        self.log = log

    def forward(self, x, edge_index, edge_weight):
        def base(params, x):
            return torch.func.functional_call(
                self.template[0], dict(zip(self.names, params)), (x, ))

        x = x.view(self.num_episodes, -1, x.size(-1))
        logits = torch.func.vmap(base, randomness='different')(
            tuple(self.params), x)
        prob = logits.softmax(dim=-1).view(-1, logits.size(-1))
        prob = self.diffusion(prob, edge_index, edge_weight)
        return prob.log() if self.log == 'plain' else safe_log(prob)


def train_episodes(model, data, is_support, steps, lr, weight_decay,
                   progress=None):
    r"""Our training of the heads of all :obj:`model.num_episodes` episodes
    at once (:func:`training.fit`: Adam, full batch, :obj:`steps` steps,
    final model) on their support nodes. The loss is the number of episodes
    times the mean over all support nodes, so that each episode gets the
    gradient it would get alone, against the same weight decay.
    :obj:`progress(step, metrics)` is called after each step."""
    B = model.num_episodes
    return fit(model, data, is_support, None, ~is_support, epochs=steps,
               lr=lr, weight_decay=weight_decay, progress=progress,
               loss_fn=lambda out, y: B * F.nll_loss(out, y))


def train_episodes_authors(model, data, is_support, batch, epochs=100,
                           lr=0.1, momentum=0.9, weight_decay=1e-4,
                           milestones=(0.5, 0.75), gamma=0.1):
    r"""The authors' training of the heads (:obj:`train` and
    :obj:`single_trial` of :obj:`fewshot/train.py`), for all episodes at
    once: :obj:`epochs` full-batch steps of SGD (:obj:`lr`,
    :obj:`momentum`, :obj:`weight_decay`) on the NLL of the support nodes,
    the learning rate times :obj:`gamma` after epochs
    :obj:`int(m * epochs)` for :obj:`m` in :obj:`milestones`
    (:class:`MultiStepLR`), the final model kept. The loss is never checked
    (as theirs); the loss of the batch is the number of episodes times the
    mean over all support nodes, so each episode trains as alone
    (:func:`training.fit` has neither SGD nor a schedule, hence this loop).

    Returns a dictionary with :obj:`lrs`, the learning rate of each epoch,
    and :obj:`nonfinite`, per episode whether its loss was ever NaN or
    infinite (the authors' :obj:`torch.log` of a non-positive
    probability)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                                weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, [int(m * epochs) for m in milestones], gamma=gamma)
    B = model.num_episodes
    y, episode = data.y[is_support], batch[is_support]
    lrs, nonfinite = [], torch.zeros(B, dtype=torch.bool)
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]['lr'])
        model.train()
        out = model(data.x, data.edge_index, data.edge_weight)
        loss = F.nll_loss(out[is_support], y, reduction='none')
        with torch.no_grad():
            bad = (~torch.isfinite(loss)).float()
            nonfinite |= torch.zeros(B).index_add_(0, episode, bad) > 0
        optimizer.zero_grad()
        (B * loss.mean()).backward()
        optimizer.step()
        scheduler.step()
    return dict(lrs=lrs, nonfinite=nonfinite)


@torch.no_grad()
def predict(model, data):
    model.eval()
    return model(data.x, data.edge_index, data.edge_weight).argmax(-1)


def prepare(x, y, shots, ways, setting, center=None, k=6, bandwidth_k=3):
    r"""The features and graph of a batch of episodes in a setting:
    returns :obj:`(data, is_support, batch)` for :obj:`x` :obj:`[B, n,
    d]`, :obj:`y` :obj:`[B, n]`."""
    B, n, _ = x.size()
    num_support = shots * ways
    x = preprocess(x, num_support, center, query_shift=setting == 'authors')
    flat, edge_index, edge_weight, batch = episode_graph(x, k, bandwidth_k)
    data = Data(x=flat, edge_index=edge_index, edge_weight=edge_weight,
                y=y.reshape(-1))
    is_support = (torch.arange(n) < num_support).repeat(B)
    return data, is_support, batch


def _query_acc(pred, data, B, num_support):
    return (pred == data.y).view(B, -1)[:, num_support:].float().mean(1)


def _ncm(data, B, shots, ways):
    x = data.x.view(B, -1, data.x.size(-1))
    # Support samples are ordered class by class, shots per class:
    protos = x[:, :shots * ways].reshape(B, ways, shots, -1).mean(2)
    return torch.cdist(x, protos).argmin(-1).view(-1)


def _label_prop(data, is_support, alpha, layers):
    lp = LabelPropagation(layers, alpha)
    out = lp(data.y, data.edge_index, mask=is_support,
             edge_weight=data.edge_weight)
    return out.argmax(-1)


def evaluate_episodes(x, y, shots, ways, setting='ours', center=None, K=10,
                      sigma2=0.5, k=6, bandwidth_k=3, steps=50, lr=0.02,
                      weight_decay=5e-4, heads=None, dropout=0.,
                      lp_alpha=0.9, lp_layers=50):
    r"""Scores all methods on a batch of episodes :obj:`x` :obj:`[B, n, d]`,
    :obj:`y` :obj:`[B, n]` (support first) in a setting.

    :obj:`'authors'`: the authors' features, graph, head and training
    (:obj:`AUTHORS`; the arguments :obj:`K` to :obj:`dropout` are
    ignored). :obj:`'ours'`: no query shift, :func:`safe_log`, and Adam
    with :obj:`steps`, :obj:`lr`, :obj:`weight_decay`, or per head the
    dictionary :obj:`heads[name]` of those. Returns the query accuracy of
    each episode per method, as a dictionary of :obj:`[B]` tensors, and
    for :obj:`'authors'` :obj:`'nonfinite'`: per episode whether the
    COIN head's loss was ever NaN or infinite."""
    if setting not in SETTINGS:
        raise ValueError(f"Unknown setting {setting!r}: expected one of "
                         f"{SETTINGS}")
    B, n, d = x.size()
    num_support = shots * ways
    if setting == 'authors':
        k, bandwidth_k = AUTHORS['k'], AUTHORS['bandwidth_k']
    data, is_support, batch = prepare(x, y, shots, ways, setting, center, k,
                                      bandwidth_k)
    res = {'NCM': _query_acc(_ncm(data, B, shots, ways), data, B,
                             num_support)}
    for name in HEADS:
        if setting == 'authors':
            K_name = AUTHORS['K'] if name == 'COIN' else 0
            model = EpisodeCOIN(B, d, ways, K_name, AUTHORS['sigma2'], 0.,
                                log='plain')
            stats = train_episodes_authors(
                model, data, is_support, batch, AUTHORS['epochs'],
                AUTHORS['lr'], AUTHORS['momentum'], AUTHORS['weight_decay'],
                AUTHORS['milestones'], AUTHORS['gamma'])
            if name == 'COIN':
                res['nonfinite'] = stats['nonfinite']
        else:
            hp = dict(steps=steps, lr=lr, weight_decay=weight_decay)
            hp.update((heads or {}).get(name, {}))
            model = EpisodeCOIN(B, d, ways, K if name == 'COIN' else 0,
                                sigma2, dropout)
            train_episodes(model, data, is_support, hp['steps'], hp['lr'],
                           hp['weight_decay'])
        res[name] = _query_acc(predict(model, data), data, B, num_support)
    res['LabelProp'] = _query_acc(
        _label_prop(data, is_support, lp_alpha, lp_layers), data, B,
        num_support)
    return res


def _batches(num_episodes, batch_episodes):
    sizes = [batch_episodes] * (num_episodes // batch_episodes)
    if num_episodes % batch_episodes:
        sizes.append(num_episodes % batch_episodes)
    return sizes


def select(embeddings, labels, ways, shots, queries, num_episodes,
           batch_episodes=100, generator=None, setting='ours', center=None,
           grid=None, lp_alphas=LP_ALPHAS, K=10, sigma2=0.5, k=6,
           bandwidth_k=3, dropout=0., lp_layers=50, desc=None):
    r"""Chooses the hyper-parameters of a setting that are not the
    authors' on :obj:`num_episodes` episodes of the *validation* classes
    :obj:`(embeddings, labels)`: for :obj:`'ours'` the learning rate,
    weight decay and number of Adam steps of each head (the grid
    :obj:`grid`, by default :obj:`GRID`; all step counts come from one
    run of the largest, evaluated on the way), and for both settings the
    :obj:`alpha` of label propagation (:obj:`lp_alphas`). Every candidate
    is scored on the same episodes; the highest mean query accuracy wins
    (ties: the first in grid order).

    Returns :obj:`(chosen, scores)`: :obj:`chosen` holds :obj:`heads`
    (per head a dictionary :obj:`lr`, :obj:`weight_decay`,
    :obj:`steps`; :obj:`'ours'` only) and :obj:`lp_alpha`, as
    :func:`evaluate_episodes` takes them; :obj:`scores` the mean
    validation accuracy of every candidate."""
    grid = dict(GRID if grid is None else grid)
    if setting == 'authors':
        k, bandwidth_k = AUTHORS['k'], AUTHORS['bandwidth_k']
    steps_grid = sorted(set(grid['steps']))
    configs = list(itertools.product(grid['lr'], grid['weight_decay']))
    sums = {}

    def add(key, acc):
        sums[key] = sums.get(key, 0.) + float(acc.sum())

    for size in tqdm(_batches(num_episodes, batch_episodes), desc=desc):
        x, y = sample_episodes(embeddings, labels, ways, shots, queries,
                               size, generator)
        num_support = shots * ways
        data, is_support, _ = prepare(x, y, shots, ways, setting, center, k,
                                      bandwidth_k)
        for alpha in lp_alphas:
            add(('LabelProp', alpha), _query_acc(
                _label_prop(data, is_support, alpha, lp_layers), data, size,
                num_support))
        if setting != 'ours':
            continue
        for name in HEADS:
            for lr, wd in configs:
                model = EpisodeCOIN(size, x.size(-1), ways,
                                    K if name == 'COIN' else 0, sigma2,
                                    dropout)

                def progress(step, _, model=model, key=(name, lr, wd)):
                    if step in steps_grid:
                        add(key + (step, ), _query_acc(
                            predict(model, data), data, size, num_support))

                train_episodes(model, data, is_support, steps_grid[-1], lr,
                               wd, progress)
    scores = {' '.join(str(v) for v in key): s / num_episodes
              for key, s in sums.items()}
    chosen = dict(lp_alpha=max(lp_alphas,
                               key=lambda a: (sums[('LabelProp', a)])))
    if setting == 'ours':
        chosen['heads'] = {}
        for name in HEADS:
            candidates = [(lr, wd, s) for lr, wd in configs
                          for s in steps_grid]
            lr, wd, s = max(candidates, key=lambda c: sums[(name, ) + c])
            chosen['heads'][name] = dict(lr=lr, weight_decay=wd, steps=s)
    return chosen, scores


def run_episodes(embeddings, labels, ways, shots, queries=15,
                 num_episodes=1000, batch_episodes=100, generator=None,
                 desc=None, settings=None, **kwargs):
    r"""The episode loop for any :obj:`(embeddings, labels)` of novel
    classes: samples :obj:`num_episodes` episodes in batches of
    :obj:`batch_episodes` and scores every method on them with
    :func:`evaluate_episodes` (:obj:`kwargs` go there, *e.g.*,
    :obj:`center`). With :obj:`settings`, a dictionary of setting name to
    keyword arguments of :func:`evaluate_episodes` (*e.g.*, :obj:`{'authors':
    {}, 'ours': {'heads': ...}}`), every setting is scored on the same
    episodes.

    Returns per setting (without :obj:`settings`: directly) and method the
    :func:`summary` of the query accuracies; with two or more settings also
    :obj:`'<b> - <a>'`, the summaries of the per-episode differences (the
    first setting :obj:`a` against each other :obj:`b`), and for
    :obj:`'authors'` the number of episodes :obj:`nonfinite` whose loss was
    ever NaN or infinite."""
    single = settings is None
    if single:
        settings = {kwargs.pop('setting', 'ours'): {}}
    accs = {s: {m: [] for m in METHODS} for s in settings}
    nonfinite = {s: 0 for s in settings}
    for size in tqdm(_batches(num_episodes, batch_episodes), desc=desc):
        x, y = sample_episodes(embeddings, labels, ways, shots, queries,
                               size, generator)
        for s, options in settings.items():
            res = evaluate_episodes(x, y, shots, ways, setting=s,
                                    **dict(kwargs, **options))
            for m in METHODS:
                accs[s][m] += res[m].tolist()
            if 'nonfinite' in res:
                nonfinite[s] += int(res['nonfinite'].sum())
    out = {s: {m: summary(accs[s][m]) for m in METHODS} for s in settings}
    if single:
        return next(iter(out.values()))
    for s in settings:
        if s == 'authors':
            out[s]['nonfinite'] = nonfinite[s]
    first, *others = list(settings)
    for s in others:
        out[f'{s} - {first}'] = {
            m: summary([b - a for a, b in zip(accs[first][m], accs[s][m])])
            for m in METHODS}
    return out


def summary(values):
    r""":func:`reporting.summarize` (Student's t interval, :obj:`ci95`) plus
    :obj:`ci95_authors`, the authors' half-width
    :obj:`1.96 * np.std(values) / sqrt(n)` (population std)."""
    res = reporting.summarize(values)
    x = torch.as_tensor([float(v) for v in values], dtype=torch.float64)
    res['ci95_authors'] = float(1.96 * x.std(correction=0)
                                / math.sqrt(x.numel()))
    return res


def fmt_row(row):
    r"""Per method the mean query accuracy ± the half-width of its 95%
    confidence interval (in %)."""
    return [reporting.fmt_mean(row[m], 'ci95', 100, 2) for m in METHODS]


def markdown(results):
    r"""The Markdown tables of :obj:`results`: per episode shape and
    setting (and paired difference) the number of episodes and
    :func:`fmt_row` (the best of each setting in bold), then the
    hyper-parameters chosen on the validation classes."""
    rows = []
    for shape, per_setting in results['settings'].items():
        for setting, row in per_setting.items():
            cells = fmt_row(row)
            if ' - ' not in setting:
                cells = reporting.bold_best(cells,
                                            [row[m]['mean'] for m in METHODS])
            rows.append([shape, setting, row[METHODS[0]]['n']] + cells)
    text = reporting.markdown_table(
        ['episodes', 'setting', 'n'] + list(METHODS), rows)
    sel = []
    for shape, per_setting in results.get('selected', {}).items():
        for setting, chosen in per_setting.items():
            heads = chosen.get('heads', {})
            cells = [f"lr {h['lr']:g}, wd {h['weight_decay']:g}, "
                     f"{h['steps']} steps" for h in
                     (heads.get(m) for m in HEADS) if h]
            cells = cells or ['the authors\' (SGD 0.1, 100 epochs)'] * 2
            sel.append([shape, setting] + cells + [chosen['lp_alpha']])
    if sel:
        text += '\nChosen on the validation classes:\n\n'
        text += reporting.markdown_table(
            ['episodes', 'setting'] + list(HEADS) + ['LabelProp alpha'], sel)
    return text


def split_classes(alphabets, y, base, val=()):
    r"""Splits the drawings of classes :obj:`y` (:obj:`alphabets[c]`: the
    alphabet of class :obj:`c`) into three disjoint boolean masks: the
    :obj:`base` alphabets (the backbone's training data), the :obj:`val`
    alphabets (validation classes) and the rest (the reported classes).
    Raises a :class:`ValueError` for unknown or shared alphabets, or if no
    base or reported class is left."""
    names = sorted(set(alphabets))
    for opt, given in (('--base-alphabets', base), ('--val-alphabets', val)):
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ValueError(f'{opt}: unknown {unknown} (expected some of '
                             f'{names})')
    overlap = set(base) & set(val)
    if overlap:
        raise ValueError(f'--val-alphabets and --base-alphabets share '
                         f'{sorted(overlap)}')
    alphabet = [alphabets[c] for c in y.tolist()]
    is_base = torch.tensor([a in base for a in alphabet], dtype=torch.bool)
    is_val = torch.tensor([a in val for a in alphabet], dtype=torch.bool)
    is_novel = ~(is_base | is_val)
    if not bool(is_base.any()) or not bool(is_novel.any()):
        raise ValueError(f"'--base-alphabets' and '--val-alphabets' must "
                         f"leave some of {names} for the reported episodes")
    return is_base, is_val, is_novel


def make_parser():
    parser = common.parser(
        __doc__, root=common.SHARED,
        epochs=dict(default=6, help='epochs of the backbone'),
        K=dict(default=AUTHORS['K'], help='COIN diffusion steps (ours; '
               'the authors\' setting has 10)'),
        sigma2=dict(default=AUTHORS['sigma2'], help='COIN diffusion '
                    'coefficient (ours; the authors\' setting has 0.5)'),
        k=dict(default=AUTHORS['k'], help='kNN graph neighbours (ours; the '
               'authors\' setting has 6)'),
        bandwidth_k=dict(default=AUTHORS['bandwidth_k'], help='bandwidth '
                         'neighbour (ours; the authors\' setting has 3)'),
        lr=dict(default=OURS['lr'], help="Adam learning rate of our heads "
                "without --val-alphabets (not validated)"),
        weight_decay=dict(default=OURS['weight_decay'], help="Adam weight "
                          "decay of our heads without --val-alphabets"),
        dropout=0., seed=0, name='few_shot')
    parser.add_argument('--setting', nargs='+', choices=SETTINGS,
                        default=list(SETTINGS),
                        help='the settings, scored on the same episodes')
    parser.add_argument('--size', type=int, default=28,
                        help='side of the images in pixels')
    parser.add_argument('--base-alphabets', nargs='+',
                        default=list(BASE_ALPHABETS),
                        help='the alphabets the backbone is trained on')
    parser.add_argument('--val-alphabets', nargs='*',
                        default=list(VAL_ALPHABETS),
                        help='validation alphabets (neither trained on nor '
                        'reported); none: fixed --lr/--steps/--weight-decay/'
                        '--lp-alpha')
    parser.add_argument('--no-rotations', action='store_true',
                        help='no rotated copies as extra base classes')
    parser.add_argument('--ways', type=int, nargs='+',
                        default=[AUTHORS['ways']],
                        help='classes per episode')
    parser.add_argument('--shots', type=int, nargs='+',
                        default=list(AUTHORS['shots']),
                        help='labelled examples per class')
    parser.add_argument('--queries', type=int, default=AUTHORS['queries'],
                        help='query samples per class')
    parser.add_argument('--episodes', type=int, default=AUTHORS['episodes'],
                        help='test episodes per shape')
    parser.add_argument('--val-episodes', type=int, default=200,
                        help='validation episodes per shape')
    parser.add_argument('--batch-episodes', type=int, default=100,
                        help='episodes trained at once')
    parser.add_argument('--steps', type=int, default=OURS['steps'],
                        help="Adam steps of our heads without "
                        "--val-alphabets")
    parser.add_argument('--grid-lr', type=float, nargs='+',
                        default=list(GRID['lr']),
                        help='validation grid: Adam learning rates')
    parser.add_argument('--grid-weight-decay', type=float, nargs='+',
                        default=list(GRID['weight_decay']),
                        help='validation grid: Adam weight decays')
    parser.add_argument('--grid-steps', type=int, nargs='+',
                        default=list(GRID['steps']),
                        help='validation grid: Adam steps')
    parser.add_argument('--grid-lp-alpha', type=float, nargs='+',
                        default=list(LP_ALPHAS),
                        help='validation grid: label propagation alpha')
    parser.add_argument('--lp-alpha', type=float, default=0.9,
                        help='label propagation: alpha without '
                        '--val-alphabets')
    parser.add_argument('--lp-layers', type=int, default=50,
                        help='label propagation: steps')
    parser.add_argument('--no-official-runs', action='store_true',
                        help='skip the 20 official 20-way 1-shot runs')
    return parser


def main(argv=None):
    parser = make_parser()
    args, command = common.parse_args(parser, argv, 'few_shot')
    if args.size < 16:
        parser.error(f'--size must be at least 16 for the four pooling '
                     f'layers (got {args.size})')
    start = time.perf_counter()

    with common.data_errors(parser):
        root = common.writable_copy(
            osp.join(common.dataset_root(args.root), 'omniglot'))
        data = Omniglot(root, size=args.size)[0]
    try:
        is_base, is_val, is_novel = split_classes(
            data.alphabets, data.y, args.base_alphabets, args.val_alphabets)
    except ValueError as e:
        parser.error(str(e))
    base_y = data.y[is_base].unique(return_inverse=True)[1]
    print(f'Omniglot: {int(is_base.sum())} base images '
          f'({base_y.max() + 1} classes), {int(is_val.sum())} validation '
          f'images ({data.y[is_val].unique().numel()} classes), '
          f'{int(is_novel.sum())} reported images '
          f'({data.y[is_novel].unique().numel()} classes)')
    backbone = train_backbone(data.x[is_base], base_y, args.epochs,
                              rotations=not args.no_rotations, seed=args.seed)
    center = embed(backbone, data.x[is_base]).mean(0)
    novel_x, novel_y = embed(backbone, data.x[is_novel]), data.y[is_novel]
    val_x, val_y = embed(backbone, data.x[is_val]), data.y[is_val]

    ours = dict(K=args.K, sigma2=args.sigma2, k=args.k,
                bandwidth_k=args.bandwidth_k, dropout=args.dropout)
    fixed = dict(lp_alpha=args.lp_alpha, heads={
        name: dict(lr=args.lr, weight_decay=args.weight_decay,
                   steps=args.steps) for name in HEADS})
    grid = dict(lr=args.grid_lr, weight_decay=args.grid_weight_decay,
                steps=args.grid_steps)
    val_gen = torch.Generator().manual_seed(args.seed + 1)
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)

    def choose(ways, shots, queries, shape):
        per_setting = {}
        for s in args.setting:
            if not bool(is_val.any()):
                chosen = dict(fixed) if s == 'ours' else dict(
                    lp_alpha=args.lp_alpha)
                per_setting[s] = dict(chosen, validated=False)
                continue
            chosen, scores = select(
                val_x, val_y, ways, shots, queries, args.val_episodes,
                args.batch_episodes, val_gen, s, center, grid,
                args.grid_lp_alpha, lp_layers=args.lp_layers,
                desc=f'{shape} {s}: validation', **ours)
            per_setting[s] = dict(chosen, validated=True, scores=scores)
            print(f'{shape} {s}: chosen on the validation classes: '
                  f'{chosen}')
        return per_setting

    def options(chosen):
        return {s: dict((ours if s == 'ours' else {}), lp_alpha=c['lp_alpha'],
                        **({'heads': c['heads']} if 'heads' in c else {}))
                for s, c in chosen.items()}

    def show(shape, per_setting):
        for s, row in per_setting.items():
            print(f'{shape} {s}: ' + ', '.join(
                f'{m} {cell}' for m, cell in zip(METHODS, fmt_row(row))))

    settings, selected = {}, {}
    for ways in args.ways:
        for shots in args.shots:
            shape = f'{ways}-way {shots}-shot'
            selected[shape] = choose(ways, shots, args.queries, shape)
            settings[shape] = run_episodes(
                novel_x, novel_y, ways, shots, args.queries, args.episodes,
                args.batch_episodes, gen, desc=shape, center=center,
                lp_layers=args.lp_layers,
                settings=options(selected[shape]))
            show(shape, settings[shape])

    if not args.no_official_runs:
        # Per run: the 20 support drawings, then the 20 queries (one query
        # per class, as the validation episodes chosen for them).
        shape = 'official 20-way 1-shot runs'
        selected[shape] = choose(20, 1, 1, shape)
        runs = Omniglot(root, split='runs', size=args.size)
        x = torch.stack([embed(backbone, r.x) for r in runs])
        y = torch.stack([r.y for r in runs])
        accs = {s: evaluate_episodes(x, y, 1, 20, setting=s, center=center,
                                     lp_layers=args.lp_layers, **o)
                for s, o in options(selected[shape]).items()}
        row = {s: {m: summary(a[m]) for m in METHODS}
               for s, a in accs.items()}
        if 'authors' in accs:
            row['authors']['nonfinite'] = int(accs['authors']['nonfinite']
                                              .sum())
        first, *others = list(accs)
        for s in others:
            row[f'{s} - {first}'] = {m: summary(accs[s][m] - accs[first][m])
                                     for m in METHODS}
        settings[shape] = row
        show(shape, row)

    results = dict(command=command, args=vars(args), authors=AUTHORS,
                   settings=settings, selected=selected,
                   seconds=time.perf_counter() - start)
    print(markdown(results))
    return reporting.save(args.out_dir, args.name, results, markdown)


if __name__ == '__main__':
    main()
