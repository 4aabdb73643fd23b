"""Speed and memory of COIN's diffusion (fused explicit and implicit schemes)
against the floor of 2K CSR products and PyG's APPNP.

    python benchmarks/speed.py                         # the full CPU run
    python benchmarks/speed.py --device cuda --datasets \\
        --sizes 169343:2330000:40 1000000:10000000:40  # synthetic, on a GPU
"""
import os.path as osp
import statistics
import sys
import time
import warnings

import torch
from tqdm import tqdm

from torch_geometric.nn import APPNP
from torch_geometric.utils import to_torch_csr_tensor

from torch_geometric_coin.nn import COIN, CoinDiffusionConv
from torch_geometric_coin.ops import DiffusionOperator, SolverStats

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import reporting  # noqa: E402

warnings.filterwarnings('ignore', '.*Sparse CSR tensor support.*')
warnings.filterwarnings('ignore', '.*Sparse invariant checks.*')
FLOOR, FIXED, LEARN = ('floor (2K CSR products)', 'COIN fixed sigma2',
                       'COIN learnable sigma2')
LOOP, AP_EI, AP_CSR = ('autograd loop of CSR products', 'APPNP edge_index',
                       'APPNP CSR adj_t')


def measure(cases, repeats, device):
    r"""The median seconds of each case over interleaved repeats (after a
    warm-up call each), and its peak memory (MiB) in one more call."""
    sync = torch.cuda.synchronize if device.type == 'cuda' else lambda: None
    times = {name: [] for name in cases}
    for fn in cases.values():
        fn()
    for _ in range(repeats):
        for name, fn in cases.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    peak = {k: common.measure_peak_memory(fn, device)[1]
            for k, fn in cases.items()}
    return {k: (statistics.median(t), float('nan') if peak[k] is None
                else peak[k] / 2**20) for k, t in times.items()}


def diffusion_cases(edge_index, num_nodes, channels, K, device, appnp):
    x = torch.randn(num_nodes, channels, device=device)
    A = to_torch_csr_tensor(edge_index.flip(0), size=num_nodes)  # i <- j

    def products(u, steps):
        for _ in range(steps):
            u = torch.sparse.mm(A, u)
        return u

    def fwd_bwd(module, *args):
        return lambda: module(x.detach().requires_grad_(),
                              *args).sum().backward()

    cases = {FLOOR: torch.no_grad()(lambda: products(x, 2 * K))}
    for name, learn in ((FIXED, False), (LEARN, True)):
        cases[name] = fwd_bwd(CoinDiffusionConv(
            K, 0.35, cached=True, stability='ignore',
            learn_sigma2=learn).to(device), edge_index)
    if K == 20:
        cases[LOOP] = fwd_bwd(products, K)
    for name, adj in ((AP_EI, edge_index), (AP_CSR, A)) if appnp else ():
        cases[name] = fwd_bwd(APPNP(K, alpha=0.1, cached=True).to(device),
                              adj)
    return cases


def implicit_sweep(num_nodes, channels, device, sigma2s, K):
    r"""The implicit scheme with a learnable sigma2, forward plus backward
    against a random upstream gradient (an all-ones one makes the adjoint
    solves trivial), with the CG iterations of each solve."""
    edge_index = common.random_graph(num_nodes, 10 * num_nodes, device, 2)
    x = torch.randn(num_nodes, channels, device=device)
    grad = torch.randn(num_nodes, channels, device=device)
    op = DiffusionOperator.from_graph(edge_index, None, num_nodes)
    rows = []
    for sigma2 in sigma2s:
        sigma = torch.tensor(sigma2, device=device, requires_grad=True)

        def run(stats=None):
            op.implicit(x.detach().requires_grad_(), K, sigma, tol=1e-5,
                        stats=stats).backward(grad)
        stats = SolverStats()
        run(stats)
        assert len(stats.forward) == len(stats.adjoint) == K, stats
        seconds, peak = measure({'implicit': run}, 1, device)['implicit']
        rows.append(dict(sigma2=sigma2, seconds=seconds, peak_mib=peak,
                         forward_iterations=statistics.fmean(stats.forward),
                         adjoint_iterations=statistics.fmean(stats.adjoint)))
    return dict(nodes=num_nodes, edges=int(edge_index.size(1)), K=K,
                channels=channels, rows=rows)


