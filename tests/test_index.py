import json

import pytest

from lib.errors import UserError
from lib.index import SCHEMA, LabeledIndex, Unit, load_index, save_index

POOL = ["a", "b", "c", "d"]


def write(path, **overrides):
    obj = {
        "schema": SCHEMA, "version": 1, "dataset": "folder", "split": "train", "unit": {"type": "image"},
        "pool_size": len(POOL), "labeled": ["a", "c"],
        "history": [{"cycle": 0, "method": "random", "seed": 0, "budget": "2", "added": ["a", "c"]}],
    }
    obj.update(overrides)
    path.write_text(json.dumps(obj))
    return path


def test_round_trip_keeps_everything(tmp_path):
    index = LabeledIndex("folder", "train", Unit("patch", (4, 4)), 4).with_cycle("random", 3, "10%", ["a#r0c1"])
    index = index.with_cycle("entropy", 3, "1", ["b#r3c3"])
    save_index(tmp_path / "i.json", index)
    loaded = load_index(tmp_path / "i.json", POOL, dataset="folder", unit=Unit("patch", (4, 4)))
    assert loaded == index
    assert loaded.history[1] == {"cycle": 1, "method": "entropy", "seed": 3, "budget": "1", "added": ["b#r3c3"]}
    assert loaded.next_cycle == 2


def test_save_is_deterministic_and_atomic(tmp_path):
    index = LabeledIndex("folder", "train", Unit(), 4).with_cycle("random", 0, "2", ["b", "a"])
    save_index(tmp_path / "1.json", index)
    save_index(tmp_path / "2.json", index)
    assert (tmp_path / "1.json").read_bytes() == (tmp_path / "2.json").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.json", "2.json"]  # no temp file left behind


def test_with_cycle_refuses_relabeling_and_leaves_receiver_unchanged():
    index = LabeledIndex("folder", "train", Unit(), 4).with_cycle("random", 0, "2", ["a"])
    with pytest.raises(ValueError, match="already labeled"):
        index.with_cycle("random", 0, "1", ["a"])
    index.with_cycle("random", 0, "1", ["b"])
    assert index.labeled == ["a"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"version": 7}, "unknown index version 7"),
        ({"schema": "other"}, "not an index file"),
        ({"labeled": ["a", "zz"]}, "'zz' is not in the pool"),
        ({"labeled": ["a", "b", "a"]}, "duplicate id 'a'"),
        ({"labeled": ["a", 3]}, "3 is not a string"),
        ({"unit": {"type": "pixel"}}, "unknown unit 'pixel'"),
        ({"unit": {"type": "patch", "grid": [4, 4]}, "labeled": ["a#r0c0", "b"]}, "'b' does not fit unit patch 4x4"),
        ({"unit": {"type": "patch", "grid": [4, 4]}, "labeled": ["a#r4c0"]}, "'a#r4c0' does not fit unit patch 4x4"),
        ({"unit": {"type": "region", "size": 30}, "labeled": ["a#r1c1"]}, "does not fit unit region 30px"),
        ({"unit": {"type": "patch", "grid": [4, 4]}, "labeled": ["q#r0c0"]}, "'q#r0c0' is not in the pool"),
        ({"pool_size": 9}, "pool of 9 images, this one has 4"),
        ({"dataset": "camvid"}, "dataset 'camvid', not 'folder'"),
        ({"labeled": "a"}, "'labeled' missing or not a list"),
        # One id per item: numbers in ASCII decimal without leading zeros (int() reads "01" and "\u0661" as 1).
        ({"unit": {"type": "patch", "grid": [4, 4]}, "labeled": ["a#r0c1", "a#r0c01"]},
         "'a#r0c01' does not fit unit patch 4x4: a cell id ends in #r<row>c<col>, in ASCII digits"),
        ({"unit": {"type": "patch", "grid": [4, 4]}, "labeled": ["a#r0c\u0661"]}, "'a#r0c\u0661' does not fit"),
        ({"unit": {"type": "patch", "grid": [4, 4]}, "labeled": ["a#r0c1\n"]}, "does not fit unit patch 4x4"),
        ({"unit": {"type": "region", "size": 30}, "labeled": ["a#y00x0"]},
         "'a#y00x0' does not fit unit region 30px: a region id ends in #y<top>x<left>, in ASCII digits"),
        ({"unit": {"type": "region", "size": 30}, "labeled": ["a#y\u0663\u0660x0"]}, "does not fit unit region 30px"),
        ({"unit": {"type": "region", "size": 30}, "labeled": ["a#y0x0", "b#y0x0", "b#y30x0", "a#y29x29"]},
         "labeled regions 'a#y0x0' and 'a#y29x29' overlap"),
        # History entries are copied into the next index: only what select.py writes.
        ({"history": [["a"]]}, "history entry 0 is not an object"),
        ({"history": [{"cycle": 0, "method": "random", "seed": True, "budget": "2", "added": []}]},
         "history entry 0 field 'seed' missing or not an integer"),
        ({"history": [{"cycle": 0, "method": "random", "seed": 0, "budget": "2", "added": ["a"]},
                      {"cycle": 1, "method": "random", "seed": 0, "budget": "2", "added": [["c"]]}]},
         "history entry 1 field 'added' missing or not a list of ids"),
        ({"history": [{"cycle": 0, "method": "random", "seed": 0, "budget": 2, "added": []}]},
         "history entry 0 field 'budget' missing or not a string"),
        ({"history": [{"cycle": 0, "method": "random", "seed": 0, "budget": "2", "added": [], "note": [[[]]]}]},
         "history entry 0 field 'note' is neither a value, a list of values nor an object of those"),
        ({"history": [{"cycle": 0, "method": "random", "seed": 0, "budget": "2", "added": [], "note": {"a": {}}}]},
         "history entry 0 field 'note' is neither a value, a list of values nor an object of those"),
    ],
)
def test_validation_names_file_and_culprit(tmp_path, overrides, message):
    path = write(tmp_path / "index.json", **overrides)
    with pytest.raises(UserError, match=message) as err:
        load_index(path, POOL, dataset="folder")
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_regions_that_touch_and_settings_of_a_cycle_load(tmp_path):
    history = [{"cycle": 0, "method": "random", "seed": 0, "budget": "2.5%px", "added": ["a#y0x0"],
                "region_ranking": "per-image", "region_stride": 15, "weights": [0.5, None, "x", True],
                "redundancy": {"score": 0.4, "neighbours": 20}}]
    labeled = ["a#y0x0", "a#y30x0", "a#y0x30", "a#y30x30", "b#y10x10"]
    path = write(tmp_path / "index.json", unit={"type": "region", "size": 30}, labeled=labeled, history=history)
    index = load_index(path, POOL)
    assert index.labeled == labeled and index.history == history


def test_wrong_unit_is_an_error(tmp_path):
    path = write(tmp_path / "index.json")
    with pytest.raises(UserError, match="unit is image, expected patch 4x4"):
        load_index(path, POOL, unit=Unit("patch", (4, 4)))


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]"])
def test_unreadable_files(tmp_path, content):
    path = tmp_path / "index.json"
    path.write_text(content)
    with pytest.raises(UserError, match="index.json"):
        load_index(path)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="index file not found"):
        load_index(tmp_path / "nope.json")
