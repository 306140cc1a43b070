"""Pictures drawn with Pillow, which the toolkit requires anyway, so that every user gets them: the active-learning
curves (lib.report_files, where matplotlib is absent) and the selection maps (lib.selection_maps).

A picture is drawn at SUPERSAMPLE times its size and reduced by averaging blocks of pixels: edges come out smooth,
and a block wholly inside a line or a marker keeps its exact colour. The same inputs give the same PNG bytes
(Pillow writes no time stamp, and the font is Pillow's own).
"""
import functools
import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lib.report import AXIS_LABELS, CURVE_METRICS, mean_curve
from lib.text import plural

SUPERSAMPLE = 2
# matplotlib's default colour cycle ("tab10"): a method has the same colour whichever library drew its curve.
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
BLACK, WHITE, GRID = (0, 0, 0), (255, 255, 255), (225, 225, 225)
BAND_ALPHA = 0.2  # the ±1 std band over seeds, as matplotlib's fill_between(alpha=0.2) draws it
# Selection maps: what each point is, drawn in this order (the new picks on top), as (legend, colour, radius px).
MAP_POINTS = (("unlabeled", (185, 185, 185), 1.5), ("labeled before", (31, 90, 180), 2.5),
              ("new this cycle", (255, 60, 0), 4.0))


@functools.lru_cache(maxsize=None)  # the bundled font is decoded anew by every load_default
def font(size):
    """Pillow's bundled font at `size` px; its small bitmap font where Pillow lacks FreeType or predates 10.1."""
    try:
        return ImageFont.load_default(size=size * SUPERSAMPLE)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


