"""Per-pixel acquisition scores: model and images in, a [B, H, W] score map out.

A pixel score receives the model rather than its probabilities because several
methods need their own forward passes (EqualAL a flipped image, BALD T decoder
passes); plain uncertainty scores just run the model once. Everything stays in
float32 on the model's device, one batch at a time: a score map per batch, never
per pool. An image larger than the window (--slide-window) is scored window by
window (lib.sliding): the logits of one window at a time, never of the whole image.
"""
import contextlib
import functools

import torch
import torch.nn.functional as F
from torch import nn

from lib import fast_path, seeding
from lib.errors import UserError
from lib.sliding import DEFAULT_SLIDE_WINDOW, slide


def entropy_map(probs, eps=1e-12):
    """Shannon entropy in nats of [B, C, H, W] probabilities -> [B, H, W]."""
    return -(probs * probs.clamp_min(eps).log()).sum(dim=1)


def js_divergence_map(p, q):
    """Jensen-Shannon divergence in nats of two [B, C, H, W] distributions -> [B, H, W], in [0, log 2]."""
    return (entropy_map((p + q) / 2) - (entropy_map(p) + entropy_map(q)) / 2).clamp_min(0)


def pixel_entropy(model, images):
    logits = model(images)  # [B, C, H, W]
    return entropy_map(logits.float().softmax(dim=1))


def pixel_flip_disagreement(model, images):
    """EqualAL: how much the prediction changes when the image is mirrored.

    Golestaneh & Kitani, "Importance of Self-Consistency in Active Learning for
    Semantic Segmentation", BMVC 2020. The image and its horizontal flip go through
    the model in one batch; the flip's softmax is flipped back so that both describe
    the same pixels, and their disagreement is the Jensen-Shannon divergence. JS
    rather than KL because neither view is the reference (JS is symmetric), it stays
    finite when a view puts zero mass on a class (a confident fp16 softmax does),
    and it is bounded by log 2, in nats like the entropy scores. It is 0 exactly when
    the model is flip-equivariant on the image. The study's published code instead
    scored the entropy of the two predictions, which measures uncertainty, not
    consistency.
    """
    both = model(torch.cat([images, images.flip(-1)])).float().softmax(dim=1)  # [2B, C, H, W]
    plain, mirrored = both.chunk(2)
    return js_divergence_map(plain, mirrored.flip(-1))


def pixel_mutual_information(model, images, samples):
    """BALD: mutual information between the prediction and the weights, by MC dropout.

    Houlsby et al. 2011; Gal, Islam & Ghahramani, ICML 2017. H[mean_t p_t] -
    mean_t H[p_t] over `samples` stochastic passes. The encoder has no dropout
    (lib.models), so it runs once and only the decoder is sampled; the mean
    probability and mean entropy are running sums, so memory does not grow with T.
    """
    low, aspp_out = model.encode(images)
    mean_probs = mean_entropy = 0
    with dropout_active(model):
        for _ in range(samples):
            probs = model.decode(low, aspp_out, images.shape[-2:]).float().softmax(dim=1)  # [B, C, H, W]
            mean_probs = probs / samples + mean_probs
            mean_entropy = entropy_map(probs) / samples + mean_entropy
    return (entropy_map(mean_probs) - mean_entropy).clamp_min(0)


@contextlib.contextmanager
def dropout_active(model):
    """Dropout layers sample while everything else (BatchNorm) stays in eval mode."""
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    for m in dropouts:
        m.train()
    try:
        yield
    finally:
        for m in dropouts:
            m.eval()


def _per_item(maps, boxes, reduce):
    """[B, (C,) H, W] maps -> [B, len(boxes), ...]: `reduce` over the pixels of every box."""
    return torch.stack([reduce(maps[..., box.top:box.bottom, box.left:box.right]) for box in boxes], dim=1)


def _on_device(fn, model, device, images):
    """fn(model, images) with the images moved to `device` first (channels_last on CUDA, lib.fast_path): a window
    at a time, not the whole image."""
    return fn(model, images.to(device, non_blocking=True, memory_format=fast_path.memory_format(device)))