def training_step(spec, K, device):
    num_nodes, num_edges, channels = (int(v) for v in spec.split(':'))
    edge_index = common.random_graph(num_nodes, num_edges, device, seed=1)
    x = torch.randn(num_nodes, channels, device=device)
    y = torch.randint(channels, (num_nodes, ), device=device)
    model = COIN(channels, channels, None, K=K, cached=True,
                 stability='ignore').to(device)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)

    def step():
        opt.zero_grad()
        torch.nn.functional.nll_loss(model(x, edge_index), y).backward()
        opt.step()
    seconds, peak = measure({'step': step}, 1, device)['step']
    return dict(nodes=num_nodes, edges=int(edge_index.size(1)), K=K,
                channels=channels, seconds=seconds, peak_mib=peak)


def main(argv=None):
    parser = common.parser(__doc__, device='cpu', root=common.SHARED,
                           K=[10, 20], datasets=dict(
                               default=['Cora', 'PubMed', 'Physics'],
                               nargs='*', choices=common.NODE_DATASETS))
    parser.set_defaults(threads=2)
    add = parser.add_argument
    add('--sizes', nargs='*', default=[
        '10000:100000:16', '100000:1000000:16', '200000:2000000:16',
        '1000000:10000000:16'], help='random graphs as NODES:EDGES:CHANNELS')
    add('--repeats', type=int, default=3, help='timed repeats (medians)')
    add('--appnp-max-nodes', type=int, default=300000,
        help='run APPNP on graphs up to this size')
    add('--implicit-sigma2', type=float, nargs='*', default=[0.5, 5., 50.],
        help='sigma2 of the implicit sweep (none: skip it)')
    add('--implicit-nodes', type=int, default=200000,
        help='nodes of the implicit sweep graph')
    add('--train-step', default='1000000:10000000:16', help="NODES:EDGES:"
        "CHANNELS of a full-batch training step ('': skip it)")
    args, command = common.parse_args(parser, argv, 'speed')
    device = torch.device(args.device)
    torch.manual_seed(0)
    graphs = []
    with common.data_errors(parser):
        for name in args.datasets:
            data = common.load_node_dataset(args.root, name, 'public')
            graphs.append((name, data.edge_index.to(device), data.num_nodes,
                           16))
    for n, e, c in (map(int, spec.split(':')) for spec in args.sizes):
        graphs.append((f'random {n:,}', common.random_graph(n, e, device),
                       n, c))

    results = dict(command=command, device=str(device),
                   torch_threads=torch.get_num_threads(), graphs=[])
    stem = f'speed_{device.type}'
    png = osp.join(args.out_dir, f'{stem}.png')
    bar = tqdm([(g, K) for g in graphs for K in args.K], desc='speed')
    for (name, edge_index, num_nodes, channels), K in bar:
        bar.set_postfix_str(f'{name} K={K}')
        res = measure(diffusion_cases(
            edge_index, num_nodes, channels, K, device,
            num_nodes <= args.appnp_max_nodes), args.repeats, device)
        results['graphs'].append(dict(
            graph=name, nodes=num_nodes, edges=int(edge_index.size(1)),
            channels=channels, K=K, seconds={k: v[0] for k, v in res.items()},
            peak_mib={k: v[1] for k, v in res.items()},
            vs_floor={k: v[0] / res[FLOOR][0] for k, v in res.items()}))
        reporting.write_results(args.out_dir, stem, results, markdown)
    if args.implicit_sigma2:
        results['implicit'] = implicit_sweep(
            args.implicit_nodes, 16, device, args.implicit_sigma2, 5)
    if args.train_step:
        results['training_step'] = training_step(args.train_step, 20, device)
    print(markdown(results))
    plot(results, png)
    reporting.wrote(*reporting.write_results(args.out_dir, stem, results,
                                             markdown), png)
    return results


