r"""Property-based tests of the whole public API (issue 11): random graphs,
layouts, dtypes and option combinations for every public entry point. Every
property asserts "correct against an independent reference (the dense
float64 operators of :mod:`dense_reference`, or references written here) to
a tolerance derived from the dtype, or one of the documented errors": a
:class:`ValueError` / :class:`TypeError` whose message names the argument,
:class:`~torch_geometric_coin.ops.ConvergenceError`,
:class:`FloatingPointError` or a :class:`UserWarning` of instability, each
only where it is allowed. Never a NaN or infinite output from finite input,
never an option that is accepted and then ignored.

The number of examples of each property is :obj:`EXAMPLES` (times
:obj:`SCALE`: :obj:`HYPOTHESIS_PROFILE=thorough` runs ten times as many,
:obj:`COIN_PROPERTY_SCALE=<factor>` any multiple); see
:obj:`tests/README.md`. All draws are derandomized, so CI is reproducible.
"""
import copy
import math
import os
import re
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dense_reference import dense_laplacian
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from torch_geometric.data import Data
from torch_geometric.typing import SparseTensor

from torch_geometric_coin.nn import (
    COIN,
    CoinDiffusionConv,
    KernelEdgeWeight,
    PerEdgeWeight,
    ResidualConvection,
    diffused_nll_loss,
)
from torch_geometric_coin.ops import (
    ConvergenceError,
    DiffusionOperator,
    SolverStats,
    krylov_solve,
)
from torch_geometric_coin.theory import (
    RandomizedSmoothing,
    dropout_diffusion_term,
    gaussian_smoothing,
)
from torch_geometric_coin.transforms import GaussianKNNGraph
from torch_geometric_coin.utils import coin_norm, gaussian_knn_graph
from torch_geometric_coin.utils._gaussian_knn_graph import _exact_knn

# ---------------------------------------------------------------------------
# Budget
# ---------------------------------------------------------------------------

#: Examples drawn by each property (times :obj:`SCALE`).
EXAMPLES = {
    'test_coin_norm_matches_dense_laplacian': 100,
    'test_layer_matches_dense_reference_or_documented_error': 300,
    'test_layout_invariance_with_learned_edge_weights': 60,
    'test_cached_layer_same_graph_in_another_layout': 60,
    'test_implicit_meets_true_residual': 100,
    'test_second_order_gradients': 30,
    'test_diffusion_operator': 100,
    'test_krylov_solve': 150,
    'test_message_passing_options_are_never_ignored': 60,
    'test_eval_mode_is_deterministic_for_every_dropout': 40,
    'test_coin_matches_reference': 60,
    'test_reset_parameters_resets_everything': 15,
    'test_diffused_nll_loss': 100,
    'test_exact_knn_is_exact': 150,
    'test_gaussian_knn_graph_matches_dense_reference': 80,
    'test_randomized_smoothing_never_certifies_nan': 50,
    'test_randomized_smoothing_selects_from_selection_draws': 50,
    'test_gaussian_smoothing': 40,
    'test_dropout_diffusion_term': 40,
}
PROFILE = os.environ.get('HYPOTHESIS_PROFILE', 'ci')
SCALE = float(os.environ.get('COIN_PROPERTY_SCALE',
                             10 if PROFILE == 'thorough' else 1))


def examples(name: str) -> int:
    return max(1, int(round(EXAMPLES[name] * SCALE)))


