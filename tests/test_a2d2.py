"""The A2D2 loader on a fixture written in the layout and naming of camera_lidar_semantic.tar."""
import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import check_new_mask_path, import_script
from lib.acquire.temporal import temporal_order
from lib.data import IGNORE_INDEX, Frame, open_dataset
from lib.data.a2d2 import CLASS_NAMES, TO_CITYSCAPES
from lib.errors import UserError

select, train = import_script("select.py"), import_script("train.py")
# A handful of class_list.json's 55 entries, verbatim.
CLASS_LIST = {
    "#ff0000": "Car 1", "#c80000": "Car 2", "#ff00ff": "RD normal street", "#b496c8": "Sidewalk", "#87ceff": "Sky",
    "#48d1cc": "Ego car",
}
# sequence -> frame numbers, written in this (unsorted) order
FRAMES = {"20180807_145028": [1617, 91, 320], "20181108_091945": [2588, 2585], "20180925_112730": [41, 40]}
TRAIN_SEQUENCES = ["20180807_145028", "20181108_091945"]
# One 8x16 label: two columns per colour, and what each colour becomes.
LABEL_COLOURS = [
    ((255, 0, 0), "car"), ((200, 0, 0), "car"),  # Car 1 and Car 2, instances of one class
    ((255, 0, 255), "road"), ((180, 150, 200), "sidewalk"), ((135, 206, 255), "sky"),
    ((72, 209, 204), None),  # Ego car, a class without a Cityscapes counterpart
    ((0, 0, 100), None),  # Tractor: a real A2D2 colour, but absent from this class_list.json
    ((1, 2, 3), None),  # no A2D2 colour at all
]


def image_id(sequence, frame, kind="camera"):
    return f"{sequence.replace('_', '')}_{kind}_frontcenter_{frame:09d}"


def write_frame(sequence_dir, sequence, frame, rng):
    camera_dir, label_dir = sequence_dir / "camera" / "cam_front_center", sequence_dir / "label" / "cam_front_center"
    camera_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    name = image_id(sequence, frame)
    Image.fromarray(rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)).save(camera_dir / f"{name}.png")
    info = {"cam_tstamp": 1533646228000000 + 33333 * frame, "cam_name": "front_center", "image_png": f"{name}.png"}
    (camera_dir / f"{name}.json").write_text(json.dumps(info))
    colours = np.array([colour for colour, _ in LABEL_COLOURS], dtype=np.uint8)  # [8, 3]
    label = np.broadcast_to(np.repeat(colours, 2, axis=0), (8, 16, 3))  # [8, 16, 3]
    Image.fromarray(np.ascontiguousarray(label)).save(label_dir / f"{image_id(sequence, frame, 'label')}.png")


@pytest.fixture()
def a2d2(tmp_path_factory):
    """Two train sequences and the val sequence; one of them also has a side camera, which is not read."""
    root = tmp_path_factory.mktemp("a2d2")  # apart from the outputs tests write to tmp_path
    rng = np.random.default_rng(0)
    semantic_dir = root / "camera_lidar_semantic"
    semantic_dir.mkdir()
    (semantic_dir / "class_list.json").write_text(json.dumps(CLASS_LIST, indent=4))
    for sequence, frames in FRAMES.items():
        for frame in frames:
            write_frame(semantic_dir / sequence, sequence, frame, rng)
    side_dir = semantic_dir / "20180807_145028" / "camera" / "cam_side_left"
    side_dir.mkdir()
    side_image = np.zeros((8, 16, 3), dtype=np.uint8)
    Image.fromarray(side_image).save(side_dir / "20180807145028_camera_sideleft_000000091.png")
    return root


def test_the_mapping_covers_the_38_classes_with_cityscapes_names():
    assert len(TO_CITYSCAPES) == 38 and len(CLASS_NAMES) == 19
    assert set(TO_CITYSCAPES.values()) - {None} <= set(CLASS_NAMES)


def test_splits_ids_and_frames(a2d2):
    train_set, val_set = open_dataset("a2d2", a2d2, "train"), open_dataset("a2d2", a2d2, "val")
    assert train_set.ids == sorted(image_id(s, f) for s in TRAIN_SEQUENCES for f in FRAMES[s])
    assert val_set.ids == [image_id("20180925_112730", 40), image_id("20180925_112730", 41)]
    assert train_set.num_classes == 19 and train_set.class_names[13] == "car"
    assert train_set.frames["20180807145028_camera_frontcenter_000000091"] == Frame("20180807_145028", 91)
    assert [train_set.frames[i].index for i in temporal_order(train_set.frames, train_set.ids)] == [
        91, 320, 1617, 2585, 2588]
    assert all(train_set.has_mask(i) for i in train_set.ids)


