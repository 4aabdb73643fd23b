"""Time of one training step of COIN with dense and sparse features against
PyG's 2-layer GCN, on Planetoid (public split).

    python benchmarks/step_time.py --threads 2
    python benchmarks/step_time.py --datasets Cora CiteSeer PubMed
    python benchmarks/step_time.py --threads 1 --profile 12

One step is the forward pass, the NLL loss on the training nodes, the
backward pass and an Adam step (lr 0.01, weight decay 5e-4). The cases, all
in one process and timed in interleaved rounds (medians): PyG's GCN (2
layers, 64 hidden, dropout 0.5, cached normalisation, dense features, as
``examples/gcn.py``), COIN at the authors' width (``hidden_channels=None``:
one residual block as wide as the input; ``num_layers=1, K=20,
sigma2=0.35``) and COIN with 64 hidden channels, each with dense features
and with ``torch.sparse`` CSR and COO features. The table gives the ms per
step, the ratio to GCN's step and the peak memory of one further step
(``common.measure_peak_memory``).
"""
import os.path as osp
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import common  # noqa: E402
import reporting  # noqa: E402
from speed import measure  # noqa: E402
from training import adam  # noqa: E402

from torch_geometric_coin.nn import COIN  # noqa: E402

GCN = 'GCN (64 hidden, dense x)'
LAYOUTS = ('dense', 'CSR', 'COO')


def model_cases(data, seed: int):
    r"""The models of the comparison, by case name, with their input
    features."""
    in_channels, num_classes = data.num_features, data.num_classes
    x = {'dense': data.x, 'CSR': common.sparse_features(data)}
    x['COO'] = data.x.to_sparse()
    torch.manual_seed(seed)
    cases = {GCN: (common.GCN(in_channels, num_classes, hidden_channels=64),
                   x['dense'])}
    for width, hidden in [("authors' width", None), ('64 hidden', 64)]:
        for layout in LAYOUTS:
            torch.manual_seed(seed)
            model = COIN(in_channels, num_classes, hidden_channels=hidden,
                         num_layers=1, K=20, sigma2=0.35, cached=True,
                         stability='ignore')
            cases[f'COIN {width}, {layout} x'] = (model, x[layout])
    return cases


def training_steps(data, seed: int):
    r"""One training step per case (a closure), each with its own model and
    Adam optimiser."""
    out = {}
    mask, y = data.train_mask, data.y
    for name, (model, x) in model_cases(data, seed).items():
        model.train()
        opt = adam(model.parameters(), lr=0.01, weight_decay=5e-4)

        def step(model=model, x=x, opt=opt):
            opt.zero_grad()
            loss = F.nll_loss(model(x, data.edge_index)[mask], y[mask])
            loss.backward()
            opt.step()
        out[name] = step
    return out


def profile_step(step, top: int):
    r"""The :obj:`top` operators of one profiled call of :obj:`step` by
    self CPU time (ms), with their input shapes."""
    from torch.profiler import profile
    with common._quiet_stderr(), profile(record_shapes=True) as prof:
        step()
    events = sorted(prof.key_averages(group_by_input_shape=True),
                    key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events) / 1e3
    return dict(total_ms=total, ops=[
        dict(op=e.key, shapes=str(e.input_shapes), calls=e.count,
             ms=e.self_cpu_time_total / 1e3) for e in events[:top]])


def markdown(payload):
    text = (f"Command: `{payload['command']}`\n\n"
            f"{payload['machine']}, {payload['threads']} threads, torch "
            f"{payload['torch']}, {payload['date']}; median of "
            f"{payload['repeats']} interleaved rounds.\n")
    for name, res in payload['datasets'].items():
        rows = [[case, f"{r['ms']:.2f}", f"{r['ratio_to_gcn']:.2f}",
                 f"{r['peak_mib']:.1f}"] for case, r in res['cases'].items()]
        text += (f"\n### {name} ({res['nodes']} nodes, {res['features']} "
                 f"features, {res['density']:.2%} non-zero)\n\n" +
                 reporting.markdown_table(
                     ['model', 'ms / step', 'ratio to GCN', 'peak MiB'],
                     rows))
        verdict = 'no more than' if res['goal_met'] else 'more than'
        for case, prof in res.get('profile', {}).items():
            rows = [[o['op'], o['shapes'], o['calls'], f"{o['ms']:.2f}"]
                    for o in prof['ops']]
            text += (f"\nProfile of one step of {case} (self CPU time, "
                     f"{prof['total_ms']:.1f} ms in all):\n\n" +
                     reporting.markdown_table(
                         ['operator', 'input shapes', 'calls', 'ms'], rows))
        text += (f"\nCOIN at the authors' width with sparse (CSR) features "
                 f"costs {verdict} the GCN step.\n")
    return text


def main(argv=None):
    parser = common.parser(
        __doc__, root=osp.join(common.SHARED, 'planetoid'),
        datasets=dict(default=['Cora'], choices=common.PLANETOID),
        seed=0)
    parser.add_argument('--repeats', type=int, default=20,
                        help='interleaved timed rounds (medians)')
    parser.add_argument('--profile', type=int, default=0,
                        help='profile one more step of each case and '
                        'report its top operators (0: no profile)')
    parser.set_defaults(threads=2)
    args, command = common.parse_args(parser, argv, 'step_time')
    if args.repeats < 1:
        parser.error(f'--repeats must be positive (got {args.repeats})')
    if args.profile < 0:
        parser.error(f'--profile must be >= 0 (got {args.profile})')

    results = {}
    for name in args.datasets:
        data = common.load_planetoid(args.root, name, 'public')
        steps = training_steps(data, args.seed)
        res = measure(steps, args.repeats, torch.device('cpu'))
        gcn = res[GCN][0]
        cases = {case: dict(ms=t * 1e3, ratio_to_gcn=t / gcn, peak_mib=mib)
                 for case, (t, mib) in res.items()}
        results[name] = dict(
            nodes=data.num_nodes, features=data.num_features,
            density=float((data.x != 0).float().mean()), cases=cases,
            goal_met=cases["COIN authors' width, CSR x"]['ratio_to_gcn']
            <= 1.0)
        if args.profile:
            results[name]['profile'] = {
                case: profile_step(step, args.profile)
                for case, step in steps.items()}
        for case, r in cases.items():
            print(f"{name} {case}: {r['ms']:.2f} ms "
                  f"({r['ratio_to_gcn']:.2f} x GCN)", flush=True)
    payload = reporting.stamp(dict(command=command, threads=args.threads,
                                   torch=torch.__version__,
                                   repeats=args.repeats, datasets=results))
    print(markdown(payload))
    return reporting.save(args.out_dir, 'step_time', payload, markdown)


if __name__ == '__main__':
    main()
