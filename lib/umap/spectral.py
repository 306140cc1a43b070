"""UMAP's initial layout: spectral (all connected components at once) or random, scaled to [0, 10]."""
import warnings

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from lib.umap.neighbors import nearest_neighbors
from lib.umap.tensors import scatter_sum

INIT_SCALE = 10.0  # umap-learn's: the initial layout spans [0, 10] on every axis
INIT_NOISE = 1e-4  # umap-learn's
SPECTRAL_EXTRA = 4  # subspace iteration carries this many vectors beyond n_components
SPECTRAL_DEGREE = 16  # Chebyshev filter degree: products with the graph per round
SPECTRAL_ROUNDS = 8


def component_labels(rows, cols, n):
    """Connected component of each node: ([N] int64 on the graph's device, number of components)."""
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows.cpu().numpy(), cols.cpu().numpy())), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    return torch.from_numpy(labels).to(rows.device, torch.int64), count


def sum_operator(rows, cols, values, n_rows, n_cols):
    """x [n_cols, ...] -> S x [n_rows, ...] for the sparse S[rows, cols] = values.

    A CSR product on the CPU: each output row is summed on its own, in a fixed order,
    and an order of magnitude faster than a scatter-add of [E, p] rows there. On CUDA
    a gather and scatter_sum, whose order is fixed, unlike cuSPARSE's.
    """
    if values.is_cuda:
        return lambda x: scatter_sum(rows, values.view(-1, *[1] * (x.ndim - 1)) * x[cols], n_rows)
    order = torch.argsort(rows, stable=True)
    crow = torch.zeros(n_rows + 1, dtype=torch.int64)
    crow[1:] = torch.bincount(rows, minlength=n_rows).cumsum(0)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": nothing to act on
        warnings.simplefilter("ignore")
        matrix = torch.sparse_csr_tensor(crow, cols[order], values[order], (n_rows, n_cols), check_invariants=False)
    return lambda x: (matrix @ x.reshape(len(x), -1)).reshape(n_rows, *x.shape[1:])


def spectral_vectors(adjacency, degree, group, labels, dim, generator):
    """[N, dim]: per component, the leading non-trivial eigenvectors of M = D^-1/2 W D^-1/2.

    Chebyshev-filtered subspace iteration (Zhou & Saad 2007): each round applies a
    polynomial of M that is 1 at eigenvalue 1, tiny on [-1, cut] and steep in
    between, cut being the smallest Ritz value of the block so far, then Rayleigh-Ritz.
    Where the leading eigenvalues crowd near 1, as along a long manifold, that takes
    far fewer products than power steps. All components at once: each one's trivial
    eigenvector sqrt(degree) is projected out of every product, and its block is
    orthonormalised and rotated on its own. `adjacency` is x -> M x, `group` x ->
    per-component sums [C, ...].
    """
    trivial = degree.sqrt() / group(degree).sqrt()[labels]  # [N], unit norm per component

    def deflate(x):
        return x - trivial[:, None] * group(trivial[:, None] * x)[labels]

    def product(x):  # M x without its trivial part, which the filter would amplify most
        return deflate(adjacency(x))

    def rayleigh_ritz(x):  # -> Ritz vectors [N, p] and values [C, p], ascending, per component
        gram_values, basis = torch.linalg.eigh(group(x[:, :, None] * x[:, None, :]))  # [C, p], [C, p, p]
        # Components of at most p nodes have a singular Gram matrix; they are laid out
        # at random later, so only finiteness matters for them.
        inv_sqrt = gram_values.clamp_min(gram_values[:, -1:] * 1e-6 + 1e-30).rsqrt()
        x = torch.bmm(x[:, None, :], (basis * inv_sqrt[:, None, :])[labels]).squeeze(1)  # orthonormal
        projected = group(x[:, :, None] * product(x)[:, None, :])  # [C, p, p]
        values, rotation = torch.linalg.eigh(0.5 * (projected + projected.transpose(1, 2)))
        return torch.bmm(x[:, None, :], rotation[labels]).squeeze(1), values

    def chebyshev(x, cut):  # three-term recurrence, scaled to 1 at eigenvalue 1 (no overflow)
        centre, half = ((cut - 1) / 2)[labels, None], ((cut + 1) / 2)[labels, None]  # [N, 1]
        sigma = half / (1 - centre)
        tau = 2 / sigma
        previous, current = x, (product(x) - centre * x) * (sigma / half)
        for _ in range(SPECTRAL_DEGREE - 1):
            following = 1 / (tau - sigma)
            previous, current = current, ((product(current) - centre * current) * (2 * following / half)
                                          - (sigma * following) * previous)
            sigma = following
        return current

    x = torch.randn(len(labels), dim + SPECTRAL_EXTRA, generator=generator, device=labels.device)  # [N, p]
    x, values = rayleigh_ritz(x)
    for _ in range(SPECTRAL_ROUNDS):
        cut = values[:, 0].clamp(-1 + 1e-3, 1 - 1e-6)  # [C]; bounds keep the recurrence finite
        x, values = rayleigh_ritz(chebyshev(x, cut))
    return x[:, -dim:].flip(1)  # largest first


