"""Bad JSON, listings, ids and image sizes through the command lines: more cases of README's Troubleshooting table.

As in tests/test_bad_input.py, every case fails with exit code 2 and one `error:` line that
names the culprit file, id or flag, and leaves every file of the inputs and the output folder
as it was.
"""
import json
import shutil

import pytest
from PIL import Image

from bad_input_kit import Case, Inputs, case_ids, check_case, for_scripts
from conftest import import_script

train = import_script("train.py")
TOO_DEEP = "[" * 100_000  # deeper than the JSON parser's recursion limit
# Parsed; where the parser's limit is C's rather than Python's (3.12+), json.dump of the next index
# would exceed the recursion limit.
DEEP_BUT_READABLE = "[" * 900 + "]" * 900


class ListingInputs(Inputs):
    def deep_history(self):
        """An index whose history entry holds a list nested 900 deep, which select.py would copy into the next."""
        entry = json.dumps({**self.index["history"][0], "note": None}).replace("null", DEEP_BUT_READABLE)
        text = json.dumps({**self.index, "history": None}).replace('"history": null', f'"history": [{entry}]')
        return ["--index", self.text_file("index.json", text)]

    def a2d2_root(self, class_list):
        """An A2D2 root as far as select.py reads it before its images: the class list."""
        semantic_dir = self.tmp / "a2d2" / "camera_lidar_semantic"
        semantic_dir.mkdir(parents=True)
        (semantic_dir / "class_list.json").write_text(class_list)
        return ["--dataset", "a2d2", "--split", "val", "--data-root", str(self.tmp / "a2d2")]

    def pixel_limit(self, pixels):
        """Pillow refuses images of more than twice MAX_IMAGE_PIXELS: a small limit stands in for a huge file."""
        self.monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pixels)
        return []


def too_deep(path):
    path.write_text(TOO_DEEP)


def class_names(names):
    return lambda path: path.write_text(json.dumps(names))


def copy_as(suffix):
    """A second file of the same stem beside `path`."""
    return lambda path: shutil.copy(path, path.with_suffix(suffix))


def jpeg_copy(path):
    Image.open(path).save(path.with_suffix(".jpg"))


SYNTHETIC_CLASSES = ["sky", "building", "road", "sidewalk", "vegetation", "pole", "car", "person"]
NESTED = "nested too deeply to read"

JSON_CASES = [
    *for_scripts("deep-index", ("select", "train"), lambda s, argv: argv("--index", s.text_file("x.json", TOO_DEEP)),
                 f"x.json: not a valid index file ({NESTED})"),
    Case("deep-class-list", "select", lambda s: s.select(*s.pool_copy(too_deep, "classes.json")),
         f"pool/classes.json: not a valid class list ({NESTED})"),
    Case("deep-sequences", "select", lambda s: s.select(*s.pool_copy(too_deep, "train/sequences.json")),
         f"pool/train/sequences.json: not a valid sequence file ({NESTED})"),
    Case("deep-pool-file", "select", lambda s: s.select("--pool", s.text_file("pool.json", TOO_DEEP)),
         f"pool.json: not a valid pool file ({NESTED})"),
    Case("deep-scores", "select",
         lambda s: s.select("--method", "topk", "--scores", s.text_file("scores.json", TOO_DEEP)),
         f"scores.json: not a valid scores file ({NESTED})"),
    Case("deep-a2d2-class-list", "select", lambda s: s.first_cycle(*s.a2d2_root(TOO_DEEP)),
         f"camera_lidar_semantic/class_list.json: not a valid A2D2 class list ({NESTED})"),
    *for_scripts("deep-history", ("select", "train"), lambda s, argv: argv(*s.deep_history()),
                 "index.json: history entry 0 field 'note' is neither a value, a list of values nor an object of "
                 "those"),
]

LISTING_CASES = [
    Case("duplicate-class", "select",
         lambda s: s.select(*s.pool_copy(class_names(SYNTHETIC_CLASSES[:6] + ["sky", "person"]), "classes.json")),
         "pool/classes.json: class 'sky' is listed twice"),
    Case("255-classes", "select",
         lambda s: s.select(*s.pool_copy(class_names([f"c{n}" for n in range(255)]), "classes.json")),
         "pool/classes.json: 255 classes, but an 8-bit mask holds at most 254 (ids 0..253; 254 marks unlabeled "
         "pixels in training, 255 = ignore)"),
    *for_scripts("two-images-one-id", ("select", "train"),
                 lambda s, argv: argv(*s.pool_copy(jpeg_copy, "train/images/{labeled}.png")),
                 "{tmp}/pool/train/images/{labeled}.jpg and {tmp}/pool/train/images/{labeled}.png: two images "
                 "with the id '{labeled}' (keep one)"),
    *for_scripts("two-masks-one-id", ("select", "train"),
                 lambda s, argv: argv(*s.pool_copy(copy_as(".PNG"), "train/masks/{labeled}.png")),
                 "{tmp}/pool/train/masks/{labeled}.PNG and {tmp}/pool/train/masks/{labeled}.png: two masks "
                 "with the id '{labeled}' (keep one)"),
]

