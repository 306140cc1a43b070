"""Running distance from every point to its nearest center, for the greedy batch methods.

k-center greedy (Coreset) and K-Means++ seeding pick one point at a time and then
need, for every point, the squared distance to the nearest center chosen so far.
Keeping that as a running minimum costs one matrix-vector product per new center:
memory stays O(N) on top of the features (and of their centred copy, when one is
made), and nothing of size N x N is ever built (initial centers are added in chunks
whose product has a fixed size).

The products are float32, on the points seen as [d, N]. The rounding error of
|x|^2 - 2 x.c + |c|^2 grows with the norms, so features far from the origin are
copied, centred on the mean in float64 before the cast: distances do not change, but
the error is that of the spread, not of the offset (cast first, 1e4 + N(0, 1) would
lose a thousandth of the spread, far more than the allowance below); and scaled by a
power of two, exactly, so that the largest coordinate is in [0.5, 1) and no square
overflows or underflows float32. float32 features on the CPU whose squared mean is at
most OFFSET_RATIO times their mean squared distance to it, and whose squared norms are
in IN_PLACE_SQ_NORMS (a model's features), are used as given, a view and not a copy:
one feature row per item in memory, not two, at a wider allowance.

Where that error could change a decision, the features as given are used in float64,
difference by difference, the way a plain float64 loop computes sum((x - c)^2), so
that distances equal there are equal here:
- distances within the error of zero are recomputed as they are made, so a copy of a
  center is at exactly 0: K-Means++ never draws it (and a point next to a center keeps
  its small weight), and when the farthest point left is at 0, every point left ties
  at 0 and k-center takes the lowest index at once;
- `farthest` re-decides near-ties, so k-center greedy picks what a float64 loop on the
  features as given picks, exact ties to the lowest index. A point's float64 distance
  is kept and brought up to date with the centers added since, and only with those
  whose float32 distance says they may be its nearest: a point that stays a near-tie
  (copies of one point, say) costs O(d) per pick, not O(centers d).
"""
import math

import numpy as np
import torch

TAKEN = -1.0  # distance given to centers: below every real distance, so never a pick
CHUNK_ELEMENTS = 1 << 24  # largest float32 [centers, N] or [points, centers] block (64 MiB)
# Largest float64 temporary, centring or computing differences (2 MiB): small enough
# to stay in cache, which makes the transposing copy of centring 1.7x faster than 32 MiB.
FLOAT64_ELEMENTS = 1 << 18
UNIT_ROUNDOFF = 2.0**-24  # u of float32
# Rounding error allowance of one float32 |x - c|^2, in units of u times
# |x|^2 + |c|^2, two parts. The product: BLAS dot-product errors grow like sqrt(d) in
# practice; measured at most 11 u at d=256 over 10^6 pairs of Gaussian-mixture
# features, so 8 sqrt(d) is a wide margin while keeping float64 re-checks cheap (the
# worst case, d u, would make most of the pool a near-tie). The cast of the centred
# features to float32 moves each coordinate by at most u of itself, so |x - c|^2 by at
# most 2u (|x| + |c|)^2 <= 4u (|x|^2 + |c|^2).
SLACK_PER_SQRT_DIM = 8
CAST_SLACK = 4
SMALLEST_ABOVE_ZERO = float(np.finfo(np.float32).smallest_subnormal)
# Features whose squared mean is at most this many times their mean squared distance to
# it (R) are not worth a centred copy. The float32 error grows with the norms, and with
# it the near-ties re-checked in float64: k-center on 50,000 x 256 Gaussian-mixture
# features (bench/bench_select.py's), k=500, took as long in place as on a copy up to
# R=108, 2.2x at R=433 and 30x at R=1,733. A model's pooled ASPP features (ReLU outputs)
# are near 2 (a MobileNetV2 trained on CamVid: 1.97), or 9 after one epoch (the tiny
# model of bench/bench_large_pool.py).
OFFSET_RATIO = 64.0
# Squared norms that features are used in place within; the copy's largest coordinate is
# brought into [0.5, 1). Far outside, float32 squares overflow to inf or lose to underflow.
IN_PLACE_SQ_NORMS = (2.0**-60, 2.0**60)


