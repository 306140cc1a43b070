"""Procedural street scenes: a deterministic segmentation pool with no download.

The active-learning loop needs a pool for tests, demos and benchmarks that any
machine can rebuild from a seed. Each scene is a side view across a street: sky, a
row of buildings (sometimes with a tree line behind), a far sidewalk, a two-lane road
and sometimes a near sidewalk, with trees, poles, cars and people standing on them.
Signs and lamps count as `pole`; tree trunks count as `vegetation`.

The task is meant not to be trivial: every class colour is jittered per scene, a
global brightness, tint and left-right light ramp are applied, every class carries a
texture (asphalt noise and lane marks, window grids, leafy blobs, clouds, car windows
and wheels, clothes) and per-pixel sensor noise, so colour thresholding alone does not
separate classes (grey cars on grey asphalt, white buildings under white clouds).

Redundancy is a knob, because acquisition functions are judged on how they cope with
near-duplicates. A scene is drawn on a world wider than the view; frame f of a
sequence is the view slid by f * pan pixels, with cars and people moved by their own
velocities, like consecutive video frames. `frames_per_sequence=1` gives a pool of
independent scenes.

Determinism: a sequence is drawn from `default_rng([seed, split, sequence index])`, so
it does not depend on how many sequences come before it, and the val split uses its
own stream. Textures are drawn from a per-scene seed, so they stay glued to the world
across frames, while sensor noise is drawn per frame.

Layout written by `write_synthetic_pool` (the `folder` layout):
    ROOT/classes.json                 class names, index = class id
    ROOT/<split>/images/<id>.png      RGB
    ROOT/<split>/masks/<id>.png       mode "L", class id per pixel (255 = ignore, unused)
    ROOT/<split>/sequences.json       {"<id>": {"sequence": "<seq id>", "frame": <int>}}
    ROOT/synthetic.json               the parameters; written last, so it marks a complete pool
"""
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lib.data.folder import open_folder
from lib.errors import UserError
from lib.fileio import atomic_write, read_json, write_json
from lib.owned import claim_folder

CLASS_NAMES = ("sky", "building", "road", "sidewalk", "vegetation", "pole", "car", "person")
SKY, BUILDING, ROAD, SIDEWALK, VEGETATION, POLE, CAR, PERSON = range(len(CLASS_NAMES))
# Bump whenever the pixels change for the same parameters: synthetic.json records it, so
# an old pool is reported as different instead of silently mixed with new images.
GENERATOR_VERSION = 1
MIN_SIZE = 32  # below this, people and poles shrink to a pixel or two
PARAMETERS_FILE = "synthetic.json"
KIND = "a synthetic pool of scripts/make_synthetic.py"
SPLITS = {"train": ("s", 0), "val": ("v", 1)}  # id prefix, seed stream

# Palettes are starting points: every draw is jittered per scene.
SKY_CLEAR = ((70, 120, 200), (175, 200, 230))  # top, horizon
SKY_OVERCAST = ((150, 155, 165), (205, 205, 210))
BUILDING_COLOURS = ((200, 180, 150), (170, 170, 170), (150, 80, 60), (120, 90, 70),
                    (225, 215, 190), (110, 120, 135), (235, 235, 230), (90, 90, 95))
SIDEWALK_COLOURS = ((160, 155, 150), (170, 120, 110), (190, 180, 160), (130, 130, 135))
ROAD_COLOUR = (85, 85, 90)
MARKING_COLOURS = ((225, 225, 220), (220, 190, 60))
VEGETATION_COLOURS = ((60, 110, 40), (80, 120, 50), (50, 90, 45), (100, 130, 60))
TRUNK_COLOUR = (90, 65, 40)
POLE_COLOURS = ((90, 90, 95), (125, 125, 130), (60, 75, 60))
SIGN_COLOURS = ((200, 30, 30), (30, 70, 180), (230, 230, 230), (240, 190, 30))
CAR_COLOURS = ((230, 230, 230), (170, 172, 175), (110, 110, 115), (30, 30, 35), (170, 30, 30),
               (40, 60, 140), (40, 80, 50), (220, 180, 40), (200, 190, 160))
SKIN_COLOURS = ((235, 200, 170), (200, 150, 110), (140, 95, 65), (90, 60, 40))
TROUSER_COLOURS = ((40, 45, 70), (30, 30, 30), (90, 80, 70), (60, 70, 110), (120, 110, 90))
GLASS_COLOUR = (55, 65, 85)
LIT_WINDOW_COLOUR = (230, 210, 140)


# ---------------------------------------------------------------------------- scene

@dataclass(frozen=True)
class Building:
    x0: float
    x1: float
    top: float
    colour: tuple
    window_pitch: tuple  # (dx, dy) of the window grid
    window_size: tuple   # (w, h) of one window
    lit: float           # fraction of lit windows
    door_x: float
    index: int           # decorrelates the per-window hash between buildings


