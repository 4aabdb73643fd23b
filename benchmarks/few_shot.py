"""Transductive few-shot classification on Omniglot: COIN in the authors'
setting and in ours, on the same episodes.

    python benchmarks/few_shot.py --episodes 500 --val-episodes 200

A CNN trained on some background alphabets replaces the authors' ResNet;
episodes come from the others but ``--val-alphabets`` (validation only) and
from the 20 official 20-way one-shot runs. Authors' setting (``fewshot/`` of
shwangtangjun/COIN): queries shifted to the support mean, ``torch.log`` (NaN
losses counted: ``nonfinite``), SGD. Ours: no shift, :func:`safe_log`, Adam
heads tuned on the validation classes (:obj:`GRID`).
"""
import copy
import itertools
import math
import os.path as osp
import sys
import time
from collections import defaultdict

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

METHODS = ('NCM', 'Head (K=0)', 'LabelProp', 'COIN')
HEADS = ('Head (K=0)', 'COIN')
SETTINGS = ('authors', 'ours')
# The defaults of the authors' fewshot/train.py:
AUTHORS = dict(ways=5, shots=(1, 5), queries=15, episodes=10000, K=10,
               sigma2=0.5, k=6, bandwidth_k=3, lr=0.1, momentum=0.9,
               weight_decay=1e-4, epochs=100, milestones=(0.5, 0.75),
               gamma=0.1)
# Searched on the validation classes:
GRID = dict(lr=(0.01, 0.02, 0.05, 0.1), weight_decay=(0., 5e-4, 5e-3),
            steps=(25, 50, 100))
LP_ALPHAS = (0.5, 0.8, 0.9, 0.99)


def conv4(num_classes):
    r"""The "Conv-4" backbone (:obj:`model[0]`) and a classifier."""
    nn = torch.nn
    blocks = [m for i, o in zip((1, 32, 64, 64), (32, 64, 64, 64)) for m in (
        nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(),
        nn.MaxPool2d(2))]
    return nn.Sequential(
        nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        nn.Linear(64, num_classes))


def train_backbone(images, labels, epochs, seed=0):
    r"""Trains :func:`conv4` on the base classes and their rotations (new
    classes) with Adam on mini-batches (not :func:`training.fit`'s)."""
    torch.manual_seed(seed)
    n = int(labels.max()) + 1
    images = torch.cat([torch.rot90(images, r, dims=(2, 3))
                        for r in range(4)])
    labels = torch.cat([labels + r * n for r in range(4)])
    model = conv4(4 * n)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for epoch in range(1, epochs + 1):
        for idx in tqdm(torch.randperm(images.size(0)).split(64),
                        desc=f'Backbone epoch {epoch}'):
            optimizer.zero_grad()
            F.cross_entropy(model(images[idx]), labels[idx]).backward()
            optimizer.step()
    return model


@torch.no_grad()
def embed(model, images):
    model.eval()
    return torch.cat([model[0](b) for b in images.split(512)])


def episodes(embeddings, labels, ways, shots, queries, num_episodes,
             batch_episodes=100, generator=None, desc=None):
    r"""Yields batches :obj:`(x, y)` (:obj:`[B, n, d]`, :obj:`[B, n]`) of
    episodes: :obj:`ways` random classes, :obj:`shots + queries` samples of
    each, the support first (class by class), labels :obj:`0..ways-1`."""
    classes = labels.unique()
    members = [torch.nonzero(labels == c).view(-1) for c in classes]
    if ways > len(members) or min(map(len, members)) < shots + queries:
        raise ValueError(f"Too few classes or samples for 'ways={ways}'")
    y = torch.cat([torch.arange(ways).repeat_interleave(shots),
                   torch.arange(ways).repeat_interleave(queries)])
    for start in tqdm(range(0, num_episodes, batch_episodes), desc=desc):
        xs = []
        for _ in range(min(batch_episodes, num_episodes - start)):
            chosen = torch.randperm(classes.numel(), generator=generator)
            idx = torch.stack([members[c][torch.randperm(
                members[c].numel(), generator=generator)][:shots + queries]
                for c in chosen[:ways].tolist()])
            xs.append(embeddings[torch.cat([idx[:, :shots].reshape(-1),
                                            idx[:, shots:].reshape(-1)])])
        yield torch.stack(xs), y.repeat(len(xs), 1)


