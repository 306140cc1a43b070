"""UMAP's fuzzy simplicial set: each point's k-NN distances calibrated (rho, sigma) into edge weights, made
symmetric by the fuzzy union; and the a, b of the low-dimensional similarity."""
import math

import numpy as np
import torch

# umap-learn's constants.
SMOOTH_K_ITERATIONS = 64
MIN_K_DIST_SCALE = 1e-3
AB_FIT_STEPS = 100  # at most; the fit stops once steps are at rounding level


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
