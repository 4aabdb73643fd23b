import copy
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import Data

from torch_geometric_coin._checks import check_number

from ._gaussian_smoothing import check_finite

AXIOM_TITLES: Dict[str, str] = {
    'comparison': 'comparison principle',
    'constants': 'preserves constants',
    'linearity': 'linearity',
    'semigroup': 'Markov/semigroup',
    'symmetry': 'symmetry',
}
AXIOMS: Tuple[str, ...] = tuple(AXIOM_TITLES)
_DEFAULT_ATOL = {torch.float64: 1e-8, torch.float32: 1e-4}


@dataclass
class AxiomResult:
    r"""The verdict on one axiom.

    Args:
        name (str): The axiom, one of :obj:`AXIOMS`.
        holds (bool, optional): Whether no probe exceeded the tolerance
            (:obj:`None`: not checked).
        violation (float): The worst scaled violation (:obj:`nan` if not
            checked, :obj:`inf` for non-finite outputs).
        note (str): Why the axiom was skipped, or what was compared.
    """
    name: str
    holds: Optional[bool]
    violation: float
    note: str = ''

    def cell(self) -> str:
        r"""A short table cell such as ``yes (3.1e-16)``."""
        if self.holds is None:
            return 'n/a'
        return f"{'yes' if self.holds else 'NO'} ({self.violation:.1e})"


@dataclass
class AxiomReport:
    r"""The result of :func:`check_axioms`: one :class:`AxiomResult` per
    axiom (:obj:`report['linearity'].holds`) and the probing set-up."""
    results: Dict[str, AxiomResult]
    num_nodes: int
    num_channels: int
    trials: int
    atol: float
    dtype: str

    def __getitem__(self, name: str) -> AxiomResult:
        return self.results[name]

    def to_dict(self) -> Dict[str, Any]:
        r"""A JSON-serialisable dict (non-finite violations as strings)."""
        def num(v: float) -> Union[float, str]:
            return v if math.isfinite(v) else str(v)

        return dict(
            num_nodes=self.num_nodes, num_channels=self.num_channels,
            trials=self.trials, atol=self.atol, dtype=self.dtype,
            axioms={name: dict(holds=res.holds, violation=num(res.violation),
                               note=res.note)
                    for name, res in self.results.items()})


def format_axiom_table(reports: Mapping[str, AxiomReport]) -> str:
    r"""A Markdown table of :obj:`reports` (row label to
    :class:`AxiomReport`): a row per operator, a column per axiom."""
    head = '| operator | ' + ' | '.join(AXIOM_TITLES[a] for a in AXIOMS) + ' |'
    lines = [head, '|---' * (len(AXIOMS) + 1) + '|']
    for label, report in reports.items():
        cells = ' | '.join(report[a].cell() for a in AXIOMS)
        lines.append(f'| {label} | {cells} |')
    return '\n'.join(lines)


Operator = Union[torch.nn.Module, Callable[..., Tensor]]
Graph = Union[int, Tensor, Data]


