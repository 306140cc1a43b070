"""UMAP on torch tensors: a 2-D (or n-D) map of feature vectors, on the GPU when there is one.

McInnes, Healy & Melville, "UMAP: Uniform Manifold Approximation and Projection for
Dimension Reduction", arXiv:1802.03426, 2018. The steps are the paper's (and
umap-learn's, whose constants are kept): a k-NN graph, smooth-kNN calibration of
each point's distances (rho, sigma), the fuzzy union P + P^T - P*P^T, a spectral
initialisation, and SGD on the cross-entropy layout loss with negative sampling.

What differs from umap-learn 0.5 (Euclidean metric only, no supervision, no densMAP):

- The k-NN graph is exact at every size (chunked float32 matrix products: only
  neighbours within rounding of each other can swap), where umap-learn switches to
  approximate NN-descent above 4,096 points.
- The layout SGD is synchronous: each epoch computes the gradients of all edges due
  in that epoch, and of their negative samples, from the same positions and adds
  them up (scatter-add), where umap-learn updates one edge at a time (Hogwild). It
  makes an epoch a few large tensor operations instead of a Python-free loop over
  edges, which is what a CPU or GPU runs fast from torch.
- Each sampled edge draws exactly `negative_sample_rate` negatives (umap-learn: that
  many on average).
- Spectral initialisation is Chebyshev-filtered subspace iteration on the normalised
  graph operator, all connected components at once (per-component deflation and
  orthonormalisation), instead of Lanczos (eigsh) one component at a time.
  Components are placed at the leading principal components of their feature-space
  centroids, where umap-learn uses a spectral embedding of the centroids.
- Negative samples come from a pool of random indices drawn once per fit and read
  at a random offset each epoch, rather than from a fresh draw per sample.
- transform() gives every new point weight to all of its k neighbours in the
  calibration (umap-learn skips the first one, meant to be the point itself).
- The default of 200 epochs starts at 10,000 points rather than above them (see UMAP).

Same seed and device: bitwise the same embedding, whatever torch's thread count (on
the CPU every chunk of the k-NN search, and everything after it, runs on one thread).
All randomness comes from one torch.Generator seeded with `seed`; sums over edges are
index_add_ or CSR products on the CPU (fixed order there) and
index_put_(accumulate=True) on CUDA (sorted, deterministic), never atomics.
"""
import contextlib
import math
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# umap-learn's constants.
SMOOTH_K_ITERATIONS = 64
MIN_K_DIST_SCALE = 1e-3
INITIAL_ALPHA = 1.0
TRANSFORM_ALPHA = INITIAL_ALPHA / 4
REPULSION_STRENGTH = 1.0  # gamma
GRADIENT_CLIP = 4.0
REPULSION_EPSILON = 1e-3  # keeps the repulsive coefficient finite at distance 0
# Pairs at distance 0 get no step, as in umap-learn: their offset is 0. This floor
# keeps d^(2b-2) finite there (b < 1), so that 0 times it stays 0, not nan.
TINY_SQUARED_DISTANCE = 1e-30
INIT_SCALE = 10.0  # the initial layout spans [0, 10] on every axis
INIT_NOISE = 1e-4

EPOCHS_SWITCH = 10_000  # fewer points: 500 epochs by default, else 200
AB_FIT_STEPS = 100  # at most; the fit stops once steps are at rounding level
CHUNK_ELEMENTS = 1 << 23  # largest [queries, points] distance block (32 MiB in float32)
MAX_SEARCH_THREADS = 8  # at most this many distance blocks in flight (256 MiB)
MAX_GROUP = 32  # columns reduced to one minimum before the top-k; see smallest_k
SPECTRAL_EXTRA = 4  # subspace iteration carries this many vectors beyond n_components
SPECTRAL_DEGREE = 16  # Chebyshev filter degree: products with the graph per round
SPECTRAL_ROUNDS = 8


# ---------------------------------------------------------------------------------
# Small tensor helpers.
# ---------------------------------------------------------------------------------


def scatter_sum(index, values, size):
    """out[i] = sum of values[index == i]: [size, ...], deterministic on every device."""
    out = values.new_zeros((size,) + values.shape[1:])
    if values.is_cuda:  # index_add_ uses atomics there, whose order varies; index_put_ sorts
        return out.index_put_((index,), values, accumulate=True)
    return out.index_add_(0, index, values)


