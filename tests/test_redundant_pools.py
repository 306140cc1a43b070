"""Redundant pools: Pool-Xf runs of consecutive frames, Pool-Aug copies, scripts/make_a2d2_pools.py."""
import itertools
import json

import numpy as np
import pytest
from conftest import fail, import_script
from PIL import Image
from test_a2d2 import a2d2  # noqa: F401  (the A2D2 layout fixture)

from lib.data import Frame, open_dataset
from lib.errors import UserError
from lib.owned import MARKER
from lib.redundant_pools import augmented_copies, consecutive_pool, crop_box

make_pools, select, train, evaluate = (import_script(f) for f in
                                       ("scripts/make_a2d2_pools.py", "select.py", "train.py", "evaluate.py"))
LENGTHS = {"a": 7, "b": 5, "c": 4, "d": 12}  # frames per sequence


def make_frames(lengths=LENGTHS):
    """{id: Frame}, frame numbers in steps of 10 like A2D2's labeled frames, ids not in frame order."""
    return {f"{name}_{9 - i}": Frame(name, 10 * i) for name, n in lengths.items() for i in range(n)}


def blocks(frames, ids):
    """Lengths of the maximal stretches of consecutive frames (within a sequence) among `ids`."""
    ranks = {}  # id -> (sequence, position in its sequence)
    for name in LENGTHS:
        ordered = sorted((item for item in frames if frames[item].sequence == name), key=lambda i: frames[i].index)
        ranks.update({item: (name, rank) for rank, item in enumerate(ordered)})
    chosen = sorted(ranks[item] for item in ids)
    lengths, run = [], 1
    for (seq_a, rank_a), (seq_b, rank_b) in itertools.pairwise(chosen):
        if seq_a == seq_b and rank_b == rank_a + 1:
            run += 1
        else:
            lengths.append(run)
            run = 1
    return lengths + [run]


@pytest.mark.parametrize(("size", "following"), [(6, 1), (12, 2), (8, 3), (14, 1), (10, 4)])
def test_runs_are_whole_stretches_of_one_sequence(size, following):
    frames = make_frames()
    for seed in range(20):
        pool = consecutive_pool(frames, size, following, seed)
        assert len(set(pool)) == size and set(pool) <= set(frames) and pool == sorted(pool)
        # Adjacent runs merge into one stretch, which is then a whole number of runs.
        assert all(length % (following + 1) == 0 for length in blocks(frames, pool)), pool


