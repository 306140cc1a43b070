"""Benchmark of the batch selection and per-pixel scoring code against plain references.

Measures, in one process (plus one fresh subprocess per peak-memory figure):

1. k-center greedy (lib.acquire.kcenter) against a float64 numpy loop that keeps a
   running min of squared distances with scipy's cdist: time, speedup, and whether
   both pick exactly the same points from the same first center.
2. K-Means++ seeding (lib.acquire.kmeanspp) against a float64 numpy D^2 loop: time.
3. k-center greedy on 20,000 copies of 81 distinct points against the loop of 1.: once
   every distance left is 0 all points tie, and each pick must still be one pass.
4. Both at large scale: time and peak extra memory (the peak resident size during
   the call minus the size before it, features already allocated, in a fresh
   process; Linux /proc), and on a GPU, when there is one, time.
5. BALD per-pixel scores (lib.acquire.scores.pixel_mutual_information: encoder once,
   decoder T times) on DeepLabv3+ (MobileNetV2 unless --arch) against T full forward
   passes with dropout active; plus one plain entropy pass for scale. Reusing the
   encoder can at best save its share of a pass, which is printed as a bound.

Features are a 20-cluster Gaussian mixture in float32 (but for 3.). Each target is printed with
the measured figure and "ok" or "MISSED"; nothing fails the run.

    .venv/bin/python bench/bench_select.py            # full run, a few minutes on a CPU
    .venv/bin/python bench/bench_select.py --quick    # smoke test, seconds
    .venv/bin/python bench/bench_select.py --parts bald --arch resnet50
"""
import functools
import itertools
import multiprocessing
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.distance import cdist
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_parser, machine_line, parse_with_quick, print_row, timed  # noqa: E402

from lib.acquire.kcenter import k_center_greedy  # noqa: E402
from lib.acquire.kmeanspp import kmeans_pp_seeding  # noqa: E402
from lib.acquire.scores import pixel_entropy, pixel_mutual_information  # noqa: E402
from lib.models import ARCHS, build_model  # noqa: E402

KCENTER_SECONDS = 2.5
KCENTER_SPEEDUP = 7.0
# All points tied at 0: a pick must stay one pass over the points (1,000 picks took 170 s,
# on one thread, when every tie was re-checked in float64 against every center).
DUPLICATES_MS_PER_PICK = 1.0
KMEANSPP_SECONDS = 4.0
GPU_SECONDS = 1.0
EXTRA_MEMORY_FACTOR = 3.0  # "O(N) extra": below this many copies of the feature matrix
BALD_SPEEDUP = 3.0
BALD_AGREEMENT = 1e-4  # same seed, same dropout masks: only float rounding may differ

CLUSTERS = 20
DUPLICATES = 20_000  # points of the duplicates row, copies of the 81 points of {0, 1, 2}^4
MIB = 1 << 20

QUICK = {
    "n": 5000, "k": 100, "n_large": 20000, "k_large": 200, "height": 128, "width": 256, "samples": 5, "repeats": 1,
}

ROW = "{:<34} {:>11} {:>11} {:>8}  {:<14} {:<6} {}"
PARTS = ("k-center", "k-means++", "duplicates", "large", "gpu", "bald")


# ---------------------------------------------------------------------------------
# Data and timing.
# ---------------------------------------------------------------------------------


