"""Self-describing checkpoints: select.py and evaluate.py rebuild a model from the file alone.

A checkpoint is a plain dict (torchvision references' shape, nanoGPT's model_args):

    format, version      "al-seg-checkpoint", 1
    model_args           {"arch", "num_classes", "output_stride", "mc_dropout"[, "embed_dim"]} -> lib.models.build_model
    preprocess           {"mean", "std"} the input normalisation the weights expect
    class_names          names of the classes, index = class id
    dataset              {"name", "split"} the pool the model was trained on
    index                {"path", "sha256", "labeled" (items), "labeled_images", "labeled_fraction"
                         (of the pool's items), "labeled_pixel_fraction", "pool_size", "unit", "cycle"}
    train_args           every train.py flag, for provenance and resume checks
    epoch, epochs        last finished epoch (1-based) and the planned number
    model                the weights (state dict)
    optimizer, scheduler, scaler   their state dicts, in train.py's <out>.resume only (for --resume)
"""
import math

import torch

from lib.errors import UserError, describe_error
from lib.fileio import atomic_write, is_number
from lib.models import model_with_weights

FORMAT = "al-seg-checkpoint"
VERSION = 1
# What select.py, evaluate.py and a teacher read of a checkpoint: key -> (type, what it must be).
REQUIRED = {
    "model_args": (dict, "an object"), "preprocess": (dict, "an object"), "class_names": (list, "a list"),
    "dataset": (dict, "an object"), "index": (dict, "an object"), "model": (dict, "a state dict"),
}
# The "index" entry's numbers that evaluate.py copies into its metrics.
INDEX_NUMBERS = ("cycle", "labeled", "pool_size", "labeled_fraction")


def save_checkpoint(path, checkpoint):
    with atomic_write(path) as handle:
        torch.save({"format": FORMAT, "version": VERSION, **checkpoint}, handle)


def read_torch_file(path, what="checkpoint"):
    """torch.load with tensors only (no code runs); a missing or unreadable file is a UserError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except Exception as err:  # torch raises a zoo of types for truncated, empty or foreign files
        raise UserError(f"{path}: cannot read {what} ({describe_error(err)})") from None


def is_checkpoint(obj):
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def check_checkpoint(checkpoint, path):
    """A checkpoint of ours, checked to hold what the scripts read from it; a UserError names what is wrong."""
    if checkpoint.get("version") != VERSION:
        raise UserError(f"{path}: unknown checkpoint version {checkpoint.get('version')!r}")
    for key, (kind, described) in REQUIRED.items():
        if not isinstance(checkpoint.get(key), kind):
            raise UserError(f"{path}: damaged checkpoint: {key!r} is missing or not {described}")
    names = checkpoint["class_names"]
    if not all(isinstance(name, str) for name in names) or len(names) != checkpoint["model_args"].get("num_classes"):
        raise UserError(f"{path}: damaged checkpoint: 'class_names' is not one name per class of its model_args")
    preprocess = checkpoint["preprocess"]
    for key, low in (("mean", -math.inf), ("std", 0)):
        values = preprocess.get(key)
        if not (isinstance(values, list) and len(values) == 3
                and all(_is_finite_number(v) and v > low for v in values)):
            raise UserError(f"{path}: damaged checkpoint: preprocess {key!r} is not three finite numbers"
                            + (" above 0" if low == 0 else ""))
    dataset = checkpoint["dataset"]
    if not (isinstance(dataset.get("name"), str) and isinstance(dataset.get("split"), str)):
        raise UserError(f"{path}: damaged checkpoint: 'dataset' lacks its name or split")
    bad = next((key for key in INDEX_NUMBERS if not _is_finite_number(checkpoint["index"].get(key))), None)
    if bad is not None:
        raise UserError(f"{path}: damaged checkpoint: index {bad!r} is missing or not a number")
    return checkpoint


def _is_finite_number(value):
    """NaN copied from here into metrics.json would not be JSON."""
    return is_number(value) and math.isfinite(value)


def load_checkpoint(path):
    checkpoint = read_torch_file(path)
    if not is_checkpoint(checkpoint):
        raise UserError(f"{path}: not a checkpoint of this toolkit (no \"format\": \"{FORMAT}\")")
    return check_checkpoint(checkpoint, path)


def model_from_checkpoint(checkpoint, device, path):
    """The trained network of the checkpoint read from `path`, in eval mode on `device`."""
    model = model_with_weights(checkpoint["model_args"], checkpoint["model"], path,
                               f"the weights of its model_args {checkpoint['model_args']}")
    return model.to(device).eval()


def check_dataset(checkpoint, path, dataset):
    """A model trained on one label set must not score or be evaluated on another."""
    if checkpoint["class_names"] != dataset.class_names:
        raise UserError(
            f"{path}: checkpoint was trained on other classes ({describe_classes(checkpoint['class_names'])}) "
            f"than those of this {dataset.name!r} dataset ({describe_classes(dataset.class_names)})"
        )


def describe_classes(names, shown=4):
    """`8: sky, building, road, sidewalk, ...`"""
    return f"{len(names)}: {', '.join(names[:shown])}{', ...' if len(names) > shown else ''}"
