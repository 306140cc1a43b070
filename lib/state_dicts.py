"""Weights read from files, checked against the module they are for before any is loaded.

Our checkpoints and foreign state dicts (lib.models.model_with_weights) and
torchvision's ImageNet weights (lib.pretrained) are compared with the module's own
state dict the same way: which keys the file lacks, which it has in excess, and which
have another shape. Each caller words the error for its file.
"""
from dataclasses import dataclass

import torch

from lib.text import plural


def is_state_dict(obj):
    """A mapping of parameter names to tensors."""
    return isinstance(obj, dict) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())


@dataclass(frozen=True)
class KeyDifferences:
    missing: list  # keys of the module that the file lacks
    unexpected: list  # keys of the file that the module does not have
    mismatched: list  # keys of both, with another shape in the file


def key_differences(own, state, optional_suffixes=(), spare_prefixes=()):
    """How the keys of `state` (read from a file) differ from `own` (the module's state dict).

    Keys of `own` that end with one of `optional_suffixes` may be missing from the file,
    keys of the file that start with one of `spare_prefixes` may be left over.
    """
    return KeyDifferences(
        missing=[k for k in own if k not in state and not k.endswith(optional_suffixes)],
        unexpected=[k for k in state if k not in own and not k.startswith(spare_prefixes)],
        mismatched=[k for k in own if k in state and state[k].shape != own[k].shape],
    )


def key_mismatch(own, state, module="the model"):
    """None when `state` (read from a file) has exactly the keys and shapes of `own` (the module's state dict, called
    `module` in the text); else what differs, in words for an error: how many keys are missing and unexpected, with
    the first, or the first key of another shape."""
    differences = key_differences(own, state)
    missing, unexpected = differences.missing, differences.unexpected
    if missing or unexpected:
        first = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        return f"{plural(len(missing), 'key')} missing, {len(unexpected)} unexpected (first {first})"
    if differences.mismatched:
        key = differences.mismatched[0]
        return f"{key} is {list(state[key].shape)} in the file, {list(own[key].shape)} in {module}"
    return None


def first_non_finite(state):
    """The first key of a state dict whose floating-point tensor holds NaN or inf, or None."""
    return next((key for key, tensor in state.items()
                 if tensor.is_floating_point() and not torch.isfinite(tensor).all()), None)