def prepare(x, y, shots, ways, setting, center=None):
    r"""Episodes :obj:`x` :obj:`[B, n, d]`, :obj:`y` :obj:`[B, n]` as one
    disjoint graph: features minus :obj:`center`, L2-normalised, for
    :obj:`'authors'` the queries shifted to the support mean; the Gaussian
    kNN graph of each episode (the authors' :obj:`calculate_weight`)."""
    (B, n, d), ns = x.size(), shots * ways
    x = F.normalize(x if center is None else x - center, dim=-1)
    if setting == 'authors':
        support, query = x[:, :ns], x[:, ns:]
        eta = support.mean(1, keepdim=True) - query.mean(1, keepdim=True)
        x = torch.cat([support, query + eta], dim=1)
    x, batch = x.reshape(B * n, d), torch.arange(B).repeat_interleave(n)
    edge_index, edge_weight = gaussian_knn_graph(
        x, AUTHORS['k'], AUTHORS['bandwidth_k'], batch=batch)
    return Data(x=x, edge_index=edge_index, edge_weight=edge_weight,
                y=y.reshape(-1), is_support=(torch.arange(n) < ns).repeat(B),
                batch=batch, num_episodes=B)


class EpisodeCOIN(torch.nn.Module):
    r"""One :class:`COIN` head per episode (stacked weights under
    :func:`torch.func.vmap`, the diffusion over the disjoint graph). Returns
    :func:`safe_log`, or with :obj:`plain` :obj:`torch.log`."""
    def __init__(self, num_episodes, in_channels, ways, K, sigma2=0.5,
                 plain=False):
        super().__init__()
        template = COIN(in_channels, ways, None, K=K, sigma2=sigma2,
                        normalization=None, dropout=0.)
        bases = [copy.deepcopy(template.base) for _ in range(num_episodes)]
        for base in bases:
            base.reset_parameters()
        params, _ = torch.func.stack_module_state(bases)
        self.names = list(params)
        self.params = torch.nn.ParameterList(params.values())
        self.template = (template.base.to('meta'), )  # Not trained.
        self.diffusion = template.diffusion
        self.num_episodes, self.plain = num_episodes, plain

    def base(self, params, x):
        return torch.func.functional_call(
            self.template[0], dict(zip(self.names, params)), (x, ))

    def forward(self, x, edge_index, edge_weight):
        logits = torch.func.vmap(self.base, randomness='different')(
            tuple(self.params), x.view(self.num_episodes, -1, x.size(-1)))
        prob = self.diffusion(logits.softmax(dim=-1).flatten(0, 1),
                              edge_index, edge_weight)
        return prob.log() if self.plain else safe_log(prob)


def train_episodes(model, data, steps, lr, weight_decay, progress=None):
    r"""Our training (:func:`training.fit`, final model); the loss times the
    number of episodes, so that each trains as it would alone."""
    B = model.num_episodes
    fit(model, data, data.is_support, None, ~data.is_support, epochs=steps,
        lr=lr, weight_decay=weight_decay, progress=progress,
        loss_fn=lambda out, y: B * F.nll_loss(out, y))


def train_episodes_authors(model, data, epochs=AUTHORS['epochs'],
                           weight_decay=AUTHORS['weight_decay']):
    r"""The authors' training (:obj:`single_trial`): SGD, :class:`MultiStepLR`
    and no check of the loss (hence not :func:`training.fit`), each episode
    as alone. Returns per episode whether its loss was ever not finite."""
    a, B, is_support = AUTHORS, model.num_episodes, data.is_support
    optimizer = torch.optim.SGD(model.parameters(), a['lr'], a['momentum'],
                                weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, [int(m * epochs) for m in a['milestones']], a['gamma'])
    y, episode = data.y[is_support], data.batch[is_support]
    nonfinite = torch.zeros(B, dtype=torch.bool)
    for _ in range(epochs):
        model.train()
        out = model(data.x, data.edge_index, data.edge_weight)
        loss = F.nll_loss(out[is_support], y, reduction='none')
        bad = (~torch.isfinite(loss.detach())).float()
        nonfinite |= torch.zeros(B).index_add_(0, episode, bad) > 0
        optimizer.zero_grad()
        (B * loss.mean()).backward()
        optimizer.step()
        scheduler.step()
    return nonfinite


@torch.no_grad()
def predict(model, data):
    model.eval()
    return model(data.x, data.edge_index, data.edge_weight).argmax(-1)


def label_prop(data, alpha):
    return LabelPropagation(50, alpha)(
        data.y, data.edge_index, mask=data.is_support,
        edge_weight=data.edge_weight).argmax(-1)


def query_acc(pred, data):
    q = ~data.is_support
    return (pred[q] == data.y[q]).view(data.num_episodes, -1).float().mean(1)