@contextlib.contextmanager
def one_cpu_thread(device):
    """Run torch's CPU operations on one thread inside the block, the caller's count restored after.

    torch splits each operation over its threads and waits for the slowest. The
    layout is thousands of small operations: two threads could at best halve its
    time on 2 idle cores, while with another process holding a core an epoch took
    ten times as long as on one thread (measured at 10,000 points: 90-250 ms
    against 9 ms).
    """
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def map_chunks(fn, starts, device):
    """[fn(start) for start in starts], on the CPU spread over torch's threads, each running torch on one.

    Whole chunks per thread rather than each product split over all threads: idle
    cores stay as busy, and no thread waits on a descheduled one when another process
    holds a core (2 cores under load, 20,000-point search: 7.4 s split, 4.6 s in
    chunks). Each chunk's result is the same whichever thread computes it.
    """
    if device.type != "cpu":
        return [fn(start) for start in starts]
    workers = min(torch.get_num_threads(), MAX_SEARCH_THREADS)
    with one_cpu_thread(device), ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        return list(pool.map(fn, starts))


def as_features(features, device):
    """[N, d] float32 tensor on `device`, from a tensor or an array."""
    features = features if torch.is_tensor(features) else torch.as_tensor(np.asarray(features))
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(f"features must be a non-empty [N, d] matrix, got shape {tuple(features.shape)}")
    return features.to(device, torch.float32)


# ---------------------------------------------------------------------------------
# k-NN graph and fuzzy simplicial set.
# ---------------------------------------------------------------------------------


def smallest_k(scores, k, group):
    """Positions [c, k] of the k smallest entries of each row of `scores` [c, m], m a multiple of `group`.

    A full top-k over m columns is the slow part of a scan, so columns are first
    reduced to minima of `group` consecutive ones: the k groups with the smallest
    minima hold k values no larger than the row's k-th smallest, hence the row's k
    smallest (ties aside, an equal value), and only those k groups are searched.
    """
    minima = scores.unflatten(1, (-1, group)).amin(dim=2)  # [c, m / G]
    groups = minima.topk(k, dim=1, largest=False, sorted=False).indices  # [c, k]
    columns = (groups[:, :, None] * group + torch.arange(group, device=scores.device)).flatten(1)  # [c, k G]
    best = scores.gather(1, columns).topk(k, dim=1, largest=False, sorted=False).indices  # [c, k]
    return columns.gather(1, best)