class Canvas:
    """A white RGB picture; coordinates and sizes in the pixels of the final picture."""

    def __init__(self, width, height):
        self.image = Image.new("RGB", (width * SUPERSAMPLE, height * SUPERSAMPLE), WHITE)
        self.draw = ImageDraw.Draw(self.image)

    @staticmethod
    def _scaled(points):
        return [(x * SUPERSAMPLE, y * SUPERSAMPLE) for x, y in points]

    def text(self, xy, text, size, anchor="la", fill=BLACK):
        """`anchor`: as Pillow's, horizontal (l, m, r) then vertical (a: top, m: middle, d: bottom); placed by the
        text's box here because Pillow's bitmap font (the fallback of `font`) takes no anchor."""
        left, top, right, bottom = self.draw.textbbox((0, 0), text, font=font(size))
        x, y = self._scaled([xy])[0]
        x -= left + (right - left) * "lmr".index(anchor[0]) / 2
        y -= top + (bottom - top) * "amd".index(anchor[1]) / 2
        self.draw.text((x, y), text, fill=fill, font=font(size))

    def text_width(self, text, size):
        left, _, right, _ = self.draw.textbbox((0, 0), text, font=font(size))
        return (right - left) / SUPERSAMPLE

    def vertical_text(self, center, text, size):
        """`text` read bottom to top, centred on `center`."""
        mask = Image.new("L", (int(self.text_width(text, size) * SUPERSAMPLE) + 4, 2 * size * SUPERSAMPLE))
        left, top, right, bottom = ImageDraw.Draw(mask).textbbox((0, 0), text, font=font(size))
        origin = ((mask.width - left - right) / 2, (mask.height - top - bottom) / 2)  # the box centred
        ImageDraw.Draw(mask).text(origin, text, fill=255, font=font(size))
        mask = mask.rotate(90, expand=True)
        x, y = self._scaled([center])[0]
        self.image.paste(BLACK, (int(x) - mask.width // 2, int(y) - mask.height // 2), mask)

    def line(self, points, fill, width=1.0):
        self.draw.line(self._scaled(points), fill=fill, width=round(width * SUPERSAMPLE), joint="curve")

    def dashed_hline(self, y, x0, x1, fill, dash=6.0, width=1.0):
        x = x0
        while x < x1:
            self.line([(x, y), (min(x + dash, x1), y)], fill, width)
            x += 2 * dash

    def rectangle(self, box, outline=None, fill=None, width=1.0):
        self.draw.rectangle(self._scaled([box[:2], box[2:]]), outline=outline, fill=fill,
                            width=round(width * SUPERSAMPLE))

    def disks(self, centers, radius, fill, outline=None):
        r = radius * SUPERSAMPLE
        for x, y in self._scaled(centers):
            self.draw.ellipse((x - r, y - r, x + r, y + r), fill=fill, outline=outline)

    def translucent_polygon(self, points, fill, alpha):
        """A polygon of `fill` at opacity `alpha` over what is drawn."""
        mask = Image.new("L", self.image.size)
        ImageDraw.Draw(mask).polygon(self._scaled(points), fill=round(255 * alpha))
        self.image.paste(fill, (0, 0), mask)

    def legend(self, corner, entries, size=11):
        """A framed legend with `corner` its bottom right; entries (text, draw_key(x, y)), keys 24 px wide."""
        row = size + 6
        width = 38 + max(self.text_width(text, size) for text, _ in entries)
        right, bottom = corner
        left, top = right - width, bottom - row * len(entries) - 6
        self.rectangle((left, top, right, bottom), outline=(200, 200, 200), fill=WHITE)
        for i, (text, draw_key) in enumerate(entries):
            y = top + 3 + row * (i + 0.5)
            draw_key(left + 6, y)
            self.text((left + 34, y), text, size, anchor="lm")

    def png(self):
        """The picture reduced to its size, as PNG bytes."""
        buffer = io.BytesIO()
        self.image.reduce(SUPERSAMPLE).save(buffer, format="PNG")
        return buffer.getvalue()


def nice_ticks(low, high, most=8):
    """Round values within [low, high], steps of 1, 2 or 5 times a power of ten, at most `most` of them; and the
    decimals they need."""
    span = high - low
    exponent = math.floor(math.log10(span / most))
    step = next(m * 10.0 ** e for e in (exponent, exponent + 1) for m in (1, 2, 5) if span / (m * 10.0 ** e) <= most)
    first = math.ceil(low / step - 1e-9)
    ticks = [(first + i) * step for i in range(int(math.floor(high / step + 1e-9)) - first + 1)]
    return ticks, max(0, -math.floor(math.log10(step) + 1e-9))


def _padded_range(values, share=0.05):
    low, high = min(values), max(values)
    pad = share * (high - low) if high > low else max(1.0, abs(high) * 0.05)
    return low - pad, high + pad


def curves_png(curves, axis, title, full_value=None, metric="miou", size=(840, 540)):
    """lib.report.plot_curves' picture, drawn with Pillow: the metric (%) against the labeled share, one line per
    method with a ±1 std band over seeds, the full-supervision value dashed. PNG bytes."""
    lines = {method: [np.asarray(values) for values in mean_curve(seeds)] for method, seeds in sorted(curves.items())}
    xs = [x for budgets, _, _ in lines.values() for x in budgets]
    ys = [y for _, mean, std in lines.values() for y in (*(mean - std), *(mean + std))]
    ys += [full_value] if full_value is not None else []
    (x_low, x_high), (y_low, y_high) = _padded_range(xs), _padded_range(ys)
    width, height = size
    left, top, right, bottom = 72, 36, width - 16, height - 52

    def at(x, y):
        return (left + (x - x_low) / (x_high - x_low) * (right - left),
                bottom - (y - y_low) / (y_high - y_low) * (bottom - top))

    canvas = Canvas(width, height)
    x_ticks, x_decimals = nice_ticks(x_low, x_high)
    y_ticks, y_decimals = nice_ticks(y_low, y_high)
    for x in x_ticks:
        canvas.line([at(x, y_low), at(x, y_high)], GRID)
        canvas.text((at(x, y_low)[0], bottom + 6), f"{x:.{x_decimals}f}", 11, anchor="ma")
    for y in y_ticks:
        canvas.line([at(x_low, y), at(x_high, y)], GRID)
        canvas.text((left - 6, at(x_low, y)[1]), f"{y:.{y_decimals}f}", 11, anchor="rm")
    colours = dict(zip(lines, (PALETTE[i % len(PALETTE)] for i in range(len(lines)))))
    for method, (budgets, mean, std) in lines.items():
        band = [at(x, y) for x, y in zip(budgets, mean + std)] + [at(x, y) for x, y in zip(budgets[::-1],
                                                                                         (mean - std)[::-1])]
        canvas.translucent_polygon(band, colours[method], BAND_ALPHA)
    if full_value is not None:
        canvas.dashed_hline(at(x_low, full_value)[1], left, right, BLACK)
    for method, (budgets, mean, _) in lines.items():
        points = [at(x, y) for x, y in zip(budgets, mean)]
        canvas.line(points, colours[method], width=2)
        canvas.disks(points, 3.5, colours[method])
    canvas.rectangle((left, top, right, bottom), outline=BLACK)
    canvas.text((width / 2, top / 2), title, 14, anchor="mm")
    canvas.text(((left + right) / 2, height - 8), AXIS_LABELS[axis], 12, anchor="md")
    canvas.vertical_text((16, (top + bottom) / 2), f"{CURVE_METRICS[metric].name} (%)", 12)

    def method_key(colour):
        return lambda x, y: (canvas.line([(x, y), (x + 24, y)], colour, 2), canvas.disks([(x + 12, y)], 3.5, colour))

    entries = [(f"{method} ({plural(len(curves[method]), 'seed')})", method_key(colours[method])) for method in lines]
    if full_value is not None:
        entries.append(("full supervision", lambda x, y: canvas.dashed_hline(y, x, x + 24, BLACK, dash=5)))
    canvas.legend((right - 8, bottom - 8), entries)
    return canvas.png()


def selection_map_png(points, state, title, size=480):
    """A map of the pool: `points` [N, 2] the items' places, `state` [N] each item's row of MAP_POINTS (0 unlabeled,
    1 labeled before the cycle, 2 new this cycle). x and y share one scale, so distances read the same both ways.
    PNG bytes."""
    points, state = np.asarray(points, dtype=np.float64), np.asarray(state)
    low, high = points.min(axis=0), points.max(axis=0)
    top, margin, legend_height = 28, 12, 3 * 17 + 6
    box = size - 2 * margin, size - top - legend_height - 2 * margin  # the square's room: width, height
    scale = min(box) / max(float((high - low).max()), 1e-12)
    offset = np.array([margin + (box[0] - scale * (high - low)[0]) / 2,
                       top + margin + (box[1] - scale * (high - low)[1]) / 2])
    places = (points - low) * scale + offset  # [N, 2] in pixels
    places[:, 1] = 2 * offset[1] + scale * (high - low)[1] - places[:, 1]  # y up, as on a plot

    canvas = Canvas(size, size)
    canvas.text((size / 2, top / 2), title, 12, anchor="mm")
    outlines = (None, None, (120, 30, 0))  # the new picks stand out on the blue of the labeled ones too
    for row, (_, colour, radius) in enumerate(MAP_POINTS):
        canvas.disks([tuple(place) for place in places[state == row]], radius, colour, outlines[row])

    def key(row):
        _, colour, radius = MAP_POINTS[row]
        return lambda x, y: canvas.disks([(x + 12, y)], radius, colour, outlines[row])

    counts = np.bincount(state, minlength=len(MAP_POINTS))
    entries = [(f"{name} ({counts[row]})", key(row)) for row, (name, _, _) in enumerate(MAP_POINTS)]
    canvas.legend((size - margin, size - 4), entries)
    return canvas.png()
