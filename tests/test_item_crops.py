"""train.py --item-crops: every labeled item a sample of its own, cropped to its box (MEAL's training on patches)."""
import pytest
import torch

from conftest import fail, import_script
from lib.data import IGNORE_INDEX, open_dataset
from lib.data.transforms import IMAGENET_MEAN, IMAGENET_STD, image_to_tensor, mask_to_tensor
from lib.engine import ItemCrops, largest_item
from lib.index import LabeledIndex, save_index
from lib.training_set import small_items_warning
from lib.units import Unit

train = import_script("train.py")
MEAN, STD = list(IMAGENET_MEAN), list(IMAGENET_STD)  # train.py's


def item_samples(dataset, unit, items, flip=False, epoch=1):
    """ItemCrops of `items` (image id -> item ids) padded to the largest; [(image [3, H, W], mask [H, W])]."""
    crops = ItemCrops(dataset, unit, items, largest_item(unit, items, dataset.image_size), flip, 4, MEAN, STD)
    return [crops[epoch, i] for i in range(len(crops))]


def box_of(dataset, unit, item_id):
    """(image [3, h, w], mask [h, w]) of an item's box, as a model takes them."""
    image_id = unit.image_of(item_id)
    image, mask = dataset.load_pair(image_id)
    box = unit.box(item_id, *mask.shape)
    return (image_to_tensor(image[box.top:box.bottom, box.left:box.right], MEAN, STD),
            mask_to_tensor(mask[box.top:box.bottom, box.left:box.right]))


def holds_box(sample, box, flipped=False):
    """Whether `sample` (image, mask) is `box` (image, mask) at its top left, flipped if asked, the rest padding."""
    (image, mask), (box_image, box_mask) = sample, box
    if flipped:
        box_image, box_mask = box_image.flip(-1), box_mask.flip(-1)
    height, width = box_mask.shape
    padding = torch.ones_like(mask, dtype=torch.bool)
    padding[:height, :width] = False
    return (torch.equal(image[:, :height, :width], box_image) and torch.equal(mask[:height, :width], box_mask)
            and bool((mask[padding] == IGNORE_INDEX).all()))


@pytest.mark.parametrize("unit, items", [
    (Unit("patch", (3, 5)), ["#r0c0", "#r2c4", "#r1c1"]),  # cells of 10 or 11 rows, 9 or 10 columns
    (Unit("region", size=12), ["#y0x0", "#y20x36"]),
    (Unit(), [""]),  # an image unit's item is the whole image
], ids=["patch", "region", "image"])
def test_every_sample_is_one_labeled_items_box_padded_with_ignored_pixels(synthetic_pool, unit, items):
    dataset = open_dataset("synthetic", synthetic_pool, "train")
    labeled = {image_id: [image_id + suffix for suffix in items] for image_id in dataset.ids[:2]}
    item_ids = [item_id for ids in labeled.values() for item_id in ids]
    samples = item_samples(dataset, unit, labeled)
    assert len(samples) == len(item_ids)
    size = largest_item(unit, labeled, dataset.image_size)
    assert size == {"patch": (11, 10), "region": (12, 12), "image": (32, 48)}[unit.type]
    for sample, item_id in zip(samples, item_ids):
        assert sample[0].shape == (3, *size) and sample[1].shape == size
        assert holds_box(sample, box_of(dataset, unit, item_id))


def test_flips_are_drawn_per_sample_and_epoch_without_other_change(synthetic_pool):
    dataset = open_dataset("synthetic", synthetic_pool, "train")
    unit = Unit("patch", (2, 2))
    labeled = {image_id: [f"{image_id}#r{r}c{c}" for r in range(2) for c in range(2)] for image_id in dataset.ids[:3]}
    item_ids = [item_id for ids in labeled.values() for item_id in ids]
    flipped = []
    for epoch in (1, 2):
        samples = item_samples(dataset, unit, labeled, flip=True, epoch=epoch)
        assert samples[0][1].equal(item_samples(dataset, unit, labeled, flip=True, epoch=epoch)[0][1])  # drawn again
        for sample, item_id in zip(samples, item_ids):
            box = box_of(dataset, unit, item_id)
            flipped.append(not holds_box(sample, box))
            assert holds_box(sample, box, flipped=flipped[-1])
    assert 0 < sum(flipped) < len(flipped)


@pytest.fixture()
def patch_index(synthetic_pool, tmp_path):
    """13 cells of a 4x4 grid (8x12 pixels) in 5 images; returns (index path, item ids)."""
    ids = open_dataset("synthetic", synthetic_pool, "train").ids
    items = [f"{image_id}#r{k % 4}c{k // 4}" for image_id in ids[:4] for k in range(0, 16, 6)] + [f"{ids[9]}#r3c3"]
    index = LabeledIndex("synthetic", "train", Unit("patch", (4, 4)), len(ids)).with_cycle("random", 0, "13",
                                                                                                  items)
    save_index(tmp_path / "index.json", index)
    return tmp_path / "index.json", items


