"""A2D2's semantic segmentation set (Geyer et al., arXiv:2004.06320), as unpacked from camera_lidar_semantic.tar:

    ROOT/camera_lidar_semantic/class_list.json        {"#ff0000": "Car 1", ...}: 55 colours of 38 classes
    ROOT/camera_lidar_semantic/<YYYYMMDD_hhmmss>/camera/cam_front_center/<YYYYMMDDhhmmss>_camera_frontcenter_<frame>.png
    ROOT/camera_lidar_semantic/<YYYYMMDD_hhmmss>/label/cam_front_center/<YYYYMMDDhhmmss>_label_frontcenter_<frame>.png

1920x1208 RGB images, labels coloured as class_list.json says. The set's 41,277 frames
in 23 sequences span six cameras; this loader reads the front-centre camera. Split `val`
is sequence 20180925_112730, as in the study; `train` is every other sequence.

An image's id is its file name without .png, unique across sequences because it starts
with the sequence's recording time. Frames are ordered by the number at the end of the
name: it counts the camera's frames, so within one camera of one sequence it grows with
the timestamp (cam_tstamp) of the .json beside each image, and 41k JSON files need not
be read. Numbers of different cameras are not comparable, one more reason to read one.

Colours map to the 38 classes (instances such as Car 1..Car 4 share a class), and those
to the 19 Cityscapes train ids by TO_CITYSCAPES; colours that class_list.json lacks are
ignored.
"""
import functools
import re

import numpy as np

from lib.data.base import (
    IGNORE_INDEX, Frame, SegmentationDataset, files_by_stem, images_by_stem, read_colour_label, require_root,
)
from lib.data.cityscapes import CLASS_NAMES  # A2D2 is read in Cityscapes' 19 train ids
from lib.errors import UserError
from lib.fileio import read_json

# The Cityscapes train ids, in order (cityscapesScripts helpers/labels.py).
# A2D2 class (a class_list.json name less its instance number) -> Cityscapes class; None = ignore.
# From SEG_COLOR_DICT_CITYSCAPES of the A2D2 converter written for mmsegmentation
# (tools/convert_datasets/a2d2.py), except the rows marked "differs": there that table doubts
# itself ("???") or departs from Cityscapes' own definitions. The study's loader
# (sud0301/best_practices_ALSS, data/dataloaders/a2d2.py) cannot be followed: it maps to 19 ids
# of its own (car = 1, a catch-all "other" = 18, unknown colours = 0), not to Cityscapes train ids.
# Wall, terrain, rider, bus and train have no A2D2 class, so they never occur in the labels.
TO_CITYSCAPES = {
    "RD normal street": "road",
    "Drivable cobblestone": "road",
    "Slow drive area": "road",
    "RD restricted area": "road",
    "Speed bumper": "road",
    "Zebra crossing": "road",  # markings belong to the road they are painted on, as in Cityscapes
    "Solid line": "road",
    "Dashed line": "road",
    "Painted driv. instr.": "road",
    "Sidewalk": "sidewalk",
    "Curbstone": "sidewalk",  # Cityscapes' sidewalk includes the curb
    "Non-drivable street": "sidewalk",  # differs (road): not for cars; the study merges it with Sidewalk
    "Buildings": "building",
    "Sidebars": "fence",
    "Road blocks": "fence",
    "Grid structure": "fence",  # differs (road ???): a structure; the study merges it with Road blocks
    "Poles": "pole",
    "Traffic signal": "traffic light",
    "Signal corpus": "traffic light",  # the signal's housing, part of a Cityscapes traffic light
    "Traffic sign": "traffic sign",
    "Nature object": "vegetation",
    "Sky": "sky",
    "Pedestrian": "person",
    "Car": "car",
    "Utility vehicle": "car",
    "Truck": "truck",
    "Tractor": "truck",
    "Small vehicles": "motorcycle",
    "Bicycle": "bicycle",
    "Parking area": None,  # differs (road): Cityscapes' parking has no train id
    "Traffic guide obj.": None,  # differs (road ???): objects standing on the road, no Cityscapes class
    "Electronic traffic": None,
    "Irrelevant signs": None,
    "Obstacles / trash": None,
    "Animals": None,
    "Ego car": None,
    "Blurred area": None,
    "Rain dirt": None,
}
VAL_SEQUENCE = "20180925_112730"
CAMERA = "cam_front_center"
LAYOUT = f"ROOT/camera_lidar_semantic/<YYYYMMDD_hhmmss>/{{camera,label}}/{CAMERA}/ and its class_list.json"
_SEQUENCE = re.compile(r"^\d{8}_\d{6}$")
_IMAGE_NAME = re.compile(r"^(?P<stamp>\d{14})_camera_frontcenter_(?P<frame>\d+)$")
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
_INSTANCE_NUMBER = re.compile(r" \d+$")


