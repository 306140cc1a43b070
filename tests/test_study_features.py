"""The study's code where its paper is silent: Coreset's 2x2 grid of the ASPP output (select.py --feature-pooling)
and the supervised cycles' warm start (train.py --init-head-from)."""
import json

import pytest
import torch

from conftest import fail, import_script
from lib.acquire.context import ItemReader
from lib.checkpoint import load_checkpoint
from lib.data import open_dataset
from lib.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from lib.errors import UserError
from lib.head_init import head_weights, load_head
from lib.models import build_model
from lib.training_run import model_arguments, start_run
from lib.units import Unit

train, select = import_script("train.py"), import_script("select.py")
CPU = torch.device("cpu")
PREPROCESS = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


def cell_means(cells, rows, cols):
    """By hand: [d, h, w] cells of one item -> the means of the (row range, col range) windows, channel-major [4d]."""
    return torch.stack([cells[:, r0:r1, c0:c1].mean(dim=(1, 2)) for r0, r1 in rows for c0, c1 in cols], dim=1).flatten()


@pytest.mark.parametrize(("unit", "suffix", "windows"), [
    # 32x48 images at output stride 16: ASPP maps of 2x3 cells. Adaptive pooling of 3 columns into 2 overlaps them.
    (Unit("image"), "", (((0, 1), (1, 2)), ((0, 2), (1, 3)))),
    # A 16x24 patch covers cells [0, 1) x [1, 3): 1 row, repeated in both rows of its grid.
    (Unit("patch", (2, 2)), "#r0c1", (((0, 1), (0, 1)), ((1, 2), (2, 3)))),
])
def test_grid_features_are_the_means_of_each_items_2x2_cells(synthetic_pool, unit, suffix, windows):
    torch.manual_seed(0)
    model = build_model({"arch": "tiny", "num_classes": 8, "output_stride": 16, "mc_dropout": False}).eval()
    reader = ItemReader(open_dataset("synthetic", synthetic_pool, "train"), unit, CPU)
    image_ids = reader.dataset.ids[:3]
    item_ids = [image_id + suffix for image_id in image_ids]
    grid = reader.features(model, PREPROCESS, "aspp", item_ids, "grid2x2")
    mean = reader.features(model, PREPROCESS, "aspp", item_ids)
    (_, images, _), = reader.batches(image_ids, PREPROCESS)
    with torch.no_grad():
        maps = model.feature_map("aspp", images)  # [3, 256, 2, 3]
    assert maps.shape[-2:] == (2, 3) and grid.shape == (3, 4 * maps.shape[1]) and mean.shape == (3, maps.shape[1])
    rows, cols = windows
    for n in range(len(image_ids)):
        torch.testing.assert_close(grid[n], cell_means(maps[n], rows, cols))


def read(path):
    return json.loads(path.read_text())


def select_argv(pool, trained, method, out, *extra):
    return ["--dataset", "synthetic", "--data-root", str(pool), "--index", str(trained / "index.json"),
            "--checkpoint", str(trained / "model.pt"), "--method", method, "--budget", "2", "--seed", "3",
            "--out", str(out), "--workers", "0", "--device", "cpu", *extra]


@pytest.mark.parametrize(("method", "extra", "recorded"), [
    ("coreset", (), False), ("coreset", ("--feature-pooling", "grid2x2"), True),
    ("kmeanspp", ("--feature-pooling", "grid2x2"), True),
    ("random", ("--feature-pooling", "grid2x2", "--report-redundancy"), True),  # the redundancy's features
    ("entropy", ("--feature-pooling", "grid2x2"), False),  # taken, unused: SELECT_ARGS go to every method
])
def test_the_history_records_the_pooling_of_the_features_read(synthetic_pool, trained_tiny, tmp_path, method, extra,
                                                              recorded):
    select.main(select_argv(synthetic_pool, trained_tiny, method, tmp_path / "next.json", *extra))
    entry = read(tmp_path / "next.json")["history"][-1]
    assert entry.get("feature_pooling") == ("grid2x2" if recorded else None)


def test_a_method_without_features_selects_the_same_whatever_the_pooling(synthetic_pool, trained_tiny, tmp_path):
    for name, extra in (("plain.json", ()), ("grid.json", ("--feature-pooling", "grid2x2"))):
        select.main(select_argv(synthetic_pool, trained_tiny, "entropy", tmp_path / name, *extra))
    assert (tmp_path / "plain.json").read_bytes() == (tmp_path / "grid.json").read_bytes()


