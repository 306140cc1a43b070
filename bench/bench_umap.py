"""Benchmark of lib.umap (UMAP on torch) against its targets, and against umap-learn.

Measures on 20-cluster Gaussian mixtures laid out like sklearn's make_blobs (centres
uniform in [-10, 10]^d, cluster std 1.0, equal clusters, seeded numpy), float32:

1. n x d (10,000 x 256): trustworthiness (k=10, bench/trustworthiness.py) of our
   embedding, and our fit time twice: warm, in this process after a small fit has
   loaded everything, and in a fresh process: a `python -c` subprocess that imports
   torch and our module, loads the saved features and fits, timed from outside.
2. n-large x d (50,000 x 256): fit time, warm.
3. transform of n-new (1,000) new points of the same mixture onto that fit: time,
   and the share that lands nearest a training point of its own cluster.
4. umap-learn on the same data, when it is importable (--reference-path appends a
   folder to sys.path, e.g. one made by `pip install --target`): its
   trustworthiness and the same times. It runs with its defaults (random_state
   None: parallel, not reproducible); numba compiles on first use, so its warm
   figures follow a warm-up fit and transform of 5,000 points (NN-descent included).
   Its fresh-process figure includes whatever numba has cached from earlier runs.
   Skipped with --quick.

Each target is printed with the measured figure and "ok" or "MISSED"; nothing fails
the run. Other processes on the cores distort every time (torch's threads wait on
each other), so the load average is printed with them.

    .venv/bin/python bench/bench_umap.py            # full run; umap-learn, when there, takes most of it
    .venv/bin/python bench/bench_umap.py --quick    # smoke test, seconds
    .venv/bin/python bench/bench_umap.py --device cuda   # ours on a GPU; the fresh process starts CUDA too
    .venv/bin/pip install --target /tmp/umap-learn umap-learn==0.5.12   # outside the project's venv
    .venv/bin/python bench/bench_umap.py --reference-path /tmp/umap-learn
"""
import functools
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import bench_parser, machine_line, parse_with_quick, print_row, timed  # noqa: E402
from bench.trustworthiness import trustworthiness  # noqa: E402
from lib.umap import UMAP  # noqa: E402
from lib.umap.neighbors import nearest_neighbors  # noqa: E402

TRUST_TARGET = 0.97
TRUST_K = 10
FRESH_SECONDS = 10.0
LARGE_SECONDS = 30.0

CLUSTERS = 20
CENTRE_BOX = 10.0
WARM_UP_POINTS = 1000
REFERENCE_WARM_UP_POINTS = 5000  # above 4,096 umap-learn switches to NN-descent, compiled on first use

QUICK = {"n": 2000, "n_large": 5000, "n_new": 200}

ROW = "{:<36} {:>10} {:>10} {:>7}  {:<10} {:<6} {}"

OURS_FRESH = """
import sys
sys.path.insert(0, {root!r})
import numpy as np
from lib.umap import UMAP
UMAP(seed={seed}, device={device!r}).fit(np.load({path!r}))
"""

REFERENCE_FRESH = """
import sys
import warnings
warnings.simplefilter("ignore")  # its notes on disconnected graphs and n_jobs, here noise
sys.path.append({reference!r})
import numpy as np
import umap
umap.UMAP().fit(np.load({path!r}))
"""


# ---------------------------------------------------------------------------------
# Data and timing.
# ---------------------------------------------------------------------------------


def gaussian_mixture(n, d, seed):
    """([n, d] float32 points, [n] labels): make_blobs' layout, clusters of equal size in random order."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-CENTRE_BOX, CENTRE_BOX, (CLUSTERS, d))
    labels = rng.permutation(np.arange(n) % CLUSTERS)
    return (centres[labels] + rng.standard_normal((n, d))).astype(np.float32), labels



def fresh_process_seconds(code):
    """Wall time of `python -c code` in a new interpreter, start-up and imports included."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def import_reference(path):
    """umap-learn's module, or None when it cannot be imported."""
    if path:
        sys.path.append(path)  # appended: the project's own numpy and scipy stay first
    try:
        import umap
    except ImportError:
        return None
    return umap


# ---------------------------------------------------------------------------------
# Output.
# ---------------------------------------------------------------------------------


row = functools.partial(print_row, ROW)


def seconds(s):
    return "-" if s is None else (f"{s:.2f} s" if s < 10 else f"{s:.1f} s")


def speedup(ours, reference):
    return "-" if reference is None else f"{reference / ours:.2f}x"


def load_note():
    return f"load {os.getloadavg()[0]:.2f}"


# ---------------------------------------------------------------------------------
# Measurements: each prints our figures beside umap-learn's ("-" without it).
# ---------------------------------------------------------------------------------


class Reference:
    """umap-learn behind the calls the measurements make, with its default parameters."""

    def __init__(self, module, path):
        self.module, self.path = module, path

    def warm_up(self, features):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its notes on disconnected graphs, here noise
            model = self.module.UMAP().fit(features)
            model.transform(features[:10])

    def fit(self, features):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = self.module.UMAP()
            return model, model.fit_transform(features)

    def transform(self, model, features):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return model.transform(features)

    def fresh_seconds(self, path):
        return fresh_process_seconds(REFERENCE_FRESH.format(reference=self.path, path=str(path)))


def fit_ours(features, seed, device):
    model = UMAP(seed=seed, device=device)
    return model, model.fit(features).numpy()


