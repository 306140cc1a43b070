"""The model files select.py and evaluate.py read: our checkpoints, state dicts, torch.export and TorchScript files.

- A checkpoint of this toolkit (lib.checkpoint) describes itself: architecture,
  classes, preprocessing and the labeled set it was trained on.
- A state dict of one of our architectures (`model.state_dict()` saved with
  torch.save): `--arch` (and `--output-stride`) rebuild the network, `--num-classes`
  must match the dataset, `--mean`/`--std` give its input normalisation.
- A TorchScript file (torch.jit.save) whose forward maps a normalised image batch
  [B, 3, H, W] to logits [B, C, h, w], or to a dict holding them under "out" (what
  torchvision's segmentation models return). C must be the dataset's class count;
  logits coarser than the input are upsampled bilinearly. `--input-size` resizes the
  images the model sees, and the logits back. Features for coreset, kmeanspp and
  meal-ft come from the submodule named by `--feature-layer`, averaged over each item:
  it stands for every named feature map of our models (lib.models.FEATURE_MAPS).
  TorchScript modules accept no forward hooks, so the layer is called on the image
  itself: it must be one that reads the image, such as torchvision's `backbone`.
  TorchScript is deprecated by torch; torch.export replaces it.
- A program saved with torch.export.save (`.pt2`, recognised by its content), under
  the same contract, flags and checks as a TorchScript file. It runs in the mode it
  was exported in (torch refuses train() and eval() on it), and `--feature-layer`
  names a submodule of its torch.export.unflatten form, called on the image as well.

Nothing is downloaded. State dicts and checkpoints are read with `weights_only=True`,
so no pickled code runs; TorchScript is compiled code by design, and torch.export.load
unpickles parts of its archive (torch's own warning), so load those two only from
sources you trust, as with any model.
"""
import contextlib
import logging
import warnings
import zipfile
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.export.passes import move_to_device_pass

from lib.checkpoint import check_checkpoint, check_dataset, is_checkpoint, model_from_checkpoint, read_torch_file
from lib.cli import MAX_SIDE, positive_int, size_pair_up_to, three_floats, three_positive_floats
from lib.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from lib.errors import UserError, describe_error
from lib.models import ARCHS, FEATURE_MAPS, OUTPUT_STRIDES, model_with_weights
from lib.text import plural

CHECKPOINT, STATE_DICT, TORCHSCRIPT = "checkpoint of this toolkit", "state dict", "TorchScript model"
EXPORTED = "torch.export program"
# The flags that describe a model file which does not describe itself, and the kinds they apply to.
MODEL_FILE_FLAGS = {
    "arch": (STATE_DICT,), "num_classes": (STATE_DICT,), "output_stride": (STATE_DICT,),
    "mean": (STATE_DICT, TORCHSCRIPT, EXPORTED), "std": (STATE_DICT, TORCHSCRIPT, EXPORTED),
    "input_size": (TORCHSCRIPT, EXPORTED), "feature_layer": (TORCHSCRIPT, EXPORTED),
}


def add_model_file_args(parser):
    group = parser.add_argument_group(
        "models trained elsewhere (--checkpoint given a state dict, a torch.export or a TorchScript file; see README)")
    group.add_argument("--arch", default=None, choices=ARCHS, help="state dict: the architecture it belongs to")
    group.add_argument("--num-classes", type=positive_int, default=None,
                       help="state dict: classes of its head (default: the dataset's; must match it)")
    group.add_argument("--output-stride", type=int, default=None, choices=OUTPUT_STRIDES,
                       help="state dict: backbone output stride it was trained with (default: 16)")
    group.add_argument("--mean", type=three_floats, default=None,
                       help="state dict, torch.export or TorchScript: input normalisation mean R,G,B "
                            "(default: ImageNet's)")
    group.add_argument("--std", type=three_positive_floats, default=None,
                       help="state dict, torch.export or TorchScript: input normalisation std R,G,B "
                            "(default: ImageNet's)")
    group.add_argument("--input-size", type=size_pair_up_to(MAX_SIDE), default=None,
                       help="torch.export or TorchScript: resize images to HxW for the model, logits back "
                            "(default: as they are)")
    group.add_argument("--feature-layer", default=None,
                       help="torch.export or TorchScript: submodule whose output on the image gives coreset, "
                            "kmeanspp and meal-ft "
                            "their features (e.g. backbone)")


@dataclass
class LoadedModel:
    # eval mode, on its device: model(images [B, 3, H, W]) -> logits [B, C, H, W], and the named feature maps of
    # model.feature_maps: model.feature_map(name, images) -> [B, d, h, w]
    model: nn.Module
    preprocess: dict  # {"mean", "std"}: the input normalisation it expects
    kind: str  # CHECKPOINT, STATE_DICT, TORCHSCRIPT or EXPORTED
    model_args: dict | None = None  # our architectures: lib.models.build_model's arguments
    trained_on: dict | None = None  # our checkpoints: their "index" entry
    train_args: dict | None = None  # our checkpoints: the train.py flags they were trained with