def _colour_table(path):
    """The known colours packed as 0xRRGGBB, sorted, [K] int32, and their train ids [K] uint8."""
    entries = read_json(path, "A2D2 class list")
    if not (isinstance(entries, dict) and entries):
        raise UserError(f"{path}: expected A2D2's {{\"#rrggbb\": \"<class>\", ...}}")
    train_id_of_colour = {}
    for colour, name in entries.items():
        if not (_COLOUR.match(colour) and isinstance(name, str)):
            raise UserError(f"{path}: {colour!r}: {name!r} is not a \"#rrggbb\": \"<class>\" entry")
        a2d2_class = _INSTANCE_NUMBER.sub("", name)
        if a2d2_class not in TO_CITYSCAPES:
            raise UserError(f"{path}: {name!r} is not one of the 38 A2D2 classes that lib/data/a2d2.py maps")
        cityscapes_class = TO_CITYSCAPES[a2d2_class]
        train_id = IGNORE_INDEX if cityscapes_class is None else CLASS_NAMES.index(cityscapes_class)
        train_id_of_colour[int(colour[1:], 16)] = train_id
    colours = sorted(train_id_of_colour)
    return np.array(colours, dtype=np.int32), np.array([train_id_of_colour[c] for c in colours], dtype=np.uint8)


def _decode_colours(colours, train_ids, path):
    """[H, W] uint8 train ids of a colour label; a module-level function so that its partial pickles."""
    rgb = read_colour_label(path).astype(np.int32)  # [H, W, 3]
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]  # [H, W]
    slot = np.searchsorted(colours, packed).clip(max=len(colours) - 1)  # [H, W] where each colour would sit
    return np.where(colours[slot] == packed, train_ids[slot], IGNORE_INDEX).astype(np.uint8)


def _split_sequences(semantic_dir, split):
    if split == "val":
        return [VAL_SEQUENCE]
    if split != "train":
        raise UserError(f"A2D2 has splits train and val (sequence {VAL_SEQUENCE}), not {split!r}")
    sequences = sorted(
        p.name for p in semantic_dir.iterdir() if p.is_dir() and _SEQUENCE.match(p.name) and p.name != VAL_SEQUENCE
    )
    if not sequences:
        raise UserError(f"{semantic_dir}: no sequence folders <YYYYMMDD_hhmmss> besides {VAL_SEQUENCE}")
    return sequences


def _read_sequence(sequence_dir):
    """{id: image path}, {id: label path} and {id: Frame} of one sequence's front-centre camera."""
    image_paths = images_by_stem(sequence_dir / "camera" / CAMERA, (".png",), LAYOUT)
    label_dir = sequence_dir / "label" / CAMERA
    # Read as masks are in every layout: .png in any case, one file per label.
    label_paths = files_by_stem(label_dir, (".png",), "masks") if label_dir.is_dir() else {}
    stamp = sequence_dir.name.replace("_", "")
    mask_paths, frames = {}, {}
    for image_id, path in image_paths.items():
        match = _IMAGE_NAME.match(image_id)
        if not match or match["stamp"] != stamp:
            raise UserError(f"{path}: A2D2 images of this sequence are {stamp}_camera_frontcenter_<frame>.png")
        label_stem = f"{stamp}_label_frontcenter_{match['frame']}"
        if label_stem in label_paths:
            mask_paths[image_id] = label_paths[label_stem]
        frames[image_id] = Frame(sequence_dir.name, int(match["frame"]))
    return image_paths, mask_paths, frames


def _label_path(semantic_dir, image_id):
    """<sequence>/label/cam_front_center/<stamp>_label_frontcenter_<frame>.png of an image id."""
    match = _IMAGE_NAME.match(image_id)
    sequence = f"{match['stamp'][:8]}_{match['stamp'][8:]}"  # the folder the stamp was read from
    return semantic_dir / sequence / "label" / CAMERA / f"{match['stamp']}_label_frontcenter_{match['frame']}.png"


def open_a2d2(root, split):
    semantic_dir = require_root(root) / "camera_lidar_semantic"
    if not semantic_dir.is_dir():
        raise UserError(f"{semantic_dir}: no such folder (layout: {LAYOUT})")
    sequences = _split_sequences(semantic_dir, split)
    decode_mask = functools.partial(_decode_colours, *_colour_table(semantic_dir / "class_list.json"))
    image_paths, mask_paths, frames = {}, {}, {}
    for sequence in sequences:
        sequence_images, sequence_masks, sequence_frames = _read_sequence(semantic_dir / sequence)
        image_paths.update(sequence_images)
        mask_paths.update(sequence_masks)
        frames.update(sequence_frames)
    return SegmentationDataset("a2d2", split, image_paths, mask_paths, CLASS_NAMES, frames, decode_mask=decode_mask,
                               new_mask_path=functools.partial(_label_path, semantic_dir))
