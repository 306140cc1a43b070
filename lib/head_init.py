"""train.py --init-head-from: a cycle's model starts with the ASPP and decoder of an earlier cycle's checkpoint
(warm start), its backbone from --pretrained."""
from lib.checkpoint import check_dataset, load_checkpoint
from lib.errors import UserError
from lib.state_dicts import first_non_finite, key_mismatch

BACKBONE_KEYS = "backbone."  # the state-dict keys of DeepLabV3Plus.backbone; every other tensor is the head's


def head_weights(path, model_args, dataset):
    """--init-head-from: the tensors outside the backbone (ASPP, decoder, contrastive head) of the checkpoint at
    `path`, checked to be of a model of this run's architecture, output stride and classes.

    The AL study's supervised cycles build on the previous cycle's model: one network trains through them all, its
    backbone (with its BatchNorm statistics) reloaded from ImageNet before each, ASPP and decoder kept
    (sud0301/best_practices_ALSS query_strategies/strategy.py l.67-89); its SSL cycles re-initialise everything
    (strategy_SSL.py l.133-149).
    """
    checkpoint = load_checkpoint(path)
    check_dataset(checkpoint, path, dataset)
    for key in ("arch", "output_stride"):
        theirs = checkpoint["model_args"].get(key)
        if theirs != model_args[key]:
            raise UserError(f"--init-head-from {path}: a model of {key} {theirs!r}, this run trains one of "
                            f"{model_args[key]!r}")
    head = {name: tensor for name, tensor in checkpoint["model"].items() if not name.startswith(BACKBONE_KEYS)}
    broken = first_non_finite(head)
    if broken is not None:
        raise UserError(f"--init-head-from {path}: NaN or infinite weights ({broken})")
    return head


def load_head(model, head, path):
    """`head` (head_weights, read from `path`) into `model`: every tensor outside its backbone, of the same shape."""
    own = {name: tensor for name, tensor in model.state_dict().items() if not name.startswith(BACKBONE_KEYS)}
    mismatch = key_mismatch(own, head, "this run's model")  # e.g. a --contrastive head on one side only
    if mismatch:
        raise UserError(f"--init-head-from {path}: not the head of this run's model: {mismatch}")
    model.load_state_dict(head, strict=False)  # the backbone's keys, left out, keep --pretrained's weights