class ModelFile:
    """A model file opened far enough to know its kind (and, for our checkpoints, their dataset)."""

    def __init__(self, path):
        self.path = path
        if is_exported_program(path):
            self.kind, self.content = EXPORTED, None
            return
        if is_torchscript(path):
            self.kind, self.content = TORCHSCRIPT, None
            return
        content = read_torch_file(path)
        if is_checkpoint(content):
            self.kind, self.content = CHECKPOINT, check_checkpoint(content, path)
        elif isinstance(content, dict) and content and all(torch.is_tensor(v) for v in content.values()):
            self.kind, self.content = STATE_DICT, content
        else:
            raise UserError(f"{path}: not a checkpoint of this toolkit, a state dict, a torch.export program or a "
                            f"TorchScript file")

    @property
    def dataset_name(self):
        """The dataset a checkpoint of ours was trained on; None for other files."""
        return self.content["dataset"]["name"] if self.kind == CHECKPOINT else None

    def load(self, args, dataset, device):
        """A LoadedModel on `device`; `args` holds the flags of add_model_file_args."""
        misplaced = [flag for flag, kinds in MODEL_FILE_FLAGS.items()
                     if getattr(args, flag) is not None and self.kind not in kinds]
        if misplaced:
            flag = "--" + misplaced[0].replace("_", "-")
            raise UserError(f"{flag}: {self.path} is a {self.kind}, which {flag} does not apply to")
        if self.kind == CHECKPOINT:
            check_dataset(self.content, self.path, dataset)
            model = model_from_checkpoint(self.content, device, self.path)
            train_args = self.content.get("train_args")
            return LoadedModel(model, self.content["preprocess"], CHECKPOINT, self.content["model_args"],
                               trained_on=self.content["index"],
                               train_args=train_args if isinstance(train_args, dict) else None)
        preprocess = {"mean": args.mean or list(IMAGENET_MEAN), "std": args.std or list(IMAGENET_STD)}
        if self.kind == STATE_DICT:
            model_args = state_dict_model_args(args, self.path, dataset)
            described = f"a state dict of --arch {model_args['arch']} with {model_args['num_classes']} classes"
            model = model_with_weights(model_args, self.content, self.path, described)
            return LoadedModel(model.to(device).eval(), preprocess, STATE_DICT, model_args)
        if self.kind == EXPORTED:
            program = load_exported(self.path, device)
            # unflatten gives back the submodules --feature-layer names; the flat module is the one to run
            layers = torch.export.unflatten(program) if args.feature_layer else None
            model = ExportedSegmenter(program.module(), layers, self.path, dataset.num_classes, args.input_size,
                                      args.feature_layer)
        else:
            scripted = load_torchscript(self.path)
            model = ForeignSegmenter(scripted, scripted, self.path, dataset.num_classes, args.input_size,
                                     args.feature_layer)
        return LoadedModel(model.to(device).eval(), preprocess, self.kind)


def is_exported_program(path):
    """torch.export.save writes a zip archive holding <name>/archive_format, which reads "pt2". A `.pt2` file that
    is no zip archive (a truncated copy) counts too, so that its error says what it was meant to be."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/archive_format") and archive.read(name) == b"pt2"
                       for name in archive.namelist())
    except zipfile.BadZipFile:
        return str(path).endswith(".pt2")
    except OSError:
        return False


@contextlib.contextmanager
def quiet_logger(name):
    """torch.export.load logs a traceback before raising on a damaged file: the error says it in one line."""
    logger = logging.getLogger(name)
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled


def load_exported(path, device):
    """The ExportedProgram of `path`, moved to `device` (its graph may name devices as well as its weights)."""
    try:
        with quiet_logger("torch.export"):
            program = torch.export.load(path)
    except Exception as err:  # a damaged archive raises RuntimeError, zip or JSON errors, depending on where
        raise UserError(f"{path}: cannot load torch.export program ({describe_error(err)})") from None
    return move_to_device_pass(program, device)


def is_torchscript(path):
    """torch.jit.save writes a zip archive holding <name>/constants.pkl; torch.save's archives have none."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_torchscript(path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice, not about the file
            return torch.jit.load(path, map_location="cpu")
    except Exception as err:  # a damaged archive raises RuntimeError or zip errors, depending on where
        raise UserError(f"{path}: cannot load TorchScript ({describe_error(err)})") from None


def state_dict_model_args(args, path, dataset):
    if args.arch is None:
        raise UserError(f"{path}: a state dict does not name its architecture: give --arch")
    if args.num_classes is not None and args.num_classes != dataset.num_classes:
        raise UserError(f"--num-classes {args.num_classes}: dataset {dataset.name!r} has {dataset.num_classes} classes")
    return {"arch": args.arch, "num_classes": dataset.num_classes, "output_stride": args.output_stride or 16,
            "mc_dropout": False}