@dataclass(frozen=True)
class Tree:
    x: float
    base: float
    trunk: tuple  # (width, height)
    crown: tuple  # ((dx, dy, r), ...) relative to the trunk top
    colour: tuple


@dataclass(frozen=True)
class Pole:
    x: float
    base: float
    height: float
    width: float
    colour: tuple
    kind: str  # "plain", "lamp" or "sign"
    side: int  # which way a lamp arm points
    sign_colour: tuple


@dataclass(frozen=True)
class Car:
    x: float  # left end at frame 0, world pixels
    base: float  # where the wheels touch the road
    length: float
    velocity: float  # pixels per frame
    facing: int
    colour: tuple


@dataclass(frozen=True)
class Person:
    x: float
    base: float
    height: float
    velocity: float
    phase: float
    skin: tuple
    shirt: tuple
    trousers: tuple
    hair: tuple


@dataclass(frozen=True)
class Scene:
    """Everything `render_frame` needs; positions are world pixels at frame 0."""
    height: int
    width: int
    frames: int
    world_width: int
    pan: int  # view shift per frame in pixels; the sign is the pan direction
    y_base: float  # foot of the buildings
    y_road: float  # curb between far sidewalk and road
    y_lane: float  # centre line of the road
    y_near: float  # curb of the near sidewalk; == height when there is none
    sky: tuple  # (top, horizon) colours
    cloudiness: float
    treeline: float  # height of the background tree line above y_base, 0 = none
    colours: dict  # per-scene jittered colours of the ground classes
    tile: float  # sidewalk paving pitch
    dash: tuple  # (length, period, phase) of the lane marking
    light: tuple  # (brightness, (r, g, b) tint, left-right ramp)
    noise_sigma: float
    texture_seed: int
    buildings: tuple
    things: tuple  # trees, poles, cars and people, far to near (painter's order)


def _jitter(rng, rgb, amount=12.0):
    """A palette colour moved per scene, so no class owns a fixed colour."""
    return tuple(float(c) for c in np.clip(np.asarray(rgb, float) + rng.normal(0, amount, 3), 0, 255))


def _pick(rng, palette, amount=12.0):
    return _jitter(rng, palette[rng.integers(len(palette))], amount)


def _depth_scale(base, y_base, height):
    """Things standing lower in the image are nearer, hence bigger."""
    return 0.6 + 0.6 * (base - y_base) / (height - y_base)


def _make_buildings(rng, height, world_width, y_base):
    buildings, x = [], -rng.uniform(0, 0.3) * height
    while x < world_width:
        if rng.random() < 0.2:
            x += rng.uniform(0.05, 0.25) * height  # a gap shows sky or trees behind
        width = rng.uniform(0.25, 0.7) * height
        dx, dy = rng.uniform(6, 11) * height / 96, rng.uniform(7, 12) * height / 96
        buildings.append(Building(
            x0=x, x1=x + width, top=rng.uniform(0.03 * height, y_base - 0.12 * height),
            colour=_pick(rng, BUILDING_COLOURS, 15), window_pitch=(dx, dy),
            window_size=(dx * rng.uniform(0.4, 0.65), dy * rng.uniform(0.45, 0.7)),
            lit=rng.uniform(0, 0.3), door_x=x + rng.uniform(0.15, 0.75) * width,
            index=len(buildings)))
        x += width
    return tuple(buildings)


def _make_trees(rng, height, world_width, y_base, y_road, colour):
    trees = []
    for _ in range(rng.poisson(0.9 * world_width / height)):
        base = y_base + rng.uniform(0.15, 0.5) * (y_road - y_base)
        s = _depth_scale(base, y_base, height) * height
        radius = rng.uniform(0.09, 0.15) * s
        crown = tuple((rng.uniform(-0.6, 0.6) * radius, rng.uniform(-0.9, -0.2) * radius,
                       rng.uniform(0.5, 0.8) * radius) for _ in range(rng.integers(4, 7)))
        trees.append(Tree(x=rng.uniform(0, world_width), base=base,
                          trunk=(max(1.5, 0.025 * s), rng.uniform(0.12, 0.22) * s),
                          crown=crown, colour=_jitter(rng, colour, 10)))
    return trees


def _make_poles(rng, height, world_width, y_base, y_road):
    poles = []
    for _ in range(1 + rng.poisson(0.5 * world_width / height)):
        base = y_road - rng.uniform(0.5, 2.0) * height / 96  # at the curb
        s = _depth_scale(base, y_base, height) * height
        poles.append(Pole(x=rng.uniform(0, world_width), base=base,
                          height=rng.uniform(0.3, 0.5) * s, width=max(1.2, 0.02 * s),
                          colour=_pick(rng, POLE_COLOURS, 8),
                          kind=("plain", "lamp", "sign")[rng.integers(3)],
                          side=int(rng.choice((-1, 1))), sign_colour=_pick(rng, SIGN_COLOURS, 10)))
    return poles