def score_items(model, batches, pixel_score, reduce, layout, device, amp, window=DEFAULT_SLIDE_WINDOW, seed=None,
                keep=None):
    """Stream images through the model and keep one float per item: {item id: score}.

    `layout(height, width) -> [(id suffix, Box)]` lists the items of an image
    (lib.units.Unit.layout); a whole image is one item with an empty suffix. Images
    larger than `window` (height, width) are scored window by window (lib.sliding).
    With `amp` (--amp), on CUDA, in mixed precision (lib.fast_path.autocast_dtype).
    With `seed`, torch's RNG is seeded before each batch (lib.seeding.seed_scoring_batch).
    With `keep`, a dict whose keys are the items wanted, its values are filled and it is
    returned: other items are scored and dropped, and the keys stay keep's own strings
    (a pool of 200,000 items holds one dict of them, not two).
    """
    model.eval()
    fast_path.to_channels_last(model, device)
    scores = {} if keep is None else keep
    score = functools.partial(_on_device, pixel_score, model, device)
    for image_ids, images, _ in batches:
        if seed is not None:
            seeding.seed_scoring_batch(seed, image_ids[0])
        with torch.inference_mode(), fast_path.autocast(device, amp):  # see item_feature_batches
            pixel = slide(score, images, window)  # [B, H, W]
        items = layout(*pixel.shape[-2:])
        per_item = _per_item(pixel.float(), [box for _, box in items], reduce)  # [B, n_items]
        batch_ids = [image_id + suffix for image_id in image_ids for suffix, _ in items]
        require_finite(per_item.flatten(), batch_ids, "score")
        if keep is None:
            scores.update(zip(batch_ids, per_item.flatten().tolist()))
            continue
        for item_id, value in zip(batch_ids, per_item.flatten().tolist()):
            if item_id in scores:  # assigning to an existing key keeps the key object
                scores[item_id] = value
    return scores


def require_finite(values, item_ids, what):
    """NaN or infinite values [N, ...] (broken weights, float16 overflow) would be ranked as if they meant something."""
    finite = torch.isfinite(values.reshape(len(item_ids), -1)).all(dim=1)  # [N]
    if not finite.all():
        bad = item_ids[int((~finite).nonzero()[0])]
        raise UserError(f"--checkpoint: the model's {what} of item {bad!r} is NaN or infinite")


def embed_items(model, feature_map, batches, layout, device, amp, window=DEFAULT_SLIDE_WINDOW):
    """(item ids, features [N, d] float32 on the CPU) of every item of the batches, in their order
    (item_feature_batches, concatenated); ([], [0, 0]) without batches (a process of torchrun without a share)."""
    ids, features = [], []
    for batch_ids, batch in item_feature_batches(model, feature_map, batches, layout, device, amp, window):
        ids.extend(batch_ids)
        features.append(batch)
    return ids, torch.cat(features) if features else torch.empty(0, 0)


def box_mean(window):
    """The features [B, d, h, w] of an item's box -> their mean [B, d]."""
    return window.mean(dim=(-2, -1))


def box_grid2x2(window):
    """The features [B, d, h, w] of an item's box -> the means of its 2x2 grid of cells [B, 4d], channel-major as the
    study's `.view(-1, 1024)` of its [1, 256, 2, 2] lists them.

    The study's Coreset feature (sud0301/best_practices_ALSS model/deeplabv3p.py l.102-108): the ASPP output
    average-pooled on 20x20 windows, a 2x2 grid at its VOC crops only (41x41 maps of 321x321; 32x64 maps of 256x512
    would give 1x3). Adaptive pooling makes a 2x2 grid of any box: a box 3 cells high has rows 0-1 and 1-2, one
    cell high repeats it, as pooling the box upsampled to 2 cells would.
    """
    return F.adaptive_avg_pool2d(window, 2).flatten(1)


# How the feature map of an item's box becomes its one vector (select.py --feature-pooling).
FEATURE_POOLINGS = {"mean": box_mean, "grid2x2": box_grid2x2}


def item_feature_batches(model, feature_map, batches, layout, device, amp, window=DEFAULT_SLIDE_WINDOW,
                         pooling=box_mean):
    """One feature per item: `feature_map(model, images)` [B, d, h, w] over each item's box, pooled by `pooling`
    (FEATURE_POOLINGS; [B, d] for the mean).

    Yields (item ids, features [n, d'] float32 on the CPU) batch by batch. The
    feature map is coarser than the image; a box is mapped to the cells that cover it.
    Images larger than `window` (height, width) get the feature maps of their windows,
    stitched (lib.sliding). With `amp` (--amp), on CUDA, in mixed precision (lib.fast_path.autocast_dtype).
    """
    model.eval()
    fast_path.to_channels_last(model, device)
    embed = functools.partial(_on_device, feature_map, model, device)
    for image_ids, images, _ in batches:
        # Inference mode (no_grad without autograd's version counting) for the model alone: not around
        # to_channels_last, whose weights would become inference tensors, which no later training could use; nor
        # around the features returned, ordinary tensors that the methods may change in place.
        with torch.inference_mode(), fast_path.autocast(device, amp):
            maps = slide(embed, images, window).float()  # [B, d, h, w]
        height, width = images.shape[-2:]
        items = layout(height, width)
        boxes = [box.scaled(height, width, *maps.shape[-2:]) for _, box in items]
        batch_ids = [image_id + suffix for image_id in image_ids for suffix, _ in items]
        batch = _per_item(maps, boxes, pooling).flatten(0, 1)  # [B n_items, d'], d' = d for the mean
        require_finite(batch, batch_ids, "features")
        yield batch_ids, batch.cpu()
