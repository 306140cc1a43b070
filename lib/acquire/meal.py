"""MEAL: informative patches, made diverse by K-Means++ on a 2-D UMAP map of their features.

Sreenivasaiah, Otterbach & Wollmann, "MEAL: Manifold Embedding-based Active Learning",
ICCV Workshops 2021. Every cycle:

1. the `informative` candidates of highest entropy (reduced over each patch);
2. their features: the backbone's last stage averaged over the patch;
3. projected to 2-D by a UMAP map;
4. K-Means++ seeding on the 2-D points: the k seeds are the selection.

`meal` projects with one map per experiment, fitted on the features of every patch
of the pool under the ImageNet-pretrained backbone (the paper's step 0), so the
global shape of the pool shapes every cycle; select.py fits it on the first cycle
and keeps it in a cache file. `meal-ft` fits a map on the informative patches
alone, every cycle (the paper's ablation between MEAL and entropy).
"""
import hashlib

import torch

from lib.acquire.scores import embed_items
from lib.acquire.umap import UMAP
from lib.errors import UserError, describe_error
from lib.fileio import atomic_write, sha256_of
from lib.models import build_model, load_pretrained_backbone
from lib.sliding import DEFAULT_SLIDE_WINDOW


def backbone_features(model, images):
    """MEAL's feature map: the backbone's last stage [B, C_high, H/os, W/os] (320 channels for MobileNetV2)."""
    return model.backbone(images)[1]


def project_on_pool_map(context, item_ids, seed):
    """meal: the items' features placed on the experiment's map (step 0) -> [N, 2]."""
    features = context.item_features(context.feature_map or backbone_features, item_ids)  # [N, d]
    return context.pool_umap.transform(features)


def project_on_own_map(context, item_ids, seed):
    """meal-ft: a map fitted on the items' features alone -> [N, 2]."""
    features = context.item_features(context.feature_map or backbone_features, item_ids)  # [N, d]
    return UMAP(seed=seed, device=context.device).fit(features)


def pool_map_key(dataset, unit, model_args, seed, pretrained_path, window=DEFAULT_SLIDE_WINDOW):
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


def fit_pool_umap(model_args, pretrained, batches, layout, seed, device, amp, window=DEFAULT_SLIDE_WINDOW):
    """MEAL's step 0: a UMAP map of the backbone features of every item in `batches`, under ImageNet weights.

    Images larger than `window` (height, width) are embedded window by window (lib.sliding).
    """
    model = build_model({**model_args, "mc_dropout": False})
    load_pretrained_backbone(model, pretrained, model_args["arch"])
    _, features = embed_items(model.to(device), backbone_features, batches, layout, device, amp,
                              window)  # [N_items, C_high]
    pool_umap = UMAP(seed=seed, device=device)
    pool_umap.fit(features)
    return pool_umap


def cached_pool_umap(path, key, fit, device):
    """The map stored at `path` when it was fitted for `key`; otherwise `fit()`, stored there.

    `key` says what the map was fitted on (pool, unit, backbone, seed). A stored map
    for another key is an error rather than silently refitted: it belongs to another
    experiment, and refitting would change the selections of every later cycle.
    With `path` None the map is fitted and not kept.
    """
    if path is None:
        return fit()
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        pool_umap = fit()
        with atomic_write(path) as handle:
            torch.save({"key": key, "umap": pool_umap.state_dict()}, handle)
        return pool_umap
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