def test_colours_become_cityscapes_train_ids(a2d2):
    image, mask = open_dataset("a2d2", a2d2, "train").load_pair(image_id("20181108_091945", 2585))
    assert image.shape == (8, 16, 3) and mask.shape == (8, 16) and mask.dtype == np.uint8
    expected = [IGNORE_INDEX if name is None else CLASS_NAMES.index(name) for _, name in LABEL_COLOURS]
    assert (mask == np.repeat(expected, 2)).all()
    assert mask[0, 0] == mask[0, 2] == CLASS_NAMES.index("car")  # Car 1 and Car 2


def test_a_new_mask_goes_where_the_loader_reads_it(a2d2):
    check_new_mask_path("a2d2", a2d2, "train")


def test_a_greyscale_label_is_refused(a2d2):
    label = a2d2 / "camera_lidar_semantic" / "20180807_145028" / "label" / "cam_front_center" / (
        f"{image_id('20180807_145028', 91, 'label')}.png")
    Image.fromarray(np.zeros((8, 16), dtype=np.uint8), mode="L").save(label)
    with pytest.raises(UserError, match=re.escape(f"{label}: a colour-coded mask must be an RGB image, got mode L")):
        open_dataset("a2d2", a2d2, "train").load_mask(image_id("20180807_145028", 91))


def test_random_selection_and_training_through_the_command_line(a2d2, tmp_path):
    index, model = tmp_path / "index.json", tmp_path / "model.pt"
    select.main(["--dataset", "a2d2", "--data-root", str(a2d2), "--method", "random", "--budget", "2", "--seed", "0",
                 "--out", str(index)])
    added = json.loads(index.read_text())["history"][-1]["added"]
    assert len(added) == 2 and set(added) <= set(open_dataset("a2d2", a2d2, "train").ids)
    train.main(["--dataset", "a2d2", "--data-root", str(a2d2), "--index", str(index), "--out", str(model),
                "--arch", "tiny", "--epochs", "1", "--batch-size", "2", "--crop", "8x16", "--workers", "0",
                "--device", "cpu"])
    assert model.exists()


def rename(path, new_name):
    path.rename(path.with_name(new_name))


SEMANTIC = "camera_lidar_semantic"
FIRST_CAMERA = f"{SEMANTIC}/20180807_145028/camera/cam_front_center"


@pytest.mark.parametrize(
    ("split", "break_it", "message"),
    [
        ("train", lambda root: rename(root / SEMANTIC, "a2d2"),
         f"{SEMANTIC}: no such folder (layout: ROOT/camera_lidar_semantic/<YYYYMMDD_hhmmss>/{{camera,label}}/"
         "cam_front_center/ and its class_list.json)"),
        ("train", lambda root: rename(root / FIRST_CAMERA, "cam_frontcenter"),
         f"{FIRST_CAMERA}: no such folder (layout: ROOT/camera_lidar_semantic/"),
        ("train", lambda root: rename(root / FIRST_CAMERA / "20180807145028_camera_frontcenter_000000091.png",
                                      "frame.png"),
         "frame.png: A2D2 images of this sequence are 20180807145028_camera_frontcenter_<frame>.png"),
        ("train", lambda root: shutil.copy(root / FIRST_CAMERA / "20180807145028_camera_frontcenter_000000091.png",
                                           root / SEMANTIC / "20181108_091945/camera/cam_front_center/"
                                           "20180807145028_camera_frontcenter_000000091.png"),
         "20181108_091945/camera/cam_front_center/20180807145028_camera_frontcenter_000000091.png: A2D2 images of "
         "this sequence are 20181108091945_camera_frontcenter_<frame>.png"),
        ("train", lambda root: (root / SEMANTIC / "class_list.json").unlink(),
         f"{SEMANTIC}/class_list.json: A2D2 class list not found"),
        ("train", lambda root: (root / SEMANTIC / "class_list.json").write_text('{"#ff0000": "Unicorn 1"}'),
         "class_list.json: 'Unicorn 1' is not one of the 38 A2D2 classes"),
        ("train", lambda root: (root / SEMANTIC / "class_list.json").write_text('{"red": "Car 1"}'),
         "class_list.json: 'red': 'Car 1' is not a \"#rrggbb\": \"<class>\" entry"),
        ("train", lambda root: [shutil.rmtree(root / SEMANTIC / s) for s in TRAIN_SEQUENCES],
         f"{SEMANTIC}: no sequence folders <YYYYMMDD_hhmmss> besides 20180925_112730"),
        ("val", lambda root: shutil.rmtree(root / SEMANTIC / "20180925_112730"),
         f"{SEMANTIC}/20180925_112730/camera/cam_front_center: no such folder"),
        ("test", lambda root: None, "A2D2 has splits train and val (sequence 20180925_112730), not 'test'"),
    ],
)
def test_layout_errors_name_the_culprit(a2d2, split, break_it, message):
    break_it(a2d2)
    with pytest.raises(UserError, match=re.escape(message)):
        open_dataset("a2d2", a2d2, split)