def _make_lane(rng, height, world_width, frames, y_base, rows, direction):
    """Cars of one lane share a traffic speed, so they rarely run into each other."""
    speed = 0.0 if rng.random() < 0.25 else rng.uniform(1, 4) * height / 96
    cars, travel = [], speed * frames
    x = -rng.uniform(0.3, 1.0) * height - travel
    while x < world_width + travel:
        base = rng.uniform(*rows)
        length = rng.uniform(0.30, 0.42) * height * _depth_scale(base, y_base, height)
        cars.append(Car(x=x, base=base, length=length,
                        velocity=direction * speed * rng.uniform(0.95, 1.05),
                        facing=direction if speed else int(rng.choice((-1, 1))),
                        colour=_pick(rng, CAR_COLOURS, 10)))
        x += length * rng.uniform(1.2, 3.5)
    return cars


def _make_people(rng, height, world_width, y_base, rows, density):
    people = []
    for _ in range(rng.poisson(density * world_width / height)):
        base = rng.uniform(*rows)
        moving = rng.random() < 0.7
        people.append(Person(
            x=rng.uniform(0, world_width), base=base,
            height=rng.uniform(0.22, 0.30) * height * _depth_scale(base, y_base, height),
            velocity=rng.choice((-1, 1)) * rng.uniform(0.4, 1.2) * height / 96 if moving else 0.0,
            phase=rng.uniform(0, 2 * np.pi), skin=_pick(rng, SKIN_COLOURS, 8),
            shirt=tuple(float(c) for c in rng.uniform(20, 235, 3)),
            trousers=_pick(rng, TROUSER_COLOURS, 10), hair=_jitter(rng, (45, 35, 25), 15)))
    return people


def make_scene(rng, height, width, frames):
    """Draw the layout of one sequence of `frames` frames of `height` x `width`."""
    _check_sizes(height=height, width=width, frames=frames)
    pan = max(1, round(rng.uniform(2, 5) * width / 128)) * int(rng.choice((-1, 1)))
    world_width = width + abs(pan) * (frames - 1)
    y_base = height * rng.uniform(0.40, 0.58)
    y_road = y_base + height * rng.uniform(0.07, 0.13)
    y_near = height * (1 - rng.uniform(0.04, 0.09)) if rng.random() < 0.5 else float(height)
    y_lane = y_road + (y_near - y_road) * rng.uniform(0.45, 0.55)
    vegetation = _pick(rng, VEGETATION_COLOURS, 10)
    # Asphalt varies in lightness from scene to scene but stays grey; a green road looks wrong.
    road = np.clip(np.asarray(ROAD_COLOUR) * rng.uniform(0.75, 1.3) + rng.normal(0, 3, 3), 0, 255)
    colours = {"road": tuple(float(c) for c in road), "sidewalk": _pick(rng, SIDEWALK_COLOURS, 12),
               "marking": _pick(rng, MARKING_COLOURS, 8), "vegetation": vegetation}
    overcast = rng.random() < 0.35
    sky = tuple(_jitter(rng, c, 10) for c in (SKY_OVERCAST if overcast else SKY_CLEAR))

    direction = int(rng.choice((-1, 1)))  # traffic keeps to one side per lane
    things = _make_trees(rng, height, world_width, y_base, y_road, vegetation)
    things += _make_poles(rng, height, world_width, y_base, y_road)
    things += _make_lane(rng, height, world_width, frames, y_base,
                         (y_road + 0.3 * (y_lane - y_road), y_lane), direction)
    things += _make_lane(rng, height, world_width, frames, y_base,
                         (y_lane + 0.35 * (y_near - y_lane), y_near - 0.5), -direction)
    far_walk = (y_base + 0.25 * (y_road - y_base), y_road - 0.1 * (y_road - y_base))
    things += _make_people(rng, height, world_width, y_base, far_walk, 1.5)
    if y_near < height:
        near_walk = (y_near + 0.2 * (height - y_near), float(height))
        things += _make_people(rng, height, world_width, y_base, near_walk, 0.6)

    return Scene(
        height=height, width=width, frames=frames, world_width=world_width, pan=pan,
        y_base=y_base, y_road=y_road, y_lane=y_lane, y_near=y_near, sky=sky,
        cloudiness=rng.uniform(0.2, 0.6) if overcast else rng.uniform(0, 0.6),
        treeline=rng.uniform(0.08, 0.25) * height if rng.random() < 0.5 else 0.0,
        colours=colours, tile=rng.uniform(5, 10) * height / 96,
        dash=(rng.uniform(6, 12) * height / 96, rng.uniform(18, 30) * height / 96, rng.uniform(0, 30)),
        light=(rng.uniform(0.7, 1.2), tuple(rng.uniform(0.9, 1.1, 3)), rng.uniform(-0.15, 0.15)),
        noise_sigma=rng.uniform(2.5, 7.0), texture_seed=int(rng.integers(2**62)),
        buildings=_make_buildings(rng, height, world_width, y_base),
        things=tuple(sorted(things, key=lambda thing: thing.base)))


