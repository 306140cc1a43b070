"""MEAL: informative patches, made diverse by K-Means++ on a 2-D UMAP map of their features.

Sreenivasaiah, Otterbach & Wollmann, "MEAL: Manifold Embedding-based Active Learning",
ICCV Workshops 2021. Every cycle:

1. the `informative` candidates of highest entropy (reduced over each patch);
2. their features: the model's "backbone" feature map (its last stage) averaged over the patch;
3. projected to 2-D by a UMAP map;
4. K-Means++ seeding on the 2-D points: the k seeds are the selection.

`meal` projects with one map per experiment, fitted on the features of every patch
of the pool under the ImageNet-pretrained backbone (the paper's step 0), so the
global shape of the pool shapes every cycle: the first cycle fits it and keeps it in
a cache file, the later ones read it (load_pool_map). `meal-ft` fits a map on the
informative patches alone, every cycle (the paper's ablation between MEAL and entropy).
"""
import hashlib

import torch

from lib.errors import UserError, describe_error
from lib.fileio import atomic_write, sha256_of
from lib.models import build_model
from lib.pretrained import load_pretrained_backbone, resolve_pretrained
from lib.sliding import DEFAULT_SLIDE_WINDOW
from lib.umap import UMAP

FEATURE_MAP = "backbone"  # lib.models.FEATURE_MAPS: the last stage, 320 channels for MobileNetV2


def project_on_pool_map(context, item_ids, seed):
    """meal: the items' features placed on the experiment's map (step 0) -> [N, 2]."""
    features = context.item_features(FEATURE_MAP, item_ids)  # [N, d]
    return context.pool_map.transform(features)


def project_on_own_map(context, item_ids, seed):
    """meal-ft: a map fitted on the items' features alone -> [N, 2]."""
    features = context.item_features(FEATURE_MAP, item_ids)  # [N, d]
    return UMAP(seed=seed, device=context.reader.device).fit(features)


def load_pool_map(cache, pretrained, seed, model_args, preprocess, reader, method):
    """Step 0, MEAL's map of the whole pool: from the `cache` file (--umap-cache) when it holds one fitted for the
    same key, else fitted now on the `pretrained` backbone (--pretrained) and kept there.

    `model_args` name the architecture of the model that selects; `preprocess` its input
    normalisation; `reader` (lib.acquire.context.ItemReader) runs the pool's images;
    `method` (the --method name) words the error when nothing can give the map.
    """
    pretrained_path = resolve_pretrained(pretrained, model_args["arch"]) if pretrained else None
    key = pool_map_key(reader.dataset, reader.unit, model_args, seed, pretrained_path, reader.slide_window)

    def fit():
        if not pretrained:
            raise UserError(f"--method {method} fits its UMAP map on ImageNet backbone features of the whole "
                            f"pool: give --pretrained (and --umap-cache to keep the map for later cycles)")
        print(f"fitting the UMAP map of {len(reader.dataset.ids)} images' {reader.unit.describe()} items")
        return fit_pool_map(model_args, pretrained, preprocess, reader, seed)

    return cached_pool_map(cache, key, fit, reader.device, writes=reader.world.is_writer)


def pool_map_key(dataset, unit, model_args, seed, pretrained_path, window):
    """What a map of the pool depends on: a stored map is reused only for the same key.

    Without `pretrained_path` (later cycles need no weights) the backbone is not checked.
    The sliding window shapes the features of images larger than it; it is part of the
    key when it is not the default, so maps stored before it existed stay valid.
    """
    pool = hashlib.sha256("\n".join(dataset.ids).encode()).hexdigest()
    key = {
        "dataset": dataset.name, "split": dataset.split, "pool": pool, "unit": unit.to_json(),
        "arch": model_args["arch"], "output_stride": model_args["output_stride"], "seed": seed,
    }
    if pretrained_path is not None:
        key["pretrained"] = sha256_of(pretrained_path)
    if tuple(window) != DEFAULT_SLIDE_WINDOW:
        key["slide_window"] = list(window)
    return key


def fit_pool_map(model_args, pretrained, preprocess, reader, seed):
    """A UMAP map of the backbone features of every item of the pool, under the `pretrained` ImageNet weights."""
    model = build_model({**model_args, "mc_dropout": False})
    load_pretrained_backbone(model, pretrained, model_args["arch"])
    _, features = reader.embed_images(model.to(reader.device), preprocess, FEATURE_MAP,
                                      reader.dataset.ids)  # [N_items, C_high]
    pool_map = UMAP(seed=seed, device=reader.device)
    pool_map.fit(features)
    return pool_map


def cached_pool_map(path, key, fit, device, writes=True):
    """The map stored at `path` when it was fitted for `key`; otherwise `fit()`, stored there.

    `key` says what the map was fitted on (pool, unit, backbone, seed). A stored map
    for another key is an error rather than silently refitted: it belongs to another
    experiment, and refitting would change the selections of every later cycle.
    With `path` None the map is fitted and not kept; without `writes` (a process of torchrun but rank 0) it is
    fitted and left for rank 0 to keep.
    """
    if path is None:
        return fit()
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        pool_map = fit()
        if writes:
            with atomic_write(path) as handle:
                torch.save({"key": key, "umap": pool_map.state_dict()}, handle)
        return pool_map
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise UserError(f"{path}: not a UMAP cache ({err.__class__.__name__}); delete it to fit again") from None
    if not (isinstance(stored, dict) and isinstance(stored.get("key"), dict) and isinstance(stored.get("umap"), dict)):
        raise UserError(f"{path}: not a UMAP cache; delete it to fit again")
    # Every name of either key but "pretrained", which later cycles leave out.
    names = key.keys() | (stored["key"].keys() - {"pretrained"})
    changed = sorted(name for name in names if stored["key"].get(name) != key.get(name))
    if changed:
        raise UserError(f"{path}: UMAP map was fitted for another {', '.join(changed)}; "
                        f"use another --umap-cache or delete it to fit again")
    try:
        return UMAP.from_state_dict(stored["umap"], device)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:  # a damaged or edited file
        raise UserError(f"{path}: damaged UMAP cache ({describe_error(err)}); delete it to fit again") from None
