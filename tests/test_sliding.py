"""Sliding-window inference (lib/sliding.py): the windows, the stitching, and --slide-window through the scripts."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from conftest import fail, import_script, train_tiny_model
from lib.acquire.reduce import REDUCTIONS
from lib.acquire.scores import embed_items, pixel_entropy, score_items
from lib.data import open_dataset
from lib.data.base import read_label
from lib.engine import evaluate_confusion
from lib.index import load_index
from lib.semisup.selftrain import pseudo_label_files
from lib.sliding import owned_parts, scale_box, slide, window_stride, windows
from lib.units import Box, Unit

select, evaluate = import_script("select.py"), import_script("evaluate.py")

CPU = torch.device("cpu")


def coordinate_images(batch, height, width):
    """[batch, 3, height, width] whose channels hold the row, the column and the image number of each pixel."""
    rows = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
    cols = torch.arange(width, dtype=torch.float32)[None, :].expand(height, width)
    return torch.stack([torch.stack([rows, cols, torch.full_like(rows, n)]) for n in range(batch)])


# --- the windows -------------------------------------------------------------------------------------------------


def test_stride_is_two_thirds_of_the_window_as_in_mmsegmentation():
    assert [window_stride(side) for side in (512, 769, 1024, 2048, 16)] == [341, 513, 683, 1365, 11]


# (height, width, window): one window, one row of windows, sizes on and off the stride grid (512 + 2 x 341 = 1194).
PARTITION_CASES = [
    (10, 12, (16, 16)), (16, 16, (16, 16)), (16, 40, (16, 16)), (32, 48, (16, 16)), (37, 53, (16, 20)),
    (1194, 1194, (512, 512)), (1200, 700, (512, 512)), (101, 7, (9, 4)),
]


@pytest.mark.parametrize("height, width, window", PARTITION_CASES)
def test_owned_parts_partition_the_image(height, width, window):
    tiles = windows(height, width, window)
    owners = np.zeros((height, width), dtype=int)
    for box, owned in tiles:
        # Every window has the same size, lies in the image and holds what it owns.
        assert (box.bottom - box.top, box.right - box.left) == (min(window[0], height), min(window[1], width))
        assert 0 <= box.top <= owned.top <= owned.bottom <= box.bottom <= height
        assert 0 <= box.left <= owned.left <= owned.right <= box.right <= width
        owners[owned.top:owned.bottom, owned.left:owned.right] += 1
    assert (owners == 1).all()
    assert (len(tiles) == 1) == (height <= window[0] and width <= window[1])


def test_windows_start_every_stride_and_the_last_is_flush_with_the_border():
    tops = sorted({box.top for box, _ in windows(1200, 512, (512, 512))})
    assert tops == [0, 341, 682, 1200 - 512]
    assert {(box.left, box.right) for box, _ in windows(1200, 512, (512, 512))} == {(0, 512)}
    assert sorted({box.top for box, _ in windows(1194, 512, (512, 512))}) == [0, 341, 682]  # on the grid: no extra


@pytest.mark.parametrize("height, width, window", [(32, 48, (16, 16)), (37, 53, (16, 20)), (101, 7, (9, 4))])
def test_each_pixel_is_owned_by_the_window_it_lies_most_centrally_in(height, width, window):
    tiles = windows(height, width, window)
    for y in range(height):
        for x in range(width):
            holders = [box for box, _ in tiles if box.top <= y < box.bottom and box.left <= x < box.right]
            owner = next(box for box, owned in tiles if owned.top <= y < owned.bottom and owned.left <= x < owned.right)
            row_offset = min(abs(y + 0.5 - (box.top + box.bottom) / 2) for box in holders)
            col_offset = min(abs(x + 0.5 - (box.left + box.right) / 2) for box in holders)
            assert abs(y + 0.5 - (owner.top + owner.bottom) / 2) == row_offset
            assert abs(x + 0.5 - (owner.left + owner.right) / 2) == col_offset


# --- stitching ---------------------------------------------------------------------------------------------------


def test_an_image_that_fits_goes_through_fn_once_whole():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, stride=2, padding=1)).eval()
    images = torch.rand(2, 3, 32, 48)
    calls = []

    def fn(x):
        calls.append(x.shape)
        return model(x)

    with torch.no_grad():
        expected = model(images)
        for window in ((32, 48), (64, 64)):
            assert torch.equal(slide(fn, images, window), expected)
            [(canvas_size, target, part)] = owned_parts(fn, images, window)
            assert canvas_size == (16, 24) and target == Box(0, 0, 16, 24) and torch.equal(part, expected)
    assert calls == [images.shape] * 4


def test_a_pixel_wise_function_gives_the_whole_image_result_exactly():
    images = torch.rand(2, 3, 37, 53)
    fn = lambda x: (x * x).sum(dim=1).sqrt()  # noqa: E731  [B, h, w]
    assert torch.equal(slide(fn, images, (16, 20)), fn(images))
    assert torch.equal(slide(lambda x: x, images, (9, 4)), images)  # every pixel from its own place


def one_by_one_model():
    torch.manual_seed(0)
    return nn.Conv2d(3, 5, kernel_size=1)  # translation-equivariant: a pixel's logits depend on that pixel alone


def test_scores_and_confusion_of_a_one_by_one_conv_do_not_depend_on_the_window():
    model = one_by_one_model()
    images = torch.rand(3, 3, 37, 53)
    masks = torch.randint(0, 5, (3, 37, 53))
    batches = [(["a", "b", "c"], images, masks)]
    layout = Unit("patch", (2, 3)).layout
    whole = score_items(model, batches, pixel_entropy, REDUCTIONS["sum"], layout, CPU, False, (64, 64))
    windowed = score_items(model, batches, pixel_entropy, REDUCTIONS["sum"], layout, CPU, False, (16, 16))
    assert whole.keys() == windowed.keys()
    np.testing.assert_allclose(list(windowed.values()), list(whole.values()), rtol=1e-6)
    confusion = evaluate_confusion(model, batches, 5, CPU, False, window=(64, 64))
    assert torch.equal(evaluate_confusion(model, batches, 5, CPU, False, window=(16, 16)), confusion)
    assert confusion.sum() == 3 * 37 * 53


# (height, width, window, factor): outputs 1/factor of their input's side, down to one cell per window.
COARSE_CASES = [(37, 53, (16, 16), 4), (37, 53, (16, 16), 16), (8000, 8000, (2048, 2048), 16),
                (1200, 700, (512, 512), 8), (33, 49, (12, 20), 2), (33, 17, (6, 6), 3)]


@pytest.mark.parametrize("height, width, window, factor", COARSE_CASES)
def test_coarse_outputs_tile_the_canvas_with_no_gap_or_overlap(height, width, window, factor):
    tiles = windows(height, width, window)
    size = (tiles[0][0].bottom - tiles[0][0].top, tiles[0][0].right - tiles[0][0].left)
    out_size = (-(-size[0] // factor), -(-size[1] // factor))  # a stride-`factor` network's output of a window
    canvas = scale_box(Box(0, 0, height, width), size, out_size)
    if size[0] % factor == 0 and size[1] % factor == 0:  # the map the whole image would give
        assert (canvas.bottom, canvas.right) == (-(-height // factor), -(-width // factor))
    owners = np.zeros((canvas.bottom, canvas.right), dtype=int)
    for box, owned in tiles:
        origin, target = scale_box(box, size, out_size), scale_box(owned, size, out_size)
        assert (origin.bottom - origin.top, origin.right - origin.left) == out_size  # the window's output, whole
        assert origin.top <= target.top <= target.bottom <= origin.bottom
        assert origin.left <= target.left <= target.right <= origin.right
        owners[target.top:target.bottom, target.left:target.right] += 1
    assert (owners == 1).all()


def test_stitched_coarse_features_stay_within_a_cell_of_the_whole_image_map():
    """Every 4th pixel of a coordinate image: a cell of the canvas holds a pixel less than a cell (4 pixels) before
    the one the whole image's map has there (window starts are rounded up to the next cell)."""
    images = coordinate_images(2, 37, 53)
    subsample = lambda x: x[..., ::4, ::4]  # noqa: E731  [B, 3, ceil(h/4), ceil(w/4)]
    canvas = slide(subsample, images, (16, 16))  # windows start at 11, 21, ...: not on the whole image's grid
    whole = subsample(images)
    assert canvas.shape == whole.shape == (2, 3, 10, 14)
    offset = canvas[:, :2] - whole[:, :2]  # [2, 2, 10, 14]: rows and columns
    assert ((offset > -4) & (offset <= 0)).all() and (offset < 0).any()
    assert torch.equal(canvas[:, 2], whole[:, 2])  # each image's own pixels