PATCH_2X2 = {"type": "patch", "grid": [2, 2]}
REGION_16 = {"type": "region", "size": 16}
ID_CASES = [
    *for_scripts("leading-zero-cell", ("select", "train"),
                 lambda s, argv: argv(*s.index_file(unit=PATCH_2X2, labeled=["{first}#r0c1", "{first}#r00c1"])),
                 "index.json: id '{first}#r00c1' does not fit unit patch 2x2: a cell id ends in #r<row>c<col>, "
                 "in ASCII digits without leading zeros"),
    *for_scripts("arabic-indic-cell", ("select", "train"),
                 lambda s, argv: argv(*s.index_file(unit=PATCH_2X2, labeled=["{first}#r\u0660c1"])),
                 "index.json: id '{first}#r\u0660c1' does not fit unit patch 2x2"),
    *for_scripts("leading-zero-region", ("select", "train"),
                 lambda s, argv: argv(*s.index_file(unit=REGION_16, labeled=["{first}#y0x0", "{first}#y016x0"])),
                 "index.json: id '{first}#y016x0' does not fit unit region 16px: a region id ends in "
                 "#y<top>x<left>, in ASCII digits without leading zeros"),
    *for_scripts("overlapping-regions", ("select", "train"),
                 lambda s, argv: argv(*s.index_file(unit=REGION_16, labeled=["{first}#y0x0", "{last}#y0x0",
                                                                             "{first}#y8x15"])),
                 "index.json: labeled regions '{first}#y0x0' and '{first}#y8x15' overlap (a pixel is labeled once)"),
]

SIZE_CASES = [
    Case("grid-rows", "select", lambda s: s.first_cycle("--unit", "patch", "--grid", "33x2"),
         "--grid 33x2: image {root}/train/images/{first}.png has 32 rows and 48 columns of pixels, fewer than the "
         "grid's 33 rows or 2 columns: a cell would be empty"),
    Case("grid-columns", "select", lambda s: s.first_cycle("--unit", "patch", "--grid", "2x49"),
         "--grid 2x49: image {root}/train/images/{first}.png has 32 rows and 48 columns of pixels"),
    Case("grid-of-index", "select",
         lambda s: s.select(*s.index_file(unit={"type": "patch", "grid": [33, 2]}, labeled=["{labeled}#r0c0"])),
         "index.json: unit patch 33x2: image {root}/train/images/{first}.png has 32 rows and 48 columns of pixels"),
    Case("grid-of-index", "train",
         lambda s: s.train(*s.index_file(unit={"type": "patch", "grid": [33, 2]},
                                         labeled=["{labeled}#r0c0", "{unlabeled}#r0c0"])),
         "index.json: unit patch 33x2: image {root}/train/images/{labeled}.png has 32 rows and 48 columns of pixels"),
    Case("region-over-image", "select", lambda s: s.first_cycle("--unit", "region", "--region-size", "33"),
         "--region-size 33: image {root}/train/images/{first}.png is 48x32 pixels, smaller than a 33x33 region: "
         "it could never be labeled"),
]

# 32x48 = 1536 pixels, over a limit of twice 500.
BOMB = "not decoded: Image size (1536 pixels) exceeds limit of 1000 pixels (Pillow's guard against decompression " \
       "bombs); downscale it"
BOMB_CASES = [
    Case("bomb-decoded", "select", lambda s: s.select(*s.pixel_limit(500)),
         "{root}/train/images/{unlabeled}.png: " + BOMB),
    Case("bomb-header", "select",
         lambda s: s.first_cycle("--unit", "region", "--region-size", "16", *s.pixel_limit(500)),
         "{root}/train/images/{first}.png: " + BOMB),
    # evaluate.py reads the masks first (lib.label_stats), the images after.
    Case("bomb-decoded", "evaluate", lambda s: s.evaluate(*s.pixel_limit(500)), "{root}/val/masks/{val}.png: " + BOMB),
]

CASES = JSON_CASES + LISTING_CASES + ID_CASES + SIZE_CASES + BOMB_CASES


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_bad_input_is_one_line_and_changes_no_file(case, synthetic_pool, trained_tiny, tmp_path, monkeypatch, capsys):
    check_case(case, ListingInputs(tmp_path, synthetic_pool, trained_tiny, monkeypatch), capsys)


def rename_to_upper_case(path):
    path.rename(path.with_suffix(".PNG"))


def test_upper_case_mask_files_are_masks(synthetic_pool, trained_tiny, tmp_path, monkeypatch):
    """Not an error: a.PNG is the mask of a.png, so its image trains as labeled."""
    inputs = Inputs(tmp_path, synthetic_pool, trained_tiny, monkeypatch)
    inputs.out.mkdir()
    train.main(inputs.train(*inputs.pool_copy(rename_to_upper_case, "train/masks/{labeled}.png")))
    assert (inputs.out / "model.pt").is_file()