def markdown(results):
    text = (f"Command: `{results['command']}`\n\nDevice: {results['device']} "
            f"({results['machine']}, {results['torch_threads']} threads), "
            f"{results['date']}. Forward plus backward, median seconds; x "
            f"floor = ratio to 2K CSR products of the same run; peak MiB = "
            f"tensor memory above its level before one call of COIN (fixed "
            f"sigma2), the autograd loop and APPNP on CSR.\n\n")
    rows = []
    for r in results['graphs']:
        s, q, mib = r['seconds'], r['vs_floor'], r['peak_mib']
        rows.append([
            r['graph'], f"{r['nodes']:,}", f"{r['edges']:,}", r['channels'],
            r['K'], f"{s[FLOOR]:.4f}", f"{s[FIXED]:.4f} ({q[FIXED]:.2f}x)",
            f"{s[LEARN]:.4f} ({q[LEARN]:.2f}x)",
            f'{s[LOOP]:.4f}' if LOOP in s else '-',
            *(f'{s[ap]:.4f} ({s[ap] / s[FIXED]:.1f}x)' if ap in s else '-'
              for ap in (AP_EI, AP_CSR)),
            ' / '.join(f'{mib[c]:.0f}' if c in mib else '-'
                       for c in (FIXED, LOOP, AP_CSR))])
    text += reporting.markdown_table(
        ['graph', 'nodes', 'edges', 'C', 'K', 'floor s',
         'COIN fixed s (x floor)', 'COIN learn s (x floor)',
         'autograd loop s', 'APPNP ei s (/COIN)', 'APPNP CSR s (/COIN)',
         'peak MiB COIN / loop / APPNP CSR'], rows)
    if 'implicit' in results:
        imp = results['implicit']
        text += (f"\nImplicit scheme (K={imp['K']}, {imp['nodes']:,} nodes, "
                 f"{imp['edges']:,} edges, {imp['channels']} channels, tol "
                 f"1e-5, learnable sigma2), forward plus backward:\n\n")
        text += reporting.markdown_table(
            ['sigma2', 'CG iterations per forward solve',
             'per adjoint solve', 'seconds', 'peak MiB'],
            [[f"{r['sigma2']:g}", f"{r['forward_iterations']:.1f}",
              f"{r['adjoint_iterations']:.1f}", f"{r['seconds']:.3f}",
              f"{r['peak_mib']:.0f}"] for r in imp['rows']])
    if 'training_step' in results:
        t = results['training_step']
        text += (f"\nFull-batch COIN training step (K={t['K']}, "
                 f"{t['nodes']:,} nodes, {t['edges']:,} edges, "
                 f"{t['channels']} features and classes): {t['seconds']:.2f} "
                 f"s, peak tensor memory {t['peak_mib']:.0f} MiB.\n")
    return text


def plot(results, path):
    import matplotlib.pyplot as plt
    plt.switch_backend('Agg')
    fig, ax = plt.subplots(figsize=(6, 4))
    K = max(r['K'] for r in results['graphs'])
    rows = sorted((r for r in results['graphs'] if r['K'] == K),
                  key=lambda r: r['edges'])
    for key in (FLOOR, FIXED, LEARN, LOOP, AP_EI, AP_CSR):
        pts = [(r['edges'], r['seconds'][key]) for r in rows
               if key in r['seconds']]
        if pts:
            ax.plot(*zip(*pts), marker='o', label=key)
    ax.set(xscale='log', yscale='log', xlabel='edges',
           ylabel=f'seconds, forward + backward (K={K})',
           title=f"Diffusion time vs graph size ({results['device']})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == '__main__':
    main()