# --------------------------------------------------------------------------- canvas

class _Canvas:
    """RGB (float, 0-255) and class id painted together, so masks align by construction."""

    def __init__(self, height, width):
        self.rgb = np.zeros((height, width, 3), np.float32)  # (H, W, 3)
        self.cls = np.zeros((height, width), np.uint8)  # (H, W)

    def box(self, x0, x1, y0, y1):
        """Slices and pixel-centre coordinates of a clipped box, or None when it is off-canvas."""
        height, width = self.cls.shape
        c0, c1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)), width)
        r0, r1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)), height)
        if c0 >= c1 or r0 >= r1:
            return None
        ys = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5  # (h, 1)
        xs = np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5  # (1, w)
        return (slice(r0, r1), slice(c0, c1)), ys, xs

    def rect(self, x0, x1, y0, y1):
        """Like `box`, plus the pixels whose centre is inside: a 1.2 px pole stays 1-2 px wide."""
        found = self.box(x0, x1, y0, y1)
        if found is None:
            return None
        where, ys, xs = found
        return where, (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1), ys, xs

    def paint(self, where, sel, colour, class_id):
        rgb, cls = self.rgb[where], self.cls[where]  # views
        sel = np.broadcast_to(sel, cls.shape)
        rgb[sel] = np.broadcast_to(np.asarray(colour, np.float32), rgb.shape)[sel]
        cls[sel] = class_id

    def shade(self, where, sel, factor):
        """Darken without relabelling: shadows belong to what they fall on."""
        rgb = self.rgb[where]
        rgb[np.broadcast_to(sel, rgb.shape[:2])] *= factor


@dataclass(frozen=True)
class _Textures:
    grain: np.ndarray  # (H, W) N(0, 1) per pixel, glued to the world so it pans with it
    blob: np.ndarray   # (H, W) smooth noise, ~5 px features, unit variance
    cloud: np.ndarray  # (H, W) fractal noise, ~25 px features, unit variance