def prop(name: str):
    return settings(max_examples=examples(name), deadline=None,
                    derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


DTYPES = [torch.float32, torch.float64]
NORMS = ['coin', 'sym', 'rw', None]
LAYOUTS = ['edge_index', 'coo', 'csr', 'csc', 'sparse_tensor']
# A refusal of second-order gradients must say what it refuses:
SECOND_ORDER = re.compile(r'create_graph|second[- ]order|double[- ]backward|'
                          r'higher[- ]order|twice differentiable', re.I)


def eps(dtype) -> float:
    return torch.finfo(dtype).eps


def names(exc: BaseException, arg: str) -> bool:
    r"""Whether the message of :obj:`exc` names the argument :obj:`arg`
    (quoted, as :obj:`arg=`, or, for names of four letters or more, as a
    word)."""
    msg = str(exc)
    if len(arg) >= 4 and re.search(rf'(?<![\w.]){arg}(?!\w)', msg):
        return True
    return any(p in msg for p in (f"'{arg}'", f'`{arg}`', f'{arg}=',
                                  f'"{arg}"'))


def sigma2_warnings(records):
    return [r for r in records if issubclass(r.category, UserWarning)
            and 'sigma2' in str(r.message)]


# ---------------------------------------------------------------------------
# Random graphs and layouts
# ---------------------------------------------------------------------------

class Graph:
    def __init__(self, n, edge_index, weight, undirected):
        self.n, self.edge_index, self.weight = n, edge_index, weight
        self.undirected = undirected

    def __repr__(self):
        w = None if self.weight is None else self.weight.tolist()
        return (f'Graph(n={self.n}, undirected={self.undirected}, '
                f'edge_index={self.edge_index.tolist()}, weight={w})')


def _weights(kind: str, num: int, gen) -> torch.Tensor:
    u = torch.rand(num, generator=gen, dtype=torch.float64)
    plain = 0.1 + 1.9 * u
    if kind == 'plain':
        return plain
    if kind == 'zeros':
        return torch.where(torch.rand(num, generator=gen) < 0.3,
                           torch.zeros_like(plain), plain)
    if kind == 'tiny':
        return 10.0**(-30 + 24 * u)
    if kind == 'huge':
        return 10.0**(6 + 24 * u)
    choice = torch.randint(4, (num, ), generator=gen)
    return torch.stack([plain, torch.zeros_like(plain), 10.0**(-30 + 24 * u),
                        10.0**(6 + 24 * u)])[choice, torch.arange(num)]


@st.composite
def graphs(draw, max_nodes=40, weights=('none', 'plain', 'zeros', 'tiny',
                                        'huge', 'mixed'), min_nodes=1):
    r"""Random graphs of :obj:`min_nodes..max_nodes` nodes, with isolated
    nodes, self-loops, duplicate edges, directed or undirected, weighted
    (weights include zero and tiny or huge positive values) or not; the
    columns are in random order."""
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    # Mostly sizes from the seed (hypothesis favours tiny, empty graphs).
    if draw(st.sampled_from([True, False, False, False])):
        n = draw(st.integers(min_nodes, min(max_nodes, min_nodes + 2)))
    else:
        n = int(torch.randint(min_nodes, max_nodes + 1, (1, ), generator=gen))
    # The nodes from 'active' on are isolated.
    active = n if draw(st.booleans()) else int(torch.randint(
        1, n + 1, (1, ), generator=gen))
    num = int(torch.randint(0, 3 * n + 1, (1, ), generator=gen))
    src = torch.randint(active, (num, ), generator=gen)
    dst = torch.randint(active, (num, ), generator=gen)
    if not draw(st.booleans()):  # no self-loops
        keep = src != dst
        src, dst = src[keep], dst[keep]
    kind = draw(st.sampled_from(weights))
    w = None if kind == 'none' else _weights(kind, src.numel(), gen)
    undirected = draw(st.booleans())
    if undirected:
        src, dst = torch.cat([src, dst]), torch.cat([dst, src])
        w = None if w is None else torch.cat([w, w])
    num_dup = draw(st.integers(0, 3)) if src.numel() > 0 else 0
    if num_dup:
        dup = torch.randint(src.numel(), (num_dup, ), generator=gen)
        src, dst = torch.cat([src, src[dup]]), torch.cat([dst, dst[dup]])
        w = None if w is None else torch.cat([w, w[dup]])
    perm = torch.randperm(src.numel(), generator=gen)
    relabel = torch.randperm(n, generator=gen)
    edge_index = relabel[torch.stack([src, dst])][:, perm]
    w = None if w is None else w[perm]
    return Graph(n, edge_index, w, undirected)


def as_layout(layout: str, edge_index, weight, n: int, dtype=None):
    r"""The graph :obj:`(edge_index, weight)` as :obj:`(adj, edge_weight)` in
    :obj:`layout`; sparse adjacencies hold entry :obj:`(target, source)`
    (PyG's :obj:`adj_t`), duplicates are summed."""
    if weight is not None and dtype is not None:
        weight = weight.to(dtype)
    if layout == 'edge_index':
        return edge_index, weight
    if layout == 'sparse_tensor':
        return SparseTensor(row=edge_index[1], col=edge_index[0],
                            value=weight, sparse_sizes=(n, n)), None
    value = weight if weight is not None else torch.ones(
        edge_index.size(1), dtype=dtype or torch.get_default_dtype())
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        adj = torch.sparse_coo_tensor(edge_index.flip(0), value, (n, n))
        if layout == 'csr':
            adj = adj.coalesce().to_sparse_csr()
        elif layout == 'csc':
            adj = adj.coalesce().to_sparse_csc()
    return adj, None


def rounded(weight, dtype):
    return None if weight is None else weight.to(dtype).double()


def row_terms(edge_index, n: int) -> int:
    r"""The most terms a row of :math:`\mathbf{L}` sums (rounding bound)."""
    if edge_index.numel() == 0:
        return 2
    return int(torch.bincount(edge_index[1], minlength=n).max()) + 2


# ---------------------------------------------------------------------------
# Dense references with their rounding-error bounds
# ---------------------------------------------------------------------------

def magnitude(L, edge_index, weight, normalization):
    r""":math:`|\mathbf{L}|` plus, on the diagonal, the magnitude of the
    terms that cancel in :math:`L_{ii}` (the degree, the self-loops, the
    one of a normalised Laplacian): what the rounding errors of computing
    :math:`\mathbf{L}` scale with."""
    n = L.size(0)
    W = dense_adjacency(edge_index, weight, n)
    off = L.abs().fill_diagonal_(0).sum(1)
    extra = 2. if normalization is not None else W.diagonal()
    return L.abs() + torch.diag(L.diagonal().abs() + off + extra)


def explicit_reference(L, x, K, s, dtype, terms, Lmag=None):
    r""":math:`(\mathbf{I} - s\mathbf{L})^K \mathbf{x}` in float64 and a
    bound of the rounding error of computing it in :obj:`dtype` (forward
    error of :math:`K` products whose entries carry a few units of
    rounding, propagated by :math:`\|\mathbf{M}\|_2`)."""
    n = L.size(0)
    eye = torch.eye(n, dtype=torch.float64)
    M = eye - s * L
    E = eye + s * (L.abs() if Lmag is None else Lmag)
    norm = float(torch.linalg.matrix_norm(M, 2)) if n else 0.
    gamma = 4 * (terms + 4) * eps(dtype)
    u, err = x.double(), 0.
    for _ in range(K):
        err = norm * err + gamma * float((E @ u.abs()).norm())
        u = M @ u
    return u, err


def implicit_reference(L, x, K, s, dtype, terms, tol, Lmag=None):
    r"""The :math:`K` implicit steps in float64 and, per column, a bound of
    the error of solves that each meet the true relative residual
    :obj:`tol` (plus the rounding of a residual computed in :obj:`dtype`),
    propagated by :math:`\|(\mathbf{I} + s\mathbf{L})^{-1}\|_2`."""
    n = L.size(0)
    A = torch.eye(n, dtype=torch.float64) + s * L
    Amag = torch.eye(n, dtype=torch.float64) + s * (
        L.abs() if Lmag is None else Lmag)
    sigma_min = float(torch.linalg.svdvals(A)[-1]) if n else 1.
    gamma = 4 * (terms + 4) * eps(dtype)
    u = x.double()
    err = torch.zeros(u.size(1), dtype=torch.float64)
    if K > 0 and not sigma_min > 0:  # numerically singular: no bound
        return u, err + math.inf
    inv_norm = 1 / sigma_min if n else 1.
    for _ in range(K):
        try:
            v = torch.linalg.solve(A, u)
        except torch.linalg.LinAlgError:  # numerically singular
            return u, err + math.inf
        slack = tol * u.norm(dim=0) + gamma * (Amag @ v.abs() +
                                               u.abs()).norm(dim=0)
        err = inv_norm * (err + slack)
        u = v
    return u, 2 * err + 1e-300


def documented_lambda_max(L) -> float:
    r"""The documented estimate of :meth:`DiffusionOperator.lambda_max`:
    exact for a symmetric :math:`\mathbf{L}` (up to 512 nodes), Gershgorin's
    bound (over rows and columns) otherwise. Symmetric to the layer's
    tolerance in float64 (16 eps of the largest entry): a float32 layer,
    more tolerant, may take the exact value where this takes the bound,
    which only allows a warning the test would not require."""
    scale = float(L.abs().max()) if L.numel() else 0.
    if scale == 0:
        return 0.
    tol = 16 * torch.finfo(torch.float64).eps * scale
    symmetric = bool((L - L.t()).abs().max() <= tol)
    off = L.abs().fill_diagonal_(0)
    center = L.diagonal().abs()
    gersh = float(torch.minimum((center + off.sum(1)).max(),
                                (center + off.sum(0)).max()))
    lam = float(torch.linalg.eigvalsh(L)[-1]) if symmetric else gersh
    return min(lam, gersh)


def stability_facts(L, s):
    r"""(:obj:`must_flag`, :obj:`may_flag`) for the explicit scheme:
    it truly amplifies (:math:`\rho(\mathbf{I} - s\mathbf{L}) > 1`), or it
    is not certified by the documented estimate of
    :math:`\lambda_{\max}`."""
    n = L.size(0)
    lam = documented_lambda_max(L)
    if lam == 0:
        return False, False
    M = torch.eye(n, dtype=torch.float64) - s * L
    rho = float(torch.linalg.eigvals(M).abs().max())
    return rho > 1 + 1e-4, s * lam > 2 * (1 - 1e-4)


def cond(A) -> float:
    sv = torch.linalg.svdvals(A)
    return float(sv[0] / sv[-1]) if float(sv[-1]) > 0 else math.inf


def smooth_laplacian(edge_index, weight, n, normalization, add_self_loops):
    r""":func:`dense_laplacian` with gradients that stay finite at nodes of
    zero degree (whose weights are all zero, so that the Laplacian does not
    depend on them there): the safe-:obj:`where` form of the inverses."""
    w = torch.ones(edge_index.size(1), dtype=torch.float64) \
        if weight is None else weight.double()
    W = torch.zeros(n, n, dtype=torch.float64).index_put(
        (edge_index[1], edge_index[0]), w, accumulate=True)
    eye = torch.eye(n, dtype=torch.float64)
    if normalization is None:
        return torch.diag(W.sum(1)) - W
    Wt = W + eye if add_self_loops else W
    deg = Wt.sum(1)
    pos = deg > 0
    safe = torch.where(pos, deg, torch.ones_like(deg))
    if normalization == 'rw':
        A = torch.where(pos, 1 / safe, 0.).view(-1, 1) * Wt
    else:
        inv = torch.where(pos, safe.rsqrt(), 0.)
        A = inv.view(-1, 1) * Wt * inv.view(1, -1)
    if normalization == 'coin':
        return torch.diag(A.sum(1)) - A
    return torch.diag(pos.double()) - A


def dense_forward(x, edge_index, weight, n, normalization, add_self_loops,
                  K, s, scheme):
    r"""The layer by dense autograd (differentiable in everything)."""
    L = smooth_laplacian(edge_index, weight, n, normalization,
                         add_self_loops)
    assert torch.allclose(L.detach(), dense_laplacian(
        edge_index, None if weight is None else weight.detach(), n,
        normalization, add_self_loops), rtol=1e-12, atol=1e-12)
    u = x
    if scheme == 'explicit':
        for _ in range(K):
            u = u - s * (L @ u)
    else:
        A = torch.eye(n, dtype=torch.float64) + s * L
        for _ in range(K):
            u = torch.linalg.solve(A, u)
    return u


def dense_adjacency(edge_index, weight, n):
    w = torch.ones(edge_index.size(1), dtype=torch.float64) \
        if weight is None else weight.double()
    return torch.zeros(n, n, dtype=torch.float64).index_put(
        (edge_index[1], edge_index[0]), w, accumulate=True)


def as_float(value) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else \
        float(value)


def softplus_inv(v: float) -> float:
    return v + math.log(-math.expm1(-v))


def scheme_options(scheme: str, tol: float) -> dict:
    r"""The solver options apply to (and are given for) the implicit scheme
    only."""
    return dict(scheme=scheme, tol=tol) if scheme == 'implicit' else dict(
        scheme=scheme)


# ---------------------------------------------------------------------------
# utils.coin_norm
# ---------------------------------------------------------------------------

@prop('test_coin_norm_matches_dense_laplacian')
@given(graphs(), st.sampled_from(DTYPES), st.sampled_from(NORMS),
       st.booleans(), st.sampled_from([None, 0.3, 2.5]))
def test_coin_norm_matches_dense_laplacian(g, dtype, normalization,
                                           add_self_loops, sigma2):
    w = None if g.weight is None else g.weight.to(dtype)
    index, value = coin_norm(g.edge_index, w, g.n, normalization,
                             add_self_loops, dtype=dtype)
    assert value.dtype == dtype
    # The documented layout: input edges that are not self-loops, in order,
    # then one diagonal entry per node.
    off = g.edge_index[:, g.edge_index[0] != g.edge_index[1]]
    loops = torch.arange(g.n).repeat(2, 1)
    assert torch.equal(index, torch.cat([off, loops], dim=1))
    assert bool(torch.isfinite(value).all())
    L = dense_laplacian(g.edge_index, rounded(g.weight, dtype), g.n,
                        normalization, add_self_loops)
    out = dense_adjacency(index, value, g.n)
    if sigma2 is not None:  # the operator's step matrix I - sigma2 L
        op = DiffusionOperator(index, value, g.n)
        out = op.matrix(op.step_matrix(sigma2)).to_dense().double()
    ref = L if sigma2 is None else torch.eye(g.n, dtype=torch.float64) - \
        sigma2 * L
    terms = row_terms(g.edge_index, g.n)
    tol = 8 * terms * eps(dtype) * (float(ref.abs().max()) + 1.0)
    assert float((out - ref).abs().max()) <= tol


# ---------------------------------------------------------------------------
# nn.CoinDiffusionConv: every option against the dense reference
# ---------------------------------------------------------------------------

@st.composite
def layer_options(draw):
    return dict(
        K=draw(st.integers(0, 25)),
        # absolute (10^value), or relative to the stability limit
        # 2 / lambda_max (value times the limit)
        sigma2=draw(st.sampled_from(['abs', 'rel']).flatmap(
            lambda mode: st.tuples(st.just(mode), st.floats(-3, 3) if mode
                                   == 'abs' else st.sampled_from(
                                       [0.5, 0.9, 0.999, 1.001, 1.1, 2.0])))),
        normalization=draw(st.sampled_from(NORMS)),
        add_self_loops=draw(st.booleans()),
        cached=draw(st.booleans()),
        dropout=draw(st.sampled_from([0.0, 0.5])),
        learn_sigma2=draw(st.booleans()),
        scheme=draw(st.sampled_from(['explicit', 'implicit'])),
        tol=10.0**-draw(st.integers(3, 10)),
        max_iter=draw(st.sampled_from([1, 5, 50, 1000])),
        stability=draw(st.sampled_from(['raise', 'warn', 'ignore'])),
        # whether tol / max_iter are given with the explicit scheme
        solver_options_given=draw(st.sampled_from([False] * 3 + [True])),
    )


@prop('test_layer_matches_dense_reference_or_documented_error')
@given(graphs(), st.sampled_from(LAYOUTS), st.sampled_from(DTYPES),
       layer_options(), st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_layer_matches_dense_reference_or_documented_error(
        g, layout, dtype, opts, channels, seed):
    n, K, scheme = g.n, opts['K'], opts['scheme']
    x = torch.randn(n, channels, generator=torch.Generator().manual_seed(
        seed), dtype=torch.float64).to(dtype)
    adj, w = as_layout(layout, g.edge_index, g.weight, n, dtype)
    L = dense_laplacian(g.edge_index, rounded(g.weight, dtype), n,
                        opts['normalization'], opts['add_self_loops'])
    mode, value = opts['sigma2']
    lam = documented_lambda_max(L)
    noise = eps(dtype) * (1 if opts['normalization'] is not None else max(
        1., float(dense_adjacency(g.edge_index, g.weight, n).sum(1).max())))
    s = opts['sigma2'] = value * 2 / lam if mode == 'rel' and \
        lam > 1e4 * noise else 10.0**value
    given_solver = opts.pop('solver_options_given') or scheme == 'implicit'
    if not given_solver:
        del opts['tol'], opts['max_iter']
    try:
        conv = CoinDiffusionConv(**opts).to(dtype).eval()
    except ValueError as e:  # solver options without a solver
        assert scheme == 'explicit' and (names(e, 'tol')
                                         or names(e, 'max_iter')), e
        return
    assert not (scheme == 'explicit' and given_solver), \
        'tol / max_iter accepted and ignored by the explicit scheme'
    if opts['learn_sigma2']:  # softplus of a raw value in the default dtype
        assert abs(float(conv.sigma2.detach()) - s) <= 8 * eps(
            torch.float32) * s * (1 + abs(softplus_inv(s)))
    s_eff = as_float(conv.sigma2)
    terms = row_terms(g.edge_index, n)
    must_flag, may_flag = stability_facts(L, s_eff)
    if scheme == 'implicit' or K == 0:
        must_flag = may_flag = False

    error = again = None
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter('always')
        try:
            out = conv(x, adj, w)
            if opts['cached']:  # the cached operator, called again
                again = conv(x, adj, w)
        except (ValueError, ConvergenceError, FloatingPointError) as e:
            error = e
    flagged = sigma2_warnings(records)
    stability = opts['stability']
    event(f'{scheme}, ' + ('unstable' if must_flag else 'not certified'
                           if may_flag else 'certified') + ': ' + (
        type(error).__name__ if error else 'warned' if flagged else 'output'))

    # The stability check flags true instability and no certified case.
    if isinstance(error, ValueError):
        assert stability == 'raise' and may_flag and 'sigma2' in str(
            error), f'refused: {error}'
        return
    assert not (stability == 'raise' and must_flag), \
        'unstable (rho(I - sigma2 L) > 1) but not refused'
    assert not (stability == 'warn' and must_flag and not flagged), \
        'unstable (rho(I - sigma2 L) > 1) but no warning'
    assert not flagged or stability == 'warn' and may_flag, \
        f'unexpected warning: {flagged[0].message}'

    if isinstance(error, ConvergenceError):
        assert scheme == 'implicit'
        A = torch.eye(n, dtype=torch.float64) + s_eff * L
        assert opts['max_iter'] < 4 * n + 10 or \
            opts['tol'] < 100 * eps(dtype) * cond(A), \
            f'no convergence on a solvable system: {error}'
        return
    if isinstance(error, FloatingPointError):
        assert may_flag, f'overflow error in a certified setting: {error}'
        return

    assert out.dtype == dtype and out.shape == x.shape
    assert bool(torch.isfinite(out).all()), 'non-finite output'
    Lmag = magnitude(L, g.edge_index, rounded(g.weight, dtype),
                     opts['normalization'])
    if scheme == 'explicit':
        ref, bound = explicit_reference(L, x, K, s_eff, dtype, terms, Lmag)
        err = float((out.double() - ref).norm())
        assert err <= bound + 1e-30, (err, bound)
    else:
        ref, bound = implicit_reference(L, x, K, s_eff, dtype, terms,
                                        opts['tol'], Lmag)
        err = (out.double() - ref).norm(dim=0)
        assert bool((err <= bound).all()), (err, bound)
    if again is not None:  # the same (up to the solver's tolerance)
        assert torch.equal(again, out) or scheme == 'implicit' and bool(
            ((again.double() - ref).norm(dim=0) <= bound).all())


# ---------------------------------------------------------------------------
# Layout invariance, with learned per-edge weights
# ---------------------------------------------------------------------------

def learned_weight(g, theta):
    w = F.softplus(theta)
    return w if g.weight is None else g.weight.to(theta.dtype) * w


def max_abs(t) -> float:
    return float(t.abs().max()) if t.numel() else 0.


def per_edge_module(edge_index, dtype=torch.float64) -> PerEdgeWeight:
    r"""A :class:`PerEdgeWeight` that accepts :obj:`edge_index`: its
    :obj:`num_edges` counts distinct edges (the documented contract) or,
    in older versions, columns."""
    distinct = int(torch.unique(edge_index, dim=1).size(1)) \
        if edge_index.numel() else 0
    error = None
    for num in dict.fromkeys([distinct, edge_index.size(1)]):
        module = PerEdgeWeight(num).to(dtype)
        try:
            module(edge_index)
        except ValueError as e:
            error = e
            continue
        return module
    raise error


@prop('test_layout_invariance_with_learned_edge_weights')
@given(graphs(max_nodes=15, weights=('none', 'plain', 'zeros')),
       st.sampled_from(LAYOUTS), st.sampled_from(DTYPES),
       st.sampled_from(NORMS), st.booleans(), st.integers(1, 6),
       st.sampled_from(['explicit', 'implicit']), st.booleans(),
       st.integers(0, 2**31 - 1))
def test_layout_invariance_with_learned_edge_weights(
        g, layout, dtype, normalization, add_self_loops, K, scheme,
        through_coin, seed):
    r"""A :class:`PerEdgeWeight` with random parameters, applied to the same
    graph with its columns in another order (and then turned into any
    layout), gives the same diffusion, and the same gradient of its
    parameters: the weights belong to edges, not to storage positions. The
    same through :class:`COIN`, which is given the layout directly."""
    gen = torch.Generator().manual_seed(seed)
    n, E = g.n, g.edge_index.size(1)
    a = None if g.weight is None else g.weight.to(dtype)
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64).to(dtype)
    module = per_edge_module(g.edge_index, dtype)
    with torch.no_grad():  # random parameters, not the initial ones
        module.weight.copy_(torch.randn(module.weight.shape, generator=gen))
    w_ref = module(g.edge_index, a)  # as given in the first column order
    s = 0.4 if normalization is not None else 0.4 / (1 + 2 * float(
        dense_adjacency(g.edge_index, w_ref.detach(), n).sum(1).max()))
    perm = torch.randperm(E, generator=gen)
    c = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    kwargs = dict(normalization=normalization, add_self_loops=add_self_loops,
                  stability='ignore', **scheme_options(
                      scheme, 1e-5 if dtype == torch.float32 else 1e-10))

    if through_coin:
        torch.manual_seed(seed)
        model = COIN(3, 3, K=K, sigma2=s, dropout=0.,
                     learn_edge_weights='per_edge',
                     num_edges=module.num_edges, **kwargs).to(dtype).eval()
        with torch.no_grad():
            model.edge_weights.weight.copy_(module.weight)
        ref = model(x, g.edge_index, a).double()
        ref_grad, = torch.autograd.grad((ref * c).sum(),
                                        model.edge_weights.weight)
        adj, w_adj = as_layout(layout, g.edge_index[:, perm],
                               None if a is None else a[perm], n, dtype)
        try:
            out = model(x, adj, w_adj)
            grad, = torch.autograd.grad((out * c.to(dtype)).sum(),
                                        model.edge_weights.weight)
        except (ValueError, TypeError) as e:  # a clear refusal of sparse
            assert layout != 'edge_index' and 'sparse' in str(e).lower(), e
            return
    else:
        conv = CoinDiffusionConv(K, s, **kwargs)
        theta = module.weight
        ref = dense_forward(x.double(), g.edge_index, w_ref.double(), n,
                            normalization, add_self_loops, K, s, scheme)
        ref_grad, = torch.autograd.grad((ref * c).sum(), theta)
        # The module applied to the permuted columns:
        w = module(g.edge_index[:, perm], None if a is None else a[perm])
        adj, w_adj = as_layout(layout, g.edge_index[:, perm], w, n, dtype)
        try:
            out = conv(x, adj, w_adj)
            grad, = torch.autograd.grad((out * c.to(dtype)).sum(), theta)
        except (ValueError, TypeError) as e:  # a clear refusal of sparse
            assert layout != 'edge_index' and 'sparse' in str(e).lower(), e
            return
    tol = (1e-4 if dtype == torch.float32 else 1e-8) * (1 + max_abs(ref))
    assert max_abs(out.double() - ref) <= tol, f'output ({layout})'
    assert max_abs(grad.double() - ref_grad) <= tol * (
        1 + max_abs(ref_grad)), f'gradient {grad.tolist()} ({layout})'


@prop('test_cached_layer_same_graph_in_another_layout')
@given(graphs(max_nodes=15, weights=('none', 'plain')),
       st.sampled_from(LAYOUTS), st.sampled_from(LAYOUTS),
       st.sampled_from(NORMS), st.booleans(), st.integers(0, 2**31 - 1))
def test_cached_layer_same_graph_in_another_layout(g, first, second,
                                                   normalization, learned,
                                                   seed):
    r"""A cached layer, called on the same graph in another layout or
    column order (with the edge weights, possibly learned ones, in that
    order), gives the same output as a fresh layer, or refuses."""
    gen = torch.Generator().manual_seed(seed)
    n, E = g.n, g.edge_index.size(1)
    x = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    theta = torch.randn(E, generator=gen, dtype=torch.float64)
    w = g.weight
    if learned:  # (new weights at each call, as from a module)
        theta.requires_grad_()
        w = learned_weight(g, theta)
    s = 0.3 if normalization is not None else 0.3 / (
        1 + 2 * float(dense_adjacency(g.edge_index, g.weight, n).sum(1)
                      .max()))
    conv = CoinDiffusionConv(4, s, normalization, cached=True,
                             stability='ignore')
    ref = dense_forward(x, g.edge_index, None if w is None else w.detach(),
                        n, normalization, True, 4, s, 'explicit')
    adj, w_adj = as_layout(first, g.edge_index, w, n)
    try:
        out = conv(x, adj, w_adj)
    except ValueError as e:  # learned values inside a sparse adjacency
        assert 'cached' in str(e).lower() and learned and first != \
            'edge_index', e
        return
    assert max_abs(out - ref) <= 1e-9 * (1 + max_abs(ref))
    if learned:
        assert out.requires_grad or E == 0, 'learned weights ignored'
        if out.requires_grad:
            out.sum().backward()
    perm = torch.randperm(E, generator=gen)
    if learned:
        w = learned_weight(g, theta)
    adj, w_adj = as_layout(second, g.edge_index[:, perm],
                           None if w is None else w[perm], n)
    try:
        out = conv(x, adj, w_adj)
    except ValueError as e:  # a cached layer may refuse another graph
        assert 'cache' in str(e).lower(), e
        return
    assert max_abs(out - ref) <= 1e-9 * (1 + max_abs(ref)), (first, second)
    if learned:
        assert out.requires_grad or E == 0, 'learned weights ignored'
        if out.requires_grad:
            out.sum().backward()


# ---------------------------------------------------------------------------
# Implicit solves meet their true residual, in float32 at large sigma2
# ---------------------------------------------------------------------------

@prop('test_implicit_meets_true_residual')
@given(graphs(max_nodes=40, weights=('none', 'plain', 'zeros'),
              min_nodes=2),
       st.sampled_from([torch.float32] * 3 + [torch.float64]),
       st.sampled_from(NORMS), st.sampled_from(range(0, 7)),
       st.sampled_from(range(3, 8)), st.sampled_from([1, 1, 1, 2, 3]),
       st.integers(0, 2**31 - 1))
def test_implicit_meets_true_residual(g, dtype, normalization, log_s,
                                      log_tol, K, seed):
    s, tol, n = 10.0**log_s, 10.0**-log_tol, g.n
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64).to(dtype)
    conv = CoinDiffusionConv(K, s, normalization, scheme='implicit',
                             tol=tol, max_iter=10 * n + 100)
    w = None if g.weight is None else g.weight.to(dtype)
    L = dense_laplacian(g.edge_index, rounded(g.weight, dtype), n,
                        normalization)
    A = torch.eye(n, dtype=torch.float64) + s * L
    # The system as posed in the dtype: (I + s L) with the entries of L
    # that coin_norm computes in the dtype (checked above against L).
    index, value = coin_norm(g.edge_index, w, n, normalization, dtype=dtype)
    L_dtype = torch.zeros(n, n, dtype=dtype).index_put(
        (index[1], index[0]), value, accumulate=True)
    A_dtype = (torch.eye(n, dtype=dtype) + s * L_dtype).double()
    try:
        out = conv(x, g.edge_index, w)
    except ConvergenceError:
        # Allowed where the dtype cannot resolve the tolerance.
        assert tol < 100 * eps(dtype) * cond(A), 'solvable system'
        return
    assert bool(torch.isfinite(out).all())
    u = out.double()
    if K == 1:
        # The true relative residual, up to the rounding of a residual
        # computed in the dtype (four units of |A||u| + |b|).
        b = x.double()
        res = (b - A_dtype @ u).norm(dim=0)
        slack = 2 * eps(dtype) * (A_dtype.abs() @ u.abs() +
                                  b.abs()).norm(dim=0)
        assert bool((res <= tol * b.norm(dim=0) + slack).all()), \
            (res / b.norm(dim=0)).tolist()
    ref, bound = implicit_reference(
        L, x, K, s, dtype, row_terms(g.edge_index, n), tol,
        magnitude(L, g.edge_index, rounded(g.weight, dtype), normalization))
    err = (u - ref).norm(dim=0)
    assert bool((err <= bound).all()), (err, bound)