def component_positions(centroids, dim):
    """[C, dim] centres for the components: the leading principal components of their centroids [C, d], max |x| = 1."""
    centroids = centroids - centroids.mean(dim=0)
    u, s, _ = torch.linalg.svd(centroids, full_matrices=False)
    positions = centroids.new_zeros(len(centroids), dim)
    width = min(dim, len(s))
    positions[:, :width] = u[:, :width] * s[:width]
    return positions / positions.abs().max().clamp_min(1e-30)


def spectral_layout(features, rows, cols, weights, dim, generator):
    """[N, dim] spectral initial layout, any number of connected components.

    One component: its leading eigenvectors. Several: each component's own layout,
    scaled to half the distance from its centre to the nearest other centre, as
    umap-learn does; components too small for a spectral layout are spread uniformly
    over that radius.
    """
    n, device = len(features), features.device
    labels, count = component_labels(rows, cols, n)
    degree = scatter_sum(rows, weights, n)  # [N]
    inv_sqrt = degree.rsqrt()
    adjacency = sum_operator(rows, cols, weights * inv_sqrt[rows] * inv_sqrt[cols], n, n)
    group = sum_operator(labels, torch.arange(n, device=device), torch.ones(n, device=device), count, n)
    vectors = spectral_vectors(adjacency, degree, group, labels, dim, generator)  # [N, dim]
    if count == 1:
        return vectors
    sizes = group(torch.ones(n, device=device))  # [C]
    centres = component_positions(group(features) / sizes[:, None], dim)  # [C, dim]
    gaps, _ = nearest_neighbors(centres, centres, 2)  # [C, 2]; column 0 is the centre itself
    radius = (gaps[:, 1] / 2).clamp_min(gaps[:, 1].max() * 1e-3 + 1e-30)  # [C]
    # A maximum does not depend on the order of the updates: deterministic everywhere.
    extent = vectors.new_zeros(count).scatter_reduce(0, labels, vectors.abs().amax(dim=1), reduce="amax")  # [C]
    within = vectors * (radius / extent.clamp_min(1e-30))[labels, None]
    small = (sizes <= dim + SPECTRAL_EXTRA)[labels]  # [N]
    uniform = (torch.rand(n, dim, generator=generator, device=device) * 2 - 1) * radius[labels, None]
    return centres[labels] + torch.where(small[:, None], uniform, within)


def initial_layout(init, features, rows, cols, weights, dim, generator):
    """[N, dim] starting positions, scaled to [0, 10] on every axis as umap-learn does."""
    n = len(features)
    if init == "spectral":
        layout = spectral_layout(features, rows, cols, weights, dim, generator)
        layout = layout * (INIT_SCALE / layout.abs().max().clamp_min(1e-30))
        layout += INIT_NOISE * torch.randn(n, dim, generator=generator, device=features.device)
    else:
        layout = torch.rand(n, dim, generator=generator, device=features.device) * 2 * INIT_SCALE - INIT_SCALE
    low, high = layout.amin(dim=0), layout.amax(dim=0)
    return INIT_SCALE * (layout - low) / (high - low).clamp_min(1e-30)