def test_starts_fall_anywhere_a_run_fits():
    """Not on a lattice: over seeds, a run of 3 in a sequence of 12 starts at each of the 10 places."""
    frames = make_frames({"d": 12})
    starts = {min(frames[i].index for i in consecutive_pool(frames, 3, 2, seed)) // 10 for seed in range(200)}
    assert starts == set(range(10))


def test_following_zero_is_random_distinct_frames():
    frames = make_frames()
    counts = dict.fromkeys(frames, 0)
    for seed in range(400):
        pool = consecutive_pool(frames, 7, 0, seed)
        assert len(set(pool)) == 7
        for item in pool:
            counts[item] += 1
    # Every frame is picked with probability 7/28: 100 times in 400 draws.
    assert 60 < min(counts.values()) and max(counts.values()) < 140


def test_same_seed_same_pool_other_seed_another():
    frames = make_frames()
    assert consecutive_pool(frames, 12, 1, 3) == consecutive_pool(dict(reversed(frames.items())), 12, 1, 3)
    assert consecutive_pool(frames, 12, 1, 3) != consecutive_pool(frames, 12, 1, 4)


def test_a_pool_the_sequences_cannot_hold_says_how_many_fit():
    frames = make_frames()  # 3 + 2 + 2 + 6 runs of 2 frames fit
    assert len(consecutive_pool(frames, 26, 1, 0)) == 26
    with pytest.raises(UserError, match=r"needs 14 runs of 2 consecutive frames; the 4 sequences hold at most 13 "
                                        r"\(26 images\)"):
        consecutive_pool(frames, 28, 1, 0)
    with pytest.raises(UserError, match=r"a pool of 10 images is not a whole number of runs of 3 frames"):
        consecutive_pool(frames, 10, 2, 0)


@pytest.mark.parametrize(("height", "width"), [(32, 48), (1208, 1920), (96, 128)])
def test_the_crop_keeps_85_percent_of_the_area_and_the_shape(height, width):
    rng = np.random.default_rng(0)
    for _ in range(50):
        top, left, crop_h, crop_w = crop_box(height, width, 0.85, rng)
        assert 0 <= top <= height - crop_h and 0 <= left <= width - crop_w
        assert abs(crop_h * crop_w / (height * width) - 0.85) < 0.02
        assert abs(crop_w / crop_h - width / height) < 0.05 * width / height


def test_augmented_copies_crop_image_and_mask_alike():
    height, width = 32, 48
    rows = np.repeat(np.arange(height, dtype=np.uint8)[:, None], width, axis=1)  # [H, W] = row index
    image = np.stack([rows * 8, rows * 8, np.full_like(rows, 128)], axis=2)  # [H, W, 3] as bright as its row
    copies = augmented_copies(image, rows, np.random.default_rng(0), copies=5)
    assert len(copies) == 5
    for copy_image, copy_mask in copies:
        assert copy_image.shape == image.shape and copy_image.dtype == np.uint8
        assert copy_mask.shape == rows.shape and copy_mask.dtype == np.uint8
        kept = np.unique(copy_mask)  # nearest neighbours: every row of the crop and nothing else
        assert len(kept) == 30 and (np.diff(kept) == 1).all()
        assert (np.diff(copy_mask[:, 0].astype(int)) >= 0).all()  # stretched, not flipped
        # The image went through the same crop: it still darkens towards the top.
        assert copy_image[:4].mean() < copy_image[-4:].mean()
    assert not np.array_equal(copies[0][0], copies[1][0])


def test_masks_of_copies_hold_only_the_original_classes():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    mask = rng.choice(np.array([0, 3, 7, 255], dtype=np.uint8), (20, 30))
    for _, copy_mask in augmented_copies(image, mask, np.random.default_rng(2), copies=3):
        assert set(np.unique(copy_mask)) <= {0, 3, 7, 255}


def run_make(pool, out, *extra):
    make_pools.main(["--dataset", "synthetic", "--data-root", str(pool), "--out", str(out), "--size", "6",
                     "--following", "0", "1", "--aug-copies", "2", *extra])


def tree(folder):
    """Every file's bytes but the folder marker's, which names the folder it was written for (lib.owned)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MARKER}


def test_the_script_writes_the_pools_deterministically(synthetic_pool, tmp_path):
    run_make(synthetic_pool, tmp_path / "a")
    source = open_dataset("synthetic", synthetic_pool, "train")
    for name, following in (("pool_0f.json", 0), ("pool_1f.json", 1)):
        ids = json.loads((tmp_path / "a" / name).read_text())
        assert len(ids) == 6 and set(ids) <= set(source.ids)
        assert ids == consecutive_pool(source.frames, 6, following, 0)

    aug = open_dataset("folder", tmp_path / "a" / "pool_aug", "train")
    assert aug.ids == json.loads((tmp_path / "a" / "pool_aug.json").read_text()) and len(aug.ids) == 6
    assert aug.class_names == source.class_names
    originals = [item for item in aug.ids if "_aug" not in item]
    assert len(originals) == 2 and set(originals) <= set(source.ids)
    for original in originals:
        image, mask = aug.load_pair(original)
        assert np.array_equal(image, source.load_image(original)) and np.array_equal(mask, source.load_mask(original))
        for k in (1, 2):
            assert aug.frames[f"{original}_aug{k}"] == source.frames[original]
            copy_image, copy_mask = aug.load_pair(f"{original}_aug{k}")
            assert copy_image.shape == image.shape and set(np.unique(copy_mask)) <= set(np.unique(mask))

    run_make(synthetic_pool, tmp_path / "b")
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    run_make(synthetic_pool, tmp_path / "a")  # over its own output: the same bytes again
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    run_make(synthetic_pool, tmp_path / "c", "--seed", "1")
    other = tree(tmp_path / "c")
    assert other["pool_0f.json"] != tree(tmp_path / "a")["pool_0f.json"]
    assert other["pool_aug.json"] != tree(tmp_path / "a")["pool_aug.json"]


def test_the_pools_feed_select_train_and_evaluate(synthetic_pool, tmp_path):
    run_make(synthetic_pool, tmp_path / "pools", "--following", "1")
    assert sorted(p.name for p in (tmp_path / "pools").iterdir()) == [".al-seg.json", "pool_1f.json", "pool_aug",
                                                                 "pool_aug.json"]
    synthetic = ["--dataset", "synthetic", "--data-root", str(synthetic_pool)]
    select.main([*synthetic, "--pool", str(tmp_path / "pools" / "pool_1f.json"), "--method", "random", "--budget", "2",
                 "--out", str(tmp_path / "index_1f.json")])
    index = json.loads((tmp_path / "index_1f.json").read_text())
    pool_1f = json.loads((tmp_path / "pools" / "pool_1f.json").read_text())
    assert index["pool_size"] == 6 and set(index["labeled"]) <= set(pool_1f)

    aug = ["--dataset", "folder", "--data-root", str(tmp_path / "pools" / "pool_aug")]
    select.main([*aug, "--method", "random", "--budget", "4", "--out", str(tmp_path / "index.json")])
    train.main([*aug, "--index", str(tmp_path / "index.json"), "--out", str(tmp_path / "model.pt"), "--arch", "tiny",
                "--epochs", "1", "--workers", "0", "--device", "cpu", "--crop", "32x48", "--batch-size", "2"])
    # Same class names: a model of Pool-Aug is scored on the source's val split.
    evaluate.main(["--checkpoint", str(tmp_path / "model.pt"), *synthetic, "--split", "val", "--workers", "0",
                   "--device", "cpu", "--out", str(tmp_path / "metrics.json")])
    assert "miou" in json.loads((tmp_path / "metrics.json").read_text())


@pytest.mark.parametrize(("extra", "message"), [
    (["--size", "14", "--following", "1", "--no-aug"], "the 6 sequences hold at most 6 (12 images)"),
    (["--size", "7", "--following"], "--size 7 is not a multiple of --aug-copies 5 + 1"),
    (["--following", "--no-aug"], "nothing to write: --following lists no pool and --no-aug is given"),
])
def test_bad_requests_are_one_line_errors_that_write_nothing(synthetic_pool, tmp_path, capsys, extra, message):
    argv = ["--dataset", "synthetic", "--data-root", str(synthetic_pool), "--out", str(tmp_path / "out"), *extra]
    assert message in fail(make_pools, argv, capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("sequences", "message"), [
    (None, "--dataset folder: the train split has no sequence and frame information"),
    ({"x": {"sequence": "s", "frame": 0}}, "folder/train: image 'x' has no mask, which Pool-Aug copies with the image"),
])
def test_data_without_frames_or_masks_is_refused(tmp_path, capsys, sequences, message):
    (tmp_path / "data" / "train" / "images").mkdir(parents=True)
    (tmp_path / "data" / "classes.json").write_text('["a", "b"]')
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "data" / "train" / "images" / "x.png")
    if sequences:
        (tmp_path / "data" / "train" / "sequences.json").write_text(json.dumps(sequences))
    argv = ["--dataset", "folder", "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
            "--size", "2", "--following", "--aug-copies", "1"]
    assert message in fail(make_pools, argv, capsys)
    assert not (tmp_path / "out").exists()


def test_a2d2_masks_are_written_decoded(a2d2, tmp_path):  # noqa: F811  (the fixture imported above)
    """The A2D2 layout end to end: Pool-Aug holds class ids, not A2D2's colours."""
    make_pools.main(["--dataset", "a2d2", "--data-root", str(a2d2), "--out", str(tmp_path / "pools"), "--size", "4",
                     "--following", "1", "--aug-copies", "1"])
    source = open_dataset("a2d2", a2d2, "train")
    runs = json.loads((tmp_path / "pools" / "pool_1f.json").read_text())
    assert len(runs) == 4 and {source.frames[i].sequence for i in runs} == {"20180807_145028", "20181108_091945"}
    aug = open_dataset("folder", tmp_path / "pools" / "pool_aug", "train")
    assert aug.class_names == source.class_names and len(aug.ids) == 4
    for original in (item for item in aug.ids if "_aug" not in item):
        assert np.array_equal(aug.load_mask(original), source.load_mask(original))


def test_a_pool_aug_of_other_arguments_is_not_mixed_in(synthetic_pool, tmp_path, capsys):
    run_make(synthetic_pool, tmp_path / "pools")
    before = tree(tmp_path / "pools")
    argv = ["--dataset", "synthetic", "--data-root", str(synthetic_pool), "--out", str(tmp_path / "pools"),
            "--size", "6", "--following", "--aug-copies", "1"]
    assert "images this run does not write (" in fail(make_pools, argv, capsys)
    assert tree(tmp_path / "pools") == before