def _value_noise(rng, height, width, cell):
    """Bilinear (smoothstepped) interpolation of a coarse random grid."""
    grid = rng.standard_normal((int(height / cell) + 2, int(width / cell) + 2)).astype(np.float32)
    y, x = np.arange(height) / cell, np.arange(width) / cell
    iy, ix = y.astype(int), x.astype(int)
    fy, fx = y - iy, x - ix
    fy, fx = (fy * fy * (3 - 2 * fy))[:, None], (fx * fx * (3 - 2 * fx))[None, :]
    top = grid[iy][:, ix] * (1 - fx) + grid[iy][:, ix + 1] * fx
    bottom = grid[iy + 1][:, ix] * (1 - fx) + grid[iy + 1][:, ix + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _fractal(rng, height, width, cell, octaves):
    total = sum(_value_noise(rng, height, width, cell / 2**k) / 2**k for k in range(octaves))
    return total / total.std()


def _textures(scene):
    return _textures_cached(scene.texture_seed, scene.height, scene.world_width)


# Frames of a sequence are rendered one after the other and share their textures, a
# third of the rendering time; the arrays are only ever read, so sharing them is safe.
@functools.lru_cache(maxsize=4)
def _textures_cached(texture_seed, height, world_width):
    rng = np.random.default_rng([texture_seed, 0])
    shape = (height, world_width)
    u = height / 96
    return _Textures(grain=rng.standard_normal(shape, dtype=np.float32),
                     blob=_fractal(rng, *shape, max(2.0, 5 * u), 2),
                     cloud=_fractal(rng, *shape, 25 * u, 3))


def _hash01(a, b, c):
    """Integer hash of a cell index to [0, 1): a random number per window, the same every frame."""
    h = (a.astype(np.int64) * 73856093) ^ (b.astype(np.int64) * 19349663) ^ (c * 83492791)
    return ((h ^ (h >> 13)) % 1009) / 1009.0


def _smoothstep(lo, hi, x):
    t = np.clip((x - lo) / (hi - lo), 0, 1)
    return t * t * (3 - 2 * t)


# ------------------------------------------------------------------ static world

def _draw_sky(canvas, scene, tex):
    where, ys, xs = canvas.box(0, scene.world_width, 0, scene.y_base + 1)
    top, horizon = (np.asarray(c, np.float32) for c in scene.sky)
    t = np.clip(ys / scene.y_base, 0, 1)[..., None]  # (h, 1, 1)
    colour = top * (1 - t) + horizon * t
    cover = (scene.cloudiness * _smoothstep(0.0, 1.2, tex.cloud[where]))[..., None]
    cloud = np.float32(225) + 15 * tex.blob[where][..., None]  # lumpy, not flat white
    canvas.paint(where, True, colour * (1 - cover) + cloud * cover, SKY)


def _vegetation_colour(base, tex, where):
    """Leaf clumps: light and dark blobs plus grain, so foliage is not one green."""
    shade = 0.8 + 0.22 * tex.blob[where] + 0.04 * tex.grain[where]
    return np.asarray(base, np.float32) * shade[..., None]


def _draw_treeline(canvas, scene, tex):
    if not scene.treeline:
        return
    where, ys, xs = canvas.box(0, scene.world_width, scene.y_base - 1.6 * scene.treeline, scene.y_base + 1)
    # A bumpy top edge: the cloud noise of one row read as a 1-D profile.
    edge = scene.y_base - scene.treeline * (1 + 0.35 * tex.cloud[0][where[1]])
    canvas.paint(where, ys >= edge, _vegetation_colour(scene.colours["vegetation"], tex, where), VEGETATION)


def _draw_building(canvas, b, scene, tex):
    found = canvas.box(b.x0, b.x1, b.top, scene.y_base + 1)
    if found is None:
        return
    where, ys, xs = found
    base = np.asarray(b.colour, np.float32)
    colour = base * (1 + 0.06 * tex.blob[where])[..., None] + 5 * tex.grain[where][..., None]
    colour = np.broadcast_to(colour, ys.shape[:1] + xs.shape[1:] + (3,)).copy()

    (dx, dy), (ww, wh) = b.window_pitch, b.window_size
    left, first = b.x0 + 0.5 * (dx - ww), b.top + 0.6 * dy  # corner of the first window
    col, row = np.floor((xs - left) / dx), np.floor((ys - first) / dy)
    inside = ((xs - left) % dx < ww) & ((ys - first) % dy < wh)
    # Only whole windows, and none on the ground floor (that is where the door is).
    inside &= (col >= 0) & (left + col * dx + ww <= b.x1 - 1)
    inside &= (row >= 0) & (first + row * dy + wh <= scene.y_base - 1.3 * dy)
    row, col = np.broadcast_arrays(row, col)
    luck = _hash01(row, col, b.index)  # (h, w)
    glass = np.where((luck < b.lit)[..., None], LIT_WINDOW_COLOUR, GLASS_COLOUR).astype(np.float32)
    glass *= (0.8 + 0.4 * luck)[..., None]  # curtains, reflections
    colour[inside] = glass[inside]

    colour[ys[:, 0] < b.top + max(1.0, 0.3 * dy)] *= 0.75  # roof ledge
    door = (np.abs(xs - b.door_x) < 0.35 * dx) & (ys > scene.y_base - 1.1 * dy)
    colour[door] = base * 0.35
    canvas.paint(where, True, colour, BUILDING)


def _paving(canvas, scene, tex, y0, y1, curb):
    found = canvas.box(0, scene.world_width, y0, y1)
    if found is None:
        return
    where, ys, xs = found
    base = np.asarray(scene.colours["sidewalk"], np.float32)
    shade = 1 + 0.05 * tex.blob[where] + 0.03 * tex.grain[where]
    joints = ((xs % scene.tile) < 1) | (((ys - y0) % (0.6 * scene.tile)) < 0.8)
    shade = np.where(joints, shade * 0.8, shade)
    curb_height = max(1.0, 0.02 * scene.height)
    curb_rows = (ys > y1 - curb_height) if curb == "bottom" else (ys < y0 + curb_height)
    shade = np.where(curb_rows, shade * 1.15, shade)  # the curb edge catches the light
    canvas.paint(where, True, base * shade[..., None], SIDEWALK)


def _draw_ground(canvas, scene, tex):
    _paving(canvas, scene, tex, scene.y_base, scene.y_road, "bottom")
    where, ys, xs = canvas.box(0, scene.world_width, scene.y_road, scene.y_near)
    shade = 1 + 0.08 * tex.blob[where] + 0.06 * tex.cloud[where] + 0.08 * tex.grain[where]
    colour = np.asarray(scene.colours["road"], np.float32) * shade[..., None]
    length, period, phase = scene.dash
    thick = max(1.0, 0.02 * scene.height)
    dashes = (np.abs(ys - scene.y_lane) < thick / 2 + 0.5) & (((xs + phase) % period) < length)
    colour = np.where(dashes[..., None], np.asarray(scene.colours["marking"], np.float32) * shade[..., None], colour)
    canvas.paint(where, True, colour, ROAD)
    if scene.y_near < scene.height:
        _paving(canvas, scene, tex, scene.y_near, scene.height, "top")


# ------------------------------------------------------------------ things

def _ellipse(canvas, cx, cy, rx, ry):
    found = canvas.box(cx - rx, cx + rx, cy - ry, cy + ry)
    if found is None:
        return None
    where, ys, xs = found
    return where, ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1, ys, xs


def _shadow(canvas, cx, cy, rx, ry):
    found = _ellipse(canvas, cx, cy, rx, ry)
    if found is not None:
        canvas.shade(found[0], found[1], 0.6)


def _draw_tree(canvas, tree, frame_index, tex):
    tw, th = tree.trunk
    found = canvas.rect(tree.x - tw / 2, tree.x + tw / 2, tree.base - th - 1, tree.base)
    if found is not None:
        where, sel = found[:2]
        bark = np.asarray(TRUNK_COLOUR, np.float32) * (1 + 0.1 * tex.grain[where])[..., None]
        canvas.paint(where, sel, bark, VEGETATION)
    top = tree.base - th
    reach = max(abs(dx) + r for dx, dy, r in tree.crown) * 1.3
    rise = max(-dy + r for dx, dy, r in tree.crown) * 1.3
    found = canvas.box(tree.x - reach, tree.x + reach, top - rise, top + reach * 0.5)
    if found is None:
        return
    where, ys, xs = found
    wobble = 1 + 0.2 * tex.blob[where]  # ragged outline instead of perfect circles
    inside = np.zeros(wobble.shape, bool)
    for dx, dy, r in tree.crown:
        inside |= np.hypot(xs - tree.x - dx, ys - top - dy) <= r * wobble
    underside = 1 - 0.25 * np.clip((ys - top + rise) / (rise + 1), 0, 1)  # self-shadow below
    canvas.paint(where, inside, _vegetation_colour(tree.colour, tex, where) * underside[..., None], VEGETATION)


def _draw_pole(canvas, pole, frame_index, tex):
    top = pole.base - pole.height
    colour = np.asarray(pole.colour, np.float32)
    found = canvas.rect(pole.x, pole.x + pole.width, top, pole.base)
    if found is not None:
        where, sel, ys, xs = found
        roundness = 1.2 - 0.4 * (xs - pole.x) / pole.width  # lit from the left, like a cylinder
        canvas.paint(where, sel, colour * roundness[..., None], POLE)
    thick = max(1.0, 0.7 * pole.width)
    if pole.kind == "lamp":
        arm = 0.15 * pole.height
        x0 = pole.x + pole.width / 2 + (0 if pole.side > 0 else -arm)
        found = canvas.rect(x0, x0 + arm, top, top + thick)
        if found is not None:
            canvas.paint(found[0], found[1], colour, POLE)
        head = pole.x + pole.width / 2 + pole.side * arm
        found = canvas.rect(head - 1.5 * thick, head + 1.5 * thick, top + thick, top + 2.2 * thick)
        if found is not None:
            canvas.paint(found[0], found[1], (235, 230, 200), POLE)
    elif pole.kind == "sign":
        size = 0.12 * pole.height
        found = _ellipse(canvas, pole.x + pole.width / 2, top + size, size / 2 + 0.5, size / 2 + 0.5)
        if found is not None:
            canvas.paint(found[0], found[1], pole.sign_colour, POLE)


def _draw_car(canvas, car, frame_index, tex):
    length = car.length
    cx = car.x + car.velocity * frame_index + length / 2
    wheel = 0.12 * length
    bottom = car.base - 0.5 * wheel  # wheels stick out below the body
    body_top = bottom - 0.27 * length
    cabin_top = body_top - 0.21 * length
    paint = np.asarray(car.colour, np.float32)
    _shadow(canvas, cx, car.base, 0.55 * length, 0.06 * length + 1)

    found = canvas.box(cx - length / 2, cx + length / 2, cabin_top, bottom)
    if found is None:
        return
    where, ys, xs = found
    u = (xs - cx) * car.facing / length  # along the car, positive towards the front
    mid, half = (body_top + bottom) / 2, (bottom - body_top) / 2
    body = (2 * u) ** 4 + ((ys - mid) / half) ** 4 <= 1  # a rounded box
    t = np.clip((ys - cabin_top) / (body_top - cabin_top), 0, 1)  # 0 at the roof
    rear, front = -0.27 + 0.05 * (1 - t), 0.20 - 0.12 * (1 - t)  # slanted windscreen
    cabin = (ys >= cabin_top) & (ys < body_top + 1) & (u >= rear) & (u < front)
    shine = 1.2 - 0.4 * np.clip((ys - cabin_top) / (bottom - cabin_top), 0, 1)
    colour = np.broadcast_to(paint * shine[..., None], body.shape + (3,)).copy()

    inset = max(1.0, 0.035 * length) / length
    glass = cabin & (ys >= cabin_top + inset * length) & (ys < body_top) & (u >= rear + inset) \
        & (u < front - inset) & (np.abs(u + 0.04) >= inset / 2)  # B-pillar splits the windows
    reflection = np.broadcast_to(0.7 + 0.6 * (1 - t), glass.shape)  # sky reflected near the roof
    colour[glass] = np.asarray(GLASS_COLOUR, np.float32) * reflection[glass][:, None]
    lamp_rows = (ys > body_top + 0.2 * (bottom - body_top)) & (ys < body_top + 0.45 * (bottom - body_top))
    colour[lamp_rows & (u > 0.46)] = (250, 240, 200)
    colour[lamp_rows & (u < -0.46)] = (200, 30, 30)
    canvas.paint(where, body | cabin, colour, CAR)

    for offset in (-0.3, 0.3):
        found = _ellipse(canvas, cx + offset * length, car.base - wheel, wheel, wheel)
        if found is None:
            continue
        wh, inside, ys, xs = found
        hub = np.hypot(xs - cx - offset * length, ys - car.base + wheel) < 0.45 * wheel
        canvas.paint(wh, inside, np.where(hub[..., None], np.float32(140), np.float32(25)), CAR)


def _draw_person(canvas, person, frame_index, tex):
    height = person.height
    x = person.x + person.velocity * frame_index
    top = person.base - height
    _shadow(canvas, x, person.base, 0.18 * height, 0.03 * height + 0.7)
    found = canvas.box(x - 0.25 * height, x + 0.25 * height, top, person.base)
    if found is None:
        return
    where, ys, xs = found
    # Legs swing with the distance walked, so a walker changes pose from frame to frame.
    swing = 0.12 * height * np.sin(person.phase + 0.6 * abs(person.velocity) * frame_index) \
        if person.velocity else 0.0
    hip = top + 0.53 * height
    along = np.clip((ys - hip) / (person.base - hip), 0, 1)
    leg_w = max(0.6, 0.05 * height)
    legs = (ys >= hip) & ((np.abs(xs - (x - 0.05 * height + swing * along)) < leg_w)
                          | (np.abs(xs - (x + 0.05 * height - swing * along)) < leg_w))
    torso = (np.abs(xs - x) < 0.13 * height) & (ys >= top + 0.17 * height) & (ys < hip + 0.03 * height)
    head_y = top + 0.09 * height
    head = np.hypot(xs - x, ys - head_y) <= 0.09 * height + 0.3
    hair = head & (ys < head_y - 0.02 * height)
    colour = np.zeros(ys.shape[:1] + xs.shape[1:] + (3,), np.float32)
    for part, tint in ((legs, person.trousers), (torso, person.shirt), (head, person.skin), (hair, person.hair)):
        colour[part] = tint
    canvas.paint(where, legs | torso | head, colour, PERSON)


_DRAW = {Tree: _draw_tree, Pole: _draw_pole, Car: _draw_car, Person: _draw_person}


# ------------------------------------------------------------------ camera

def _view_offset(scene, frame_index):
    """Left edge of the view in the world: the camera pans |pan| pixels per frame."""
    if scene.pan > 0:
        return scene.pan * frame_index
    return -scene.pan * (scene.frames - 1 - frame_index)


def _expose(rgb, scene, frame_index, x0):
    """Lighting, then sensor noise that is fresh every frame; (H, W, 3) float -> uint8."""
    brightness, tint, ramp = scene.light
    xs = (np.arange(x0, x0 + rgb.shape[1], dtype=np.float32) / scene.world_width - 0.5)[None, :, None]
    gain = np.float32(brightness) * np.asarray(tint, np.float32) * (1 + np.float32(ramp) * 2 * xs)
    noise = np.random.default_rng([scene.texture_seed, 1, frame_index]).standard_normal(rgb.shape, dtype=np.float32)
    return np.clip(np.rint(rgb * gain + scene.noise_sigma * noise), 0, 255).astype(np.uint8)


def render_frame(scene, frame_index, height, width):
    """Frame `frame_index` of `scene` as (image (H, W, 3) uint8, mask (H, W) uint8 class ids)."""
    if (height, width) != (scene.height, scene.width):
        raise ValueError(f"scene was made for {scene.height}x{scene.width}, not {height}x{width}")
    if not 0 <= frame_index < scene.frames:
        raise ValueError(f"frame_index {frame_index} outside 0..{scene.frames - 1}")
    canvas = _Canvas(scene.height, scene.world_width)
    tex = _textures(scene)
    _draw_sky(canvas, scene, tex)
    _draw_treeline(canvas, scene, tex)
    for building in scene.buildings:
        _draw_building(canvas, building, scene, tex)
    _draw_ground(canvas, scene, tex)
    for thing in scene.things:
        _DRAW[type(thing)](canvas, thing, frame_index, tex)
    x0 = _view_offset(scene, frame_index)
    view = slice(x0, x0 + width)
    return _expose(canvas.rgb[:, view], scene, frame_index, x0), canvas.cls[:, view].copy()


# ------------------------------------------------------------------ pool on disk

def _check_sizes(**values):
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise UserError(f"{name} must be an integer, got {value!r}")
        low = MIN_SIZE if name in ("height", "width") else 1
        if value < low:
            raise UserError(f"{name} must be at least {low}, got {value}")


def synthetic_parameters(*, sequences=30, frames_per_sequence=4, val_images=40, height=96, width=128, seed=0):
    """The validated parameters of a pool, as recorded in synthetic.json."""
    _check_sizes(sequences=sequences, frames_per_sequence=frames_per_sequence, val_images=val_images,
                 height=height, width=width)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}")
    return {"version": GENERATOR_VERSION, "seed": int(seed), "sequences": int(sequences),
            "frames_per_sequence": int(frames_per_sequence), "val_images": int(val_images),
            "height": int(height), "width": int(width)}


