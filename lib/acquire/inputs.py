"""What a method reads, and where select.py gets it: one provider per input, each owning its flags.

A method names its inputs (Method.inputs), fields of the SelectionContext it is given:

    "model"     the --checkpoint network and the input normalisation it expects; the
                methods that name it score its predictions pixel by pixel
    "features"  one vector per labeled and candidate item: a --features file, else the
                model's "aspp" feature map pooled over the item's box by --feature-pooling
    "redundancy"  the pool's lib.redundancy measure on the features; read by auto, and
                for --report-redundancy whatever the method
    "pool_map"  MEAL's UMAP map of the whole pool: from --umap-cache, or fitted with --pretrained
    "scores"    one score per candidate, from a --scores file
    "frames"    the pool's sequences and frame numbers, from the dataset

and what it asks of the model beyond its logits (Method.model_needs, names of
MODEL_NEEDS): "mc_dropout", or a feature map by its name in lib.models.FEATURE_MAPS.
An input may read the model and ask more of it: features without a file read its
"aspp" map, the pool map needs "architecture", a network of ours whose ImageNet
backbone can be rebuilt.

select.py checks the flags before any work (check_flags), then builds its frozen
SelectionContext once, with the fields load_inputs returns.
"""
import functools
from dataclasses import dataclass

from lib.acquire.meal import load_pool_map
from lib.acquire.precomputed import load_features, load_scores
from lib.acquire.temporal import require_frames
from lib.errors import UserError
from lib.model_files import MODEL_FILE_FLAGS, ModelFile
from lib.models import FEATURE_MAPS, DeepLabV3Plus, has_mc_dropout
from lib.redundancy import measure_redundancy

ASPP_MAP = "aspp"  # the feature map that stands in for a --features file
DEFAULT_POOLING = "mean"  # --feature-pooling: how that map becomes one vector per item


@dataclass(frozen=True)
class Pool:
    """What the inputs are loaded for, besides the flags."""

    reader: object  # lib.acquire.context.ItemReader
    labeled: list  # labeled item ids
    candidates: list  # unlabeled item ids that may be picked
    item_ids: object  # () -> every id a --features or --scores file may name: listed only when one is read


class Provider:
    """One input: the flags it owns, the input it may read itself, and how it loads."""

    def reads(self, args):
        """The inputs it is made from with these flags (only ones that read none themselves)."""
        return ()

    def asks_of_model(self, args):
        """Names of MODEL_NEEDS that the model it reads must meet."""
        return ()

    def refuse_unused(self, args, used):
        """A UserError for a flag of this input when it is not among `used`, the inputs the method reads."""

    def require_given(self, args):
        """A UserError when the method reads this input and the flags give it nothing to load from."""

    def load(self, args, method, pool, given):
        """{SelectionContext field: value}; `given` holds the fields of the inputs it reads."""
        raise NotImplementedError


class FeaturesInput(Provider):
    """--features FILE, or the model's "aspp" feature map pooled over each item by --feature-pooling (its mean, or
    the study's 2x2 grid: lib.acquire.scores.FEATURE_POOLINGS)."""

    def reads(self, args):
        return () if args.features else ("model",)

    def asks_of_model(self, args):
        return () if args.features else (ASPP_MAP,)

    def refuse_unused(self, args, used):
        if args.features and "features" not in used:
            raise UserError(f"--features: --method {args.method} does not use features (coreset, kmeanspp and auto "
                            f"do; --report-redundancy reads them with any method)")
        # Without --features a method that reads no features takes --feature-pooling and leaves it unused, as
        # select.py's --auto-redundant: an experiment's SELECT_ARGS go to every method.
        if args.features and args.feature_pooling != DEFAULT_POOLING:
            raise UserError(f"--feature-pooling {args.feature_pooling} pools the model's feature map, but --features "
                            f"gives the features")

    def require_given(self, args, asker=None):
        """`asker`: what reads the features, when not the method (--report-redundancy)."""
        if not (args.checkpoint or args.features):
            raise UserError(f"{asker or f'--method {args.method}'} needs image features: give --checkpoint or "
                            f"--features FILE")

    def load(self, args, method, pool, given):
        rows = pool.labeled + pool.candidates  # labeled rows first: the initial centers of coreset and kmeanspp
        if args.features:
            return {"features": load_features(args.features, pool.item_ids(), rows)}
        return {"features": pool.reader.features(given["model"], given["preprocess"], ASPP_MAP, rows,
                                                 args.feature_pooling)}


class RedundancyInput(Provider):
    """The redundancy of the labeled + candidate items (lib.redundancy), on the features; seeded by --seed."""

    def reads(self, args):
        return ("features",)

    def require_given(self, args, asker=None):
        PROVIDERS["features"].require_given(args, asker)

    def load(self, args, method, pool, given):
        return {"redundancy": measure_redundancy(given["features"], seed=args.seed, device=pool.reader.device)}


class ScoresInput(Provider):
    """--scores FILE: one score per candidate."""

    def refuse_unused(self, args, used):
        if args.scores and "scores" not in used:
            raise UserError(f"--scores: --method {args.method} does not rank precomputed scores (topk does)")

    def require_given(self, args):
        if not args.scores:
            raise UserError(f"--method {args.method} ranks precomputed scores: give --scores FILE")

    def load(self, args, method, pool, given):
        return {"scores": load_scores(args.scores, pool.item_ids(), pool.candidates)}