class ForeignSegmenter(nn.Module):
    """A TorchScript or exported segmentation model behind the call the acquisition code makes: logits = model(images).

    `module` runs the model; `layers` holds the submodules --feature-layer names (the same module for TorchScript).
    """

    def __init__(self, module, layers, path, num_classes, input_size=None, feature_layer=None):
        super().__init__()
        self.module = module
        self.path = path
        self.num_classes = num_classes
        self.input_size = input_size
        self.feature_layer = feature_layer and submodule(layers, feature_layer, path)
        # The --feature-layer stands for every named feature map; without it the model has none.
        self.feature_maps = tuple(FEATURE_MAPS) if feature_layer else ()

    def _resized(self, images):
        if self.input_size is None or tuple(images.shape[-2:]) == tuple(self.input_size):
            return images
        return F.interpolate(images, self.input_size, mode="bilinear", align_corners=False)

    def _call(self, module, images, what):
        """The user's compiled code raising is a problem of the file, not a bug of ours: one line naming it."""
        try:
            return module(self._resized(images))
        except Exception as err:
            raise UserError(f"{self.path}: {what} failed on a batch of {list(images.shape)} ({self.reason(err)})") \
                from None

    @staticmethod
    def reason(err):
        # TorchScript's errors give the interpreter's trace first and the model's own exception last.
        return str(err).strip().splitlines()[-1] if isinstance(err, torch.jit.Error) else describe_error(err)

    def forward(self, images):  # [B, 3, H, W] -> [B, C, H, W]
        output = self._call(self.module, images, "the model's forward")
        if isinstance(output, dict):
            if "out" not in output:
                raise UserError(f"{self.path}: the model returns a dict without \"out\" (keys: {', '.join(output)})")
            output = output["out"]
        if not torch.is_tensor(output) or output.ndim != 4 or len(output) != len(images):
            shape = list(output.shape) if torch.is_tensor(output) else type(output).__name__
            raise UserError(f"{self.path}: the model must return logits [B, C, H, W] for "
                            f"{plural(len(images), 'image')}, got {shape}")
        if output.shape[1] != self.num_classes:
            raise UserError(f"{self.path}: the model returns {output.shape[1]} classes but the dataset has "
                            f"{self.num_classes}")
        check_logits(output, self.path)
        if output.shape[-2:] != images.shape[-2:]:
            output = F.interpolate(output, images.shape[-2:], mode="bilinear", align_corners=False)
        return output

    def feature_map(self, name, images):  # [B, 3, H, W] -> [B, d, h, w], the same for every name of feature_maps
        output = self._call(self.feature_layer, images, "--feature-layer")
        if isinstance(output, dict):  # torchvision backbones: {"out": ..., "aux": ...}
            output = output["out"] if "out" in output else list(output.values())[-1]
        if isinstance(output, (tuple, list)) and output:  # several stages: the deepest, in whatever order they come
            output = deepest_stage(output)
        if torch.is_tensor(output) and output.ndim == 2:  # already pooled: one vector per image
            output = output[:, :, None, None]
        if not torch.is_tensor(output) or output.ndim != 4 or len(output) != len(images):
            shape = list(output.shape) if torch.is_tensor(output) else type(output).__name__
            raise UserError(f"--feature-layer: {self.path}'s layer must return features [B, d, h, w] or [B, d], "
                            f"got {shape}")
        return output


def deepest_stage(stages):
    """Of a backbone's [B, d, h, w] stages, the deepest: the least resolution, then the most channels (the last of
    equals). Anything else (not all 4-D tensors): the last, for feature_map's check to name."""
    if not all(torch.is_tensor(stage) and stage.ndim == 4 for stage in stages):
        return stages[-1]
    return min(reversed(stages), key=lambda stage: (stage.shape[-2] * stage.shape[-1], -stage.shape[1]))


class ExportedSegmenter(ForeignSegmenter):
    """A torch.export program runs in the mode it was exported in: torch refuses train() and eval() on it."""

    def train(self, mode=True):
        self.training = mode
        return self

    @staticmethod
    def reason(err):
        # A program exported with fixed sizes checks them on every call ("Guard failed: x.size()[0] == 2").
        fixed = "Guard failed" in str(err)
        return describe_error(err) + ("; export it with dynamic sizes, torch.export.Dim.DYNAMIC (see README)"
                                      if fixed else "")


def check_logits(logits, path):
    """Scores a softmax and an argmax can read: floating point, at least one pixel, finite."""
    if not logits.is_floating_point():
        raise UserError(f"{path}: the model returns {logits.dtype} logits; expected floating-point scores per class")
    if logits.shape[-2] == 0 or logits.shape[-1] == 0:
        raise UserError(f"{path}: the model returns empty maps {list(logits.shape)}")
    if not torch.isfinite(logits).all():
        raise UserError(f"{path}: the model returns NaN or infinite logits (on CUDA, try --no-amp)")


def submodule(module, dotted_name, path):
    """The submodule at `a.b.c`; TorchScript modules have no get_submodule."""
    for name in dotted_name.split("."):
        children = dict(module.named_children())
        if name not in children:
            raise UserError(f"--feature-layer {dotted_name}: {path} has no submodule {name!r} "
                            f"(it has: {', '.join(list(children)[:10]) or 'none'}"
                            f"{' ...' if len(children) > 10 else ''})")
        module = children[name]
    return module
