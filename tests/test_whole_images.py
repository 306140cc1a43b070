"""Whole images in an index of regions: select.py --method random-images tiles them (S4AL+'s start, 10 % of the
images labeled whole), and self-training takes no unlabeled crop of an image its regions cover."""
import json
from collections import defaultdict

import pytest

from conftest import fail, import_script
from lib.data import open_dataset
from lib.index import LabeledIndex, save_index
from lib.semisup.unlabeled import images_with_unlabeled_pixels
from lib.units import Unit

select = import_script("select.py")


def draw(pool, out, *flags):
    argv = ["--dataset", "synthetic", "--data-root", str(pool), "--method", "random-images", "--seed", "0",
            "--out", str(out), *flags]
    select.main(argv)
    return json.loads(out.read_text())


def regions_by_image(index):
    found = defaultdict(set)
    for item_id in index["labeled"]:
        image_id, _, suffix = item_id.rpartition("#")
        found[image_id].add(suffix)
    return found


def test_random_whole_images_are_tiled_by_regions_until_the_budget(synthetic_pool, tmp_path):
    # 10 % of the pixels of 12 images of 32x48 is 7.2 regions of 16x16, rounded to 7: the 6 of one image do not
    # reach them, 2 images do
    index = draw(synthetic_pool, tmp_path / "a.json", "--unit", "region", "--region-size", "16", "--budget", "10%px")
    tiles = {f"y{top}x{left}" for top in (0, 16) for left in (0, 16, 32)}
    assert len(regions_by_image(index)) == 2 and all(found == tiles for found in regions_by_image(index).values())
    assert draw(synthetic_pool, tmp_path / "b.json", "--unit", "region", "--region-size", "16", "--budget",
                "10%px") == index  # seeded
    later = draw(synthetic_pool, tmp_path / "c.json", "--index", str(tmp_path / "a.json"), "--budget", "12")
    new = set(regions_by_image(later)) - set(regions_by_image(index))
    assert len(new) == 2 and len(later["labeled"]) == 24  # two more images, none labeled before


def test_a_side_that_does_not_divide_the_image_leaves_its_last_strip_unlabeled(synthetic_pool, tmp_path):
    # 20-pixel regions on 32x48: windows at rows 0 and 12, columns 0, 20 and 28; the tiling from the corner is the
    # two at row 0, columns 0 and 20, which overlap no other
    index = draw(synthetic_pool, tmp_path / "a.json", "--unit", "region", "--region-size", "20", "--budget", "3")
    assert len(regions_by_image(index)) == 2
    assert all(found == {"y0x0", "y0x20"} for found in regions_by_image(index).values())


def test_only_images_without_a_labeled_pixel_are_drawn(synthetic_pool, tmp_path, capsys):
    ids = open_dataset("synthetic", synthetic_pool, "train").ids
    partly = LabeledIndex("synthetic", "train", Unit("region", size=16), len(ids)).with_cycle(
        "random", 0, "11", [f"{image_id}#y16x16" for image_id in ids[:11]])
    save_index(tmp_path / "partly.json", partly)
    index = draw(synthetic_pool, tmp_path / "a.json", "--index", str(tmp_path / "partly.json"), "--budget", "6")
    assert regions_by_image(index)[ids[11]] == {f"y{top}x{left}" for top in (0, 16) for left in (0, 16, 32)}
    assert "random-images: 7 regions asked, but the 1 image without a labeled pixel holds 6" in fail(
        select, ["--dataset", "synthetic", "--data-root", str(synthetic_pool), "--method", "random-images",
                 "--index", str(tmp_path / "partly.json"), "--budget", "7", "--out", str(tmp_path / "b.json")], capsys)


@pytest.mark.parametrize(("regions", "unlabeled"), [(6, False), (5, True)])
def test_an_image_its_regions_cover_has_no_unlabeled_pixel(regions, unlabeled):
    unit = Unit("region", size=16)
    tiles = [f"a#y{top}x{left}" for top in (0, 16) for left in (0, 16, 32)][:regions]
    found = images_with_unlabeled_pixels(["a", "b"], unit, {"a": tiles}, lambda image_id: (32, 48))
    assert found == (["a", "b"] if unlabeled else ["b"])