# ---------------------------------------------------------------------------
# Second-order gradients: exact, or refused
# ---------------------------------------------------------------------------

@prop('test_second_order_gradients')
@given(graphs(max_nodes=8, weights=('plain', ), min_nodes=2),
       st.sampled_from(NORMS), st.booleans(), st.integers(1, 4),
       st.sampled_from(['explicit', 'implicit']), st.booleans(),
       st.sampled_from(['tensor', 'per_edge']), st.integers(0, 2**31 - 1))
def test_second_order_gradients(g, normalization, add_self_loops, K, scheme,
                                learn_sigma2, weights, seed):
    r"""A gradient penalty through the layer (float64): the gradients of
    :math:`\|\partial \ell / \partial \mathbf{x}\|^2` with respect to
    :obj:`x`, the edge weights and :math:`\sigma^2` equal dense autograd's,
    or the layer refuses :obj:`create_graph=True` with a clear error."""
    gen = torch.Generator().manual_seed(seed)
    n = g.n
    x0 = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    c = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    d = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    s = 0.4 if normalization is not None else 0.2
    conv = CoinDiffusionConv(K, s, normalization, add_self_loops,
                             learn_sigma2=learn_sigma2, stability='ignore',
                             **scheme_options(scheme, 1e-12)).double()
    module = per_edge_module(g.edge_index)
    with torch.no_grad():
        module.weight.copy_(torch.randn(module.weight.shape, generator=gen))

    def penalty(out, x):
        loss = (c * out).sum() + (out * out * d).sum()
        gx, = torch.autograd.grad(loss, x, create_graph=True)
        return (gx * gx).sum()

    # Reference (the module's own map from parameters to columns).
    x = x0.clone().requires_grad_()
    ref_module = copy.deepcopy(module)
    raw = torch.tensor(softplus_inv(s), dtype=torch.float64,
                       requires_grad=True)
    w_ref = ref_module(g.edge_index, g.weight) if weights == 'per_edge' \
        else g.weight.clone().requires_grad_()
    leaves = [x, ref_module.weight if weights == 'per_edge' else w_ref]
    s_ref = s
    if learn_sigma2:
        s_ref = F.softplus(raw)
        leaves.append(raw)
    ref = penalty(dense_forward(x, g.edge_index, w_ref, n, normalization,
                                add_self_loops, K, s_ref, scheme), x)
    ref_grads = torch.autograd.grad(ref, leaves, allow_unused=True)

    # The layer.
    x = x0.clone().requires_grad_()
    if weights == 'per_edge':
        w = module(g.edge_index, g.weight)
        params = [x, module.weight]
    else:
        w = g.weight.clone().requires_grad_()
        params = [x, w]
    if learn_sigma2:
        params.append(conv.sigma2_raw)
    try:
        pen = penalty(conv(x, g.edge_index, w), x)
        assert pen.requires_grad, \
            'the penalty lost its dependence on the parameters'
        grads = torch.autograd.grad(pen, params, allow_unused=True)
    except (RuntimeError, ValueError, NotImplementedError) as e:
        assert SECOND_ORDER.search(str(e)), f'unclear refusal: {e}'
        return
    assert abs(float(pen) - float(ref)) <= 1e-7 * (1 + abs(float(ref)))
    for name, got, want in zip(['x', 'edge weights', 'sigma2'], grads,
                               ref_grads):
        want = torch.zeros(1) if want is None else want
        scale = 1 + max_abs(want)
        if got is None:
            assert max_abs(want) <= 1e-9 * scale, \
                f'second-order gradient of {name} is None'
            continue
        assert max_abs(got - want) <= 1e-6 * scale, \
            f'second-order gradient of {name}: {got.tolist()} != ' \
            f'{want.tolist()}'


