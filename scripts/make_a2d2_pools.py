"""Write the redundant pools of "Best Practices in AL for Semantic Segmentation" (lib/redundant_pools.py).

    python scripts/make_a2d2_pools.py --dataset a2d2 --data-root /data/a2d2 --out runs/a2d2_pools
    python scripts/make_a2d2_pools.py --dataset synthetic --data-root data/synthetic --out runs/pools \\
        --size 60 --following 0 2 --aug-copies 2

Pool-Xf, for each X of --following: --size images as runs of a random frame and the X
frames after it in its sequence (runs never overlap nor cross a sequence's end; X = 0
is random frames), written as OUT/pool_<X>f.json, a list of ids of the source split to
pass as `--pool` to select.py and train.py.

Pool-Aug (unless --no-aug): --size / (--aug-copies + 1) random frames and --aug-copies
augmented copies of each (a random crop of 85 % of the area with the image's aspect
ratio, resized back, image bilinear and mask nearest; brightness, contrast and
saturation jittered by up to +-20 %, on the image only), written as a `folder` dataset
OUT/pool_aug/: classes.json (the source's class names, so evaluate.py can score its
models on the source's val split), train/images, train/masks (decoded class ids, 255 =
ignore), train/sequences.json (a copy <id>_aug<k> has its original's sequence and
frame). Train on it with `--dataset folder --data-root OUT/pool_aug`. OUT/pool_aug.json
lists its ids and is written last, so it marks a complete Pool-Aug.

Every pool is drawn from --seed alone; the same arguments give byte-identical files.
OUT is created if missing; an existing OUT must be empty or made by this tool, whose
files it overwrites, and must not overlap the source data. It refuses an
OUT/pool_aug/ that holds images it would not write (another seed, size or source):
a folder dataset mixing two runs is no pool. Every pool is drawn before the first file
is written, so a size the data cannot hold fails without touching OUT.
"""
import argparse
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.cli import non_negative_int, positive_int, script_parser, seed  # noqa: E402
from lib.data import DATASETS, open_dataset  # noqa: E402
from lib.data.folder import IMAGE_SUFFIXES  # noqa: E402
from lib.errors import UserError, run_cli  # noqa: E402
from lib.fileio import atomic_write, write_json  # noqa: E402
from lib.outputs import check_outputs  # noqa: E402
from lib.owned import check_folder, claim_folder  # noqa: E402
from lib.redundant_pools import augmented_copies, consecutive_pool  # noqa: E402
from lib.progress import Progress  # noqa: E402

AUG_STREAM = 1  # the copies' random stream, apart from the draws of the frames
KIND = "redundant pools of scripts/make_a2d2_pools.py"
OWN_NAMES = re.compile(r"pool_\d+f\.json|pool_aug\.json|pool_aug")  # what this tool writes into OUT


def made_before_markers(folder):
    return all(OWN_NAMES.fullmatch(entry.name) for entry in folder.iterdir())


def get_args_parser():
    parser = script_parser(__doc__)
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS), help="layout of the source data")
    parser.add_argument("--data-root", required=True, help="source dataset root folder")
    parser.add_argument("--split", default="train", help="source split the pools are drawn from")
    parser.add_argument("--out", required=True, help="output folder, created if missing")
    parser.add_argument("--size", type=positive_int, default=2640, help="images per pool (the study's 2,640)")
    parser.add_argument("--following", type=non_negative_int, nargs="*", default=[0, 5, 11, 21],
                        help="the X of each Pool-Xf to write; none: only Pool-Aug")
    parser.add_argument("--aug-copies", type=positive_int, default=5, help="augmented copies per frame in Pool-Aug")
    parser.add_argument("--aug", action=argparse.BooleanOptionalAction, default=True, help="write Pool-Aug")
    parser.add_argument("--seed", type=seed, default=0, help="same seed and arguments give identical files")
    return parser


def require_frames(dataset, flag):
    if dataset.frames is None:
        raise UserError(f"--dataset {flag}: the {dataset.split} split has no sequence and frame information, "
                        f"which redundant pools are cut from (folder layout: <split>/sequences.json)")
    return dataset.frames