def evaluate_episodes(x, y, shots, ways, setting, center=None, heads=None,
                      lp_alpha=0.9):
    r"""Per method the query accuracy of each episode (and for
    :obj:`'authors'` :obj:`nonfinite`); our heads train with
    :obj:`heads[name]` (:obj:`lr`, :obj:`weight_decay`, :obj:`steps`)."""
    B, n, d = x.size()
    data = prepare(x, y, shots, ways, setting, center)
    xs = data.x.view(B, n, d)
    protos = xs[:, :shots * ways].reshape(B, ways, shots, d).mean(2)
    res = {'NCM': query_acc(torch.cdist(xs, protos).argmin(-1).view(-1),
                            data)}
    for name in HEADS:
        model = EpisodeCOIN(B, d, ways, AUTHORS['K'] * (name == 'COIN'),
                            AUTHORS['sigma2'], plain=setting == 'authors')
        if setting == 'authors':  # 'nonfinite': the COIN head's (the last)
            res['nonfinite'] = train_episodes_authors(model, data)
        else:
            train_episodes(model, data, **heads[name])
        res[name] = query_acc(predict(model, data), data)
    res['LabelProp'] = query_acc(label_prop(data, lp_alpha), data)
    return res


def select(batches, shots, ways, setting, center=None):
    r"""Chooses on validation episodes the alpha of label propagation and
    for :obj:`'ours'` each head's :obj:`GRID` point (steps read on the way):
    the best mean query accuracy on the same episodes (ties: the first)."""
    steps_grid = sorted(set(GRID['steps']))
    configs = list(itertools.product(GRID['lr'], GRID['weight_decay']))
    sums, count = defaultdict(float), 0
    for x, y in batches:
        count += x.size(0)
        data = prepare(x, y, shots, ways, setting, center)
        for alpha in LP_ALPHAS:
            sums['LabelProp', alpha] += float(query_acc(
                label_prop(data, alpha), data).sum())
        for name, (lr, wd) in itertools.product(
                HEADS if setting == 'ours' else (), configs):
            model = EpisodeCOIN(x.size(0), x.size(-1), ways, AUTHORS['K'] * (
                name == 'COIN'), AUTHORS['sigma2'])

            def progress(step, _, model=model, key=(name, lr, wd)):
                if step in steps_grid:
                    sums[key + (step, )] += float(query_acc(
                        predict(model, data), data).sum())

            train_episodes(model, data, steps_grid[-1], lr, wd, progress)
    chosen = dict(lp_alpha=max(LP_ALPHAS, key=lambda a: sums['LabelProp', a]))
    if setting == 'ours':
        candidates = [(lr, wd, s) for lr, wd in configs for s in steps_grid]
        chosen['heads'] = {name: dict(zip(('lr', 'weight_decay', 'steps'), max(
            candidates, key=lambda c: sums[(name, ) + c]))) for name in HEADS}
    return dict(chosen, scores={' '.join(map(str, key)): s / count
                                for key, s in sums.items()})


def summary(values):
    r""":func:`reporting.summarize` and the authors' half-width."""
    x = torch.tensor(values, dtype=torch.float64)
    return dict(reporting.summarize(values), ci95_authors=float(
        1.96 * x.std(correction=0) / math.sqrt(len(values))))


def score(batches, shots, ways, selected, center=None):
    r"""Per setting (with its :func:`select` values) and method the
    :func:`summary` of the query accuracies on the same episodes, and the
    paired differences :obj:`'<b> - <a>'` to the first setting."""
    accs = {s: {m: [] for m in METHODS} for s in selected}
    nonfinite = 0
    for x, y in batches:
        for s, c in selected.items():
            res = evaluate_episodes(x, y, shots, ways, s, center,
                                    c.get('heads'), c['lp_alpha'])
            for m in METHODS:
                accs[s][m] += res[m].tolist()
            nonfinite += int(res.get('nonfinite', torch.zeros(1)).sum())
    out = {s: {m: summary(a[m]) for m in METHODS} for s, a in accs.items()}
    if 'authors' in out:
        out['authors']['nonfinite'] = nonfinite
    first, *others = list(selected)
    for s in others:
        out[f'{s} - {first}'] = {m: summary([
            b - a for a, b in zip(accs[first][m], accs[s][m])])
            for m in METHODS}
    return out