# ---------------------------------------------------------------------------
# ops.DiffusionOperator
# ---------------------------------------------------------------------------

@prop('test_diffusion_operator')
@given(graphs(max_nodes=30), st.sampled_from(LAYOUTS),
       st.sampled_from(DTYPES), st.sampled_from(NORMS), st.booleans(),
       st.integers(0, 6), st.floats(-2, 2), st.integers(0, 2**31 - 1))
def test_diffusion_operator(g, layout, dtype, normalization, add_self_loops,
                            K, log_s, seed):
    gen = torch.Generator().manual_seed(seed)
    n, s = g.n, 10.0**log_s
    adj, w = as_layout(layout, g.edge_index, g.weight, n, dtype)
    op = DiffusionOperator.from_graph(adj, w, n, normalization,
                                      add_self_loops, dtype=dtype)
    # The validated graph is the input graph.
    gi, gw = op.graph
    W = dense_adjacency(g.edge_index, rounded(g.weight, dtype), n)
    assert torch.allclose(dense_adjacency(gi, gw, n), W, rtol=1e-6, atol=0)
    L = dense_laplacian(g.edge_index, rounded(g.weight, dtype), n,
                        normalization, add_self_loops)
    terms = row_terms(g.edge_index, n)

    # lambda_max certifies the explicit scheme and bounds the spectrum.
    lam = op.lambda_max()
    scale = float(L.abs().max()) if n else 0.
    if scale > 0:
        eig = torch.linalg.eigvals(L)
        # (up to the rounding of L in the dtype, relative to its terms)
        slack = 8 * eps(dtype) * float(torch.linalg.matrix_norm(magnitude(
            L, g.edge_index, rounded(g.weight, dtype), normalization), 2))
        assert lam >= float(eig.abs().max()) * (1 - 1e-5) - slack
        if lam > 1e4 * slack:  # (not dominated by rounding)
            M = torch.eye(n, dtype=torch.float64) - 2 / lam * L
            assert float(torch.linalg.eigvals(M).abs().max()) <= 1 + 1e-4

    x = torch.randn(n, 2, generator=gen, dtype=torch.float64).to(dtype)
    Lmag = magnitude(L, g.edge_index, rounded(g.weight, dtype),
                     normalization)
    out = op.explicit(x, K, s)
    ref, bound = explicit_reference(L, x, K, s, dtype, terms, Lmag)
    if bool(torch.isfinite(ref).all()) and float(ref.abs().max()) < 1e30:
        assert float((out.double() - ref).norm()) <= bound + 1e-30

    stats, tol = SolverStats(), 1e-6
    try:
        out = op.implicit(x, K, s, tol=tol, max_iter=10 * n + 100,
                          stats=stats)
    except ConvergenceError:
        A = torch.eye(n, dtype=torch.float64) + s * L
        assert tol < 100 * eps(dtype) * cond(A)
    else:
        assert len(stats.forward) == K  # 'stats' is not ignored
        ref, bound = implicit_reference(L, x, K, s, dtype, terms, tol, Lmag)
        assert bool(((out.double() - ref).norm(dim=0) <= bound).all())

    # reweight == from_graph with the new weights, in the order of op.graph.
    w2 = torch.rand(gi.size(1), generator=gen, dtype=torch.float64)
    op2 = op.reweight(w2.to(dtype))
    L2 = dense_laplacian(gi, rounded(w2, dtype), n, normalization,
                         add_self_loops)
    out = op2.explicit(x, K, s)
    ref, bound = explicit_reference(L2, x, K, s, dtype, terms, magnitude(
        L2, gi, rounded(w2, dtype), normalization))
    if bool(torch.isfinite(ref).all()) and float(ref.abs().max()) < 1e30:
        assert float((out.double() - ref).norm()) <= bound + 1e-30


