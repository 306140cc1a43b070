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
    model, optimizer, scheduler, scaler   state dicts, for --resume
"""
import torch

from lib.errors import UserError
from lib.fileio import atomic_write
from lib.models import build_model

FORMAT = "al-seg-checkpoint"
VERSION = 1


def save_checkpoint(path, checkpoint):
    with atomic_write(path) as handle:
        torch.save({"format": FORMAT, "version": VERSION, **checkpoint}, handle)


def read_torch_file(path, what="checkpoint"):
    """torch.load with tensors only (no code runs); a missing or unreadable file is a UserError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except Exception as err:  # torch raises a zoo of types for truncated or foreign files
        raise UserError(f"{path}: cannot read {what} ({err.__class__.__name__}: {str(err).splitlines()[0]})") from None


def is_checkpoint(obj):
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def check_version(checkpoint, path):
    if checkpoint.get("version") != VERSION:
        raise UserError(f"{path}: unknown checkpoint version {checkpoint.get('version')!r}")
    return checkpoint


def load_checkpoint(path):
    checkpoint = read_torch_file(path)
    if not is_checkpoint(checkpoint):
        raise UserError(f"{path}: not a checkpoint of this toolkit (no \"format\": \"{FORMAT}\")")
    return check_version(checkpoint, path)


def model_from_checkpoint(checkpoint, device):
    """The trained network in eval mode on `device`."""
    model = build_model(checkpoint["model_args"])
    model.load_state_dict(checkpoint["model"])
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