def bench_quality_and_speed(n, d, seed, device, reference, scratch):
    features, _ = gaussian_mixture(n, d, seed)
    (_, embedding), warm = timed(fit_ours, features, seed, device)
    trust = trustworthiness(features, embedding, TRUST_K)
    path = scratch / "features.npy"
    np.save(path, features)
    fresh = fresh_process_seconds(OURS_FRESH.format(root=str(REPO_ROOT), seed=seed, device=device, path=str(path)))
    ref_trust = ref_warm = ref_fresh = None
    if reference:
        (_, ref_embedding), ref_warm = timed(reference.fit, features)
        ref_trust = trustworthiness(features, ref_embedding, TRUST_K)
        ref_fresh = reference.fresh_seconds(path)
    row(f"trustworthiness {n}x{d} k={TRUST_K}", f"{trust:.4f}", "-" if ref_trust is None else f"{ref_trust:.4f}",
        target=f">= {TRUST_TARGET}", ok=trust >= TRUST_TARGET)
    row(f"fit {n}x{d}, warm", seconds(warm), seconds(ref_warm), speedup(warm, ref_warm), note=load_note())
    row(f"fit {n}x{d}, fresh process", seconds(fresh), seconds(ref_fresh), speedup(fresh, ref_fresh),
        f"< {FRESH_SECONDS:g} s", fresh < FRESH_SECONDS, f"python -c: start, imports, load, fit; {load_note()}")


def bench_large(n, n_new, d, seed, device, reference):
    features, labels = gaussian_mixture(n + n_new, d, seed)
    train, new = features[:n], features[n:]
    (model, _), elapsed = timed(fit_ours, train, seed, device)
    placed, t_transform = timed(model.transform, new)
    landed = same_cluster_share(placed.numpy(), model.embedding.cpu().numpy(), labels[:n], labels[n:])
    ref_elapsed = ref_transform = None
    ref_note = ""
    if reference:
        (ref_model, ref_embedding), ref_elapsed = timed(reference.fit, train)
        ref_placed, ref_transform = timed(reference.transform, ref_model, new)
        ref_note = f", umap-learn {same_cluster_share(ref_placed, ref_embedding, labels[:n], labels[n:]):.1%}"
    row(f"fit {n}x{d}, warm", seconds(elapsed), seconds(ref_elapsed), speedup(elapsed, ref_elapsed),
        f"< {LARGE_SECONDS:g} s", elapsed < LARGE_SECONDS, load_note())
    row(f"transform {n_new} new onto {n}", seconds(t_transform), seconds(ref_transform),
        speedup(t_transform, ref_transform), note=f"nearest training point in own cluster: {landed:.1%}{ref_note}")


def same_cluster_share(placed, embedding, train_labels, new_labels):
    """Share of placed points whose nearest training point in the map is of their own cluster."""
    _, nearest = nearest_neighbors(torch.as_tensor(placed), torch.as_tensor(embedding), 1)  # [M, 1]
    return float((train_labels[nearest[:, 0].numpy()] == new_labels).mean())


# ---------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = bench_parser(__doc__, QUICK, ", and no umap-learn")
    parser.add_argument("--n", type=int, default=10_000, help="points for trustworthiness and the fresh-process fit")
    parser.add_argument("--n-large", type=int, default=50_000, help="points for the large fit")
    parser.add_argument("--n-new", type=int, default=1_000, help="new points placed by transform onto the large fit")
    parser.add_argument("--d", type=int, default=256, help="feature dimension")
    parser.add_argument("--seed", type=int, default=0, help="data and UMAP seed")
    parser.add_argument("--device", default="cpu", help="torch device of our UMAP (cuda: MEAL's map on a GPU)")
    parser.add_argument("--reference-path", default=None,
                        help="folder appended to sys.path to import umap-learn from (pip install --target ...)")
    return parse_with_quick(parser, QUICK, argv)


def main(argv=None):
    args = parse_args(argv)
    module = None if args.quick else import_reference(args.reference_path)
    reference = module and Reference(module, args.reference_path)
    print(machine_line(), flush=True)
    if args.quick:
        print("umap-learn: skipped with --quick", flush=True)
    elif reference:
        print(f"umap-learn {module.__version__} from {Path(module.__file__).parent}, its defaults", flush=True)
    else:
        print("umap-learn: not importable, our figures alone. For the comparison install it outside the "
              "project's venv and point at it:\n  .venv/bin/pip install --target /tmp/umap-learn umap-learn==0.5.12\n"
              "  .venv/bin/python bench/bench_umap.py --reference-path /tmp/umap-learn", flush=True)
    print(ROW.format("measurement", "ours", "umap-learn", "speedup", "target", "result", "").rstrip())
    fit_ours(gaussian_mixture(WARM_UP_POINTS, args.d, args.seed + 1)[0], args.seed, args.device)  # one-time set-up
    if reference:
        reference.warm_up(gaussian_mixture(REFERENCE_WARM_UP_POINTS, args.d, args.seed + 1)[0])  # numba compiles
    with tempfile.TemporaryDirectory() as scratch:
        bench_quality_and_speed(args.n, args.d, args.seed, args.device, reference, Path(scratch))
    bench_large(args.n_large, args.n_new, args.d, args.seed, args.device, reference)
    print(f"load average {os.getloadavg()[0]:.2f} at the end", flush=True)


if __name__ == "__main__":
    main()