# ---------------------------------------------------------------------------
# ops.krylov_solve
# ---------------------------------------------------------------------------

@prop('test_krylov_solve')
@given(st.integers(1, 30), st.sampled_from(['diag', 'spd', 'nonsym']),
       st.sampled_from(DTYPES), st.integers(2, 10), st.integers(1, 200),
       st.booleans(), st.integers(0, 2**31 - 1))
def test_krylov_solve(n, kind, dtype, log_tol, max_iter, warm, seed):
    gen = torch.Generator().manual_seed(seed)
    tol = 10.0**-log_tol
    d = 10.0**(4 * torch.rand(n, generator=gen, dtype=torch.float64) - 2)
    if kind == 'diag':
        A = torch.diag(d)
    elif kind == 'spd':
        B = torch.randn(n, n, generator=gen, dtype=torch.float64)
        A = B @ B.t() / n + torch.diag(d)
    else:
        B = torch.rand(n, n, generator=gen, dtype=torch.float64)
        A = B / n + torch.diag(d + 1)
    A32 = A.to(dtype)
    b = torch.randn(n, 3, generator=gen, dtype=torch.float64).to(dtype)
    x0 = b.clone() if warm else torch.zeros_like(b)
    symmetric = kind != 'nonsym'
    try:
        x, it = krylov_solve(lambda v: A32 @ v, b, x0, A32.diagonal(),
                             symmetric, tol, max_iter)
    except ConvergenceError:
        assert max_iter < 3 * n + 10 or tol < 100 * eps(dtype) * cond(A)
        return
    assert x.dtype == dtype and bool(torch.isfinite(x).all())
    assert 0 <= it <= max_iter
    if kind == 'diag' and tol >= 1e3 * eps(dtype):
        assert it <= 1, f'Jacobi-preconditioned: {it} iterations, not 1'
    res = (b.double() - A @ x.double()).norm(dim=0)
    slack = 2 * eps(dtype) * (A.abs() @ x.double().abs() +
                              b.double().abs()).norm(dim=0)
    assert bool((res <= tol * b.double().norm(dim=0) + slack).all()), \
        (res / b.double().norm(dim=0)).tolist()


# ---------------------------------------------------------------------------
# Options of MessagePassing are honoured or refused, never ignored
# ---------------------------------------------------------------------------

@prop('test_message_passing_options_are_never_ignored')
@given(graphs(max_nodes=12, weights=('none', 'plain')),
       st.sampled_from(['add', 'sum', 'mean', 'max']),
       st.sampled_from(['source_to_target', 'target_to_source']),
       st.sampled_from([-2, 0, 1, -1]), st.sampled_from([1, 2]),
       st.booleans())
def test_message_passing_options_are_never_ignored(g, aggr, flow, node_dim,
                                                   decomposed_layers,
                                                   through_coin):
    kwargs = dict(aggr=aggr, flow=flow, node_dim=node_dim,
                  decomposed_layers=decomposed_layers)
    n = g.n
    x = torch.rand(n, 3, dtype=torch.float64).softmax(-1)
    try:
        if through_coin:
            torch.manual_seed(0)
            model = COIN(3, 3, K=3, sigma2=0.3, dropout=0.,
                         stability='ignore', **kwargs).double().eval()
            base = model.base(x).softmax(-1)
            out = model(x, g.edge_index, g.weight).exp()
        else:
            conv = CoinDiffusionConv(3, 0.3, stability='ignore', **kwargs)
            base, out = x, conv(x, g.edge_index, g.weight)
    except (ValueError, TypeError) as e:
        assert any(names(e, k) for k in kwargs), f'unclear refusal: {e}'
        return
    neutral = aggr in ('add', 'sum') and node_dim in (-2, 0)
    assert neutral or flow == 'target_to_source', \
        f'accepted and ignored: {kwargs}'
    index = g.edge_index if flow == 'source_to_target' else \
        g.edge_index.flip(0)
    ref = dense_forward(base.detach(), index, g.weight, n, 'coin', True, 3,
                        0.3, 'explicit')
    assert float((out - ref).abs().max()) <= 1e-9, kwargs


# ---------------------------------------------------------------------------
# Numeric arguments: Python and numpy scalars alike; bool, NaN, inf refused
# ---------------------------------------------------------------------------

_EI = torch.tensor([[0, 1, 2, 3, 4, 1], [1, 2, 3, 4, 0, 0]])
_W = torch.tensor([1.0, 0.5, 2.0, 1.0, 0.25, 1.0])
_X = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5], [-1.0, 1.0, 0.0],
                   [0.0, 2.0, 1.0], [2.0, -2.0, 0.5]])


def _seeded(fn):
    def run(**kwargs):
        torch.manual_seed(0)
        return fn(**kwargs)
    return run


def _knn_x():
    return torch.randn(12, 3, generator=torch.Generator().manual_seed(1))


def _constant_model(z):
    return torch.stack([z.sum(-1) * 0 + 1, z.sum(-1) * 0], -1)


# entry point -> (function of keyword arguments, [(argument, kind, valid)]);
# valid floats are exact in float32, so numpy float32 gives the same value.
ENTRY_POINTS = {
    'coin_norm': (lambda num_nodes=5: coin_norm(_EI, _W, num_nodes)[1],
                  [('num_nodes', 'int', 5)]),
    'DiffusionOperator.step_matrix': (
        lambda sigma2=0.25: DiffusionOperator.from_graph(
            _EI, _W, 5).step_matrix(sigma2),
        [('sigma2', 'float', 0.25)]),
    'DiffusionOperator.from_graph': (
        lambda num_nodes=5: DiffusionOperator.from_graph(
            _EI, _W, num_nodes).explicit(_X, 2, 0.25),
        [('num_nodes', 'int', 5)]),
    'DiffusionOperator.explicit': (
        lambda K=2, sigma2=0.25: DiffusionOperator.from_graph(
            _EI, _W, 5).explicit(_X, K, sigma2),
        [('K', 'int', 2), ('sigma2', 'float', 0.25)]),
    'DiffusionOperator.implicit': (
        lambda K=2, sigma2=0.25, tol=2.0**-20, max_iter=100:
        DiffusionOperator.from_graph(_EI, _W, 5).implicit(
            _X, K, sigma2, tol=tol, max_iter=max_iter),
        [('K', 'int', 2), ('sigma2', 'float', 0.25),
         ('tol', 'float', 2.0**-20), ('max_iter', 'int', 100)]),
    'krylov_solve': (
        lambda tol=2.0**-20, max_iter=100: krylov_solve(
            lambda v: 3 * v, _X, _X, torch.full((5, ), 3.), True, tol,
            max_iter)[0],
        [('tol', 'float', 2.0**-20), ('max_iter', 'int', 100)]),
    'CoinDiffusionConv': (
        _seeded(lambda K=2, sigma2=0.25, dropout=0.125: CoinDiffusionConv(
            K, sigma2, dropout=dropout).eval()(_X, _EI, _W)),
        [('K', 'int', 2), ('sigma2', 'float', 0.25),
         ('dropout', 'float', 0.125)]),
    'CoinDiffusionConv(implicit)': (
        lambda tol=2.0**-20, max_iter=100: CoinDiffusionConv(
            2, 0.25, scheme='implicit', tol=tol, max_iter=max_iter)(
                _X, _EI, _W),
        [('tol', 'float', 2.0**-20), ('max_iter', 'int', 100)]),
    'COIN': (
        _seeded(lambda in_channels=3, out_channels=2, hidden_channels=4,
                num_layers=2, K=2, sigma2=0.25, dropout=0.125, T=1.5,
                diffusion_dropout=0.125: COIN(
                    in_channels, out_channels, hidden_channels, num_layers,
                    K, sigma2, dropout=dropout, T=T,
                    diffusion_dropout=diffusion_dropout).eval()(_X, _EI)),
        [('in_channels', 'int', 3), ('out_channels', 'int', 2),
         ('hidden_channels', 'int', 4), ('num_layers', 'int', 2),
         ('K', 'int', 2), ('sigma2', 'float', 0.25),
         ('dropout', 'float', 0.125), ('T', 'float', 1.5),
         ('diffusion_dropout', 'float', 0.125)]),
    'COIN(per_edge)': (
        _seeded(lambda num_edges=6: COIN(
            3, 2, learn_edge_weights='per_edge',
            num_edges=num_edges).eval()(_X, _EI)),
        [('num_edges', 'int', 6)]),
    'ResidualConvection': (
        _seeded(lambda in_channels=3, hidden_channels=4, out_channels=2,
                num_layers=2, T=1.5, dropout=0.125: ResidualConvection(
                    in_channels, hidden_channels, out_channels, num_layers,
                    T, dropout=dropout).eval()(_X)),
        [('in_channels', 'int', 3), ('hidden_channels', 'int', 4),
         ('out_channels', 'int', 2), ('num_layers', 'int', 2),
         ('T', 'float', 1.5), ('dropout', 'float', 0.125)]),
    'KernelEdgeWeight': (
        _seeded(lambda in_channels=3, out_channels=2: KernelEdgeWeight(
            in_channels, out_channels)(_X, _EI)),
        [('in_channels', 'int', 3), ('out_channels', 'int', 2)]),
    'PerEdgeWeight': (
        lambda num_edges=6: PerEdgeWeight(num_edges)(_EI),
        [('num_edges', 'int', 6)]),
    'gaussian_knn_graph': (
        lambda k=3, bandwidth_k=2, chunk_size=5: gaussian_knn_graph(
            _knn_x(), k, bandwidth_k, chunk_size=chunk_size),
        [('k', 'int', 3), ('bandwidth_k', 'int', 2),
         ('chunk_size', 'int', 5)]),
    'gaussian_knn_graph(neighbors)': (
        lambda k=3, bandwidth_k=2: gaussian_knn_graph(
            _knn_x(), k, bandwidth_k, neighbors=_exact_knn(_knn_x(), 3)),
        [('k', 'int', 3), ('bandwidth_k', 'int', 2)]),
    'GaussianKNNGraph': (
        lambda k=3, bandwidth_k=2, chunk_size=5: GaussianKNNGraph(
            k, bandwidth_k, chunk_size=chunk_size)(
                Data(x=_knn_x())).edge_weight,
        [('k', 'int', 3), ('bandwidth_k', 'int', 2),
         ('chunk_size', 'int', 5)]),
    'RandomizedSmoothing': (
        lambda num_classes=2, sigma=0.5: RandomizedSmoothing(
            _constant_model, num_classes, sigma).certify(
                _X, n0=5, n=20, alpha=0.25,
                generator=torch.Generator().manual_seed(0)),
        [('num_classes', 'int', 2), ('sigma', 'float', 0.5)]),
    'RandomizedSmoothing.predict': (
        lambda n=20, alpha=0.25, batch_size=7: RandomizedSmoothing(
            _constant_model, 2, 0.5).predict(
                _X, n=n, alpha=alpha, batch_size=batch_size,
                generator=torch.Generator().manual_seed(0)),
        [('n', 'int', 20), ('alpha', 'float', 0.25),
         ('batch_size', 'int', 7)]),
    'RandomizedSmoothing.certify': (
        lambda n0=5, n=20, alpha=0.25, batch_size=7: RandomizedSmoothing(
            _constant_model, 2, 0.5).certify(
                _X, n0=n0, n=n, alpha=alpha, batch_size=batch_size,
                generator=torch.Generator().manual_seed(0)),
        [('n0', 'int', 5), ('n', 'int', 20), ('alpha', 'float', 0.25),
         ('batch_size', 'int', 7)]),
    'gaussian_smoothing': (
        lambda t=0.5, sigma=0.5, num_samples=20, batch_size=7:
        gaussian_smoothing(lambda z: z.sum(-1), _X, t, sigma, num_samples,
                           batch_size,
                           generator=torch.Generator().manual_seed(0)),
        [('t', 'float', 0.5), ('sigma', 'float', 0.5),
         ('num_samples', 'int', 20), ('batch_size', 'int', 7)]),
    'dropout_diffusion_term': (
        lambda p=0.25, num_samples=20, batch_size=7: dropout_diffusion_term(
            lambda h: (h * h).sum(-1), _X, p, exact=False,
            num_samples=num_samples, batch_size=batch_size,
            generator=torch.Generator().manual_seed(0)),
        [('p', 'float', 0.25), ('num_samples', 'int', 20),
         ('batch_size', 'int', 7)]),
}
VARIANTS = ['numpy', 'numpy32', 'bool', 'nan', 'inf', '-inf']
NUMERIC_CASES = [(entry, arg, kind, valid, variant)
                 for entry, (_, args) in ENTRY_POINTS.items()
                 for arg, kind, valid in args for variant in VARIANTS
                 if not (variant in ('nan', '-inf') and kind == 'int')]


