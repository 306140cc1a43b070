"""Per-pixel acquisition scores: model and images in, a [B, H, W] score map out.

A pixel score receives the model rather than its probabilities because several
methods need their own forward passes (EqualAL a flipped image, BALD T decoder
passes); plain uncertainty scores just run the model once.
"""
import torch


def entropy_map(probs, eps=1e-12):
    """Shannon entropy in nats of [B, C, H, W] probabilities -> [B, H, W]."""
    return -(probs * probs.clamp_min(eps).log()).sum(dim=1)


def pixel_entropy(model, images):
    logits = model(images)  # [B, C, H, W]
    return entropy_map(logits.float().softmax(dim=1))


@torch.no_grad()
def score_images(model, batches, pixel_score, reduce, device, amp):
    """Stream the pool through the model and keep one float per image: {id: score}."""
    model.eval()
    scores = {}
    for batch_ids, images, _ in batches:
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            pixel = pixel_score(model, images.to(device, non_blocking=True))  # [B, H, W]
        per_image = reduce(pixel.float())  # [B]
        scores.update(zip(batch_ids, per_image.tolist()))
    return scores