def existing_pool_matches(root, parameters):
    """True if `root` holds a complete pool made with `parameters`, False if it holds none.

    A pool made with other parameters is a UserError: overwriting it would leave a mix
    of old and new images that no synthetic.json describes.
    """
    path = Path(root) / PARAMETERS_FILE
    if not path.exists():
        return False
    found = read_json(path, "synthetic pool description")
    if found == parameters:
        return True
    found = found if isinstance(found, dict) else {}
    diff = ", ".join(f"{key} {found.get(key)!r} != {value!r}" for key, value in parameters.items()
                     if found.get(key) != value) or "unexpected content"
    raise UserError(f"{path}: pool was made with other parameters ({diff}); use another root or delete it")


def _save_png(path, array):
    """(H, W, 3) uint8 saves as RGB, (H, W) uint8 as mode "L"."""
    with atomic_write(path, "wb") as handle:
        Image.fromarray(array).save(handle, format="PNG")


def _mkdir(path):
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{path}: cannot create folder ({err.strerror or err})") from None


def _write_split(folder, prefix, stream, count, frames, height, width, seed):
    for sub in ("images", "masks"):
        _mkdir(folder / sub)
    seq_digits, frame_digits = max(4, len(str(count - 1))), max(2, len(str(frames - 1)))
    index = {}
    for s in range(count):
        scene = make_scene(np.random.default_rng([seed, stream, s]), height, width, frames)
        sequence = f"{prefix}{s:0{seq_digits}d}"
        for f in range(frames):
            image, mask = render_frame(scene, f, height, width)
            item = f"{sequence}_f{f:0{frame_digits}d}"
            _save_png(folder / "images" / f"{item}.png", image)
            _save_png(folder / "masks" / f"{item}.png", mask)
            index[item] = {"sequence": sequence, "frame": f}
    write_json(folder / "sequences.json", index)


