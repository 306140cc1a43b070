import numpy as np
import pytest

from lib.acquire.rank import SelectionRules, random_subset, top_k
from lib.units import Box, Unit, candidate_items, items_by_image, labeled_fractions, overlapping_regions

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


@pytest.mark.parametrize("unit", [Unit(), Unit("patch", (2, 3))])
def test_candidates_are_every_item_of_the_images_in_order_less_the_labeled(unit):
    images = [f"img{n}" for n in (3, 1, 2, 0)]  # the caller's order, kept
    every = [image_id + suffix for image_id in images for suffix, _ in unit.layout(7, 10)]
    labeled = every[1::3] + ["elsewhere#r0c0"]  # an item of another image changes nothing
    candidates, boxes = candidate_items(unit, images, labeled, SIZES.get)
    assert boxes is None and candidates == [item_id for item_id in every if item_id not in labeled]


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


@pytest.mark.parametrize(("unit", "good", "bad"), [
    (Unit("patch", (12, 12)), ["a#r0c0", "a#r10c11", "a#b#r0c1"],
     ["a#r00c1", "a#r0c01", "a#r+1c0", "a#r\u0661c0", "a#r0c1\n", "a#r 1c0", "a#r0c1#"]),
    (Unit("region", size=3), ["a#y0x0", "a#y120x7"], ["a#y00x0", "a#y0x07", "a#y\u0663x0", "a#y0x0\n", "a#y-1x0"]),
])
def test_ids_have_one_spelling(unit, good, bad):
    """Numbers are ASCII decimals without leading zeros: int() would read "01" and "\u0661" (Arabic-Indic 1)
    as 1, two ids of one item."""
    assert [unit.image_of(item_id) for item_id in good] == [item_id.rpartition("#")[0] for item_id in good]
    for item_id in bad:
        with pytest.raises(ValueError, match="ASCII digits without leading zeros"):
            unit.image_of(item_id)


def test_overlapping_regions_finds_a_pair_when_and_only_when_there_is_one():
    unit = Unit("region", size=5)
    rng = np.random.default_rng(0)
    for _ in range(200):
        corners = {(image, int(top), int(left)) for image, top, left in
                   zip(rng.choice(["a", "b"], 6), rng.integers(0, 30, 6), rng.integers(0, 30, 6))}
        ids = [f"{image}#y{top}x{left}" for image, top, left in sorted(corners)]
        overlapping = {(first, second) for first in ids for second in ids if first != second
                       and first[0] == second[0] and unit.box(first, 40, 40).overlaps(unit.box(second, 40, 40))}
        pair = overlapping_regions(unit, ids)
        assert (pair in overlapping) if overlapping else pair is None
    assert overlapping_regions(unit, ["a#y0x0", "a#y4x4"]) == ("a#y0x0", "a#y4x4")
    assert overlapping_regions(unit, ["a#y0x0", "a#y5x0", "a#y0x5", "b#y0x0"]) is None  # touching is no overlap
    tiling = [f"a#y{top}x{left}" for top in range(0, 1000, 5) for left in range(0, 1000, 5)]  # 40,000 regions
    assert overlapping_regions(unit, tiling) is None


def test_misfit_names_images_too_small_for_the_unit():
    assert Unit().misfit(1, 1) is None
    assert Unit("patch", (3, 4)).misfit(3, 4) is None
    assert Unit("patch", (3, 4)).misfit(3, 3) == ("has 3 rows and 3 columns of pixels, fewer than the grid's 3 rows "
                                                   "or 4 columns: a cell would be empty")
    assert Unit("region", size=5).misfit(5, 9) is None
    assert Unit("region", size=5).misfit(9, 4) == "is 4x9 pixels, smaller than a 5x5 region: it could never be labeled"