def exact_distances(queries, points, indices):
    """|q - p| of each query [M, d] to its chosen points [M, k], sorted: (distances, indices) [M, k].

    Recomputed from the coordinates rather than taken from |p|^2 - 2 q.p, whose
    rounding would put a point a little off itself and off its duplicates.
    """
    chunk = max(1, CHUNK_ELEMENTS // (indices.shape[1] * queries.shape[1]))
    distances = torch.cat([
        torch.linalg.vector_norm(queries[start:start + chunk, None, :] - points[indices[start:start + chunk]], dim=2)
        for start in range(0, len(queries), chunk)
    ])  # [M, k]
    distances, order = distances.sort(dim=1)
    return distances, indices.gather(1, order)


def nearest_neighbors(queries, points, k):
    """Exact k nearest `points` [N, d] of each of `queries` [M, d]: (distances, indices), both [M, k], ascending.

    Ranked by |p|^2 - 2 q.p in chunks of queries, so no [M, N] block is ever built.
    """
    n, k = len(points), min(k, len(points))
    group = max(1, min(MAX_GROUP, n // (4 * k)))  # leaves at least 4k groups for smallest_k
    padded = -(-n // group) * group
    mean = points.mean(dim=0)  # centring keeps |p|^2 and its rounding small
    centred = points - mean  # [N, d]
    points_t = centred.new_zeros(points.shape[1], padded)  # [d, Np]
    points_t[:, :n] = centred.T
    sq_norms = centred.new_full((padded,), float("inf"))  # [Np]; padding never chosen
    sq_norms[:n] = centred.square().sum(dim=1)
    chunk = max(1, CHUNK_ELEMENTS // padded)

    def search(start):  # [c, k] positions for one chunk of queries
        scores = torch.addmm(sq_norms, queries[start:start + chunk] - mean, points_t, alpha=-2)  # [c, Np]
        return smallest_k(scores, k, group)

    found = map_chunks(search, range(0, len(queries), chunk), points.device)
    return exact_distances(queries - mean, centred, torch.cat(found))


def smooth_knn_calibration(distances, rho, valid, k):
    """sigma [M] such that sum over valid neighbours of exp(-max(0, d - rho) / sigma) = log2(k).

    Vectorised bisection over all rows at once, umap-learn's schedule: double sigma
    until the sum passes the target, then halve the bracket. `valid` [M, k] masks the
    point itself out of its own neighbours.
    """
    target = math.log2(k)
    excess = (distances - rho[:, None]).clamp_min(0)  # [M, k]
    low = torch.zeros_like(rho)
    high = torch.full_like(rho, float("inf"))
    sigma = torch.ones_like(rho)
    for _ in range(SMOOTH_K_ITERATIONS):
        total = torch.where(valid, torch.exp(-excess / sigma[:, None]), 0).sum(dim=1)  # [M]
        too_big = total > target  # sigma too large: shrink it
        high = torch.where(too_big, sigma, high)
        low = torch.where(too_big, low, sigma)
        sigma = torch.where(torch.isinf(high), low * 2, (low + high) / 2)
    # umap-learn's floor, against a sigma of ~0 on rows of (near-)equal distances.
    row_mean = distances.mean(dim=1)
    floor = MIN_K_DIST_SCALE * torch.where(rho > 0, row_mean, row_mean.mean())
    return torch.maximum(sigma, floor)


def membership_strengths(distances, rho, sigma, valid):
    """Edge weights exp(-(d - rho) / sigma), 1 up to rho, 0 for a point to itself: [M, k]."""
    weights = torch.exp(-(distances - rho[:, None]).clamp_min(0) / sigma[:, None])
    return torch.where(valid, weights, 0)


def fuzzy_union(rows, cols, weights, n):
    """P + P^T - P*P^T on edge lists: (rows, cols, weights) of the symmetric graph, sorted by (row, col).

    Each direction of each edge becomes a key row * n + col; after sorting, an edge
    present in both directions is two equal keys side by side, and is combined there.
    """
    keys = torch.cat([rows * n + cols, cols * n + rows])  # [2E]
    values = torch.cat([weights, weights])  # [2E]
    keys, order = keys.sort()
    values = values[order]
    pair = keys[1:] == keys[:-1]  # [2E - 1]: positions t where t and t + 1 are one edge
    first = torch.cat([pair.new_ones(1), ~pair])  # [2E]: first entry of each edge
    edge_of = first.cumsum(0) - 1  # [2E]
    merged = values[first]  # [U]
    at = pair.nonzero().squeeze(1)
    a, b = values[at], values[at + 1]
    merged[edge_of[at]] = a + b - a * b
    unique = keys[first]
    return unique // n, unique % n, merged


def fuzzy_simplicial_set(distances, indices):
    """The symmetric UMAP graph from each point's k-NN [N, k] among the points, itself included:
    rows, cols [E] int64 and weights [E], sorted by (row, col)."""
    n, k = indices.shape
    own = torch.arange(n, device=indices.device)
    valid = indices != own[:, None]  # [N, k]; the point itself wherever duplicates put it
    # rho: distance to the nearest neighbour that is not at distance 0.
    rho = torch.where(valid & (distances > 0), distances, float("inf")).amin(dim=1)
    rho = torch.where(torch.isinf(rho), 0, rho)  # [N]
    sigma = smooth_knn_calibration(distances, rho, valid, k)
    weights = membership_strengths(distances, rho, sigma, valid)
    keep = weights.flatten() > 0
    rows = own.repeat_interleave(k)[keep]
    return fuzzy_union(rows, indices.flatten()[keep], weights.flatten()[keep], n)


def find_ab_params(spread, min_dist):
    """a, b of the low-dimensional similarity 1 / (1 + a d^2b), fitted as umap-learn does.

    Least squares against exp(-(d - min_dist) / spread) (1 below min_dist) on
    umap-learn's grid, from its start a = b = 1. It calls scipy's curve_fit; these
    Levenberg-Marquardt steps reach the same minimum without importing
    scipy.optimize, which costs a fresh process 0.2-0.6 s.
    """
    x = np.linspace(0, spread * 3, 300)[1:]  # d = 0 fits every a, b
    y = np.where(x < min_dist, 1.0, np.exp(-(x - min_dist) / spread))
    log_x = np.log(x)

    def residuals(params):
        return 1.0 / (1.0 + params[0] * x ** (2 * params[1])) - y

    params, damping = np.ones(2), 1e-3
    for _ in range(AB_FIT_STEPS):
        power = x ** (2 * params[1])
        slope = -(1.0 / (1.0 + params[0] * power)) ** 2 * power  # d model / d a
        jacobian = np.stack([slope, 2 * params[0] * log_x * slope], axis=1)  # [n, 2], d / d(a, b)
        normal = jacobian.T @ jacobian
        step = np.linalg.solve(normal + damping * np.diag(np.diag(normal)), -jacobian.T @ residuals(params))
        if np.sum(residuals(params + step) ** 2) < np.sum(residuals(params) ** 2):
            params, damping = params + step, damping / 10
        else:
            damping *= 10
        if np.abs(step).max() < 1e-12 * (1 + np.abs(params).max()) or damping > 1e12:
            break
    return float(params[0]), float(params[1])


# ---------------------------------------------------------------------------------
# Initialisation.
# ---------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------
# Layout optimisation.
# ---------------------------------------------------------------------------------


def sampling_rates(weights, n_epochs):
    """(keep [E] bool, rate [E] of the kept): umap-learn drops edges lighter than max / n_epochs
    and samples the rest in proportion to their weight, the heaviest every epoch."""
    top = weights.max()
    keep = weights >= top / n_epochs
    return keep, weights[keep] / top


def true_indices(mask):
    """Positions of the True entries of a 1-D mask, int64."""
    if mask.is_cuda:
        return mask.nonzero().squeeze(1)
    return torch.from_numpy(np.flatnonzero(mask.numpy()))  # ~8x faster than torch's CPU nonzero


def add_at(target, index, values, alpha):
    """target[index] += alpha * values, repeated indices adding up, in a fixed order on every device."""
    if target.is_cuda:
        target.index_put_((index.long(),), values * alpha, accumulate=True)
    else:
        target.index_add_(0, index, values, alpha=alpha)


def optimize_layout(head, tail, heads, tails, rate, n_epochs, a, b, initial_alpha, negative_rate, generator):
    """SGD on the UMAP cross-entropy: the optimised copy of `head` [H, dim]; `tail` [T, dim] moves too if it is `head`.

    Edge e (heads[e] -> tails[e]) is sampled every 1 / rate[e] epochs (umap-learn's
    epochs_per_sample), about n_epochs * rate[e] times in all; each sample pulls its
    ends together and pushes its head away from `negative_rate` points of `tail`
    drawn at random. The learning rate falls linearly to 0.

    Negatives are read from a pool of random tail indices drawn once, at a random
    offset each epoch: drawing them afresh every epoch (Mersenne Twister on the CPU)
    took a third of the epoch's time.
    """
    move_tail = head is tail
    head_t = head.T.contiguous()  # [dim, H]: one contiguous row per coordinate for gathers and scatter-adds
    tail_t = head_t if move_tail else tail.T.contiguous()  # [dim, T]
    dim = len(head_t)
    heads, tails = heads.int(), tails.int()  # int32 gathers are faster on the CPU
    span = len(rate) * negative_rate  # most negatives one epoch can need
    pool = torch.randint(len(tail), (2 * span,), generator=generator, device=head.device, dtype=torch.int32)
    offsets = torch.rand(n_epochs, generator=generator, device=head.device, dtype=torch.float64).tolist()
    period = 1 / rate  # [E], umap-learn's epochs_per_sample
    next_sample = period.clone()  # [E]
    for epoch in range(n_epochs):
        active = true_indices(next_sample <= epoch + 1)  # [A]
        if len(active) == 0:
            continue
        next_sample.index_add_(0, active, period.index_select(0, active))
        h, t = heads.index_select(0, active), tails.index_select(0, active)  # [A]
        start = int(offsets[epoch] * (span + 1))
        negatives = pool[start:start + len(h) * negative_rate]  # [r A]
        y_h = head_t.index_select(1, h)  # [dim, A]
        attract = attraction_step(y_h - tail_t.index_select(1, t), a, b)  # [dim, A]
        y_n = tail_t.index_select(1, negatives).view(dim, negative_rate, len(h))  # [dim, r, A]
        repel = repulsion_step(y_h[:, None, :] - y_n, a, b)  # [dim, r, A]
        alpha = initial_alpha * (1 - epoch / n_epochs)
        head_step = attract + repel.sum(dim=1)  # [dim, A]
        for coordinate in range(dim):
            add_at(head_t[coordinate], h, head_step[coordinate], alpha)
            if move_tail:
                add_at(tail_t[coordinate], t, attract[coordinate], -alpha)
    return head_t.T.contiguous()


def squared_norms(diff):
    """|diff|^2 over dim 0 [dim, ...] -> [...]: a multiply-add per coordinate beats a sum over a dim of 2."""
    total = diff[0].square()
    for coordinate in diff[1:]:
        total.addcmul_(coordinate, coordinate)
    return total


def attraction_step(diff, a, b):
    """Clipped step -2ab d^(2b-2) / (1 + a d^2b) (y_i - y_j) of each edge, from `diff` = y_i - y_j [dim, ...]."""
    d2 = squared_norms(diff).clamp_min_(TINY_SQUARED_DISTANCE)
    power = d2.log().mul_(b - 1).exp_()  # d^(2b-2)
    coefficient = power.mul(-2 * a * b).div_(power.mul_(d2).mul_(a).add_(1))  # power becomes a d^2b + 1
    return diff.mul_(coefficient).clamp_(-GRADIENT_CLIP, GRADIENT_CLIP)


def repulsion_step(diff, a, b):
    """Clipped step 2 gamma b / ((eps + d^2)(1 + a d^2b)) (y_i - y_j) of each negative sample, `diff` [dim, ...]."""
    d2 = squared_norms(diff)
    denominator = d2.log().mul_(b).exp_().mul_(a).add_(1)  # a d^2b + 1
    denominator.mul_(d2.add_(REPULSION_EPSILON))
    coefficient = denominator.reciprocal_().mul_(2 * REPULSION_STRENGTH * b)
    return diff.mul_(coefficient).clamp_(-GRADIENT_CLIP, GRADIENT_CLIP)


# ---------------------------------------------------------------------------------
# The estimator.
# ---------------------------------------------------------------------------------


class UMAP:
    """UMAP embedding of feature vectors; fit() once, transform() new points onto the same map.

    n_epochs None: umap-learn's default, 500 below 10,000 points and 200 from there on
    (and for transform 100 and 30; given n_epochs, transform runs n_epochs // 3).
    umap-learn keeps 500 at exactly 10,000 points; 200 there measured the same
    trustworthiness on the benchmark's mixture (0.9766 against 0.9769) in 40 % of
    the layout time. After fit, `fit_epochs` and `transform_epochs` hold the counts
    in force; a state dict keeps them, so a loaded model places points exactly as
    the one that was saved.
    """

    def __init__(self, n_neighbors=15, n_components=2, min_dist=0.1, spread=1.0, n_epochs=None,
                 negative_sample_rate=5, init="spectral", seed=0, device="cpu"):
        if init not in ("spectral", "random"):
            raise ValueError(f"init must be 'spectral' or 'random', got {init!r}")
        self.n_neighbors = int(n_neighbors)
        self.n_components = int(n_components)
        self.min_dist = float(min_dist)
        self.spread = float(spread)
        self.n_epochs = n_epochs
        self.negative_sample_rate = int(negative_sample_rate)
        self.init = init
        self.seed = int(seed)
        self.device = torch.device(device)
        self.a, self.b = find_ab_params(self.spread, self.min_dist)
        self.features = None  # [N, d] float32 on device, after fit
        self.embedding = None  # [N, n_components] float32 on device, after fit
        self.fit_epochs = self.transform_epochs = None

    def _generator(self):
        return torch.Generator(device=self.device).manual_seed(self.seed)

    @torch.inference_mode()
    def fit(self, features):
        """Embed `features` [N, d]: [N, n_components] float32 on the CPU."""
        features = as_features(features, self.device)
        n = len(features)
        if n < 2:
            raise ValueError(f"UMAP needs at least 2 points, got {n}")
        if self.n_epochs is None:
            self.fit_epochs, self.transform_epochs = (500, 100) if n < EPOCHS_SWITCH else (200, 30)
        else:
            self.fit_epochs, self.transform_epochs = int(self.n_epochs), int(self.n_epochs) // 3
        generator = self._generator()
        neighbors = nearest_neighbors(features, features, self.n_neighbors)  # [N, k] each
        with one_cpu_thread(self.device):
            rows, cols, weights = fuzzy_simplicial_set(*neighbors)
            keep, rate = sampling_rates(weights, self.fit_epochs)
            rows, cols, weights = rows[keep], cols[keep], weights[keep]
            embedding = initial_layout(self.init, features, rows, cols, weights, self.n_components, generator)
            embedding = optimize_layout(embedding, embedding, rows, cols, rate, self.fit_epochs, self.a, self.b,
                                        INITIAL_ALPHA, self.negative_sample_rate, generator)
        self.features, self.embedding = features, embedding
        return embedding.cpu()

    @torch.inference_mode()
    def transform(self, features):
        """Place new points [M, d] on the fitted map, which stays fixed: [M, n_components] float32 on the CPU."""
        if self.embedding is None:
            raise RuntimeError("transform needs a fitted UMAP: call fit first")
        queries = as_features(features, self.device)
        neighbors = nearest_neighbors(queries, self.features, self.n_neighbors)  # [M, k] each
        with one_cpu_thread(self.device):
            return self._place(*neighbors).cpu()

    def _place(self, distances, indices):
        """[M, n_components] positions of new points from their k-NN among the training points [M, k]."""
        m, k = indices.shape
        # umap-learn's transform calibrates with local_connectivity - 1 = 0: no rho.
        rho = torch.zeros(m, device=self.device)
        valid = torch.ones_like(indices, dtype=torch.bool)
        weights = membership_strengths(distances, rho, smooth_knn_calibration(distances, rho, valid, k), valid)
        start = (weights[:, :, None] * self.embedding[indices]).sum(dim=1) / weights.sum(dim=1, keepdim=True)
        epochs = max(1, self.transform_epochs)
        keep, rate = sampling_rates(weights.flatten(), epochs)
        heads = torch.arange(m, device=self.device).repeat_interleave(k)[keep]
        return optimize_layout(start, self.embedding, heads, indices.flatten()[keep], rate, epochs, self.a, self.b,
                               TRANSFORM_ALPHA, self.negative_sample_rate, self._generator())

    def state_dict(self):
        """What transform needs, as tensors, ints, floats and strings (torch.load(weights_only=True) reads it)."""
        if self.embedding is None:
            raise RuntimeError("state_dict needs a fitted UMAP: call fit first")
        return {
            "n_neighbors": self.n_neighbors, "n_components": self.n_components, "min_dist": self.min_dist,
            "spread": self.spread, "n_epochs": self.fit_epochs, "transform_epochs": self.transform_epochs,
            "negative_sample_rate": self.negative_sample_rate, "init": self.init, "seed": self.seed,
            "features": self.features.cpu(), "embedding": self.embedding.cpu(),
        }

    @classmethod
    def from_state_dict(cls, state, device="cpu"):
        model = cls(n_neighbors=state["n_neighbors"], n_components=state["n_components"],
                    min_dist=state["min_dist"], spread=state["spread"], n_epochs=state["n_epochs"],
                    negative_sample_rate=state["negative_sample_rate"], init=state["init"], seed=state["seed"],
                    device=device)
        model.fit_epochs, model.transform_epochs = state["n_epochs"], state["transform_epochs"]
        model.features = state["features"].to(model.device, torch.float32)
        model.embedding = state["embedding"].to(model.device, torch.float32)
        return model