def _flatten(out):
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for item in out for t in _flatten(item)] \
        if isinstance(out, (tuple, list)) else []


@pytest.mark.parametrize('entry,arg,kind,valid,variant', NUMERIC_CASES,
                         ids=['-'.join([c[0], c[1], c[4]])
                              for c in NUMERIC_CASES])
def test_numeric_arguments(entry, arg, kind, valid, variant):
    r"""Exhaustive over the table: a numpy scalar works exactly like the
    Python one; :obj:`True`, NaN and infinities are refused with an error
    naming the argument."""
    fn = ENTRY_POINTS[entry][0]
    if variant.startswith('numpy'):
        np_type = {('int', 'numpy'): np.int64, ('int', 'numpy32'): np.int32,
                   ('float', 'numpy'): np.float64,
                   ('float', 'numpy32'): np.float32}[kind, variant]
        want = _flatten(fn(**{arg: valid}))
        try:
            got = _flatten(fn(**{arg: np_type(valid)}))
        except (ValueError, TypeError) as e:
            pytest.fail(f'{entry} refused {arg}={np_type(valid)!r}: {e}')
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert a.dtype == b.dtype and torch.equal(a, b), (entry, arg)
        return
    bad = {'bool': True, 'nan': math.nan, 'inf': math.inf,
           '-inf': -math.inf}[variant]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try:
            fn(**{arg: bad})
        except (ValueError, TypeError) as e:
            assert names(e, arg), f'{entry}: the error does not name ' \
                f'{arg!r}: {type(e).__name__}: {e}'
            return
    pytest.fail(f'{entry} accepted {arg}={bad!r}')


# ---------------------------------------------------------------------------
# nn: dropout options are inactive in evaluation; COIN against a reference
# ---------------------------------------------------------------------------

def residual_reference(m: ResidualConvection, x, encode=True, decode=True):
    r"""The residual blocks written out from the module's linear maps,
    norms and activation (PyG's), in float64, without dropout."""
    def lin(layer, h):
        out = h @ layer.weight.double().t()
        return out if layer.bias is None else out + layer.bias.double()

    h = x.double()
    if encode:
        if m.lin_in is not None:
            h = lin(m.lin_in, h)
        step = m.T / max(m.num_layers, 1)
        for layer, norm in zip(m.lins, m.norms):
            z = lin(layer, h)
            if not isinstance(norm, torch.nn.Identity):
                p = next(norm.parameters())
                z = norm(z.to(p.dtype)).double()
            h = h + step * m.act(z)
    if decode and m.lin_out is not None:
        h = lin(m.lin_out, h)
    return h


def coin_reference(model: COIN, x, edge_index, edge_weight, scheme):
    r"""The probabilities :math:`\exp` of :obj:`model`'s output, from the
    dense operators, float64."""
    n = x.size(0)
    w = None if edge_weight is None else edge_weight.double()
    ew = model.edge_weights
    if isinstance(ew, KernelEdgeWeight):
        h = x.double() @ ew.lin.weight.double().t()
        k = torch.exp(-(h[edge_index[0]] - h[edge_index[1]]).square()
                      .sum(-1))
        w = k if w is None else w * k
    elif isinstance(ew, PerEdgeWeight):  # its map of parameters to edges
        w = ew(edge_index, edge_weight).detach().double()
    conv = model.diffusion
    s = as_float(conv.sigma2)

    def diffuse(u):
        return dense_forward(u, edge_index, w, n, conv.normalization,
                             conv.add_self_loops, conv.K, s, scheme)

    if model.diffuse == 'hidden':
        h = diffuse(residual_reference(model.base, x, decode=False))
        return torch.log_softmax(residual_reference(model.base, h, False),
                                 -1).exp()
    logits = residual_reference(model.base, x)
    if model.diffuse == 'logits':
        return torch.log_softmax(diffuse(logits), -1).exp()
    return diffuse(logits.softmax(-1)).clamp_min(torch.finfo(x.dtype).tiny)


@st.composite
def coin_options(draw):
    opts = dict(
        hidden_channels=draw(st.sampled_from([None, 5])),
        num_layers=draw(st.integers(0, 2)),
        K=draw(st.integers(0, 6)),
        sigma2=draw(st.floats(0.05, 0.9)),
        normalization=draw(st.sampled_from(['coin', 'sym', 'rw'])),
        diffuse=draw(st.sampled_from(['prob', 'logits', 'hidden'])),
        dropout=draw(st.sampled_from([0.0, 0.5])),
        diffusion_dropout=draw(st.sampled_from([0.0, 0.5])),
        learn_edge_weights=draw(st.sampled_from([None, 'kernel',
                                                 'per_edge'])),
        learn_sigma2=draw(st.booleans()),
        scheme=draw(st.sampled_from(['explicit', 'implicit'])),
    )
    if opts['num_layers'] > 0:  # options of the residual blocks
        opts.update(T=draw(st.floats(0.25, 2.0)),
                    act=draw(st.sampled_from(['relu', 'tanh'])),
                    norm=draw(st.sampled_from([None, 'layer_norm',
                                               'batch_norm'])))
    return opts


@prop('test_coin_matches_reference')
@given(graphs(max_nodes=20, weights=('none', 'plain', 'zeros')),
       st.sampled_from(DTYPES), coin_options(), st.integers(0, 2**31 - 1))
def test_coin_matches_reference(g, dtype, opts, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    n = g.n
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64).to(dtype)
    num_edges = per_edge_module(g.edge_index).num_edges \
        if opts['learn_edge_weights'] == 'per_edge' else None
    model = COIN(3, 4, num_edges=num_edges, stability='ignore',
                 **scheme_options(opts.pop('scheme'),
                                  1e-6 if dtype == torch.float32 else 1e-10),
                 **opts).to(dtype)
    with torch.no_grad():  # random values of every parameter
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen).to(dtype))
        for m in model.modules():
            if hasattr(m, 'running_var') and m.running_var is not None:
                m.running_mean.normal_(generator=gen)
                m.running_var.uniform_(0.5, 2., generator=gen)
    model.eval()
    w = None if g.weight is None else g.weight.to(dtype)
    out = model(x, g.edge_index, w)
    assert torch.equal(out, model(x, g.edge_index, w))  # deterministic
    assert out.dtype == dtype and out.shape == (n, 4)
    with torch.no_grad():
        ref = coin_reference(model, x, g.edge_index, w,
                             model.diffusion.scheme)
    tol = (1e-4 if dtype == torch.float32 else 1e-8) * (1 + float(
        ref.abs().max()))
    assert max_abs(out.detach().double().exp() - ref) <= tol


@prop('test_eval_mode_is_deterministic_for_every_dropout')
@given(graphs(max_nodes=15, weights=('none', 'plain')),
       st.sampled_from(['conv', 'conv_explain', 'residual', 'coin']),
       st.floats(0.1, 0.9), st.integers(1, 5),
       st.sampled_from(['explicit', 'implicit']), st.integers(0, 2**31 - 1))