# --- train.py --init-head-from ---------------------------------------------------------------

def train_args(pool, trained, out, *extra):
    return train.get_args_parser().parse_args([
        "--dataset", "synthetic", "--data-root", str(pool), "--index", str(trained / "index.json"),
        "--out", str(out), "--arch", "tiny", "--workers", "0", "--device", "cpu", *extra])


def initial_model(pool, trained, tmp_path, *extra):
    """train.py's initial model (start_run) with these flags, and its model_args."""
    args = train_args(pool, trained, tmp_path / "next.pt", *extra)
    dataset = open_dataset("synthetic", pool, "train")
    model_args = model_arguments(args, dataset.num_classes)
    head = head_weights(args.init_head_from, model_args, dataset) if args.init_head_from else None
    return start_run(args, model_args, 4, CPU, head=head).model.state_dict(), model_args


def test_the_head_starts_from_the_checkpoint_and_the_backbone_as_without_it(synthetic_pool, trained_tiny, tmp_path):
    previous = load_checkpoint(trained_tiny / "model.pt")["model"]
    warm, _ = initial_model(synthetic_pool, trained_tiny, tmp_path, "--init-head-from", str(trained_tiny / "model.pt"))
    fresh, _ = initial_model(synthetic_pool, trained_tiny, tmp_path)
    backbone = [key for key in fresh if key.startswith("backbone.")]
    head = [key for key in fresh if not key.startswith("backbone.")]
    assert backbone and any(key.startswith("aspp.") for key in head) and any(key.startswith("decoder.") for key in head)
    assert all(torch.equal(warm[key], previous[key]) for key in head)
    assert not all(torch.equal(fresh[key], previous[key]) for key in head)  # the copy is no accident
    assert all(torch.equal(warm[key], fresh[key]) for key in backbone)
    assert not all(torch.equal(fresh[key], previous[key]) for key in backbone)  # training moved the backbone


@pytest.mark.parametrize(("change", "message"), [
    ({"arch": "mobilenet_v2"}, "a model of arch 'mobilenet_v2', this run trains one of 'tiny'"),
    ({"output_stride": 8}, "a model of output_stride 8, this run trains one of 16"),
    ({"class_names": ["other"] * 8}, "checkpoint was trained on other classes"),
])
def test_a_checkpoint_of_another_model_is_refused(synthetic_pool, trained_tiny, tmp_path, capsys, change, message):
    checkpoint = load_checkpoint(trained_tiny / "model.pt")
    model_args = {**checkpoint["model_args"], **{k: v for k, v in change.items() if k != "class_names"}}
    other = tmp_path / "other.pt"
    torch.save({**checkpoint, "model_args": model_args, "class_names": change.get("class_names",
                                                                                   checkpoint["class_names"])}, other)
    argv = ["--dataset", "synthetic", "--data-root", str(synthetic_pool), "--index", str(trained_tiny / "index.json"),
            "--out", str(tmp_path / "next.pt"), "--arch", "tiny", "--epochs", "1", "--workers", "0",
            "--device", "cpu", "--init-head-from", str(other)]
    assert message in fail(train, argv, capsys)
    assert not (tmp_path / "next.pt").exists()


def test_a_head_of_another_shape_is_refused(trained_tiny):
    head = {key: value for key, value in load_checkpoint(trained_tiny / "model.pt")["model"].items()
            if not key.startswith("backbone.")}
    with_representation = build_model({"arch": "tiny", "num_classes": 8, "output_stride": 16, "mc_dropout": False,
                                       "embed_dim": 4})
    with pytest.raises(UserError, match=r"not the head of this run's model: \d+ keys? missing, 0 unexpected "
                                        r"\(first missing representation\."):
        load_head(with_representation, head, "m.pt")
    other_classes = build_model({"arch": "tiny", "num_classes": 5, "output_stride": 16, "mc_dropout": False})
    with pytest.raises(UserError, match=r"decoder\.classifier\.weight is \[8, .*\] in the file, \[5, .*\] in this "
                                        r"run's model"):
        load_head(other_classes, head, "m.pt")


def test_the_previous_model_is_never_overwritten(synthetic_pool, trained_tiny, capsys):
    argv = ["--dataset", "synthetic", "--data-root", str(synthetic_pool), "--index", str(trained_tiny / "index.json"),
            "--out", str(trained_tiny / "model.pt"), "--arch", "tiny", "--device", "cpu",
            "--init-head-from", str(trained_tiny / "model.pt")]
    assert "--init-head-from" in fail(train, argv, capsys)