def check_axioms(
    operator: Operator,
    graph: Graph,
    num_channels: int = 4,
    trials: int = 8,
    make_operator: Optional[Callable[[int], Operator]] = None,
    steps: Optional[Tuple[int, int]] = None,
    atol: Optional[float] = None,
    seed: int = 0,
    dtype: Optional[torch.dtype] = None,
) -> AxiomReport:
    r"""Probes a propagation operator :math:`\mathcal{T}` over a fixed graph
    with random node signals :math:`\mathbf{U}, \mathbf{V}`, scalars
    :math:`a, b` and constants :math:`c`, and reports which axioms of the
    convection-diffusion framework (Wang, Bao, Shi, 2024) it obeys:

    .. math::
        \textrm{comparison:}\quad & \mathbf{U} \le \mathbf{V}
        \Rightarrow \mathcal{T}\mathbf{U} \le \mathcal{T}\mathbf{V}

        \textrm{constants:}\quad & \mathcal{T}(c\mathbf{1}) = c\mathbf{1}

        \textrm{linearity:}\quad & \mathcal{T}(a\mathbf{U} + b\mathbf{V})
        = a\mathcal{T}\mathbf{U} + b\mathcal{T}\mathbf{V}

        \textrm{Markov/semigroup:}\quad & \mathcal{T}_{K_1}
        \mathcal{T}_{K_2} = \mathcal{T}_{K_1 + K_2}

        \textrm{symmetry:}\quad & \langle \mathcal{T}\mathbf{U}, \mathbf{V}
        \rangle = \langle \mathbf{U}, \mathcal{T}\mathbf{V} \rangle

    A violation is :math:`\max |\textrm{lhs} - \textrm{rhs}| / \max(1,
    \|\textrm{lhs}\|_\infty, \|\textrm{rhs}\|_\infty)` (numerator
    :math:`\max (\mathcal{T}\mathbf{U} - \mathcal{T}\mathbf{V})_+` for
    comparison; for symmetry the difference over :math:`\|\mathcal{T}
    \mathbf{U}\| \|\mathbf{V}\| + \|\mathbf{U}\| \|\mathcal{T}
    \mathbf{V}\|`); an axiom holds if none exceeds :obj:`atol`.

    Args:
        operator (torch.nn.Module or callable): Called as
            :obj:`operator(x)` if :obj:`graph` is an :obj:`int`, else as
            :obj:`operator(x, edge_index[, edge_weight])`; a module is
            probed as a copy cast to :obj:`dtype`, in evaluation mode.
        graph (int, torch.Tensor or torch_geometric.data.Data): The number of
            nodes, an :obj:`edge_index`, or a :obj:`Data` object.
        num_channels (int, optional): Probe channels. (default: :obj:`4`)
        trials (int, optional): Random probes per axiom. (default: :obj:`8`)
        make_operator (callable, optional): Builds the operator with
            :math:`K` steps (e.g. :obj:`lambda K: APPNP(K, 0.1)`) for the
            semigroup check, otherwise skipped. (default: :obj:`None`)
        steps (Tuple[int, int], optional): :math:`(K_1, K_2)` for the
            semigroup check. (default: :obj:`(2, 3)`)
        atol (float, optional): Tolerance on the scaled violations.
            (default: :obj:`1e-8` in :obj:`float64`, :obj:`1e-4` in
            :obj:`float32`)
        seed (int, optional): Seed of the probes. (default: :obj:`0`)
        dtype (torch.dtype, optional): Floating type of the probes.
            (default: :obj:`torch.float64`)

    Returns:
        AxiomReport: per axiom, whether it holds and the worst violation.
    """
    check_number('num_channels', num_channels, integer=True, low=1)
    check_number('trials', trials, integer=True, low=1)
    if make_operator is not None and not callable(make_operator):
        raise TypeError("'make_operator' must be a callable steps -> operator")
    if steps is not None and make_operator is None:
        raise ValueError("'steps' sets the step counts of the semigroup "
                         "check, which needs 'make_operator'")
    steps = (2, 3) if steps is None else steps
    if not isinstance(steps, (tuple, list)) or len(steps) != 2:
        raise ValueError(f"'steps' must be two positive integers "
                         f"(got {steps!r})")
    for k in steps:
        check_number('steps', k, integer=True, low=1)
    dtype = torch.float64 if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"'dtype' must be a floating torch.dtype such as "
                        f"torch.float64 (got {dtype!r})")
    atol = _DEFAULT_ATOL.get(dtype, 1e-3) if atol is None else atol
    check_number('atol', atol, low=0)
    check_number('seed', seed, integer=True)
    num_channels, trials, atol = int(num_channels), int(trials), float(atol)
    steps = (int(steps[0]), int(steps[1]))
    num_nodes, graph_args = _parse_graph(graph)
    gen = torch.Generator().manual_seed(int(seed))

    def randn(*size: int) -> Tensor:
        return torch.randn(*size, generator=gen, dtype=dtype)

    apply = _wrap(operator, graph_args, dtype, 'operator')
    shape = (num_nodes, num_channels)
    viol: Dict[str, float] = {name: 0.0 for name in AXIOMS}

    def worst(name: str, value: float):
        viol[name] = max(viol[name], value)

    for t in range(trials):
        u, v = randn(*shape), randn(*shape)
        tu, tv = apply(u), apply(v)

        # Comparison principle: alternate dense and impulse increments.
        if t % 2 == 0:
            inc = randn(*shape).abs()
        else:
            inc = torch.zeros(shape, dtype=dtype)
            node = int(torch.randint(num_nodes, (1, ), generator=gen))
            inc[node] = randn(num_channels).abs() + 0.5
        tw = apply(u + inc)
        worst('comparison', _scaled((tu - tw).clamp(min=0), tu, tw))

        const = randn(1, num_channels).expand(shape).clone()
        tc = apply(const)
        worst('constants', _scaled(tc - const, tc, const))

        a, b = randn(2).tolist()
        lhs, rhs = apply(a * u + b * v), a * tu + b * tv
        worst('linearity', _scaled(lhs - rhs, lhs, rhs))

        bound = tu.norm() * v.norm() + u.norm() * tv.norm()
        sym = ((tu * v).sum() - (u * tv).sum()).abs() / bound.clamp(min=1e-300)
        worst('symmetry',
              _finite(sym) if bool(torch.isfinite(bound)) else math.inf)

    if make_operator is not None:
        op_1, op_2, op_12 = (_wrap(make_operator(k), graph_args, dtype,
                                   f'make_operator({k})')
                             for k in (steps[0], steps[1], sum(steps)))
        for _ in range(trials):
            u = randn(*shape)
            lhs, rhs = op_1(op_2(u)), op_12(u)
            worst('semigroup', _scaled(lhs - rhs, lhs, rhs))

    results = {name: AxiomResult(name, viol[name] <= atol, viol[name])
               for name in AXIOMS}
    if make_operator is None:
        results['semigroup'] = AxiomResult('semigroup', None, math.nan,
                                           'no make_operator given')
    else:
        results['semigroup'].note = f'K={steps[0]}+{steps[1]}'
    return AxiomReport(results, num_nodes, num_channels, trials, atol,
                       str(dtype).replace('torch.', ''))


