"""Speed and memory of COIN's diffusion (fused explicit and implicit schemes)
against the floor of 2K CSR products and PyG's APPNP.

    python benchmarks/speed.py                         # the full CPU run
    python benchmarks/speed.py --device cuda --sizes 169343:2330000:40 \\
        1000000:10000000:16 --datasets                 # synthetic, on a GPU
    python benchmarks/speed.py --tiny                  # smoke test

All ratios are against baselines measured in the same run (medians of
interleaved repeats). Peak memory is the peak of PyTorch's tensor memory
above its level before one further call (``common.measure_peak_memory``:
``torch.cuda.max_memory_allocated`` on CUDA, the CPU allocator's events
recorded by ``torch.profiler`` on CPU).
"""
import os.path as osp
import statistics
import sys
import tempfile
import time
import warnings

import torch
from tqdm import tqdm

from torch_geometric.nn import APPNP

from torch_geometric_coin.nn import COIN, CoinDiffusionConv
from torch_geometric_coin.ops import DiffusionOperator, SolverStats

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import reporting  # noqa: E402

warnings.filterwarnings('ignore', '.*Sparse CSR tensor support.*')
warnings.filterwarnings('ignore', '.*Sparse invariant checks.*')


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def load_real(name, root, tmp):
    from torch_geometric.datasets import Coauthor, Planetoid
    sub = ('coauthor', name) if name == 'Physics' else ('planetoid', name)
    src = osp.join(root, *sub)
    if not osp.isdir(src):
        return None
    dst = common.writable_copy(src, osp.join(tmp, sub[0]))
    if name == 'Physics':
        return Coauthor(osp.dirname(dst), 'Physics')[0]
    return Planetoid(osp.dirname(dst), name)[0]


def csr_of(edge_index, num_nodes, value=None):
    value = torch.ones(edge_index.size(1), device=edge_index.device) \
        if value is None else value
    return torch.sparse_coo_tensor(edge_index.flip(0), value,
                                   (num_nodes, num_nodes)).coalesce() \
        .to_sparse_csr()


def measure(cases, repeats, device):
    r"""Interleaved repeats: returns the median seconds of each case and its
    peak memory (MiB, :func:`common.measure_peak_memory`) in one more call
    after the timed ones, so that measuring memory does not slow the timing."""
    times = {name: [] for name in cases}
    for name, fn in cases.items():  # warm-up (caches, allocator)
        fn()
    for _ in range(repeats):
        for name, fn in cases.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    out = {}
    for name, fn in cases.items():
        peak = common.measure_peak_memory(fn, device)[1]
        out[name] = (statistics.median(times[name]),
                     float('nan') if peak is None else peak / 2**20)
    return out


def diffusion_cases(edge_index, num_nodes, channels, K, device, appnp):
    x = torch.randn(num_nodes, channels, device=device)
    A = csr_of(edge_index, num_nodes)

    def floor():
        with torch.no_grad():
            u = x
            for _ in range(2 * K):
                u = torch.sparse.mm(A, u)

    def fwd_bwd(module, *args):
        def run():
            xg = x.detach().requires_grad_()
            module(xg, *args).sum().backward()
        return run

    fixed = CoinDiffusionConv(K, 0.35, cached=True, stability='ignore')
    learn = CoinDiffusionConv(K, 0.35, cached=True, stability='ignore',
                              learn_sigma2=True)
    cases = {
        'floor (2K CSR products)': floor,
        'COIN fixed sigma2': fwd_bwd(fixed.to(device), edge_index),
        'COIN learnable sigma2': fwd_bwd(learn.to(device), edge_index),
    }
    if K == 20:
        A_grad = csr_of(edge_index, num_nodes)

        def autograd_loop():
            xg = x.detach().requires_grad_()
            u = xg
            for _ in range(K):
                u = torch.sparse.mm(A_grad, u)
            u.sum().backward()
        cases['autograd loop of CSR products'] = autograd_loop
    if appnp:
        adj_t = csr_of(edge_index, num_nodes)  # rows = targets
        cases['APPNP edge_index'] = fwd_bwd(
            APPNP(K, alpha=0.1, cached=True).to(device), edge_index)
        cases['APPNP CSR adj_t'] = fwd_bwd(
            APPNP(K, alpha=0.1, cached=True).to(device), adj_t)
    return cases


