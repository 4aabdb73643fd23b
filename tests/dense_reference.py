r"""COIN's operators written from their definitions on dense float64
matrices, independently of the package: the reference of the tests."""
import torch
from torch_geometric.utils import to_undirected


def dense_laplacian(edge_index, edge_weight, num_nodes, normalization,
                    add_self_loops=True):
    r""":obj:`W[i, j]` is the weight of the edge :obj:`j -> i`; differentiable
    in :obj:`edge_weight`."""
    w = torch.ones(edge_index.size(1), dtype=torch.float64) \
        if edge_weight is None else edge_weight.double()
    W = torch.zeros(num_nodes, num_nodes, dtype=torch.float64).index_put(
        (edge_index[1], edge_index[0]), w, accumulate=True)
    eye = torch.eye(num_nodes, dtype=torch.float64)
    if normalization is None:
        return torch.diag(W.sum(1)) - W
    Wt = W + eye if add_self_loops else W
    deg = Wt.sum(1)
    inv = torch.where(deg > 0, 1 / deg.clamp_min(1e-300),
                      torch.zeros_like(deg))
    if normalization == 'rw':
        A = inv.view(-1, 1) * Wt
    else:
        A = inv.sqrt().view(-1, 1) * Wt * inv.sqrt().view(1, -1)
    if normalization == 'coin':  # diag(A_hat 1) - A_hat
        return torch.diag(A.sum(1)) - A
    # I - A, with L_ii = 0 for isolated nodes (zero degree).
    return torch.diag((deg > 0).double()) - A


def dense_diffusion(x, edge_index, edge_weight, normalization, K, sigma2,
                    add_self_loops=True):
    L = dense_laplacian(edge_index, edge_weight, x.size(0), normalization,
                        add_self_loops)
    u = x.double()
    for _ in range(K):
        u = u - sigma2 * (L @ u)
    return u


def dense_implicit(x, L, K, sigma2):
    A = torch.eye(L.size(0), dtype=torch.float64) + sigma2 * L
    u = x.double()
    for _ in range(K):
        u = torch.linalg.solve(A, u)
    return u


def random_graph(num_nodes, num_edges, seed, undirected=True, weighted=True):
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(num_nodes, (2, num_edges), generator=gen)
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    weight = torch.rand(edge_index.size(1), generator=gen) + 0.1
    if undirected:
        edge_index, weight = to_undirected(edge_index, weight, num_nodes)
    return edge_index, (weight if weighted else None)