def gaussian_mixture(n, d, seed):
    """[n, d] float32 points around CLUSTERS random means, unit noise."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((CLUSTERS, d), dtype=np.float32) * 3
    labels = rng.integers(CLUSTERS, size=n)
    points = rng.standard_normal((n, d), dtype=np.float32)
    # In chunks: a whole means[labels] temporary would double the peak memory and
    # hide the extra memory of the code under test behind the data generation's.
    for start in range(0, n, 1 << 14):
        points[start:start + (1 << 14)] += means[labels[start:start + (1 << 14)]]
    return points


def copies_of_few_points(n, seed):
    """[n, 4] float32 copies of the 81 points of {0, 1, 2}^4, drawn uniformly."""
    lattice = np.array(list(itertools.product(range(3), repeat=4)), dtype=np.float32)  # [81, 4]
    return lattice[np.random.default_rng(seed).integers(len(lattice), size=n)]


def median_seconds(fn, repeats):
    """Median of `repeats` timed calls after one untimed warm-up (lazy allocations, kernel choice)."""
    fn()
    return statistics.median(timed(fn)[1] for _ in range(repeats))


# ---------------------------------------------------------------------------------
# Reference implementations: plain float64, one cdist row per pick.
# ---------------------------------------------------------------------------------


def reference_k_center(features, k, first):
    """k picks after `first`, farthest from the nearest center each time, first index on ties."""
    points = np.asarray(features, dtype=np.float64)
    min_sq = np.full(len(points), np.inf)
    picks, center = [], first
    for _ in range(k):
        np.minimum(min_sq, cdist(points[center:center + 1], points, "sqeuclidean")[0], out=min_sq)
        min_sq[center] = -1  # below every distance: never picked again
        center = int(np.argmax(min_sq))
        picks.append(center)
    return picks


def reference_kmeans_pp(features, k, seed):
    """Plain D^2 sampling: each pick drawn with probability proportional to min_sq."""
    points = np.asarray(features, dtype=np.float64)
    rng = np.random.default_rng(seed)
    min_sq = np.full(len(points), np.inf)
    picks = [int(rng.integers(len(points)))]
    while len(picks) < k:
        center = picks[-1]
        np.minimum(min_sq, cdist(points[center:center + 1], points, "sqeuclidean")[0], out=min_sq)
        min_sq[center] = 0  # zero weight: never drawn again
        cumulative = np.cumsum(min_sq)
        pick = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
        if pick == len(points):  # the draw rounded up to the total
            pick = int(np.searchsorted(cumulative, cumulative[-1]))
        picks.append(pick)
    return picks


def entropy(probs):
    return -(probs * probs.clamp_min(1e-12).log()).sum(dim=1)


def reference_mutual_information(model, images, samples):
    """BALD from `samples` full forward passes, dropout sampling, BatchNorm in eval mode."""
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    for m in dropouts:
        m.train()
    try:
        mean_probs = mean_entropy = 0
        for _ in range(samples):
            probs = model(images).float().softmax(dim=1)
            mean_probs = mean_probs + probs / samples
            mean_entropy = mean_entropy + entropy(probs) / samples
    finally:
        for m in dropouts:
            m.eval()
    return (entropy(mean_probs) - mean_entropy).clamp_min(0)


# ---------------------------------------------------------------------------------
# Output.
# ---------------------------------------------------------------------------------


row = functools.partial(print_row, ROW)


def seconds(s):
    return f"{s:.3f} s" if s < 10 else f"{s:.1f} s"


def times(r):
    return f"{r:.2f}x"


def first_mismatch(a, b):
    """Position of the first pick where two equally long pick lists differ, None if nowhere."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)


# ---------------------------------------------------------------------------------
# Measurements.
# ---------------------------------------------------------------------------------


def time_k_center(features, k, seed):
    """(our picks, seconds, the reference's picks, seconds) from the same first center."""
    first = int(np.random.default_rng(seed).integers(len(features)))
    ours, t_ours = timed(k_center_greedy, features, k, centers=[first])
    ref, t_ref = timed(reference_k_center, features, k, first)
    return ours, t_ours, ref, t_ref


def picks_row(ours, ref):
    at = first_mismatch(ours, ref)
    note = "" if at is None else f"first mismatch at pick {at}: ours {ours[at]}, reference {ref[at]}"
    row("  picks identical", "yes" if at is None else "no", "", "", "identical", at is None, note)


def bench_k_center(features, k, seed):
    ours, t_ours, ref, t_ref = time_k_center(features, k, seed)
    n, d = features.shape
    row(f"k-center {n}x{d} k={k}", seconds(t_ours), seconds(t_ref), times(t_ref / t_ours),
        f"<= {KCENTER_SECONDS} s", t_ours <= KCENTER_SECONDS)
    row("  speedup", "", "", times(t_ref / t_ours), f">= {KCENTER_SPEEDUP:g}x", t_ref / t_ours >= KCENTER_SPEEDUP)
    picks_row(ours, ref)


