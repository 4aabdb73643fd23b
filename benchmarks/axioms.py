"""Which axioms of the convection-diffusion framework do propagation operators
obey? Probes CoinDiffusionConv in every normalisation and scheme, with a
stable and an unstable sigma2, and PyG's APPNP, GCNConv and SGConv (identity
weights, no bias) with `torch_geometric_coin.theory.check_axioms`, and writes
the verdict table as JSON and Markdown.

    python benchmarks/axioms.py
    python benchmarks/axioms.py --num-nodes 12 --K 3 --trials 2  # tiny
"""
import os.path as osp
import sys

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.nn import APPNP, GCNConv, SGConv
from torch_geometric.utils import barabasi_albert_graph
from tqdm import tqdm

from torch_geometric_coin.nn import CoinDiffusionConv
from torch_geometric_coin.theory import check_axioms, format_axiom_table

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import reporting  # noqa: E402

# The one place that lists the time-stepping schemes of CoinDiffusionConv:
# scheme name -> extra keyword arguments of the layer.
SCHEMES = {
    'explicit': {},
    'implicit': {'scheme': 'implicit', 'tol': 1e-12},
}
NORMALIZATIONS = ('coin', 'sym', 'rw', None)
# The unstable regime is deliberate: silence the layer's stability warning.
LAYER_KWARGS = dict(stability='ignore')
# sigma2 regimes, relative to the graph Laplacian L of each normalisation:
# 'stable' makes the explicit step I - sigma2 L entrywise non-negative
# (sigma2 * max_i L_ii = 1/2); 'unstable' puts sigma2 * lambda_max(L) = 3,
# beyond the explicit Euler limit 2.
STABLE_DIAG, UNSTABLE_SPECTRAL = 0.5, 3.0


def laplacian(normalization, data):
    """L = (I - T) / sigma2 of one explicit step T, read off the layer."""
    conv = CoinDiffusionConv(K=1, sigma2=1.0, normalization=normalization,
                             **SCHEMES['explicit'], **LAYER_KWARGS).double()
    eye = torch.eye(data.num_nodes, dtype=torch.float64)
    with torch.no_grad():
        return eye - conv(eye, data.edge_index)


def identity_weight(conv):
    with torch.no_grad():
        conv.lin.weight.copy_(torch.eye(conv.lin.weight.size(0)))
    return conv


def main(argv=None):
    parser = common.parser(
        __doc__, K=dict(default=10, help='steps of CoinDiffusionConv and '
                        'APPNP (SGConv: 2)'), seed=0)
    parser.add_argument('--num-nodes', type=int, default=40,
                        help='nodes of the random graph')
    parser.add_argument('--channels', type=int, default=4,
                        help='feature channels of the probes')
    parser.add_argument('--trials', type=int, default=16,
                        help='random probes per axiom')
    parser.add_argument('--steps', type=int, nargs=2, default=[2, 3],
                        help='K1 K2 of the semigroup check')
    args, command = common.parse_args(parser, argv, 'axioms')

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # barabasi_albert_graph samples with numpy
    edge_index = barabasi_albert_graph(args.num_nodes, 2)
    data = Data(edge_index=edge_index, num_nodes=args.num_nodes)
    deg = torch.bincount(edge_index[0], minlength=args.num_nodes)
    graph = (f'Barabasi-Albert graph, {args.num_nodes} nodes, '
             f'{edge_index.size(1)} directed edges, degrees '
             f'{int(deg.min())}-{int(deg.max())}, seed {args.seed}')
    probe = dict(num_channels=args.channels, trials=args.trials,
                 steps=tuple(args.steps), seed=args.seed)

    reports, rows = {}, []
    # One bar over the operator cases (minutes each at the defaults):
    bar = tqdm(total=len(NORMALIZATIONS) * len(SCHEMES) * 2 + 3,
               desc='operators')
    for norm in NORMALIZATIONS:
        lap = laplacian(norm, data)
        regimes = {
            'stable': STABLE_DIAG / float(lap.diag().max()),
            'unstable': UNSTABLE_SPECTRAL /
            float(torch.linalg.eigvals(lap).abs().max()),
        }
        for scheme, extra in SCHEMES.items():
            for regime, sigma2 in regimes.items():

                def make(K, norm=norm, sigma2=sigma2, extra=extra):
                    return CoinDiffusionConv(K=K, sigma2=sigma2,
                                             normalization=norm, **extra,
                                             **LAYER_KWARGS)

                label = (f'CoinDiffusionConv({norm!r}, {scheme}, K={args.K}, '
                         f'sigma2={sigma2:.3g}, {regime})')
                bar.set_postfix_str(f'{norm}, {scheme}, {regime}')
                reports[label] = check_axioms(make(args.K), data,
                                              make_operator=make, **probe)
                bar.update()
                rows.append(dict(operator='CoinDiffusionConv',
                                 normalization=norm, scheme=scheme,
                                 regime=regime, sigma2=sigma2, K=args.K))

    C = args.channels
    pyg = {
        f'APPNP(K={args.K}, alpha=0.1)':
        (APPNP(args.K, 0.1), lambda K: APPNP(K, 0.1)),
        'GCNConv (identity weight, no bias)':
        (identity_weight(GCNConv(C, C, bias=False)), None),
        'SGConv(K=2, identity weight, no bias)':
        (identity_weight(SGConv(C, C, K=2, bias=False)),
         lambda K: identity_weight(SGConv(C, C, K=K, bias=False))),
    }
    for label, (op, make) in pyg.items():
        # Without make_operator there is no semigroup check to take steps.
        kwargs = probe if make is not None else {
            k: v for k, v in probe.items() if k != 'steps'}
        bar.set_postfix_str(label.split('(')[0])
        reports[label] = check_axioms(op, data, make_operator=make, **kwargs)
        bar.update()
        rows.append(dict(operator=label))

    bar.close()
    table = format_axiom_table(reports)
    print(graph)
    print(table)

    meta = dict(
        command=command,
        graph=graph,
        regimes=f'stable: sigma2 * max_i L_ii = {STABLE_DIAG}; unstable: '
        f'sigma2 * lambda_max(L) = {UNSTABLE_SPECTRAL}',
        schemes=list(SCHEMES),
    )
    results = [
        dict(label=label, **row, **report.to_dict())
        for (label, report), row in zip(reports.items(), rows)
    ]
    atol = next(iter(reports.values())).atol
    return reporting.save(
        args.out_dir, 'axioms', dict(meta, results=results),
        f"{graph}; {probe['trials']} random probes per axiom, "
        f"{C} channels, float64, atol {atol:g}; semigroup "
        f"K={args.steps[0]}+{args.steps[1]}; cells: verdict (worst "
        f"scaled violation). {meta['regimes']}.\n\n{table}\n")


if __name__ == '__main__':
    main()