def test_eval_mode_is_deterministic_for_every_dropout(g, where, p, K, scheme,
                                                      seed):
    r"""In evaluation mode every dropout option is inactive: the output is
    the one of the model without dropout, on every path."""
    from torch_geometric.explain.algorithm.utils import set_masks
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    n = g.n
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    if where in ('conv', 'conv_explain'):
        scheme = 'explicit' if where == 'conv_explain' else scheme
        model = CoinDiffusionConv(K, 0.3, dropout=p, stability='ignore',
                                  **scheme_options(scheme, 1e-10)).eval()
        if where == 'conv_explain':
            set_masks(model, torch.ones(g.edge_index.size(1),
                                        dtype=torch.float64), g.edge_index,
                      apply_sigmoid=False)
        ref = dense_forward(x, g.edge_index, g.weight, n, 'coin', True, K,
                            0.3, scheme)

        def run():
            return model(x, g.edge_index, g.weight)
    elif where == 'residual':
        model = ResidualConvection(3, 4, 2, num_layers=K, dropout=p).double()
        model.eval()
        ref = residual_reference(model, x)

        def run():
            return model(x)
    else:
        model = COIN(3, 2, 4, num_layers=2, K=K, dropout=p,
                     diffusion_dropout=p, stability='ignore',
                     **scheme_options(scheme, 1e-10)).double().eval()
        ref = coin_reference(model, x, g.edge_index, g.weight, scheme).log()

        def run():
            return model(x, g.edge_index, g.weight)
    torch.manual_seed(seed + 1)
    first = run()
    torch.manual_seed(seed + 2)
    assert torch.equal(first, run())
    assert float((first - ref).abs().max()) <= 1e-8


@prop('test_reset_parameters_resets_everything')
@given(graphs(max_nodes=10, weights=('plain', ), min_nodes=3),
       st.floats(0.05, 0.9), st.sampled_from([None, 'layer_norm']),
       st.integers(0, 2**31 - 1))
def test_reset_parameters_resets_everything(g, sigma2, norm, seed):
    gen = torch.Generator().manual_seed(seed)
    n = g.n
    model = COIN(3, 2, 4, num_layers=2, K=3, sigma2=sigma2, norm=norm,
                 learn_edge_weights='per_edge',
                 num_edges=per_edge_module(g.edge_index).num_edges,
                 learn_sigma2=True, cached=True, dropout=0.)
    x = torch.randn(n, 3, generator=gen)
    model(x, g.edge_index, g.weight)  # fills the cache
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) + 1)
    perturbed = {k: v.clone() for k, v in model.state_dict().items()}
    model.reset_parameters()
    assert abs(float(model.diffusion.sigma2.detach()) - sigma2) <= \
        1e-6 * sigma2
    assert torch.allclose(F.softplus(model.edge_weights.weight),
                          torch.ones(model.edge_weights.num_edges),
                          atol=1e-6)
    for name, value in model.named_parameters():
        assert value.numel() == 0 or not torch.equal(
            value, perturbed[name]), f'{name} not reset'
    # The cache is reset too: a new graph of as many nodes is used.
    perm = torch.randperm(n, generator=gen)
    edge_index = perm[g.edge_index]
    model.eval()
    ref = coin_reference(model, x, edge_index, g.weight, 'explicit')
    out = model(x, edge_index, g.weight)
    assert float((out.double().exp() - ref).abs().max()) <= 1e-4


# ---------------------------------------------------------------------------
# nn.diffused_nll_loss
# ---------------------------------------------------------------------------

@prop('test_diffused_nll_loss')
@given(st.integers(1, 20), st.integers(2, 6), st.sampled_from(DTYPES),
       st.sampled_from(['mean', 'sum', 'none', 'average']),
       st.sampled_from(['ok', 'zeros', 'negative', 'out_of_range']),
       st.integers(0, 2**31 - 1))
def test_diffused_nll_loss(n, C, dtype, reduction, kind, seed):
    gen = torch.Generator().manual_seed(seed)
    prob = torch.rand(n, C, generator=gen, dtype=torch.float64)
    prob = prob / prob.sum(1, keepdim=True)
    if kind == 'zeros':
        prob[torch.rand(n, C, generator=gen) < 0.3] = 0.
    elif kind == 'negative':  # what an unstable explicit scheme produces
        prob = prob - 0.2
    prob = prob.to(dtype)
    target = torch.randint(C, (n, ), generator=gen)
    if kind == 'out_of_range':
        target[0] = C
    try:
        out = diffused_nll_loss(prob, target, reduction=reduction)
    except (ValueError, TypeError, IndexError) as e:
        assert reduction == 'average' and names(e, 'reduction') or \
            kind == 'out_of_range' and names(e, 'target'), \
            f'{type(e).__name__}: {e}'
        return
    assert reduction != 'average', 'unknown reduction accepted'
    assert kind != 'out_of_range', 'target out of range accepted'
    tiny = torch.finfo(dtype).tiny
    per = -prob.double().clamp_min(tiny).gather(1, target.view(-1, 1)) \
        .view(-1).log()
    ref = {'mean': per.mean(), 'sum': per.sum(), 'none': per}[reduction]
    assert out.dtype == dtype and out.shape == ref.shape
    assert bool(torch.isfinite(out).all())
    assert torch.allclose(out.double(), ref, rtol=8 * n * eps(dtype),
                          atol=0)


# ---------------------------------------------------------------------------
# utils.gaussian_knn_graph (and its exact search) / GaussianKNNGraph
# ---------------------------------------------------------------------------

def reference_distances(x, y):
    r"""Euclidean distances from the differences, in float64."""
    return (y.double().unsqueeze(1) - x.double().unsqueeze(0)).norm(dim=-1)


@st.composite
def point_sets(draw, max_points=40):
    n = draw(st.integers(2, max_points))
    dim = draw(st.integers(1, 5))
    dtype = draw(st.sampled_from(DTYPES))
    scale = 10.0**draw(st.floats(-30, 30))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    num_dup = draw(st.integers(0, 3))
    for _ in range(num_dup):  # duplicate points (ties)
        i, j = torch.randint(n, (2, ), generator=gen).tolist()
        x[i] = x[j]
    num_graphs = draw(st.integers(1, 3))
    batch = None
    if num_graphs > 1:
        batch = torch.randint(num_graphs, (n, ), generator=gen)
    return (x * scale).to(dtype), batch, scale


@prop('test_exact_knn_is_exact')
@given(point_sets(), st.integers(1, 8), st.booleans(),
       st.sampled_from([None, 1, 3]), st.integers(0, 2**31 - 1))
def test_exact_knn_is_exact(points, k, some_rows, chunk_size, seed):
    r"""The private exact search of :func:`gaussian_knn_graph`: the nearest
    other nodes of the same graph (to rounding) for any magnitude, no
    repeats, or an error naming :obj:`k` if a graph is too small."""
    x, batch, scale = points
    rows = None
    if some_rows:
        gen = torch.Generator().manual_seed(seed)
        rows = torch.randint(x.size(0), (5, ), generator=gen)
    counts = torch.bincount(batch) if batch is not None else torch.tensor(
        [x.size(0)])
    enough = bool(((counts == 0) | (counts > k)).all())
    try:
        idx = _exact_knn(x, k, batch, chunk_size, rows)
    except ValueError as e:
        assert not enough and names(e, 'k'), e
        return
    assert enough, 'k larger than a graph accepted'
    D = reference_distances(x, x)
    if batch is not None:
        D[batch.view(-1, 1) != batch.view(1, -1)] = math.inf
    D.fill_diagonal_(math.inf)
    if rows is not None:
        D = D[rows]
    assert idx.dtype == torch.long and idx.shape == (D.size(0), k)
    want = D.sort(dim=1).values[:, :k]
    got = D.gather(1, idx)  # the true distances of the returned points
    tol = 16 * (x.size(1) + 2) * eps(x.dtype) * want + 1e-300
    assert bool((got <= want + tol).all()), 'not the nearest points'
    assert bool((got[:, 1:] >= got[:, :-1] - tol[:, 1:]).all()), 'order'
    assert bool((idx.sort(1).values.diff(dim=1) != 0).all()), 'repeated'


def gaussian_reference(x, k, bandwidth_k, loop, normalize, symmetrize,
                       kernel):
    D = reference_distances(x, x).fill_diagonal_(math.inf)
    d, col = D.sort(dim=1)
    d, col = d[:, :k], col[:, :k]
    s = d[:, bandwidth_k - 1]
    num = d * d
    den = (s * s).view(-1, 1).expand_as(num) if kernel == 'gaussian' else \
        s.view(-1, 1) * s[col]
    ratio = torch.where(den > 0, num / den.clamp_min(1e-300),
                        torch.where(num > 0, math.inf, 0.))
    n = x.size(0)
    W = torch.zeros(n, n, dtype=torch.float64)
    W[torch.arange(n).view(-1, 1), col] = torch.exp(-ratio)
    if loop:
        W += torch.eye(n, dtype=torch.float64)
    if normalize:
        deg = W.sum(1)
        inv = torch.where(deg > 0, deg.clamp_min(1e-300).rsqrt(), 0.)
        W = inv.view(-1, 1) * W * inv.view(1, -1)
    if symmetrize:
        W = (W + W.t()) / 2
    return W, D.sort(dim=1)


@prop('test_gaussian_knn_graph_matches_dense_reference')
@given(st.integers(3, 30), st.integers(1, 4), st.sampled_from(DTYPES),
       st.floats(-25, 25), st.data(), st.booleans(), st.booleans(),
       st.booleans(), st.sampled_from(['gaussian', 'self_tuning']),
       st.sampled_from(['search', 'transform', 'neighbors']),
       st.integers(0, 2**31 - 1))
def test_gaussian_knn_graph_matches_dense_reference(
        n, dim, dtype, log_scale, data, loop, normalize, symmetrize, kernel,
        mode, seed):
    r"""The weights against the dense float64 reference, for features of
    any magnitude: from the exact search, through the transform, and from
    the reference's neighbours passed as :obj:`neighbors` (in any order)."""
    k = data.draw(st.integers(1, min(5, n - 1)))
    bandwidth_k = data.draw(st.integers(1, k))
    scale = 10.0**log_scale
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, dim, generator=gen, dtype=torch.float64) *
         scale).to(dtype)
    W, (D, order) = gaussian_reference(x, k, bandwidth_k, loop, normalize,
                                       symmetrize, kernel)
    # Only graphs without a near-tie at the k-th neighbour are unambiguous.
    if k < n - 1:
        assume(bool((D[:, k] - D[:, k - 1] > 1e-3 * D[:, k].abs()).all()))
    kwargs = dict(loop=loop, normalize=normalize, symmetrize=symmetrize,
                  kernel=kernel)
    if mode == 'transform':
        data = GaussianKNNGraph(k, bandwidth_k, **kwargs)(Data(x=x))
        edge_index, weight = data.edge_index, data.edge_weight
    else:
        nbr = order[:, :k].flip(1) if mode == 'neighbors' else None
        edge_index, weight = gaussian_knn_graph(x, k, bandwidth_k,
                                                neighbors=nbr, **kwargs)
    assert weight.dtype == dtype and bool(torch.isfinite(weight).all())
    out = dense_adjacency(edge_index, weight, n)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert bool(((out - W).abs() <= tol * (1 + W.abs())).all()), \
        float(((out - W).abs() / (1 + W.abs())).max())


