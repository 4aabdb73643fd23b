"""Transductive few-shot classification on Omniglot with COIN.

    python benchmarks/few_shot.py                     # the full benchmark
    python benchmarks/few_shot.py --epochs 1 --episodes 4 --ways 5 --shots 1

A small CNN is trained on the characters of some Omniglot background alphabets
(``--base-alphabets``); test episodes (N-way, k-shot, 15 queries per class)
come from the characters of the other alphabets, and the 20 official 20-way
one-shot runs (``all_runs.zip``, evaluation alphabets) are scored as well.
Per episode, as the COIN authors do, the embeddings are centred by the
base-class mean and L2-normalised, a Gaussian kNN graph is built over support
plus query (k=6, bandwidth_k=3), a small residual head is trained on the
support labels and its class probabilities are diffused over the graph
(K=10, sigma2=0.5). Baselines in the same episodes: nearest class mean, the
same head without diffusion (K=0) and label propagation on the same graph.

``run_episodes`` (built on ``sample_episodes`` and ``evaluate_episodes``)
takes any ``(embeddings, labels)``, so other backbones plug in directly.
Heads of many episodes are trained at once (one set of weights per episode,
vectorised with ``torch.func.vmap``; the graphs of the episodes form one
disjoint graph).
"""
import copy
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

