"""Write a pool of procedural street scenes (lib/data/synthetic.py) in the `folder` layout.

    python scripts/make_synthetic.py data/synthetic            # 30 sequences x 4 frames + 40 val
    python scripts/make_synthetic.py data/diverse --frames 1   # no near-duplicates

Re-running with the same parameters is a no-op, so shell scripts can call it unconditionally.
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.cli import positive_int, script_parser, seed  # noqa: E402
from lib.data.synthetic import existing_pool_matches, synthetic_parameters, write_synthetic_pool  # noqa: E402
from lib.errors import run_cli  # noqa: E402


def get_args_parser():
    parser = script_parser(__doc__)
    parser.add_argument("root", help="output folder: created if missing; an existing one must be empty or a pool "
                                     "this script made")
    parser.add_argument("--sequences", type=positive_int, default=30, help="train sequences (independent scenes)")
    parser.add_argument("--frames", type=positive_int, default=4,
                        help="consecutive frames per train sequence: the redundancy knob, 1 = all distinct")
    parser.add_argument("--val-images", type=positive_int, default=40, help="val images, one independent scene each")
    parser.add_argument("--height", type=positive_int, default=96, help="image height in pixels")
    parser.add_argument("--width", type=positive_int, default=128, help="image width in pixels")
    parser.add_argument("--seed", type=seed, default=0, help="same seed and sizes give byte-identical files")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    options = dict(sequences=args.sequences, frames_per_sequence=args.frames, val_images=args.val_images,
                   height=args.height, width=args.width, seed=args.seed)
    parameters = synthetic_parameters(**options)
    if existing_pool_matches(args.root, parameters):
        print(f"{args.root}: synthetic pool with these parameters already exists, skipped")
        return
    start = time.perf_counter()
    write_synthetic_pool(args.root, **options)
    print(f"{args.root}: wrote {args.sequences * args.frames} train images ({args.sequences} sequences x "
          f"{args.frames} frames) and {args.val_images} val images of {args.width}x{args.height} "
          f"in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run_cli(main)