# ---------------------------------------------------------------------------
# theory: randomized smoothing, Gaussian smoothing, dropout as diffusion
# ---------------------------------------------------------------------------

@prop('test_randomized_smoothing_never_certifies_nan')
@given(st.integers(1, 6), st.integers(2, 4), st.integers(0, 3),
       st.sampled_from(['nan_input', 'inf_input', 'nan_scores']),
       st.integers(1, 60), st.floats(0.001, 0.3), st.floats(0.1, 2.0),
       st.booleans(), st.integers(0, 2**31 - 1))
def test_randomized_smoothing_never_certifies_nan(num_items, num_classes, c,
                                                  kind, n, alpha, sigma,
                                                  row_wise, seed):
    r"""A model that always says class :obj:`c` on finite input: exact
    counts, hence the exact Clopper-Pearson radius; rows with NaN input or
    NaN scores abstain (or the call refuses them)."""
    from scipy.stats import norm
    c = c % num_classes
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_items, 3, generator=gen)
    bad = torch.rand(num_items, generator=gen) < 0.5
    if kind == 'nan_input':
        x[bad, 0] = math.nan
    elif kind == 'inf_input':
        x[bad, 1] = math.inf
    marker = torch.zeros(num_items)
    if kind == 'nan_scores':
        marker[bad] = math.nan

    def scores(z, mark):
        out = torch.zeros(z.size(0), num_classes)
        out[:, c] = 1.
        return out + 0 * z.sum(-1, keepdim=True) + mark.view(-1, 1)

    if row_wise:
        def model(z):  # the rows are draws of all items in order
            return scores(z, marker.repeat(z.size(0) // num_items))
        rs = RandomizedSmoothing(model, num_classes, sigma)
        args = ()
    else:
        rs = RandomizedSmoothing(lambda z, mark: scores(z, mark),
                                 num_classes, sigma,
                                 forward_fn=lambda m, z, mark: m(z, mark))
        args = (marker, )
    # (forward_fn: one noisy copy per call, the default)
    batch = dict(batch_size=7) if row_wise else {}
    try:
        pred_c, radius = rs.certify(x, *args, n0=3, n=n, alpha=alpha,
                                    generator=gen, **batch)
        pred = rs.predict(x, *args, n=n, alpha=alpha, generator=gen,
                          **batch)
    except ValueError as e:
        assert bool(bad.any()) and (names(e, 'x') or 'nan' in str(e).lower()
                                    or 'finite' in str(e).lower()), e
        return
    p_lower = alpha**(1 / n)  # Clopper-Pearson for n successes out of n
    certified = p_lower >= 0.5
    pvalue = min(1.0, 2 * 0.5**n)
    for i in range(num_items):
        if bool(bad[i]):
            assert int(pred_c[i]) == -1 and float(radius[i]) == 0, \
                f'certified class {int(pred_c[i])} at radius ' \
                f'{float(radius[i])} for {kind}'
            assert int(pred[i]) == -1, f'predicted for {kind}'
            continue
        assert int(pred_c[i]) == (c if certified else -1)
        want = sigma * norm.ppf(p_lower) if certified else 0.
        assert abs(float(radius[i]) - want) <= 1e-9 * (1 + abs(want))
        assert int(pred[i]) == (c if pvalue <= alpha else -1)


@prop('test_randomized_smoothing_selects_from_selection_draws')
@given(st.integers(1, 50), st.integers(1, 200), st.floats(0.001, 0.2),
       st.booleans(), st.integers(1, 50))
def test_randomized_smoothing_selects_from_selection_draws(n0, n, alpha,
                                                           row_wise,
                                                           batch_size):
    r"""A model that says class 0 for the first :obj:`n0` draws and class 1
    afterwards. Selection draws and estimation draws are separate, in
    either order: either the selected class is never seen in the
    estimation (abstain), or the estimation came first and counts class 1
    :obj:`n - n0` times. Selecting from the estimation draws certifies
    class 1 from all :obj:`n` of them, which neither order allows."""
    from scipy.stats import beta, norm
    calls = {'draws': 0}

    def label(z):
        out = torch.zeros(z.size(0), dtype=torch.long)
        for r in range(z.size(0)):
            out[r] = 0 if calls['draws'] < n0 else 1
            calls['draws'] += 1
        return out

    x = torch.zeros(1, 2)
    if row_wise:
        rs = RandomizedSmoothing(label, 2, 0.5)
    else:
        rs = RandomizedSmoothing(label, 2, 0.5, forward_fn=lambda m, z: m(z))
    # (forward_fn: one noisy copy per call, the default)
    batch = dict(batch_size=batch_size) if row_wise else {}
    pred, radius = rs.certify(x, n0=n0, n=n, alpha=alpha,
                              generator=torch.Generator().manual_seed(0),
                              **batch)
    assert calls['draws'] == n0 + n
    if int(pred[0]) == -1:
        assert float(radius[0]) == 0
        return
    k = n - n0
    assert int(pred[0]) == 1 and k > 0
    p_lower = float(beta.ppf(alpha, k, n - k + 1))
    assert p_lower >= 0.5
    assert abs(float(radius[0]) - 0.5 * norm.ppf(p_lower)) <= 1e-9


@prop('test_gaussian_smoothing')
@given(st.integers(1, 4), st.integers(1, 4), st.sampled_from(DTYPES),
       st.booleans(), st.floats(0, 2), st.floats(0.1, 3),
       st.integers(200, 400), st.integers(1, 400), st.booleans(),
       st.integers(0, 2**31 - 1))
def test_gaussian_smoothing(B, d, dtype, per_point_t, t, sigma, num_samples,
                            batch_size, single, seed):
    r"""For :math:`f(\mathbf{z}) = \mathbf{a}^\top \mathbf{z} +
    \sum_i b_i z_i^2`, :math:`u(t, \mathbf{x}) = f(\mathbf{x}) + 2 t
    \sigma^2 \sum_i b_i` exactly; the Monte Carlo estimate lies within six
    of its standard errors, which match the true spread."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(d, generator=gen, dtype=torch.float64)
    b = torch.randn(d, generator=gen, dtype=torch.float64)
    x = torch.randn(B, d, generator=gen, dtype=torch.float64)
    ts = torch.rand(B, generator=gen, dtype=torch.float64) * 2 \
        if per_point_t and not single else torch.tensor(t,
                                                        dtype=torch.float64)
    if single:
        x = x[0]

    def f(z):
        z = z.double()
        return (z @ a + (z * z) @ b).to(dtype)

    est = gaussian_smoothing(f, x.to(dtype), ts.to(dtype) if ts.dim() else
                             float(ts), sigma, num_samples, batch_size,
                             generator=gen)
    xs = x.view(-1, d)
    c2 = 2 * ts * sigma**2  # the noise variance
    exact = xs @ a + (xs * xs) @ b + c2 * b.sum()
    var = (((a + 2 * b * xs)**2).sum(-1) * c2 + 2 * (b * b).sum() * c2**2)
    std = (var / num_samples).sqrt()
    mean, stderr = est.mean.double().view(-1), est.stderr.double().view(-1)
    assert est.mean.dtype == dtype
    slack = 64 * eps(dtype) * (1 + exact.abs())
    assert bool(((mean - exact).abs() <= 6 * std + slack).all())
    slack = 1e-6 * (1 + exact.abs())  # rounding of a one-pass variance
    assert bool((stderr <= 3 * std + slack).all())
    assert bool((stderr >= 0.3 * std - slack).all())


@prop('test_dropout_diffusion_term')
@given(st.integers(1, 3), st.integers(1, 8), st.floats(0.05, 0.9),
       st.booleans(), st.booleans(), st.integers(0, 2**31 - 1))
def test_dropout_diffusion_term(B, units, p, exact, vector, seed):
    r"""For a quadratic :math:`f(\mathbf{h}) = \mathbf{a}^\top\mathbf{h} +
    \mathbf{h}^\top \mathbf{Q} \mathbf{h}` the expectation under inverted
    dropout is :math:`f(\mathbf{h}) + \frac{p}{1-p}\sum_i Q_{ii} h_i^2`,
    which is also the predicted second-order term."""
    gen = torch.Generator().manual_seed(seed)
    k = 2 if vector else 1
    a = torch.randn(k, units, generator=gen, dtype=torch.float64)
    Q = torch.randn(k, units, units, generator=gen, dtype=torch.float64)
    h = torch.randn(B, units, generator=gen, dtype=torch.float64)

    def f(z):
        out = z @ a.t() + torch.einsum('mi,kij,mj->mk', z, Q, z)
        return out if vector else out[:, 0]

    monte_carlo = {} if exact else dict(num_samples=2000, generator=gen)
    res = dropout_diffusion_term(f, h, p, exact=exact, batch_size=512,
                                 **monte_carlo)
    term = p / (1 - p) * torch.einsum('mi,kii->mk', h * h, Q)
    base = f(h)
    term = term if vector else term[:, 0]
    assert res.exact == exact
    assert torch.allclose(res.no_dropout, base, atol=1e-12)
    assert torch.allclose(res.predicted, term, rtol=1e-9, atol=1e-9)
    assert torch.allclose(res.difference, res.expected - res.no_dropout,
                          atol=1e-12)
    if exact:
        assert torch.allclose(res.expected, base + term, rtol=1e-9,
                              atol=1e-9)
        assert bool((res.stderr == 0).all())
    else:
        assert bool(((res.expected - base - term).abs() <=
                     6 * res.stderr + 1e-9).all())
