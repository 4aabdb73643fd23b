"""Which axioms of the convection-diffusion framework do propagation operators
obey? `torch_geometric_coin.theory.check_axioms` probes CoinDiffusionConv in
every normalisation and scheme, with a stable and an unstable sigma2, and
PyG's APPNP, GCNConv and SGConv (identity weights, no bias).

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

SCHEMES = {'explicit': {}, 'implicit': {'scheme': 'implicit', 'tol': 1e-12}}
NORMALIZATIONS = ('coin', 'sym', 'rw', None)
# 'stable': the explicit step I - sigma2 L is entrywise non-negative
# (sigma2 * max_i L_ii = 1/2); 'unstable': sigma2 * lambda_max(L) = 3, past
# the explicit Euler limit 2 (deliberately: stability='ignore').
STABLE_DIAG, UNSTABLE_SPECTRAL = 0.5, 3.0


def coin(K, norm, sigma2, scheme):
    return CoinDiffusionConv(K=K, sigma2=sigma2, normalization=norm,
                             stability='ignore', **SCHEMES[scheme])


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
    C, eye = args.channels, torch.eye(args.num_nodes, dtype=torch.float64)

    cases = []  # (label, row, operator, make_operator)
    for norm in NORMALIZATIONS:
        with torch.no_grad():  # L = I - T of one explicit step, sigma2 = 1.
            lap = eye - coin(1, norm, 1.0, 'explicit').double()(
                eye, edge_index)
        regimes = dict(stable=STABLE_DIAG / float(lap.diag().max()),
                       unstable=UNSTABLE_SPECTRAL / float(
                           torch.linalg.eigvals(lap).abs().max()))
        for scheme in SCHEMES:
            for regime, sigma2 in regimes.items():
                def make(K, norm=norm, sigma2=sigma2, scheme=scheme):
                    return coin(K, norm, sigma2, scheme)
                cases.append((
                    f'CoinDiffusionConv({norm!r}, {scheme}, K={args.K}, '
                    f'sigma2={sigma2:.3g}, {regime})',
                    dict(operator='CoinDiffusionConv', normalization=norm,
                         scheme=scheme, regime=regime, sigma2=sigma2,
                         K=args.K), make(args.K), make))
    cases += [(label, dict(operator=label), op, make) for label, op, make in [
        (f'APPNP(K={args.K}, alpha=0.1)', APPNP(args.K, 0.1),
         lambda K: APPNP(K, 0.1)),
        ('GCNConv (identity weight, no bias)',
         identity_weight(GCNConv(C, C, bias=False)), None),
        ('SGConv(K=2, identity weight, no bias)',
         identity_weight(SGConv(C, C, K=2, bias=False)),
         lambda K: identity_weight(SGConv(C, C, K=K, bias=False)))]]

    reports = {}
    for label, _, op, make in tqdm(cases, desc='operators'):
        kwargs = {k: v for k, v in probe.items() if make or k != 'steps'}
        reports[label] = check_axioms(op, data, make_operator=make, **kwargs)
    table = format_axiom_table(reports)
    print(graph)
    print(table)
    regimes = (f'stable: sigma2 * max_i L_ii = {STABLE_DIAG}; unstable: '
               f'sigma2 * lambda_max(L) = {UNSTABLE_SPECTRAL}')
    results = [dict(label=label, **row, **reports[label].to_dict())
               for label, row, _, _ in cases]
    return reporting.save(
        args.out_dir, 'axioms', dict(command=command, graph=graph,
                                     regimes=regimes, schemes=list(SCHEMES),
                                     results=results),
        f"{graph}; {args.trials} random probes per axiom, {C} channels, "
        f"float64, atol {next(iter(reports.values())).atol:g}; semigroup "
        f"K={args.steps[0]}+{args.steps[1]}; cells: verdict (worst scaled "
        f"violation). {regimes}.\n\n{table}\n")


if __name__ == '__main__':
    main()