def bench_duplicates(k, seed):
    ours, t_ours, ref, t_ref = time_k_center(copies_of_few_points(DUPLICATES, seed), k, seed)
    per_pick = 1000 * t_ours / k
    row(f"k-center {DUPLICATES} points, 81 distinct", seconds(t_ours), seconds(t_ref), times(t_ref / t_ours),
        f"<= {DUPLICATES_MS_PER_PICK:g} ms/pick", per_pick <= DUPLICATES_MS_PER_PICK,
        f"k={k}: {per_pick:.2f} ms a pick")
    picks_row(ours, ref)


def bench_kmeans_pp(features, k, seed):
    _, t_ours = timed(kmeans_pp_seeding, features, k, seed=seed)
    _, t_ref = timed(reference_kmeans_pp, features, k, seed)
    n, d = features.shape
    row(f"k-means++ {n}x{d} k={k}", seconds(t_ours), seconds(t_ref), times(t_ref / t_ours),
        f"<= {KMEANSPP_SECONDS} s", t_ours <= KMEANSPP_SECONDS)


def _status_mib(field):
    """A memory figure of this process from /proc/self/status (kB there), in MiB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":")) / 1024


def peak_tracker():
    """A function giving the peak resident memory (MiB) added since this call.

    Not ru_maxrss: a spawned child inherits its parent's peak through vfork + exec, so
    its ru_maxrss starts at the parent's high-water mark and hides anything smaller.
    The kernel's per-process mark, VmHWM, can be reset to the current size instead.
    """
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    before = _status_mib("VmRSS")
    return lambda: _status_mib("VmHWM") - before


def _time_and_peak(method, n, d, k, seed):
    """In a fresh process: (seconds, extra peak MiB, features MiB) of one call."""
    select = {"k-center": k_center_greedy, "k-means++": kmeans_pp_seeding}[method]
    select(gaussian_mixture(64, d, seed), 2, seed=seed)  # torch's one-time set-up, outside the figure
    features = gaussian_mixture(n, d, seed)
    extra = peak_tracker()
    _, elapsed = timed(select, features, k, seed=seed)
    return elapsed, extra(), features.nbytes / MIB


def bench_large(n, d, k, seed):
    spawn = multiprocessing.get_context("spawn")
    for method in ("k-center", "k-means++"):
        # A fresh process per call, holding nothing but the features and torch.
        with spawn.Pool(1) as pool:
            elapsed, extra, size = pool.apply(_time_and_peak, (method, n, d, k, seed))
        small = extra < EXTRA_MEMORY_FACTOR * size
        row(f"{method} {n}x{d} k={k}", seconds(elapsed))
        row("  peak extra memory", f"{extra:.0f} MiB", f"{size:.0f} MiB", times(extra / size),
            f"< {EXTRA_MEMORY_FACTOR:g}x features", small,
            f"O(N) extra: {'yes' if small else 'no'} (N*N*4 B = {n * n * 4 / MIB:.0f} MiB)")


def bench_gpu(n, d, k, seed):
    if not torch.cuda.is_available():
        row(f"GPU {n}x{d} k={k}", note="skipped: torch.cuda.is_available() is False")
        return
    features = gaussian_mixture(n, d, seed)
    for method, select in (("k-center", k_center_greedy), ("k-means++", kmeans_pp_seeding)):
        select(features[:1000], 10, seed=seed, device="cuda")  # CUDA context and kernels, outside the figure
        torch.cuda.synchronize()
        _, elapsed = timed(select, features, k, seed=seed, device="cuda")
        torch.cuda.synchronize()
        row(f"{method} cuda {n}x{d} k={k}", seconds(elapsed), target=f"< {GPU_SECONDS} s", ok=elapsed < GPU_SECONDS,
            note=torch.cuda.get_device_name())


@torch.no_grad()
def bench_bald(arch, height, width, samples, repeats, seed):
    torch.manual_seed(seed)
    model = build_model({"arch": arch, "num_classes": 19, "output_stride": 16, "mc_dropout": True}).eval()
    images = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(seed))

    t_ours = median_seconds(lambda: pixel_mutual_information(model, images, samples), repeats)
    t_ref = median_seconds(lambda: reference_mutual_information(model, images, samples), repeats)
    name = f"BALD {arch} 1x3x{height}x{width} T={samples}"
    row(name, seconds(t_ours), seconds(t_ref), times(t_ref / t_ours), f">= {BALD_SPEEDUP:g}x",
        t_ref / t_ours >= BALD_SPEEDUP)

    # The encoder has no dropout, so equal seeds draw equal masks in both.
    torch.manual_seed(seed)
    ours = pixel_mutual_information(model, images, samples)
    torch.manual_seed(seed)
    ref = reference_mutual_information(model, images, samples)
    diff = float((ours - ref).abs().max())
    row("  same-seed max |MI diff|", f"{diff:.1e}", target=f"<= {BALD_AGREEMENT:g}", ok=diff <= BALD_AGREEMENT)

    # Reusing the encoder can at best remove its share of a forward pass.
    low, aspp_out = model.encode(images)
    t_encode = median_seconds(lambda: model.encode(images), repeats)
    t_decode = median_seconds(lambda: model.decode(low, aspp_out, images.shape[-2:]), repeats)
    share = t_encode / (t_encode + t_decode)
    row("  encode | decode, one pass", seconds(t_encode), seconds(t_decode),
        note=f"encoder share {share:.0%}: speedup bound {1 / (1 - share):.2f}x as T grows")

    t_entropy = median_seconds(lambda: pixel_entropy(model, images), repeats)
    row(f"entropy 1x3x{height}x{width}", seconds(t_entropy), note="one forward pass, for scale")


# ---------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = bench_parser(__doc__, QUICK)
    parser.add_argument("--n", type=int, default=50_000, help="points for the comparison with the references")
    parser.add_argument("--d", type=int, default=256, help="feature dimension, all feature benchmarks")
    parser.add_argument("--k", type=int, default=1_000, help="picks for the comparison with the references")
    parser.add_argument("--n-large", type=int, default=200_000, help="points for the large-scale and GPU runs")
    parser.add_argument("--k-large", type=int, default=2_000, help="picks for the large-scale and GPU runs")
    parser.add_argument("--arch", default="mobilenet_v2", choices=ARCHS, help="DeepLabv3+ backbone for BALD")
    parser.add_argument("--height", type=int, default=256, help="image height for BALD")
    parser.add_argument("--width", type=int, default=512, help="image width for BALD")
    parser.add_argument("--samples", type=int, default=20, help="BALD MC-dropout samples T")
    parser.add_argument("--repeats", type=int, default=5, help="timed BALD / entropy calls, median reported")
    parser.add_argument("--seed", type=int, default=0, help="data, first center and dropout seed")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure")
    return parse_with_quick(parser, QUICK, argv)


def main(argv=None):
    args = parse_args(argv)
    print(machine_line(), flush=True)
    print(ROW.format("measurement", "ours", "reference", "ratio", "target", "result", "").rstrip())
    if {"k-center", "k-means++"} & set(args.parts):
        features = gaussian_mixture(args.n, args.d, args.seed)
        if "k-center" in args.parts:
            bench_k_center(features, args.k, args.seed)
        if "k-means++" in args.parts:
            bench_kmeans_pp(features, args.k, args.seed)
        del features
    if "duplicates" in args.parts:
        bench_duplicates(args.k, args.seed)
    if "large" in args.parts:
        bench_large(args.n_large, args.d, args.k_large, args.seed)
    if "gpu" in args.parts:
        bench_gpu(args.n_large, args.d, args.k_large, args.seed)
    if "bald" in args.parts:
        bench_bald(args.arch, args.height, args.width, args.samples, args.repeats, args.seed)
    print(f"load average {os.getloadavg()[0]:.2f} at the end", flush=True)


if __name__ == "__main__":
    main()
