"""Sliding-window inference: memory bounded by one window, whatever the size of the image.

A whole 8000x8000 image through the network holds every activation of every layer at
full size, and the logits [C, 8000, 8000] with their softmax: about 10 GB with the
tiny model. `slide` instead runs `fn` on one window of the image at a time and keeps
only what `fn` returns for the part of the window it owns. `fn` already reduces the
logits (a pixel score map [B, H, W], argmax predictions, a feature map), so no
full-size logit map ever exists: memory is one window's activations, plus the input
image and the reduced canvas. `owned_parts` hands over the owned parts one by one
instead, for a reduction that needs no canvas at all (evaluate.py's confusion matrix).

Windows (`windows`) are placed every `window_stride(side)` pixels, 2/3 of the side
rounded to the nearest pixel as in mmsegmentation's slide-mode configs (512 -> 341,
769 -> 513, 1024 -> 683), with the last one flush with the far border, so all
windows have the same size. Where windows overlap, each pixel is kept from the one
window in which it lies most centrally: overlaps are split at their middle (the
overlap-tile strategy of U-Net, Ronneberger et al. 2015), so every pixel is owned by
exactly one window and sees about a sixth of a window of context or more on every side
that is not the image border. mmsegmentation instead averages the overlapping
logits; that needs the logits of the whole image at once (the memory this module
avoids), and an average of probabilities is not what scores such as entropy or the
EqualAL divergence are defined on.

An image that fits inside the window in both dimensions goes through `fn` whole,
exactly as without this module: results on such images are unchanged, bit for bit.

Outputs coarser than the input (a stride-16 feature map) are placed by mapping
every pixel coordinate x of the image to ceil(x * h' / h), h' the output side of a
window of side h. This map adds exactly h' when x grows by h, so each window's
output lands whole on the canvas and the owned parts of adjacent windows still
meet: they partition the canvas as they partition the image. The canvas side is
ceil(H * h' / h): for a stride-s network and a window side that is a multiple of s
(2048 for s = 8, 16 or 32), ceil(H / s), the map the whole image would give.
Windows that do not start on a multiple of s sit up to one cell off the whole
image's grid; features are averaged over items, which that does not change much.
"""
from lib.units import Box

DEFAULT_SLIDE_WINDOW = (2048, 2048)  # height, width: Cityscapes' 1024x2048 frames stay whole


def window_stride(side):
    """Pixels between window starts: 2/3 of the window side, to the nearest pixel (2 side / 3 is never a half)."""
    return (2 * side + 1) // 3


def _axis(length, side):
    """[(window start, window end, owned start, owned end)] along one axis of `length` pixels.

    Starts every `window_stride(side)` pixels plus one flush with the far border; the
    overlap of two neighbours is split at its middle (a pixel exactly between their
    centres goes to the later one).
    """
    size = min(side, length)
    starts = list(range(0, length - size + 1, window_stride(side)))
    if starts[-1] != length - size:
        starts.append(length - size)
    cuts = [0] + [(start + following + size) // 2 for start, following in zip(starts, starts[1:])] + [length]
    return [(start, start + size, cuts[i], cuts[i + 1]) for i, start in enumerate(starts)]


def windows(height, width, window):
    """[(window Box, owned Box)] of a [height, width] image for a (height, width) `window`, row by row.

    Every window has the same size (the window, or the image side where it is
    smaller); the owned boxes partition the image.
    """
    rows, cols = _axis(height, window[0]), _axis(width, window[1])
    return [(Box(top, left, bottom, right), Box(own_top, own_left, own_bottom, own_right))
            for top, bottom, own_top, own_bottom in rows for left, right, own_left, own_right in cols]


def scale_box(box, size, out_size):
    """A pixel box on the output map of `fn`, given a window's (h, w) `size` and its output's (h', w') `out_size`:
    every coordinate x -> ceil(x * h' / h) (resp. w). Identity for outputs at the input's scale."""
    (height, width), (out_height, out_width) = size, out_size
    return Box(-(-box.top * out_height // height), -(-box.left * out_width // width),
               -(-box.bottom * out_height // height), -(-box.right * out_width // width))


def owned_parts(fn, images, window):
    """Yield ((H', W'), target Box, part [B, ..., h'', w'']) for every window of `images` [B, 3, H, W]: `fn` on
    the window, cut to the part the window owns, and where that part lies on the [H', W'] output of the whole image.

    A reduction that needs no map of the whole image (a confusion matrix) takes the
    parts one by one; `slide` stitches them. An image that fits in `window` is one
    window spanning it, which is the image tensor itself: `fn` sees exactly the whole image.
    """
    height, width = images.shape[-2:]
    for box, owned in windows(height, width, window):
        out = fn(images[..., box.top:box.bottom, box.left:box.right])  # [B, ..., h', w']
        size = (box.bottom - box.top, box.right - box.left)
        full, origin, target = (scale_box(b, size, out.shape[-2:]) for b in (Box(0, 0, height, width), box, owned))
        top, left = target.top - origin.top, target.left - origin.left  # the owned part within the window's output
        yield (full.bottom, full.right), target, out[..., top:top + target.bottom - target.top,
                                                     left:left + target.right - target.left]


def slide(fn, images, window):
    """`fn(images [B, 3, h, w]) -> [B, ..., h', w']` over `images` [B, 3, H, W], window by window, stitched.

    Returns [B, ..., H', W'] on the device and in the dtype of `fn`'s output, H' =
    ceil(H * h' / h) (H itself for outputs at the input's scale). `images` may stay on
    the CPU while `fn` moves each window to the model's device.
    """
    height, width = images.shape[-2:]
    if height <= window[0] and width <= window[1]:
        return fn(images)  # the whole image at once, and no canvas to copy its output into
    canvas = None
    for canvas_size, target, part in owned_parts(fn, images, window):
        if canvas is None:
            canvas = part.new_empty((*part.shape[:-2], *canvas_size))  # [B, ..., H', W']
        canvas[..., target.top:target.bottom, target.left:target.right] = part
    return canvas