def aug_originals(frames, size, copies, seed):
    """The random frames of Pool-Aug: size / (copies + 1) of them."""
    if size % (copies + 1):
        raise UserError(f"--size {size} is not a multiple of --aug-copies {copies} + 1")
    return consecutive_pool(frames, size // (copies + 1), 0, seed)


def require_masks(dataset, originals):
    """Checked before any file is written: Pool-Aug copies each mask with its image."""
    unlabeled = [image_id for image_id in originals if not dataset.has_mask(image_id)]
    if unlabeled:
        raise UserError(f"{dataset.name}/{dataset.split}: image {unlabeled[0]!r} has no mask, which Pool-Aug "
                        f"copies with the image (--no-aug: no Pool-Aug)")


def copy_id(image_id, k):
    return f"{image_id}_aug{k}"


def refuse_foreign_images(image_dir, ids):
    """A Pool-Aug folder may only hold the images this run writes; the loader would read any other."""
    wanted = {f"{image_id}.png" for image_id in ids}
    foreign = sorted(p.name for p in image_dir.iterdir()
                     if p.suffix.lower() in IMAGE_SUFFIXES and p.name not in wanted) if image_dir.is_dir() else []
    if foreign:
        raise UserError(f"{image_dir}: holds {len(foreign)} images this run does not write ({foreign[0]}, ...), "
                        f"from other arguments; use another --out or delete {image_dir.parent.parent}")


def check_paths(args):
    """Before any work: OUT may not overlap the source data, nor be a folder some other hand filled."""
    check_outputs({"--data-root": args.data_root}, folders={"--out": args.out})
    check_folder(args.out, KIND, "--out", made_before_markers)


def mkdir(path):
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{path}: cannot create folder ({err.strerror or err})") from None


def save_png(path, array):
    """[H, W, 3] uint8 saves as RGB, [H, W] uint8 as mode "L"; PIL's PNG bytes depend on the pixels only."""
    with atomic_write(path, "wb") as handle:
        Image.fromarray(array).save(handle, format="PNG")


def write_aug_pool(dataset, originals, folder, copies, rng):
    """The `folder` dataset of Pool-Aug: originals and their copies in folder/train; returns its ids."""
    split = folder / "train"
    for sub in ("images", "masks"):
        mkdir(split / sub)
    write_json(folder / "classes.json", dataset.class_names)
    sequences = {}
    progress = Progress(str(folder), len(originals))
    for image_id in originals:
        image, mask = dataset.load_pair(image_id)  # [H, W, 3], [H, W]
        copied = augmented_copies(image, mask, rng, copies)
        frame = dataset.frames[image_id]
        items = [(image_id, image, mask)] + [(copy_id(image_id, k), *pair) for k, pair in enumerate(copied, 1)]
        for item, item_image, item_mask in items:
            save_png(split / "images" / f"{item}.png", item_image)
            save_png(split / "masks" / f"{item}.png", item_mask)
            sequences[item] = {"sequence": frame.sequence, "frame": frame.index}
        progress.update(1, items=copies + 1)
    write_json(split / "sequences.json", sequences)
    return sorted(sequences)


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if not (args.following or args.aug):
        raise UserError("nothing to write: --following lists no pool and --no-aug is given")
    check_paths(args)
    dataset = open_dataset(args.dataset, args.data_root, args.split)
    frames = require_frames(dataset, args.dataset)
    pools = {following: consecutive_pool(frames, args.size, following, args.seed) for following in args.following}
    originals = aug_originals(frames, args.size, args.aug_copies, args.seed) if args.aug else []
    out = Path(args.out)
    if args.aug:
        require_masks(dataset, originals)
        ids = originals + [copy_id(image_id, k) for image_id in originals for k in range(1, args.aug_copies + 1)]
        refuse_foreign_images(out / "pool_aug" / "train" / "images", ids)
    claim_folder(out, KIND, "--out", made_before_markers)
    # The marker goes first and comes back last: a killed run leaves no claim of a complete Pool-Aug.
    if args.aug:
        (out / "pool_aug.json").unlink(missing_ok=True)
    for following, ids in pools.items():
        write_json(out / f"pool_{following}f.json", ids)
        print(f"{out}/pool_{following}f.json: {len(ids)} images of {dataset.name}/{dataset.split}, "
              f"{len(ids) // (following + 1)} x {following + 1} consecutive frames")
    if args.aug:
        rng = np.random.default_rng([args.seed, AUG_STREAM])
        ids = write_aug_pool(dataset, originals, out / "pool_aug", args.aug_copies, rng)
        write_json(out / "pool_aug.json", ids)
        print(f"{out}/pool_aug: {len(originals)} frames of {dataset.name}/{dataset.split} and {args.aug_copies} "
              f"augmented copies of each ({len(ids)} images), --dataset folder --data-root {out}/pool_aug")


if __name__ == "__main__":
    run_cli(main)
