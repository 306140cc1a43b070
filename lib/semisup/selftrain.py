"""Self-training with pseudo labels (S4AL+; Xie et al., "Self-training with Noisy Student", CVPR 2020).

A teacher (the previous cycle's model, or a supervised model of the cycle's own
labels: lib.experiment's SSL_TEACHER) labels every unlabeled pixel whose softmax
confidence reaches a threshold (0.7); the other pixels are ignored. Its logits may be
averaged over rescaled copies of the image first (S4AL+'s code: 0.5, 1 and 2). The labels are
computed once per cycle and kept as uint8 PNGs next to the student's checkpoint, not
predicted again at every step. The student trains on the labeled images (weak
augmentation: crop, flip) and on the pseudo-labeled ones (strong augmentation,
lib.semisup.augment) with dropout as its noise. A pixel with a true label always
keeps it: partially labeled images (patches, regions) are pseudo-labeled only where
no annotator labeled them (lib.semisup.unlabeled.UnlabeledCrops).
"""
import functools
import hashlib

import torch
import torch.nn.functional as F
from PIL import Image

from lib.checkpoint import check_dataset, load_checkpoint, model_from_checkpoint
from lib.data.base import IGNORE_INDEX
from lib.engine import iterate_batches
from lib.fileio import atomic_write, read_json, sha256_of, write_json
from lib.owned import check_folder, claim_folder
from lib.sliding import DEFAULT_SLIDE_WINDOW, slide

STAMP = "pseudo.json"  # what the cached labels were made from; written after every label
KIND = "pseudo labels of train.py --ssl selftrain"


def confident_labels(probs, threshold):
    """[B, C, H, W] probabilities -> [B, H, W] uint8: the argmax where its probability reaches `threshold`,
    IGNORE_INDEX elsewhere."""
    confidence, classes = probs.max(dim=1)
    return torch.where(confidence >= threshold, classes, IGNORE_INDEX).to(torch.uint8)


def _made_before_markers(folder):
    return (folder / STAMP).is_file()


def check_pseudo_folder(folder):
    """Fail before any work unless `folder` is new, empty or a pseudo-label folder of ours."""
    check_folder(folder, KIND, "--pseudo-dir", legacy=_made_before_markers)


def scale_averaged_logits(model, images, scales):
    """images [B, 3, H, W] -> the mean of the model's logits [B, C, H, W] over the images rescaled by each of
    `scales`, each brought back to H x W; bilinear both ways, a side of n pixels scaled to floor(n * s) as
    F.interpolate's scale_factor does.

    S4AL+'s pseudo labels come from such an average at 2, 1 and 0.5, of logits, not of
    probabilities, without flips, softmax after it (Nishant213/MMLAL core_models.py predict_step).
    """
    height, width = images.shape[-2:]
    total = 0
    for scale in scales:
        size = (max(1, int(height * scale)), max(1, int(width * scale)))
        scaled = images if size == (height, width) else F.interpolate(images, size=size, mode="bilinear",
                                                                      align_corners=False)
        logits = model(scaled).float()  # [B, C, h, w]
        if logits.shape[-2:] != (height, width):
            logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        total = total + logits
    return total / len(scales)


def teacher_labels(teacher, threshold, scales, device, images):
    """images [B, 3, H, W] (on any device) -> the teacher's confident labels [B, H, W] uint8 on `device`, from its
    logits averaged over `scales` (scale_averaged_logits)."""
    probs = scale_averaged_logits(teacher, images.to(device), scales).softmax(dim=1)  # [B, C, H, W]
    return confident_labels(probs, threshold)


def pseudo_label_files(folder, teacher_path, threshold, dataset, image_ids, device, batch_size, workers,
                       window=DEFAULT_SLIDE_WINDOW, scales=(1.0,)):
    """{image id: its pseudo-label PNG in `folder`}, predicted by the teacher unless `folder` already holds them.

    The folder is reused only when its stamp names the same teacher file (sha256),
    threshold, `scales` and images: a new cycle's teacher relabels everything. Images
    larger than `window` (height, width) are labeled window by window (lib.sliding), each
    window rescaled by `scales` (scale_averaged_logits).
    """
    paths = {image_id: folder / f"{image_id}.png" for image_id in image_ids}
    stamp = {"teacher_sha256": sha256_of(teacher_path), "threshold": threshold,
             "images": hashlib.sha256("\n".join(image_ids).encode()).hexdigest()}
    if dataset.resolution.tag:  # labels of the images at another --resize / --scale do not fit these (none: as before)
        stamp["resolution"] = dataset.resolution.tag
    if tuple(scales) != (1.0,):  # the image alone: as before --pseudo-scales
        stamp["scales"] = list(scales)
    if (folder / STAMP).exists() and read_json(folder / STAMP, "pseudo-label stamp") == stamp:
        return paths
    checkpoint = load_checkpoint(teacher_path)
    check_dataset(checkpoint, teacher_path, dataset)
    teacher = model_from_checkpoint(checkpoint, device, teacher_path)
    claim_folder(folder, KIND, "--pseudo-dir", legacy=_made_before_markers)  # once the teacher is known to work
    (folder / STAMP).unlink(missing_ok=True)  # labels of another teacher must not pass for this one's
    mean, std = checkpoint["preprocess"]["mean"], checkpoint["preprocess"]["std"]
    label = functools.partial(teacher_labels, teacher, threshold, tuple(scales), device)
    with torch.no_grad():
        for batch_ids, images, _ in iterate_batches(dataset, image_ids, mean, std, batch_size, workers,
                                                    pin_memory=device.type == "cuda"):
            for image_id, labels in zip(batch_ids, slide(label, images, window).cpu().numpy()):  # [B, H, W]
                with atomic_write(paths[image_id]) as handle:
                    Image.fromarray(labels).save(handle, format="PNG")
    write_json(folder / STAMP, stamp)
    return paths