def argv(pool, index, out, *flags):
    return ["--dataset", "synthetic", "--data-root", str(pool), "--index", str(index), "--out", str(out),
            "--arch", "tiny", "--epochs", "2", "-b", "4", "--lr", "0.05", "--workers", "0", "--device", "cpu",
            "--seed", "5", *flags]


def test_an_epoch_is_every_item_once_in_full_batches_of_items_and_the_schedule_spans_them(synthetic_pool, tmp_path,
                                                                                          patch_index, monkeypatch):
    index, items = patch_index
    dataset = open_dataset("synthetic", synthetic_pool, "train")
    unit = Unit("patch", (4, 4))
    boxes = {item_id: box_of(dataset, unit, item_id) for item_id in items}
    epochs = []  # every epoch's batches: (the item ids of its samples, images, masks)
    train_one_epoch = train.train_one_epoch

    def recording(model, epoch, loader, *rest, **keywords):
        batches = list(loader)
        # (image id, item id) of sample i, and of i + len(samples): a second visit (the loader's ItemCrops are keyed
        # by (epoch, i), lib.engine.EpochBatches)
        samples = loader.dataset.samples
        epochs.append([([samples[i % len(samples)][1] for _, i in indices], *batch)
                       for indices, batch in zip(loader.batch_sampler, batches)])
        return train_one_epoch(model, epoch, batches, *rest, **keywords)

    monkeypatch.setattr(train, "train_one_epoch", recording)
    used = []  # the learning rate of every optimiser step
    step = torch.optim.SGD.step
    monkeypatch.setattr(torch.optim.SGD, "step", lambda self, *a, **k: used.append(self.param_groups[0]["lr"])
                        or step(self, *a, **k))
    out = tmp_path / "model.pt"
    train.main(argv(synthetic_pool, index, out, "--item-crops", "--no-flip", "--lr-schedule", "poly"))
    assert [len(batches) for batches in epochs] == [4, 4]  # ceil(13 / 4) steps of 4 cells, not 2 of 5 images
    for batches in epochs:
        seen = []
        for item_ids, images, masks in batches:
            assert images.shape == (4, 3, 8, 12) and masks.shape == (4, 8, 12)
            assert all(holds_box(sample, boxes[item_id]) for item_id, sample in zip(item_ids, zip(images, masks)))
            seen += item_ids
        assert sorted(set(seen)) == sorted(items) and len(seen) == 16  # 3 cells of the first batch twice
    assert used == pytest.approx([0.05 * (1 - k / 8) ** 0.9 for k in range(8)])  # poly over the steps of items
    checkpoint = torch.load(out, weights_only=True)
    assert checkpoint["progress"]["done"] == 8 and checkpoint["training"]["crop"] == [8, 12]
    assert checkpoint["train_args"]["item_crops"] is True


def test_the_same_seed_trains_the_same_weights(synthetic_pool, tmp_path, patch_index, capsys):
    index, _ = patch_index
    weights = []
    for name in ("a.pt", "b.pt"):
        train.main(argv(synthetic_pool, index, tmp_path / name, "--item-crops"))  # with flips
        weights.append(torch.load(tmp_path / name, weights_only=True)["model"])
        # cells of 8x12 pixels at the default output stride 16
        assert "warning: --item-crops: the labeled items are at most 8x12 pixels, 1x1 positions" in \
            capsys.readouterr().err
    assert all(torch.equal(tensor, weights[1][name]) for name, tensor in weights[0].items())


@pytest.mark.parametrize("flags, message", [
    (["--crop", "8x12"], "error: --crop: with --item-crops a sample is its labeled item's box, neither cropped nor "
                         "rescaled: leave --crop out"),
    (["--random-scale", "0.5,2"], "error: --random-scale: with --item-crops a sample is its labeled item's box"),
    (["--ssl", "s4gan"], "error: --item-crops trains on labeled items only, --ssl s4gan on crops of unlabeled pixels"),
])
def test_flags_that_would_crop_otherwise_are_one_error_line(synthetic_pool, tmp_path, patch_index, capsys, flags,
                                                            message):
    index, _ = patch_index
    out = tmp_path / "model.pt"
    assert fail(train, argv(synthetic_pool, index, out, "--item-crops", *flags), capsys).startswith(message)
    assert not out.exists()


@pytest.mark.parametrize("item_size, output_stride, positions", [
    ((30, 40), 16, "2x3"),  # CamVid's 4x4 patches at 120x160
    ((90, 120), 32, "3x4"),
])
def test_items_with_few_backbone_positions_are_warned_of(item_size, output_stride, positions):
    warning = small_items_warning(item_size, output_stride)
    assert f"at most {item_size[0]}x{item_size[1]} pixels, {positions} positions" in warning
    assert f"output stride {output_stride}" in warning


def test_items_of_the_papers_size_are_not_warned_of():
    assert small_items_warning((90, 120), 16) is None  # MEAL's CamVid patches: 6x8 positions
    assert small_items_warning((64, 64), 16) is None  # 4x4: the fewest not warned of
