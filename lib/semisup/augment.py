"""The strong augmentation of self-training's pseudo-labeled images (S4AL+, after Xie et al.).

Gaussian blur, colour jitter and CutOut on top of the weak crop and flip: the student
must reproduce the teacher's confident labels from a harder view of the image. Every
draw comes from the sample's `random.Random`, so a resumed run sees the same views.
"""
import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from lib.data.base import IGNORE_INDEX

JITTER = 0.4  # brightness, contrast and saturation factors drawn from [1 - JITTER, 1 + JITTER]
BLUR_PROBABILITY = 0.5
BLUR_SIGMA = (0.1, 2.0)  # pixels
CUTOUT_PROBABILITY = 0.5
CUTOUT_AREA = (0.02, 0.25)  # share of the crop hidden by one rectangle


def strong_augment(image, target, rng):
    """[H, W, 3] uint8 image and [H, W] uint8 target -> augmented copies; CutOut's pixels are ignored."""
    picture = Image.fromarray(np.ascontiguousarray(image))
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        picture = enhance(picture).enhance(rng.uniform(1 - JITTER, 1 + JITTER))
    if rng.random() < BLUR_PROBABILITY:
        picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(*BLUR_SIGMA)))
    image, target = np.array(picture), np.array(target)
    if rng.random() < CUTOUT_PROBABILITY:
        height, width = target.shape
        area = rng.uniform(*CUTOUT_AREA) * height * width
        aspect = rng.uniform(0.5, 2.0)
        box_h = min(height, max(1, round((area * aspect) ** 0.5)))
        box_w = min(width, max(1, round((area / aspect) ** 0.5)))
        top, left = rng.randint(0, height - box_h), rng.randint(0, width - box_w)
        image[top:top + box_h, left:left + box_w] = 0
        target[top:top + box_h, left:left + box_w] = IGNORE_INDEX  # nothing to learn from a hidden pixel
    return image, target