def implicit_sweep(edge_index, num_nodes, channels, device, sigma2s, K):
    r"""Implicit scheme (the operator of :class:`CoinDiffusionConv` with
    :obj:`scheme='implicit'` and a learnable sigma2), forward plus backward
    against a random upstream gradient (an all-ones one would make every
    adjoint solve trivial, since :math:`\mathbf{L}^{\top} \mathbf{1} =
    \mathbf{0}`), with growing CG iterations (larger sigma2): time, peak
    memory and the iterations of each forward and adjoint solve, as the
    solver reports them (:class:`SolverStats`)."""
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
        res = measure({'implicit': run}, 1, device)['implicit']
        rows.append(dict(sigma2=sigma2, seconds=res[0], peak_mib=res[1],
                         forward_iterations=statistics.fmean(stats.forward),
                         adjoint_iterations=statistics.fmean(stats.adjoint)))
    return rows


def training_step(num_nodes, num_edges, channels, K, device):
    edge_index = common.random_graph(num_nodes, num_edges, device, seed=1)
    x = torch.randn(num_nodes, channels, device=device)
    y = torch.randint(channels, (num_nodes, ), device=device)
    model = COIN(channels, channels, None, K=K, cached=True,
                 stability='ignore').to(device)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.nll_loss(model(x, edge_index), y)
        loss.backward()
        opt.step()
    res = measure({'step': step}, 1, device)['step']
    return dict(nodes=num_nodes, edges=int(edge_index.size(1)), K=K,
                channels=channels, seconds=res[0], peak_mib=res[1])


def main(argv=None):
    parser = common.parser(__doc__, device='cpu', root=None, datasets=dict(
        default=['Cora', 'PubMed', 'Physics'], nargs='*'))
    parser.set_defaults(threads=2)  # common.parse_args adds --threads
    parser.add_argument('--sizes', nargs='*', default=[
        '10000:100000:16', '100000:1000000:16', '200000:2000000:16',
        '1000000:10000000:16'
    ], help='synthetic graphs as NODES:EDGES:CHANNELS')
    parser.add_argument('--K', type=int, nargs='+', default=[10, 20],
                        help='COIN diffusion steps')
    parser.add_argument('--repeats', type=int, default=3,
                        help='timed repeats (medians are reported)')
    parser.add_argument('--appnp-max-nodes', type=int, default=300000,
                        help='run APPNP on graphs up to this size')
    parser.add_argument('--implicit-sigma2', type=float, nargs='*',
                        default=[0.5, 5., 50.],
                        help='sigma2 of the implicit sweep (none: skip it)')
    parser.add_argument('--implicit-nodes', type=int, default=200000,
                        help='nodes of the implicit sweep graph')
    parser.add_argument('--train-step', default='1000000:10000000:16',
                        help="NODES:EDGES:CHANNELS of the full-batch "
                        "training step ('' to skip)")
    parser.add_argument('--tiny', action='store_true',
                        help='a smoke configuration (seconds)')
    args, command = common.parse_args(parser, argv, 'speed')
    if args.tiny:
        args.sizes, args.datasets = ['2000:20000:8'], []
        args.K, args.repeats = [10, 20], 1
        args.implicit_sigma2, args.implicit_nodes = [0.5, 50.], 2000
        args.train_step = '5000:50000:8'

    device = torch.device(args.device)
    torch.manual_seed(0)
    graphs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            data = load_real(name, common.dataset_root(args.root), tmp)
            if data is None:
                print(f'{name}: not found under '
                      f'{common.dataset_root(args.root)}, skipped')
                continue
            graphs.append((name, data.edge_index.to(device), data.num_nodes,
                           16))
    for spec in args.sizes:
        n, e, c = (int(v) for v in spec.split(':'))
        graphs.append((f'random {n:,}', common.random_graph(n, e, device),
                       n, c))

    results = dict(command=command, device=str(device),
                   torch_threads=torch.get_num_threads(), graphs=[])
    bar = tqdm([(g, K) for g in graphs for K in args.K], desc='speed')
    for (name, edge_index, num_nodes, channels), K in bar:
        bar.set_postfix_str(f'{name} K={K}')
        appnp = num_nodes <= args.appnp_max_nodes
        res = measure(diffusion_cases(edge_index, num_nodes, channels, K,
                                      device, appnp), args.repeats, device)
        floor = res['floor (2K CSR products)'][0]
        row = dict(graph=name, nodes=num_nodes,
                   edges=int(edge_index.size(1)), channels=channels, K=K,
                   seconds={k: v[0] for k, v in res.items()},
                   peak_mib={k: v[1] for k, v in res.items()})
        row['vs_floor'] = {k: v[0] / floor for k, v in res.items()}
        if appnp:
            for variant in ['fixed', 'learnable']:
                t = res[f'COIN {variant} sigma2'][0]
                row[f'APPNP edge_index / COIN {variant}'] = \
                    res['APPNP edge_index'][0] / t
                row[f'APPNP CSR adj_t / COIN {variant}'] = \
                    res['APPNP CSR adj_t'][0] / t
        results['graphs'].append(row)
        save(results, args.out_dir, device, final=False)

    if args.implicit_sigma2:
        n = args.implicit_nodes
        edge_index = common.random_graph(n, 10 * n, device, seed=2)
        results['implicit'] = dict(
            nodes=n, edges=int(edge_index.size(1)), K=5, channels=16,
            rows=implicit_sweep(edge_index, n, 16, device,
                                args.implicit_sigma2, 5))
    if args.train_step:
        n, e, c = (int(v) for v in args.train_step.split(':'))
        results['training_step'] = training_step(n, e, c, 20, device)

    print(markdown(results))
    reporting.wrote(*save(results, args.out_dir, device, final=True))
    return results