class PoolMapInput(Provider):
    """--umap-cache and --pretrained: MEAL's map of the pool (lib.acquire.meal), on the model's architecture."""

    def reads(self, args):
        return ("model",)

    def asks_of_model(self, args):
        return ("architecture",)

    def refuse_unused(self, args, used):
        for flag, value in (("--umap-cache", args.umap_cache), ("--pretrained", args.pretrained)):
            if value and "pool_map" not in used:
                raise UserError(f"{flag}: --method {args.method} does not use the UMAP map of the pool (meal does)")

    def load(self, args, method, pool, given):
        return {"pool_map": load_pool_map(args.umap_cache, args.pretrained, args.seed, given["model"].model_args,
                                          given["preprocess"], pool.reader, args.method)}


def trained_semi_supervised(loaded):
    """Whether the model was trained with an --ssl mode; None when its file does not say (not a checkpoint)."""
    train_args = loaded.train_args
    return None if train_args is None else train_args.get("ssl", "none") != "none"


class ModelInput(Provider):
    """--checkpoint and the flags of lib.model_files that describe it, checked to meet what is asked of it."""

    def refuse_unused(self, args, used):
        flags = [flag for flag in MODEL_FILE_FLAGS if getattr(args, flag) is not None]
        if flags and "model" not in used:
            raise UserError(f"--{flags[0].replace('_', '-')} describes a --checkpoint model, which --method "
                            f"{args.method} does not use here")

    def require_given(self, args):
        if not args.checkpoint:
            raise UserError(f"--method {args.method} scores the pool with a model: give --checkpoint")

    def load(self, args, method, pool, given):
        loaded = ModelFile(args.checkpoint).load(args, pool.reader.dataset, pool.reader.device)
        needs = model_needs(method, args)
        for name, need in MODEL_NEEDS.items():
            if name in needs and not need.met_by(loaded):
                raise UserError(need.refusal.format(checkpoint=args.checkpoint, method=args.method, kind=loaded.kind))
        return {"model": loaded.model, "preprocess": loaded.preprocess,
                "semi_supervised": trained_semi_supervised(loaded)}


class FramesInput(Provider):
    """The dataset's sequences and frame numbers; no flag."""

    def load(self, args, method, pool, given):
        return {"frames": require_frames(pool.reader.dataset, f"--method {args.method}")}


PROVIDERS = {  # in the order of the flag checks; loading follows `reads`
    "features": FeaturesInput(),
    "scores": ScoresInput(),
    "pool_map": PoolMapInput(),
    "model": ModelInput(),
    "frames": FramesInput(),
    "redundancy": RedundancyInput(),
}


@dataclass(frozen=True)
class ModelNeed:
    met_by: object  # lib.model_files.LoadedModel -> bool
    refusal: str  # the error otherwise, formatted with checkpoint, method and kind


def _offers_feature_map(name, loaded):
    return name in loaded.model.feature_maps


MODEL_NEEDS = {  # checked in this order
    "mc_dropout": ModelNeed(
        lambda loaded: has_mc_dropout(loaded.model),
        "{checkpoint}: --method {method} samples dropout in the decoder, which only models trained with train.py "
        "--mc-dropout have",
    ),
    "architecture": ModelNeed(
        lambda loaded: isinstance(loaded.model, DeepLabV3Plus),
        "{checkpoint}: --method {method} maps the pool with the ImageNet backbone of one of our architectures, "
        "which a {kind} does not name; use meal-ft",
    ),
    **{name: ModelNeed(
        functools.partial(_offers_feature_map, name),  # only TorchScript and torch.export models can lack them
        "--method {method} reads features of the model: give --feature-layer, a submodule of {checkpoint} that "
        "reads the image (e.g. backbone)",
    ) for name in FEATURE_MAPS},
}


def inputs_wanted(method, args):
    """The inputs `method` declares, and "redundancy" for --report-redundancy."""
    return (*method.inputs, *(("redundancy",) if args.report_redundancy else ()))


def inputs_read(method, args):
    """Every input wanted (inputs_wanted) with these flags, each after the inputs it reads, and theirs
    (redundancy reads features, which read the model)."""
    order = []

    def add(name):
        if name not in order:
            for needed in PROVIDERS[name].reads(args):
                add(needed)
            order.append(name)

    for name in inputs_wanted(method, args):
        add(name)
    return order


def model_needs(method, args):
    """The names of MODEL_NEEDS the model must meet: the method's, and those of the inputs it reads."""
    return {*method.model_needs, *(need for name in inputs_read(method, args)
                                   for need in PROVIDERS[name].asks_of_model(args))}


def check_flags(method, args):
    """Before any work: no flag of an input the method does not read, then something to load every input from."""
    used = inputs_read(method, args)
    for provider in PROVIDERS.values():
        provider.refuse_unused(args, used)
    for name, provider in PROVIDERS.items():
        if name in method.inputs:
            provider.require_given(args)
    if args.report_redundancy:
        PROVIDERS["redundancy"].require_given(args, asker="--report-redundancy")


def load_inputs(method, args, pool):
    """{SelectionContext field: value} of every input `method` reads, each loaded after the one it reads."""
    fields = {}
    for name in inputs_read(method, args):
        fields.update(PROVIDERS[name].load(args, method, pool, fields))
    return fields