def write_synthetic_pool(root, *, sequences=30, frames_per_sequence=4, val_images=40, height=96, width=128,
                         seed=0):
    """Write a train split of `sequences` x `frames_per_sequence` frames and `val_images` single-frame scenes."""
    parameters = synthetic_parameters(sequences=sequences, frames_per_sequence=frames_per_sequence,
                                      val_images=val_images, height=height, width=width, seed=seed)
    # Never into a user's folder dataset: only a new or empty folder, or a pool of ours (before
    # folders were marked: one with synthetic.json).
    root = claim_folder(root, KIND, legacy=lambda path: (path / PARAMETERS_FILE).is_file())
    # synthetic.json goes first and comes back last: a run killed halfway leaves no claim
    # that the half-overwritten folder is a complete pool (the owner's marker stays).
    (root / PARAMETERS_FILE).unlink(missing_ok=True)
    write_json(root / "classes.json", list(CLASS_NAMES))
    counts = {"train": (sequences, frames_per_sequence), "val": (val_images, 1)}
    for split, (prefix, stream) in SPLITS.items():
        _write_split(root / split, prefix, stream, *counts[split], height, width, seed)
    write_json(root / PARAMETERS_FILE, parameters)


def open_synthetic(root, split):
    """A pool written by `write_synthetic_pool` is a `folder` pool that says where it came from."""
    marker = Path(root) / PARAMETERS_FILE
    if Path(root).is_dir() and not marker.exists():
        raise UserError(f"{marker}: not found; write the pool with scripts/make_synthetic.py {root}")
    return open_folder(root, split, name="synthetic")
