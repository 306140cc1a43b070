"""Pretrained ImageNet backbone weights, from local files only: this toolkit never downloads.

`--pretrained` (train.py, select.py's MEAL) names a torchvision classification state
dict, or `imagenet` for torchvision's file in the torch hub cache, where a download
elsewhere puts it; for wrn38, which torchvision lacks, the study's checkpoint file:

    load_pretrained_backbone(model, "imagenet", "mobilenet_v2")
    load_pretrained_backbone(model, "weights/wider_resnet38.pth.tar", "wrn38")
"""
from pathlib import Path

import torch

from lib.errors import UserError
from lib.state_dicts import is_state_dict, key_differences

# torchvision's file names for the ImageNet classification weights (V1 and V2), as
# they land in `torch.hub.get_dir()/checkpoints/` after a download elsewhere.
IMAGENET_FILES = {
    "mobilenet_v2": ("mobilenet_v2-b0353104.pth", "mobilenet_v2-7ebf99e0.pth"),
    "resnet50": ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"),
    "resnet101": ("resnet101-63fe2227.pth", "resnet101-cd907fc2.pth"),
}
# Archs torchvision has no weights for: the file --pretrained must name instead. The study's
# code restores WRN-38 from this training checkpoint (ALSS:run.py, model/wider_resnet.py
# `wrn38`): {"state_dict": ...} of a DataParallel model, so every key starts with "module.".
CHECKPOINT_FILES = {"wrn38": "the study's WRN-38 ImageNet checkpoint, wider_resnet38.pth.tar"}
# Keys of the classification model that the backbone drops on purpose.
UNUSED_PREFIXES = {
    "mobilenet_v2": ("classifier.", "features.18."),
    "resnet50": ("fc.",),
    "resnet101": ("fc.",),
    "wrn38": ("bn_out.", "classifier."),  # the study's trunk ends at mod7 (ALSS:model/wider_resnet.py `wrn38`)
}
# Older files lack BatchNorm's num_batches_tracked, a step counter that no forward
# pass reads (momentum is fixed), so it is not required.
OPTIONAL_SUFFIXES = ("num_batches_tracked",)


def resolve_pretrained(spec, arch):
    """`imagenet` -> the torchvision checkpoint in the torch hub cache; anything else is a path."""
    if arch not in UNUSED_PREFIXES:
        have = ", ".join(sorted(UNUSED_PREFIXES))
        raise UserError(f"arch {arch!r} has no pretrained backbone weights; they exist for {have}")
    if spec == "imagenet" and arch in CHECKPOINT_FILES:
        raise UserError(f"pretrained 'imagenet': torchvision has no {arch} weights and this toolkit never "
                        f"downloads: pass the path of {CHECKPOINT_FILES[arch]}")
    if spec != "imagenet":
        return Path(spec)
    folder = hub_checkpoints()
    for name in IMAGENET_FILES[arch]:
        if (folder / name).is_file():
            return folder / name
    looked = " or ".join(str(folder / name) for name in IMAGENET_FILES[arch])
    raise UserError(
        f"pretrained 'imagenet': no {arch} weights at {looked}; this toolkit never downloads: "
        f"copy a torchvision {arch} state dict there or pass its path"
    )


def hub_checkpoints():
    """The torch hub cache's folder of downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def pretrained_location(spec):
    """What `--pretrained` reads, for the output checks: its file, or for 'imagenet' the hub cache's folder."""
    return hub_checkpoints() if spec == "imagenet" else spec


def load_pretrained_backbone(model, spec, arch):
    """Load a torchvision classification state dict (file path or `imagenet`) into model.backbone.

    Also a training checkpoint's "state_dict", with or without DataParallel's "module."
    (checkpoint_weights). Every backbone key must be present with the right shape; only
    the classifier's keys may be left over. Returns the path that was loaded.
    """
    path = resolve_pretrained(spec, arch)
    if not path.is_file():
        raise UserError(f"pretrained weights {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    # The unpickler raises many exception types on foreign bytes (KeyError on a text
    # file, UnpicklingError on a pickled module...); all mean "not a weights file".
    except Exception as err:
        raise UserError(f"pretrained weights {path}: not a torch weights file ({type(err).__name__})") from None
    state = checkpoint_weights(state)
    if not is_state_dict(state):
        raise UserError(f"pretrained weights {path}: not a state dict (a mapping of parameter names to tensors)")

    own = model.backbone.state_dict()
    differences = key_differences(own, state, OPTIONAL_SUFFIXES, UNUSED_PREFIXES[arch])
    if differences.missing or differences.mismatched or differences.unexpected:
        required = sum(not key.endswith(OPTIONAL_SUFFIXES) for key in own)
        raise UserError(
            f"pretrained weights {path}: not {CHECKPOINT_FILES.get(arch, f'a torchvision {arch} state dict')}: "
            f"{len(differences.missing)} of {required} backbone keys missing, "
            f"{len(differences.mismatched)} with the wrong shape, {len(differences.unexpected)} unexpected "
            f"({first_differences(differences, own, state)})"
        )
    model.backbone.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return path


def checkpoint_weights(loaded):
    """The state dict in a file's contents: a training checkpoint's "state_dict" entry, its keys without the
    "module." of a DataParallel model (the study's wider_resnet38.pth.tar); anything else as it is."""
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if isinstance(loaded, dict):
        loaded = {key.removeprefix("module.") if isinstance(key, str) else key: v for key, v in loaded.items()}
    return loaded


def first_differences(differences, own, state):
    """The first key of each kind of lib.state_dicts.KeyDifferences, named as in the backbone, for the message."""
    firsts = []
    if differences.missing:
        firsts.append(f"first missing: {differences.missing[0]}")
    if differences.mismatched:
        key = differences.mismatched[0]
        firsts.append(f"first with the wrong shape: {key}, {list(state[key].shape)} in the file, "
                      f"{list(own[key].shape)} in the backbone")
    if differences.unexpected:
        firsts.append(f"first unexpected: {differences.unexpected[0]}")
    return "; ".join(firsts)