def markdown(results):
    rows, sel = [], []
    for shape, per_setting in results['settings'].items():
        for setting, row in per_setting.items():
            cells = [reporting.fmt_mean(row[m], 'ci95', 100, 2)
                     for m in METHODS]
            if ' - ' not in setting:
                cells = reporting.bold_best(cells,
                                            [row[m]['mean'] for m in METHODS])
            rows.append([shape, setting, row[METHODS[0]]['n']] + cells)
    for shape, per_setting in results['selected'].items():
        for setting, c in per_setting.items():
            cells = [f"lr {h['lr']:g}, wd {h['weight_decay']:g}, "
                     f"{h['steps']} steps" for h in c['heads'].values()
                     ] if 'heads' in c else [
                         'the authors\' (SGD 0.1, 100 epochs)'] * 2
            sel.append([shape, setting] + cells + [c['lp_alpha']])
    return (reporting.markdown_table(['episodes', 'setting', 'n']
                                     + list(METHODS), rows)
            + '\nChosen on the validation classes:\n\n'
            + reporting.markdown_table(['episodes', 'setting'] + list(HEADS)
                                       + ['LabelProp alpha'], sel))


def split_classes(alphabets, y, base, val):
    r"""Masks of the drawings :obj:`y` (class :obj:`c` of alphabet
    :obj:`alphabets[c]`) of the :obj:`base`, :obj:`val` and other ones."""
    names, base, val = set(alphabets), set(base), set(val)
    if not base | val <= names or base & val or names <= base | val:
        raise ValueError(f'--base-alphabets, --val-alphabets: two disjoint '
                         f'sets of {sorted(names)} that leave some out')
    alphabet = [alphabets[c] for c in y.tolist()]
    is_base = torch.tensor([a in base for a in alphabet])
    is_val = torch.tensor([a in val for a in alphabet])
    return is_base, is_val, ~(is_base | is_val)


def main(argv=None):
    parser = common.parser(__doc__, root=common.SHARED, seed=0,
                           epochs=dict(default=6, help='backbone epochs'))
    add = parser.add_argument
    add('--base-alphabets', nargs='+', help="the backbone's alphabets",
        default=['Balinese', 'Early_Aramaic', 'Korean', 'Latin'])
    add('--val-alphabets', nargs='+', default=['Greek'],
        help='validation alphabets (neither trained on nor reported)')
    add('--ways', type=int, nargs='+', default=[AUTHORS['ways']],
        help='classes per episode')
    add('--shots', type=int, nargs='+', default=list(AUTHORS['shots']),
        help='labelled samples per class')
    add('--queries', type=int, default=AUTHORS['queries'], help='per class')
    add('--episodes', type=int, default=AUTHORS['episodes'], help='per shape')
    add('--val-episodes', type=int, default=200, help='per shape')
    add('--batch-episodes', type=int, default=100, help='trained at once')
    add('--no-official-runs', action='store_true', help='skip the 20 runs')
    args, command = common.parse_args(parser, argv, 'few_shot')
    start = time.perf_counter()
    with common.data_errors(parser):
        root = common.writable_copy(
            osp.join(common.dataset_root(args.root), 'omniglot'))
        data = Omniglot(root, size=28)[0]
        runs = None if args.no_official_runs else Omniglot(
            root, split='runs', size=28)
    try:
        is_base, is_val, is_novel = split_classes(
            data.alphabets, data.y, args.base_alphabets, args.val_alphabets)
    except ValueError as e:
        parser.error(str(e))
    backbone = train_backbone(
        data.x[is_base], data.y[is_base].unique(return_inverse=True)[1],
        args.epochs, args.seed)
    center = embed(backbone, data.x[is_base]).mean(0)
    novel = embed(backbone, data.x[is_novel]), data.y[is_novel]
    val = embed(backbone, data.x[is_val]), data.y[is_val]
    val_gen = torch.Generator().manual_seed(args.seed + 1)
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)

    shapes = [(w, s, args.queries, f'{w}-way {s}-shot')
              for w in args.ways for s in args.shots]
    if runs is not None:  # One query per class:
        shapes.append((20, 1, 1, 'official 20-way 1-shot runs'))
    settings, selected = {}, {}
    for ways, shots, queries, shape in shapes:
        selected[shape] = {s: select(episodes(
            *val, ways, shots, queries, args.val_episodes, args.batch_episodes,
            val_gen, f'{shape} {s}: validation'), shots, ways, s, center)
            for s in SETTINGS}
        batches = [(torch.stack([embed(backbone, r.x) for r in runs]),
                    torch.stack([r.y for r in runs]))] if 'runs' in shape \
            else episodes(*novel, ways, shots, queries, args.episodes,
                          args.batch_episodes, gen, shape)
        settings[shape] = score(batches, shots, ways, selected[shape], center)

    results = dict(command=command, args=vars(args), authors=AUTHORS,
                   settings=settings, selected=selected,
                   seconds=time.perf_counter() - start)
    print(markdown(results))
    return reporting.save(args.out_dir, 'few_shot', results, markdown)


if __name__ == '__main__':
    main()