BASE_ALPHABETS = ('Balinese', 'Early_Aramaic', 'Greek', 'Korean', 'Latin')
METHODS = ('NCM', 'Head (K=0)', 'LabelProp', 'COIN')


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
    :obj:`ways * shots` support samples first."""
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


class EpisodeCOIN(torch.nn.Module):
    r"""One :class:`COIN` per episode, evaluated for all episodes at once: the
    residual base classifiers run under :obj:`torch.func.vmap` with stacked
    weights, and the diffusion runs over the disjoint union of the episode
    graphs (which keeps episodes apart)."""
    def __init__(self, num_episodes, in_channels, ways, K, sigma2, dropout):
        super().__init__()
        template = COIN(in_channels, ways, K=K, sigma2=sigma2,
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

    def forward(self, x, edge_index, edge_weight):
        def base(params, x):
            return torch.func.functional_call(
                self.template[0], dict(zip(self.names, params)), (x, ))

        x = x.view(self.num_episodes, -1, x.size(-1))
        logits = torch.func.vmap(base, randomness='different')(
            tuple(self.params), x)
        prob = logits.softmax(dim=-1).view(-1, logits.size(-1))
        return safe_log(self.diffusion(prob, edge_index, edge_weight))


def train_episodes(model, data, is_support, steps, lr, weight_decay):
    r"""Trains the heads of all :obj:`model.num_episodes` episodes at once
    on their support nodes. The loss is the number of episodes times the
    mean over all support nodes, so that each episode gets the gradient it
    would get alone, against the same weight decay."""
    B = model.num_episodes
    return fit(model, data, is_support, None, ~is_support, epochs=steps,
               lr=lr, weight_decay=weight_decay,
               loss_fn=lambda out, y: B * F.nll_loss(out, y))


def evaluate_episodes(x, y, shots, ways, center=None, K=10, sigma2=0.5, k=6,
                      bandwidth_k=3, steps=50, lr=0.02, weight_decay=5e-4,
                      dropout=0., lp_alpha=0.9, lp_layers=50):
    r"""Scores all methods on a batch of episodes :obj:`x` :obj:`[B, n, d]`,
    :obj:`y` :obj:`[B, n]` (support first). Returns the query accuracy of
    each episode per method, as a dictionary of :obj:`[B]` tensors."""
    B, n, d = x.size()
    if center is not None:
        x = x - center
    x = F.normalize(x, dim=-1)
    num_support = shots * ways
    is_support = (torch.arange(n) < num_support).repeat(B)
    flat, labels = x.reshape(B * n, d), y.reshape(-1)
    batch = torch.arange(B).repeat_interleave(n)
    edge_index, edge_weight = gaussian_knn_graph(flat, k, bandwidth_k,
                                                 batch=batch)
    data = Data(x=flat, edge_index=edge_index, edge_weight=edge_weight,
                y=labels)

    def query_acc(pred):
        return (pred == labels).view(B, n)[:, num_support:].float().mean(1)

    res = {}
    # Nearest class mean (prototypes of the support set):
    protos = x[:, :num_support].reshape(B, ways, shots, d).mean(2)
    # Support samples are ordered class by class, shots per class:
    res['NCM'] = query_acc(torch.cdist(x, protos).argmin(-1).view(-1))

    for name, steps_K in [('Head (K=0)', 0), ('COIN', K)]:
        model = EpisodeCOIN(B, d, ways, steps_K, sigma2, dropout)
        train_episodes(model, data, is_support, steps, lr, weight_decay)
        model.eval()
        with torch.no_grad():
            pred = model(flat, edge_index, edge_weight).argmax(-1)
        res[name] = query_acc(pred)

    lp = LabelPropagation(lp_layers, lp_alpha)
    out = lp(labels, edge_index, mask=is_support, edge_weight=edge_weight)
    res['LabelProp'] = query_acc(out.argmax(-1))
    return res


def run_episodes(embeddings, labels, ways, shots, queries=15,
                 num_episodes=1000, batch_episodes=100, generator=None,
                 desc=None, **kwargs):
    r"""The episode loop for any :obj:`(embeddings, labels)` of novel
    classes: samples :obj:`num_episodes` episodes in batches of
    :obj:`batch_episodes`, scores every method on them with
    :func:`evaluate_episodes` (:obj:`kwargs` go there, *e.g.*,
    :obj:`center`) and returns per method the
    :func:`reporting.summarize` of the query accuracies
    (mean, :obj:`ci95`: half-width of the 95% confidence interval, :obj:`n`:
    episodes)."""
    accs = {m: [] for m in METHODS}
    sizes = [batch_episodes] * (num_episodes // batch_episodes)
    if num_episodes % batch_episodes:
        sizes.append(num_episodes % batch_episodes)
    for size in tqdm(sizes, desc=desc):
        x, y = sample_episodes(embeddings, labels, ways, shots, queries,
                               size, generator)
        res = evaluate_episodes(x, y, shots, ways, **kwargs)
        for m in METHODS:
            accs[m] += res[m].tolist()
    return {m: reporting.summarize(accs[m]) for m in METHODS}


def fmt_row(row):
    r"""Per method the mean query accuracy ± the half-width of its 95%
    confidence interval (in %)."""
    return [reporting.fmt_mean(row[m], 'ci95', 100, 2) for m in METHODS]


def markdown(results):
    r"""The Markdown table of :obj:`results['settings']`: per setting the
    number of episodes and :func:`fmt_row`, the best in bold."""
    return reporting.markdown_table(
        ['setting', 'episodes'] + list(METHODS),
        [[setting, row[METHODS[0]]['n']] + reporting.bold_best(
            fmt_row(row), [row[m]['mean'] for m in METHODS])
         for setting, row in results['settings'].items()])


def main(argv=None):
    parser = common.parser(
        __doc__, root=common.SHARED,
        epochs=dict(default=6, help='epochs of the backbone'), K=10,
        sigma2=0.5, k=6, bandwidth_k=3,
        lr=dict(default=0.02, help="Adam learning rate of the episodes' "
                "heads"), dropout=0., seed=0, name='few_shot')
    parser.add_argument('--size', type=int, default=28,
                        help='side of the images in pixels')
    parser.add_argument('--base-alphabets', nargs='+',
                        default=list(BASE_ALPHABETS),
                        help='the alphabets the backbone is trained on')
    parser.add_argument('--no-rotations', action='store_true',
                        help='no rotated copies as extra base classes')
    parser.add_argument('--ways', type=int, nargs='+', default=[5, 20],
                        help='classes per episode')
    parser.add_argument('--shots', type=int, nargs='+', default=[1, 5],
                        help='labelled examples per class')
    parser.add_argument('--queries', type=int, default=15,
                        help='query samples per class')
    parser.add_argument('--episodes', type=int, default=1000,
                        help='episodes per setting')
    parser.add_argument('--batch-episodes', type=int, default=100,
                        help='episodes trained at once')
    parser.add_argument('--steps', type=int, default=50,
                        help="training steps of the episodes' heads")
    parser.add_argument('--lp-alpha', type=float, default=0.9,
                        help='label propagation: alpha')
    parser.add_argument('--lp-layers', type=int, default=50,
                        help='label propagation: steps')
    parser.add_argument('--no-official-runs', action='store_true',
                        help='skip the 20 official 20-way 1-shot runs')
    args, command = common.parse_args(parser, argv, 'few_shot')
    if args.size < 16:
        parser.error(f'--size must be at least 16 for the four pooling '
                     f'layers (got {args.size})')
    start = time.perf_counter()

    root = common.writable_copy(
        osp.join(common.dataset_root(args.root), 'omniglot'))
    data = Omniglot(root, size=args.size)[0]
    is_base = torch.tensor([data.alphabets[c] in args.base_alphabets
                            for c in data.y.tolist()])
    if not bool(is_base.any()) or bool(is_base.all()):
        raise ValueError(f"'--base-alphabets' must name some but not all of "
                         f"{sorted(set(data.alphabets))}")
    base_y = data.y[is_base].unique(return_inverse=True)[1]
    print(f'Omniglot: {int(is_base.sum())} base images '
          f'({base_y.max() + 1} classes), {int((~is_base).sum())} novel '
          f'images ({data.y[~is_base].unique().numel()} classes)')
    backbone = train_backbone(data.x[is_base], base_y, args.epochs,
                              rotations=not args.no_rotations, seed=args.seed)
    center = embed(backbone, data.x[is_base]).mean(0)
    novel_x = embed(backbone, data.x[~is_base])
    novel_y = data.y[~is_base]

    kwargs = dict(center=center, K=args.K, sigma2=args.sigma2, k=args.k,
                  bandwidth_k=args.bandwidth_k, steps=args.steps, lr=args.lr,
                  dropout=args.dropout, lp_alpha=args.lp_alpha,
                  lp_layers=args.lp_layers)
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    settings = {}
    for ways in args.ways:
        for shots in args.shots:
            setting = f'{ways}-way {shots}-shot'
            settings[setting] = run_episodes(
                novel_x, novel_y, ways, shots, args.queries, args.episodes,
                args.batch_episodes, gen, desc=setting, **kwargs)
            print(f'{setting}: ' + ', '.join(
                f'{m} {cell}' for m, cell in zip(METHODS,
                                                 fmt_row(settings[setting]))))

    if not args.no_official_runs:
        # Per run: the 20 support drawings, then the 20 queries.
        runs = Omniglot(root, split='runs', size=args.size)
        x = torch.stack([embed(backbone, r.x) for r in runs])
        y = torch.stack([r.y for r in runs])
        res = evaluate_episodes(x, y, 1, 20, **kwargs)
        setting = 'official 20-way 1-shot runs'
        settings[setting] = {m: reporting.summarize(res[m])
                             for m in METHODS}
        print(f'{setting}: ' + ', '.join(
            f'{m} {cell}' for m, cell in zip(METHODS,
                                             fmt_row(settings[setting]))))

    results = dict(command=command, args=vars(args), settings=settings,
                   seconds=time.perf_counter() - start)
    print(markdown(results))
    return reporting.save(args.out_dir, args.name, results, markdown)


if __name__ == '__main__':
    main()