def _parse_graph(graph: Graph) -> Tuple[int, List[Tensor]]:
    r"""The number of nodes and the graph arguments of the operator."""
    if isinstance(graph, numbers.Integral) and not isinstance(graph, bool):
        check_number('graph', graph, integer=True, low=1)
        return int(graph), []
    if isinstance(graph, Data):
        if graph.edge_index is None or graph.num_nodes is None:
            raise ValueError("'graph' must have 'edge_index' and a known "
                             "number of nodes")
        edge_index, weight, name = (graph.edge_index, graph.edge_weight,
                                    'graph.edge_index')
        num_nodes = int(graph.num_nodes)
        if num_nodes < 1:
            raise ValueError(f"'graph' must have at least one node (got "
                             f"num_nodes={num_nodes})")
    elif isinstance(graph, Tensor):
        edge_index, weight, name, num_nodes = graph, None, 'graph', None
    else:
        raise TypeError(f"'graph' must be an int, an edge_index or a Data "
                        f"(got {type(graph).__name__})")
    if (not isinstance(edge_index, Tensor) or edge_index.dim() != 2
            or edge_index.size(0) != 2 or edge_index.is_floating_point()
            or edge_index.is_complex() or edge_index.dtype == torch.bool):
        raise ValueError(f"'{name}' must be an integer edge_index of shape "
                         f"[2, E] (got {getattr(edge_index, 'shape', None)}, "
                         f"{getattr(edge_index, 'dtype', type(edge_index))})")
    if edge_index.numel() and int(edge_index.min()) < 0:
        raise ValueError(f"'{name}' has negative node indices")
    if num_nodes is None:
        if edge_index.numel() == 0:
            raise ValueError("'graph' has no edges; pass a Data object with "
                             "'num_nodes' or the number of nodes")
        num_nodes = int(edge_index.max()) + 1
    elif edge_index.numel() and int(edge_index.max()) >= num_nodes:
        raise ValueError(f"'{name}' refers to node {int(edge_index.max())} "
                         f"but the graph has {num_nodes} nodes")
    if weight is None:
        return num_nodes, [edge_index]
    if (not isinstance(weight, Tensor) or not weight.is_floating_point()
            or weight.shape != (edge_index.size(1), )):
        raise ValueError(f"'graph.edge_weight' must be a floating-point "
                         f"tensor of shape [{edge_index.size(1)}] (got "
                         f"{getattr(weight, 'shape', type(weight))})")
    check_finite('graph.edge_weight', weight)
    return num_nodes, [edge_index, weight]


def _wrap(operator: Operator, graph_args: List[Tensor], dtype: torch.dtype,
          name: str) -> Callable[[Tensor], Tensor]:
    if not callable(operator):
        raise TypeError(f"'{name}' must be an nn.Module or a callable "
                        f"(got {type(operator).__name__})")
    if isinstance(operator, torch.nn.Module):
        operator = copy.deepcopy(operator).to(dtype).eval()
    args = [a.to(dtype) if a.is_floating_point() else a for a in graph_args]

    @torch.no_grad()
    def apply(x: Tensor) -> Tensor:
        try:
            out = operator(x, *args)
        except RuntimeError as e:
            if 'dtype' in str(e) or 'scalar type' in str(e):
                raise TypeError(
                    f"The operator failed on {dtype} inputs ({e}); pass "
                    f"'dtype' matching the operator's parameters") from e
            raise
        if not isinstance(out, Tensor):
            raise TypeError(f"The operator must return a tensor "
                            f"(got {type(out).__name__})")
        if out.shape != x.shape:
            raise ValueError(f"The operator must map node features of shape "
                             f"{tuple(x.shape)} to the same shape (got "
                             f"{tuple(out.shape)})")
        return out.to(dtype)

    return apply


def _finite(value: Tensor) -> float:
    value = float(value)
    return value if math.isfinite(value) else math.inf


def _scaled(diff: Tensor, lhs: Tensor, rhs: Tensor) -> float:
    if not (torch.isfinite(lhs).all() and torch.isfinite(rhs).all()):
        return math.inf
    scale = max(1.0, float(lhs.abs().max()), float(rhs.abs().max()))
    return _finite(diff.abs().max() / scale)