def test_embed_items_averages_stitched_features_over_each_item():
    images = coordinate_images(2, 32, 48)
    subsample = lambda model, x: x[..., ::4, ::4]  # noqa: E731
    batches = [(["p", "q"], images, None)]
    layout = Unit("patch", (2, 2)).layout
    ids, whole = embed_items(nn.Identity(), subsample, batches, layout, CPU, False, (64, 64))
    windowed_ids, windowed = embed_items(nn.Identity(), subsample, batches, layout, CPU, False, (16, 16))
    assert windowed_ids == ids and windowed.shape == whole.shape == (8, 3)
    assert ((windowed - whole).abs() < 4).all()  # each cell within a cell of where the whole map has it


# --- through the command lines -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(synthetic_pool, tmp_path_factory):
    return train_tiny_model(synthetic_pool, tmp_path_factory.mktemp("tiny"))


def select_entropy(pool, tiny, folder, name, *extra):
    select.main(["--dataset", "synthetic", "--data-root", str(pool), "--index", str(tiny / "index.json"),
                 "--checkpoint", str(tiny / "model.pt"), "--method", "entropy", "--budget", "2", "--seed", "0",
                 "--workers", "0", "--device", "cpu", "--out", str(folder / f"{name}.json"),
                 "--scores-out", str(folder / f"{name}.scores.json"), *extra])
    return (folder / f"{name}.json").read_bytes(), json.loads((folder / f"{name}.scores.json").read_text())["scores"]


