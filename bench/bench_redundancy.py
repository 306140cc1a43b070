"""Benchmark of the pool's redundancy score (lib.redundancy.measure_redundancy).

Measures, in one process, on random Gaussian features (float32, seeded numpy):

1. n-small x d (10,000 x 256): our time against a plain reference that differs only in
   the neighbour search, torch.cdist of the queries to the whole pool and a top-k,
   and whether both give the same score.
2. n x d (100,000 x 256, a large pool's pooled ASPP features): our time and items/s.

Each target is printed with the measured figure and "ok" or "MISSED"; nothing fails
the run. Other processes on the cores distort every time, so the load is printed.

    .venv/bin/python bench/bench_redundancy.py            # full run, seconds on a CPU
    .venv/bin/python bench/bench_redundancy.py --quick    # smoke test
    .venv/bin/python bench/bench_redundancy.py --device cuda
"""
import functools
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_parser, machine_line, parse_with_quick, print_row, timed  # noqa: E402
from lib.redundancy import closeness, measure_redundancy, typical_distance  # noqa: E402

LARGE_SECONDS = 5.0  # 100,000 x 256 on a CPU: a select.py cycle should not wait on it
SCORE_AGREEMENT = 1e-5  # the same neighbours: only float rounding may differ

QUICK = {"n": 20_000, "n_small": 2_000}
ROW = "{:<34} {:>10} {:>10} {:>8}  {:<10} {:<6}"


def random_features(n, d, seed):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32))


def reference_score(features, neighbours, queries, seed, device):
    """The score with the same samples, its neighbours from a whole [Q, N] torch.cdist and a top-k."""
    points = torch.nn.functional.normalize(features.to(device), dim=1)  # [N, d]
    rng = np.random.default_rng(seed)
    typical = typical_distance(points, rng)
    n = len(points)
    rows = np.arange(n) if n <= queries else np.sort(rng.choice(n, queries, replace=False))  # [Q]
    distances = torch.cdist(points[torch.from_numpy(rows).to(device)], points)  # [Q, N]
    nearest = distances.topk(neighbours + 1, dim=1, largest=False).values[:, 1:]  # [Q, K], itself left out
    return float(closeness(nearest, typical).mean(dim=1).mean())


row = functools.partial(print_row, ROW)


def parse_args(argv=None):
    parser = bench_parser(__doc__, QUICK)
    parser.add_argument("--n", type=int, default=100_000, help="items of the large pool")
    parser.add_argument("--n-small", type=int, default=10_000, help="items of the pool compared with the reference")
    parser.add_argument("--d", type=int, default=256, help="feature dimension")
    parser.add_argument("--neighbours", type=int, default=20, help="K")
    parser.add_argument("--queries", type=int, default=2000, help="items whose neighbours are searched")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--seed", type=int, default=0, help="data and sample seed")
    return parse_with_quick(parser, QUICK, argv)


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    print(machine_line(), flush=True)
    print(ROW.format("measurement", "ours", "reference", "speedup", "target", "result").rstrip())
    measure = dict(neighbours=args.neighbours, queries=args.queries, seed=args.seed, device=device)
    measure_redundancy(random_features(1000, args.d, args.seed + 1), **measure)  # one-time set-up
    small = random_features(args.n_small, args.d, args.seed)
    ours, ours_s = timed(measure_redundancy, small, **measure)
    reference, reference_s = timed(reference_score, small, args.neighbours, args.queries, args.seed, device)
    row(f"{args.n_small:,} x {args.d}: seconds", f"{ours_s:.3f} s", f"{reference_s:.3f} s",
        f"{reference_s / ours_s:.2f}x")
    agree = abs(ours.score - reference) <= SCORE_AGREEMENT
    row(f"{args.n_small:,} x {args.d}: score", f"{ours.score:.6f}", f"{reference:.6f}", "-",
        f"|diff| <= {SCORE_AGREEMENT:g}", agree)
    large = random_features(args.n, args.d, args.seed)
    result, large_s = timed(measure_redundancy, large, **measure)
    row(f"{args.n:,} x {args.d}: seconds", f"{large_s:.2f} s", "-", "-", f"<= {LARGE_SECONDS:g} s",
        large_s <= LARGE_SECONDS)
    row(f"{args.n:,} x {args.d}: items/s", f"{args.n / large_s:,.0f}")
    row(f"{args.n:,} x {args.d}: score", f"{result.score:.4f}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end", flush=True)


if __name__ == "__main__":
    main()