class NearestCenterDistances:
    """`min_sq[i]`: squared distance of point i to its nearest center (float32), TAKEN for centers.

    Distances within rounding error of zero are exact, so `min_sq[i] == 0` exactly
    when point i duplicates a center. They are those of the points, which may be the
    features times a power of two (`scale_sq` times the features' squared distances).
    """

    def __init__(self, features, device, centers=()):
        self.source = _host_array(features)  # [N, d] as given, for float64 checks
        if self.source.ndim != 2 or len(self.source) == 0:
            raise ValueError(f"features must be a non-empty [N, d] matrix, got shape {self.source.shape}")
        self.points, self.sq_norms, self.scale_sq = _working_points(self.source, device)  # [d, N], [N], float
        allowance = SLACK_PER_SQRT_DIM * self.points.shape[0] ** 0.5 + CAST_SLACK
        self.slack = float(allowance * UNIT_ROUNDOFF * 2 * self.sq_norms.max())  # |x|^2 + |c|^2 <= 2 max
        self.min_sq = torch.full_like(self.sq_norms, float("inf"))  # [N]
        self._sq = torch.empty_like(self.sq_norms)  # [N], reused by every add_center
        self.center_ids = []
        self._center_rows = _GrowingRows(self.points.shape[0], device)  # [C, d] the points' rows of center_ids
        self._exact_sq = np.full(len(self.source), np.inf)  # [N] float64 nearest-center distances, kept
        self._folded = np.zeros(len(self.source), dtype=np.int64)  # [N] centers taken into _exact_sq
        if len(centers):
            self._add_centers(sorted({int(i) for i in centers}))  # a range, a list, an array or a tensor

    def __len__(self):
        return self.points.shape[1]

    def check_room(self, k):
        free = len(self) - len(self.center_ids)
        if k > free:
            raise ValueError(f"cannot pick {k} of {free} points that are not centers already")

    def add_center(self, i):
        """Make point i a center: one pass over the points."""
        center = self._point_rows([i])[0]  # [d], contiguous: a strided column would slow the product
        sq = torch.addmv(self.sq_norms, self.points.T, center, alpha=-2, out=self._sq)  # [N] |x|^2 - 2 x.c
        sq.add_(self.sq_norms[i]).clamp_(min=0)  # |x - c|^2, rounding kept from going below 0
        self._settle_near_zero(sq[None], [i])
        torch.minimum(self.min_sq, sq, out=self.min_sq)
        self.min_sq[i] = TAKEN
        self.center_ids.append(i)
        self._center_rows.extend(center[None])

    def _add_centers(self, indices):
        """Make many points centers at once (the labeled set), in bounded chunks."""
        step = max(1, CHUNK_ELEMENTS // len(self))
        for start in range(0, len(indices), step):
            block = indices[start : start + step]
            sq = self._approx_sq(block, self.points, self.sq_norms)  # [m, N]
            self._settle_near_zero(sq, block)
            torch.minimum(self.min_sq, sq.amin(dim=0), out=self.min_sq)
            del sq  # freed before the next block is built: one block in memory at a time, not two
            self._center_rows.extend(self._point_rows(block))
        self.min_sq[indices] = TAKEN
        self.center_ids.extend(indices)

    def _approx_sq(self, rows, others, others_sq):
        """float32 squared distances [r, t], within `slack`, from points `rows` to others.

        `others` [d, t] are columns of `points`, `others_sq` [t] their squared norms.
        """
        rows = torch.as_tensor(rows, device=self.points.device)  # from a list or numpy array
        dots = self._point_rows(rows) @ others  # [r, t]
        return dots.mul_(-2).add_(self.sq_norms[rows, None]).add_(others_sq).clamp_(min=0)

    def _point_rows(self, indices):
        """The points' rows [r, d], gathered along their contiguous side: features used in place
        are [N, d] in memory, our copy [d, N] (each way round, the other gather is 2-3x slower)."""
        if self.points.T.is_contiguous():
            return self.points.T[indices]
        return self.points[:, indices].T

    def _settle_near_zero(self, sq, centers):
        """Recompute from differences in float64 the entries of sq [m, N] (to `centers`) near zero."""
        rows, cols = _indices_at_most(sq, self.slack)
        centers = np.asarray(centers)[rows]
        keep = cols != centers  # a center's distance to itself is about to become TAKEN
        rows, cols, centers = rows[keep], cols[keep], centers[keep]
        if len(rows):
            exact = _sq_differences(self.source, cols, centers) * self.scale_sq  # a power of two: exact
            # A distance above 0 stays above 0 in float32, where it might round to 0: only copies are at 0
            exact = np.where(exact > 0, np.maximum(exact, SMALLEST_ABOVE_ZERO), 0.0)
            sq[torch.as_tensor(rows), torch.as_tensor(cols)] = torch.as_tensor(exact, dtype=sq.dtype).to(sq.device)

    def farthest(self):
        """The point farthest from its nearest center, lowest index on exact ties."""
        best = _argmax(self.min_sq)  # the first of the largest
        top = float(self.min_sq[best])
        if not self.center_ids or top == 0:
            return best  # zeros are exact: every point left duplicates a center, all tie
        # Points whose float32 distance is within twice the rounding allowance of the
        # best may be the true farthest: re-decide among them in float64. Copies of
        # centers (exactly 0) cannot be, the best being above 0.
        rivals = _indices_at_least(self.min_sq, max(top - 2 * self.slack, SMALLEST_ABOVE_ZERO))
        if len(rivals) == 1:
            return best
        # rivals ascend, so argmax's first maximum is the lowest index of an exact tie
        return int(rivals[np.argmax(self._exact_nearest_sq(rivals))])

    def _exact_nearest_sq(self, points):
        """float64 squared distances [m] of `points` to their nearest center, brought up to date."""
        behind = self._folded[points]  # [m]
        for done in np.unique(behind[behind < len(self.center_ids)]):
            self._fold(points[behind == done], done)
        self._folded[points] = len(self.center_ids)
        return self._exact_sq[points]

    def _fold(self, points, done):
        """Lower `_exact_sq[points]` to the distances to the centers from the `done`-th on that may be the nearest."""
        centers = np.asarray(self.center_ids[done:])  # [t]
        others = self._center_rows.since(done).T  # [d, t]
        others_sq = self.sq_norms[torch.as_tensor(centers, device=self.sq_norms.device)]  # [t]
        step = max(1, CHUNK_ELEMENTS // max(len(centers), self.points.shape[0]))  # bounds [r, t] and [d, r]
        for start in range(0, len(points), step):
            rows = points[start : start + step]
            approx = self._approx_sq(rows, others, others_sq)  # [r, t]
            # Only a center within twice the allowance of the closest in float32 may be the nearest.
            pair_rows, pair_cols = _indices_at_most(approx.sub_(approx.amin(dim=1, keepdim=True)), 2 * self.slack)
            exact = _sq_differences(self.source, rows[pair_rows], centers[pair_cols])  # [pairs]
            np.minimum.at(self._exact_sq, rows[pair_rows], exact)


class _GrowingRows:
    """float32 rows appended in blocks to a [capacity, d] buffer that doubles when full."""

    def __init__(self, dim, device):
        self.buffer = torch.empty(16, dim, dtype=torch.float32, device=device)  # [capacity, d]
        self.size = 0

    def extend(self, rows):
        """Append rows [m, d]."""
        need = self.size + len(rows)
        if need > len(self.buffer):
            grown = self.buffer.new_empty(2 * need, self.buffer.shape[1])
            grown[: self.size] = self.buffer[: self.size]
            self.buffer = grown
        self.buffer[self.size : need] = rows
        self.size = need

    def since(self, start):
        """The rows from the `start`-th on, [size - start, d] (a view)."""
        return self.buffer[start : self.size]


def _host_array(features):
    """A numpy array of `features` (a tensor, an array or nested lists), without copying a CPU tensor or an array."""
    if isinstance(features, torch.Tensor):
        return features.detach().cpu().numpy()
    return np.asarray(features)  # read-only stays read-only, where torch.as_tensor would hand a writable view back


def _working_points(source, device):
    """(points [d, N] float32 whose products give the distances, their squared norms [N], scale_sq).

    `source` [N, d] itself, transposed, when it is float32 on the CPU, a view torch can
    take, near enough the origin (OFFSET_RATIO) and in range (IN_PLACE_SQ_NORMS); else
    a copy on `device` centred on the mean and scaled by a power of two, whose square
    is scale_sq.
    """
    mean = source.mean(axis=0, dtype=np.float64)  # [d]
    viewable = (source.dtype == np.float32 and source.flags.writeable
                and all(stride > 0 and stride % source.itemsize == 0 for stride in source.strides))
    if torch.device(device).type == "cpu" and viewable:
        points = torch.from_numpy(source).T  # [d, N], a view
        sq_norms = torch.linalg.vector_norm(points, dim=0).square_()  # [N]
        offset = float(mean @ mean)  # |m|^2; the mean of |x - m|^2 is that of |x|^2 less |m|^2
        near = offset <= OFFSET_RATIO * (float(sq_norms.sum(dtype=torch.float64)) / len(source) - offset)
        if near and IN_PLACE_SQ_NORMS[0] <= float(sq_norms.max()) <= IN_PLACE_SQ_NORMS[1]:
            return points, sq_norms, 1.0
    # The largest |x - m| over the coordinates, in float64 from the columns' extremes (no [N, d] temporary)
    largest = max(np.max(source.max(axis=0) - mean), np.max(mean - source.min(axis=0)))
    if not math.isfinite(largest):
        raise ValueError("features must be finite")
    exponent = math.frexp(largest)[1]  # largest = f 2^exponent, f in [0.5, 1); 0 for all zeros
    points = _centred_float32(source, mean, 2.0**-exponent, device)
    return points, torch.linalg.vector_norm(points, dim=0).square_(), 4.0**-exponent


def _centred_float32(source, mean, scale, device):
    """[d, N] float32 copy of `source` [N, d] on `device`, less its `mean` [d], times `scale`, in float64 before
    the cast (a power of two: exact there, and the cast then neither overflows nor flushes to zero).

    In row blocks, so that no float64 copy of the whole matrix is ever made.
    """
    points = torch.empty(source.shape[::-1], dtype=torch.float32, device=device)  # [d, N]
    rows = max(1, FLOAT64_ELEMENTS // source.shape[1])
    for start in range(0, len(source), rows):
        block = np.subtract(source[start : start + rows], mean, dtype=np.float64)  # [r, d]
        block = (block * scale).astype(np.float32)
        points[:, start : start + rows] = torch.from_numpy(block).to(device).T.contiguous()
    return points


def _sq_differences(source, rows, cols):
    """float64 sum((x - y)^2) [P] for the pairs of points (rows[p], cols[p]), in bounded blocks."""
    out = np.empty(len(rows))  # [P]
    step = max(1, FLOAT64_ELEMENTS // source.shape[1])
    for start in range(0, len(rows), step):
        pairs = slice(start, start + step)
        diff = np.subtract(source[rows[pairs]], source[cols[pairs]], dtype=np.float64)  # [p, d]
        out[pairs] = np.square(diff, out=diff).sum(axis=1)
    return out


# An argmax and a threshold or two per pick: on the CPU numpy does each in 4-14 us on
# 50,000 floats where torch takes 100-140 us, a tenth of a pick's whole budget.
def _argmax(values):
    return int(values.numpy().argmax() if values.device.type == "cpu" else torch.argmax(values))


def _indices_at_least(values, threshold):
    """Indices of a 1-D tensor's entries >= threshold, as a numpy array."""
    if values.device.type == "cpu":
        return np.flatnonzero(values.numpy() >= threshold)
    return torch.nonzero(values >= threshold).flatten().cpu().numpy()


def _indices_at_most(values, threshold):
    """(rows, cols) numpy arrays of a 2-D tensor's entries <= threshold."""
    if values.device.type == "cpu":
        return np.nonzero(values.numpy() <= threshold)
    rows, cols = torch.nonzero(values <= threshold).unbind(1)
    return rows.cpu().numpy(), cols.cpu().numpy()
