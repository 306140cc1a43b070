import json

import numpy as np
import pytest
from PIL import Image

from lib.data import Frame, open_dataset
from lib.data.transforms import random_crop_flip
from lib.errors import UserError

CLASSES = ["road", "car", "sky"]


def make_folder(root, images, masks=None, split="train", classes=CLASSES):
    """Write a `folder` layout: images {id: array}, masks {id: array} (a subset for unlabeled pools)."""
    (root / split / "images").mkdir(parents=True)
    (root / split / "masks").mkdir(parents=True)
    (root / "classes.json").write_text(json.dumps(classes))
    for image_id, array in images.items():
        Image.fromarray(array).save(root / split / "images" / f"{image_id}.png")
    for image_id, array in (masks or {}).items():
        Image.fromarray(array).save(root / split / "masks" / f"{image_id}.png")
    return root


def rgb(value, size=(4, 6)):
    return np.full((*size, 3), value, dtype=np.uint8)


def test_folder_ids_images_masks_and_unlabeled_items(tmp_path):
    mask = np.array([[0, 1, 2, 255]] * 4, dtype=np.uint8)
    make_folder(tmp_path, {"b": rgb(10, (4, 4)), "a": rgb(20, (4, 4))}, {"a": mask})
    dataset = open_dataset("folder", tmp_path, "train")
    assert dataset.ids == ["a", "b"]
    assert dataset.class_names == CLASSES and dataset.num_classes == 3
    assert dataset.load_image("a").shape == (4, 4, 3) and dataset.load_image("a")[0, 0, 0] == 20
    np.testing.assert_array_equal(dataset.load_mask("a"), mask)
    assert dataset.load_mask("b") is None and not dataset.has_mask("b")
    assert dataset.frames is None
    with pytest.raises(UserError, match="'b' is labeled in the index but has no mask"):
        dataset.load_pair("b")


def test_image_size_reads_each_header_once(tmp_path, monkeypatch):
    make_folder(tmp_path, {"a": rgb(0, (4, 6)), "b": rgb(0, (5, 3))})
    dataset = open_dataset("folder", tmp_path, "train")
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda path, *args: opened.append(path) or real_open(path, *args))
    assert [dataset.image_size(i) for i in ("a", "b", "a", "b", "a")] == [(4, 6), (5, 3), (4, 6), (5, 3), (4, 6)]
    assert len(opened) == 2


def test_sequences_file_gives_frames(tmp_path):
    make_folder(tmp_path, {"x1": rgb(0), "x2": rgb(0)})
    (tmp_path / "train" / "sequences.json").write_text(
        json.dumps({"x1": {"sequence": "x", "frame": 1}, "x2": {"sequence": "x", "frame": 2}})
    )
    assert open_dataset("folder", tmp_path, "train").frames == {"x1": Frame("x", 1), "x2": Frame("x", 2)}


@pytest.mark.parametrize(
    ("mode", "array"),
    [("L", np.full((4, 6), 7, np.uint8)), ("RGBA", np.full((4, 6, 4), 7, np.uint8)),
     ("I;16", np.full((4, 6), 7 * 256, np.uint16))],
)
def test_greyscale_rgba_and_16_bit_images_are_converted(tmp_path, mode, array):
    make_folder(tmp_path, {})
    Image.fromarray(array).save(tmp_path / "train" / "images" / "a.png")
    assert Image.open(tmp_path / "train" / "images" / "a.png").mode == mode
    image = open_dataset("folder", tmp_path, "train").load_image("a")
    assert image.shape == (4, 6, 3) and image.dtype == np.uint8
    assert (image == 7).all()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: None, "data root does not exist"),
        (lambda root: (root.mkdir(), (root / "classes.json").write_text("[\"a\", \"b\"]")), "no such folder"),
        (lambda root: make_folder(root, {"a": rgb(0)}, classes=["only"]), "at least two class names"),
        (lambda root: make_folder(root, {}), "no images"),
    ],
)
def test_layout_errors(tmp_path, setup, message):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(UserError, match=message):
        open_dataset("folder", root, "train")


def test_bad_masks_and_images_name_the_file(tmp_path):
    make_folder(tmp_path, {"a": rgb(0), "b": rgb(0), "c": rgb(0)},
                {"a": np.full((4, 6), 3, np.uint8), "b": np.zeros((5, 6), np.uint8)})
    (tmp_path / "train" / "images" / "c.png").write_bytes(b"\x89PNG truncated")
    dataset = open_dataset("folder", tmp_path, "train")
    with pytest.raises(UserError, match=r"a\.png: class id 3 is out of range"):
        dataset.load_mask("a")
    with pytest.raises(UserError, match=r"b\.png: mask is 6x5 but its image is 6x4"):
        dataset.load_pair("b")
    with pytest.raises(UserError, match=r"c\.png: cannot decode image"):
        dataset.load_image("c")


def test_unknown_dataset():
    with pytest.raises(UserError, match="unknown dataset 'nope'"):
        open_dataset("nope", ".", "train")


def test_random_crop_pads_with_ignore_and_flips_pairs():
    import random

    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    mask = np.array([[0, 1, 2], [1, 2, 0]], dtype=np.uint8)
    seen_flip = seen_plain = False
    for seed in range(20):
        out_image, out_mask = random_crop_flip(image, mask, (4, 3), random.Random(seed))
        assert out_image.shape == (4, 3, 3) and out_mask.shape == (4, 3)
        assert (out_mask[2:] == 255).all() and (out_image[2:] == 0).all()
        flipped = (out_mask[:2] == mask[:, ::-1]).all()
        seen_flip |= flipped
        seen_plain |= (out_mask[:2] == mask).all()
        # The image moves with its mask: pixel values still line up.
        reference = image[:, ::-1] if flipped else image
        np.testing.assert_array_equal(out_image[:2], reference)
    assert seen_flip and seen_plain
