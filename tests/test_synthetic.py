"""The synthetic street-scene pool: layout, determinism, redundancy and the CLI."""
import hashlib
import json
import re

import numpy as np
import pytest
from conftest import import_script
from PIL import Image

from lib.data.synthetic import (
    CLASS_NAMES,
    make_scene,
    render_frame,
    write_synthetic_pool,
)
from lib.errors import UserError, run_cli
from lib.owned import MARKER

main = import_script("scripts/make_synthetic.py").main

SMALL = dict(sequences=2, frames_per_sequence=2, val_images=2, height=32, width=48)
SMALL_FLAGS = ["--sequences", "2", "--frames", "2", "--val-images", "2", "--height", "32", "--width", "48"]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool")
    write_synthetic_pool(root)  # the default size: 30 sequences x 4 frames + 40 val
    return root


def stems(folder):
    return sorted(p.stem for p in folder.glob("*.png"))


def tree_bytes(root):
    """Every file's bytes but the folder marker's, which names the folder it was written for (lib.owned)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != MARKER}


def mean_abs_diff(a, b):
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_layout_and_ids(pool):
    assert json.loads((pool / "classes.json").read_text()) == list(CLASS_NAMES)
    assert json.loads((pool / "synthetic.json").read_text())["frames_per_sequence"] == 4
    train, val = stems(pool / "train/images"), stems(pool / "val/images")
    assert len(train) == 30 * 4 and all(re.fullmatch(r"s\d{4}_f0[0-3]", i) for i in train)
    assert len(val) == 40 and all(re.fullmatch(r"v\d{4}_f00", i) for i in val)
    for split, ids in (("train", train), ("val", val)):
        assert stems(pool / split / "masks") == ids
    with Image.open(pool / "train/images" / f"{train[0]}.png") as image:
        assert (image.mode, image.size) == ("RGB", (128, 96))
    with Image.open(pool / "train/masks" / f"{train[0]}.png") as mask:
        assert (mask.mode, mask.size) == ("L", (128, 96))


def test_masks_hold_valid_ids_and_every_class_appears(pool):
    seen = np.zeros(len(CLASS_NAMES), bool)
    for path in pool.glob("*/masks/*.png"):
        ids = np.unique(np.asarray(Image.open(path)))
        assert set(ids.tolist()) <= set(range(len(CLASS_NAMES))) | {255}
        seen[ids[ids < len(CLASS_NAMES)]] = True
    assert seen.all(), [name for name, ok in zip(CLASS_NAMES, seen) if not ok]


def test_sequences_json_matches_ids(pool):
    for split, frames in (("train", 4), ("val", 1)):
        table = json.loads((pool / split / "sequences.json").read_text())
        assert sorted(table) == stems(pool / split / "images")
        by_sequence = {}
        for image_id, entry in table.items():
            assert image_id == f"{entry['sequence']}_f{entry['frame']:02d}"
            by_sequence.setdefault(entry["sequence"], []).append(entry["frame"])
        assert all(sorted(f) == list(range(frames)) for f in by_sequence.values())


def test_val_scenes_are_not_train_scenes(pool):
    def digests(split):  # masks carry no sensor noise, so equal masks would mean equal scenes
        return {hashlib.sha256(p.read_bytes()).hexdigest() for p in (pool / split / "masks").glob("*.png")}
    assert not digests("train") & digests("val")


def test_same_arguments_give_identical_bytes(tmp_path):
    write_synthetic_pool(tmp_path / "a", **SMALL, seed=7)
    write_synthetic_pool(tmp_path / "b", **SMALL, seed=7)
    write_synthetic_pool(tmp_path / "c", **SMALL, seed=8)
    a, b, c = (tree_bytes(tmp_path / name) for name in "abc")
    assert a == b
    assert a["train/images/s0000_f00.png"] != c["train/images/s0000_f00.png"]


def test_a_sequence_does_not_depend_on_how_many_come_before(tmp_path):
    write_synthetic_pool(tmp_path / "two", **SMALL)
    write_synthetic_pool(tmp_path / "three", **{**SMALL, "sequences": 3})
    for name in ("images", "masks"):
        path = f"train/{name}/s0001_f01.png"
        assert (tmp_path / "two" / path).read_bytes() == (tmp_path / "three" / path).read_bytes()


def test_consecutive_frames_differ_but_are_closer_than_other_sequences():
    sequences = []
    for s in range(8):
        scene = make_scene(np.random.default_rng([0, 0, s]), 96, 128, 3)
        pairs = [render_frame(scene, f, 96, 128) for f in range(3)]
        # The camera pans, so the geometry moves, not just the sensor noise.
        assert all(not np.array_equal(pairs[f][1], pairs[f + 1][1]) for f in range(2))
        sequences.append([image for image, _ in pairs])
    within, across = [], []
    for s, frames in enumerate(sequences):
        for f in range(2):
            step = mean_abs_diff(frames[f], frames[f + 1])
            others = [mean_abs_diff(frames[f], other[f]) for t, other in enumerate(sequences) if t != s]
            assert step > 0
            assert step < min(others)
            within.append(step)
            across += others
    assert np.mean(within) < 0.6 * np.mean(across)


def test_render_frame_shapes_and_checks():
    scene = make_scene(np.random.default_rng(0), 40, 56, 2)
    image, mask = render_frame(scene, 1, 40, 56)
    assert (image.shape, image.dtype, mask.shape, mask.dtype) == ((40, 56, 3), np.uint8, (40, 56), np.uint8)
    with pytest.raises(ValueError):
        render_frame(scene, 2, 40, 56)
    with pytest.raises(ValueError):
        render_frame(scene, 0, 40, 64)


def test_one_frame_per_sequence(tmp_path):
    write_synthetic_pool(tmp_path, **{**SMALL, "sequences": 5, "frames_per_sequence": 1})
    assert stems(tmp_path / "train/images") == [f"s{s:04d}_f00" for s in range(5)]
    table = json.loads((tmp_path / "train/sequences.json").read_text())
    assert len({entry["sequence"] for entry in table.values()}) == 5


@pytest.mark.parametrize("name, value", [
    ("sequences", 0), ("frames_per_sequence", -1), ("val_images", 0), ("height", 31), ("width", 0),
    ("seed", -1), ("height", 64.0),
])
def test_bad_parameter_is_a_one_line_user_error(tmp_path, name, value):
    with pytest.raises(UserError, match=name) as caught:
        write_synthetic_pool(tmp_path, **{**SMALL, name: value})
    assert "\n" not in str(caught.value)
    assert not any(tmp_path.iterdir())  # nothing written before the check


def test_cli_writes_then_skips(tmp_path, capsys):
    root = str(tmp_path / "pool")
    main([root, *SMALL_FLAGS])
    assert "wrote 4 train images" in capsys.readouterr().out
    marker = tmp_path / "pool/synthetic.json"
    stamp = marker.stat().st_mtime_ns
    main([root, *SMALL_FLAGS])
    assert "skipped" in capsys.readouterr().out
    assert marker.stat().st_mtime_ns == stamp


def test_cli_refuses_a_pool_made_with_other_parameters(tmp_path, capsys):
    root = str(tmp_path)
    main([root, *SMALL_FLAGS])
    capsys.readouterr()
    with pytest.raises(SystemExit) as caught:
        run_cli(main, [root, *SMALL_FLAGS, "--seed", "1"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "synthetic.json" in err and "seed" in err


def test_pool_opens_as_a_dataset(tmp_path):
    from lib.data import open_dataset
    write_synthetic_pool(tmp_path, **SMALL)
    dataset = open_dataset("synthetic", tmp_path, "train")
    assert len(dataset) == 4 and dataset.class_names == list(CLASS_NAMES)
    assert dataset.frames["s0001_f01"].sequence == "s0001"
    image, mask = dataset.load_pair("s0001_f01")
    assert image.shape == (32, 48, 3) and mask.shape == (32, 48)