def test_select_entropy_with_small_windows(synthetic_pool, tiny, tmp_path):
    """32x48 images: 16x16 windows score them in pieces; a window they fit in changes no score, and the
    index only records the window."""
    default, default_scores = select_entropy(synthetic_pool, tiny, tmp_path, "default")
    _, fitting_scores = select_entropy(synthetic_pool, tiny, tmp_path, "fitting", "--slide-window", "32x48")
    windowed, windowed_scores = select_entropy(synthetic_pool, tiny, tmp_path, "windowed", "--slide-window", "16x16")
    assert fitting_scores == default_scores
    fitting = load_index(tmp_path / "fitting.json", dataset="synthetic")
    assert fitting.labeled == load_index(tmp_path / "default.json", dataset="synthetic").labeled
    assert fitting.history[-1]["slide_window"] == [32, 48] and "slide_window" not in json.loads(default)["history"][-1]
    index = load_index(tmp_path / "windowed.json", dataset="synthetic")
    assert len(index.labeled) == 6 and index.history[-1]["method"] == "entropy"
    assert windowed_scores.keys() == default_scores.keys()
    assert windowed_scores != default_scores  # the windows see less context than the whole image
    assert all(np.isfinite(score) and score >= 0 for score in windowed_scores.values())


def evaluate_metrics(pool, tiny, path, *extra):
    evaluate.main(["--checkpoint", str(tiny / "model.pt"), "--data-root", str(pool), "--workers", "0",
                   "--device", "cpu", "--out", str(path), *extra])
    return json.loads(path.read_text())


def test_evaluate_with_small_windows(synthetic_pool, tiny, tmp_path):
    default = evaluate_metrics(synthetic_pool, tiny, tmp_path / "default.json")
    windowed = evaluate_metrics(synthetic_pool, tiny, tmp_path / "windowed.json", "--slide-window", "16x16")
    assert windowed["images"] == default["images"] == 4
    assert 0 <= windowed["miou"] <= 1
    # Every labeled pixel is predicted once, by one window.
    assert np.sum(windowed["confusion"]) == np.sum(default["confusion"]) > 0


def test_a_bad_window_is_one_error_line(synthetic_pool, tiny, tmp_path, capsys):
    err = fail(evaluate, ["--checkpoint", str(tiny / "model.pt"), "--data-root", str(synthetic_pool),
                          "--slide-window", "0x16"], capsys)
    assert "--slide-window" in err


def test_the_teachers_pseudo_labels_with_small_windows(synthetic_pool, tiny, tmp_path):
    dataset = open_dataset("synthetic", synthetic_pool, "train")

    def labels(name, window):  # threshold 1e-6: every pixel gets the class the teacher's window predicts
        paths = pseudo_label_files(tmp_path / name, tiny / "model.pt", 1e-6, dataset, dataset.ids[:3], CPU, 2, 0,
                                   window)
        return [read_label(path) for path in paths.values()]

    default, fitting = labels("default", (2048, 2048)), labels("fitting", (32, 48))
    windowed = labels("windowed", (16, 16))
    assert all(np.array_equal(a, b) for a, b in zip(fitting, default))
    assert all(label.shape == (32, 48) and (label < dataset.num_classes).all() for label in windowed)
