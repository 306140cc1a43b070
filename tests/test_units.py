import numpy as np
import pytest

from lib.acquire.rank import SelectionRules, random_subset, top_k
from lib.units import Box, Unit, candidate_items, items_by_image, labeled_fractions

SIZES = {"a": (7, 10), "b": (7, 10), "c": (4, 4), "d": (4, 4)}  # (H, W) of a pool with two image sizes


def coverage(unit, height, width, stride=None):
    """[H, W] count of the items of the layout covering each pixel."""
    count = np.zeros((height, width), dtype=int)
    for _, box in unit.layout(height, width, stride):
        count[box.top:box.bottom, box.left:box.right] += 1
    return count


def test_patch_cells_partition_an_image_that_the_grid_does_not_divide():
    unit = Unit("patch", (3, 4))
    assert (coverage(unit, 7, 10) == 1).all()
    suffixes = [suffix for suffix, _ in unit.layout(7, 10)]
    assert suffixes == [f"#r{r}c{c}" for r in range(3) for c in range(4)]
    assert unit.box("x#r2c3", 7, 10) == Box(4, 7, 7, 10)


def test_regions_tile_and_reach_the_border_with_one_overlapping_window():
    unit = Unit("region", size=3)
    windows = [box for _, box in unit.layout(7, 10)]
    assert {(b.top, b.left) for b in windows} == {(top, left) for top in (0, 3, 4) for left in (0, 3, 6, 7)}
    count = coverage(unit, 7, 10)
    assert count.min() == 1  # every pixel can be labeled
    # Only the windows flush with the border overlap: rows 4-5 and columns 7-8 are covered twice or more.
    overlapped = np.zeros_like(count, dtype=bool)
    overlapped[4:6] = overlapped[:, 7:9] = True
    assert (count[overlapped] >= 2).all() and (count[~overlapped] == 1).all()
    assert len(unit.layout(6, 9)) == 2 * 3 and (coverage(unit, 6, 9) == 1).all()  # a divisible image is a tiling
    assert len(unit.layout(7, 10, stride=1)) == 5 * 8
    assert unit.layout(2, 10) == []  # the region does not fit


def test_region_ids_must_fit_their_image():
    unit = Unit("region", size=3)
    assert unit.box("a#y4x7", 7, 10) == Box(4, 7, 7, 10)
    with pytest.raises(ValueError, match="does not fit a 10x7 image"):
        unit.box("a#y5x0", 7, 10)


def test_candidates_leave_out_labeled_items_and_windows_overlapping_labeled_regions():
    patches, rules = candidate_items(Unit("patch", (2, 2)), ["a", "b"], ["a#r0c1", "b#r1c1"], SIZES.get)
    assert rules is None
    assert patches == ["a#r0c0", "a#r1c0", "a#r1c1", "b#r0c0", "b#r0c1", "b#r1c0"]

    unit = Unit("region", size=3)
    # A hand-placed region off the window grid (rows and columns 2-4) blocks every window it touches.
    regions, boxes = candidate_items(unit, ["a", "c"], ["a#y2x2"], SIZES.get)
    blocked = {f"a#y{top}x{left}" for top in (0, 3, 4) for left in (0, 3)}
    assert set(unit_ids(unit, "a", 7, 10)) - set(regions) == blocked
    assert [r for r in regions if r.startswith("c#")] == ["c#y0x0", "c#y0x1", "c#y1x0", "c#y1x1"]
    assert boxes["c#y1x1"] == ("c", Box(1, 1, 4, 4))


def unit_ids(unit, image_id, height, width):
    return [image_id + suffix for suffix, _ in unit.layout(height, width)]


def test_labeled_fractions_count_items_and_pixels():
    pool = sorted(SIZES)
    pool_pixels = 2 * 70 + 2 * 16
    assert labeled_fractions(Unit(), ["a", "c"], pool, SIZES.get) == pytest.approx((0.5, 86 / pool_pixels))
    # Cells of a 2x2 grid on 7x10 are 3x5, 3x5, 4x5, 4x5: items and pixels differ.
    patch = labeled_fractions(Unit("patch", (2, 2)), ["a#r0c0", "a#r1c1", "c#r0c1"], pool, SIZES.get)
    assert patch == pytest.approx((3 / 16, (15 + 20 + 4) / pool_pixels))
    # Overlapping regions count their pixels once; a region's item share is its pixel share.
    region = labeled_fractions(Unit("region", size=3), ["a#y0x0", "a#y1x1", "c#y1x1"], pool, SIZES.get)
    assert region == pytest.approx(((9 + 9 - 4 + 9) / pool_pixels,) * 2)


def test_items_by_image_keeps_the_order_of_first_appearance():
    unit = Unit("patch", (2, 2))
    assert items_by_image(unit, ["b#r0c0", "a#r1c1", "b#r1c0"]) == {"b": ["b#r0c0", "b#r1c0"], "a": ["a#r1c1"]}


def test_rules_skip_overlapping_regions_and_cap_regions_per_image():
    unit = Unit("region", size=3)
    _, boxes = candidate_items(unit, ["a", "c"], [], SIZES.get, stride=1)
    scores = {region: float(boxes[region][1].top + boxes[region][1].left) for region in boxes}  # bottom-right first
    picked = top_k(scores, 100, SelectionRules(boxes))
    for i, first in enumerate(picked):
        for second in picked[i + 1:]:
            image_a, box_a = boxes[first]
            image_b, box_b = boxes[second]
            assert image_a != image_b or not box_a.overlaps(box_b)
    # Windows of 10, 9 and 9 overlap a#y4x7; of the two 8s, a#y1x7 comes first by id and a#y4x4 still fits.
    assert picked == ["a#y4x7", "a#y1x7", "a#y4x4", "a#y1x4", "a#y4x1", "a#y1x1", "c#y1x1"]

    capped = SelectionRules(boxes, per_image=2)
    assert [boxes[r][0] for r in top_k(scores, 100, capped)].count("a") == 2
    assert capped.capacity(list(boxes)) == 4
    drawn = random_subset(list(boxes), 3, 0, capped)
    assert len(drawn) == 3 and drawn == random_subset(list(boxes), 3, 0, capped)