def save(results, out_dir, device, final):
    r"""Writes the JSON and Markdown table (after every graph, so that a
    long run leaves its rows behind) and, at the end, the plot."""
    tag = device.type
    paths = list(reporting.write_results(out_dir, f'speed_{tag}', results,
                                         markdown))
    if final:
        paths.append(osp.join(out_dir, f'speed_{tag}.png'))
        plot(results, paths[-1])
    return paths


def vs_coin(t, coin):
    return '-' if t is None else f'{t:.4f} ({t / coin:.1f}x)'


def peaks(mib):
    cases = ('COIN fixed sigma2', 'autograd loop of CSR products',
             'APPNP CSR adj_t')
    return ' / '.join('-' if mib.get(c) is None else f'{mib[c]:.0f}'
                      for c in cases)


def markdown(results):
    head = (f"Command: `{results['command']}`\n\n"
            f"Device: {results['device']} ({results['machine']}, "
            f"{results['torch_threads']} threads), "
            f"{results['date']}. Forward plus backward, median seconds; "
            f"x floor = ratio to 2K forward CSR products in the same run; "
            f"peak MiB = tensor memory above its level before one call "
            f"(common.measure_peak_memory) of COIN (fixed sigma2), the "
            f"autograd loop and APPNP on CSR.\n\n")
    rows = []
    for r in results['graphs']:
        s, q = r['seconds'], r['vs_floor']
        loop = s.get('autograd loop of CSR products')
        ap_ei, ap_csr = s.get('APPNP edge_index'), s.get('APPNP CSR adj_t')
        fx = s['COIN fixed sigma2']
        rows.append([
            r['graph'], f"{r['nodes']:,}", f"{r['edges']:,}", r['channels'],
            r['K'], f"{s['floor (2K CSR products)']:.4f}",
            f"{fx:.4f} ({q['COIN fixed sigma2']:.2f}x)",
            f"{s['COIN learnable sigma2']:.4f} "
            f"({q['COIN learnable sigma2']:.2f}x)",
            '-' if loop is None else f'{loop:.4f}', vs_coin(ap_ei, fx),
            vs_coin(ap_csr, fx), peaks(r['peak_mib'])])
    text = head + reporting.markdown_table(
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
                 f"{t['channels']} features and classes): "
                 f"{t['seconds']:.2f} s, peak tensor memory "
                 f"{t['peak_mib']:.0f} MiB.\n")
    return text


def plot(results, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    K = max(r['K'] for r in results['graphs'])
    rows = sorted((r for r in results['graphs'] if r['K'] == K),
                  key=lambda r: r['edges'])
    for key in ['floor (2K CSR products)', 'COIN fixed sigma2',
                'COIN learnable sigma2', 'autograd loop of CSR products',
                'APPNP edge_index', 'APPNP CSR adj_t']:
        pts = [(r['edges'], r['seconds'][key]) for r in rows
               if key in r['seconds']]
        if pts:
            ax.plot(*zip(*pts), marker='o', label=key)
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('edges')
    ax.set_ylabel(f'seconds, forward + backward (K={K})')
    ax.set_title(f"Diffusion time vs graph size ({results['device']})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == '__main__':
    main()
