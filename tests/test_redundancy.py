"""The redundancy score of a pool (lib/redundancy.py) and select.py --report-redundancy."""
import json

import numpy as np
import pytest
import torch
from conftest import fail, import_script
from PIL import Image

import lib.umap.neighbors
from lib.acquire.context import ItemReader
from lib.data import open_dataset
from lib.data.synthetic import write_synthetic_pool
from lib.index import load_index
from lib.redundancy import measure_redundancy
from lib.redundant_pools import augmented_copies

select, train = import_script("select.py"), import_script("train.py")
CPU = ["--workers", "0", "--device", "cpu"]


def gaussian(n, d=256, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def copies(points, count):
    """Each row of `points` [M, d] `count` times: [M count, d]."""
    return points.repeat_interleave(count, dim=0)


# ---------------------------------------------------------------------------------
# The measure on constructed features.
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("neighbours", [1, 5, 20])
def test_k_copies_of_every_item_score_one(neighbours):
    result = measure_redundancy(copies(gaussian(30), neighbours + 1), neighbours=neighbours)
    assert result.score == 1.0 and result.neighbours == neighbours


def test_independent_points_score_near_zero():
    # Not exactly 0: in a sample, an item's nearest neighbours are a little nearer than a typical pair.
    assert measure_redundancy(gaussian(500)).score < 0.1


def test_the_scale_of_the_features_does_not_matter():
    """Rows of 1e20 are finite in float32, but their squared norm is not."""
    features = gaussian(50, d=8)
    assert measure_redundancy(features * 1e20).score == pytest.approx(measure_redundancy(features).score, abs=1e-6)


def test_more_copies_score_higher():
    scores = [measure_redundancy(copies(gaussian(480 // count), count)).score for count in (1, 2, 4, 8, 16)]
    assert all(a < b for a, b in zip(scores, scores[1:])), scores


def test_a_seed_gives_the_same_score_bit_for_bit():
    features = copies(gaussian(1500, 64), 2)
    first = measure_redundancy(features, queries=500, seed=3)
    assert first == measure_redundancy(features.clone(), queries=500, seed=3)
    # A sample of the queries estimates the mean over all of them.
    assert first.queries == 500 and first.items == 3000
    assert first.score == pytest.approx(measure_redundancy(features, queries=3000).score, abs=0.02)


@pytest.mark.parametrize(("features", "score", "neighbours"), [
    (torch.zeros(0, 4), 0.0, 0),
    (torch.ones(1, 4), 0.0, 0),  # no neighbour: no near-copy
    (torch.tensor([[1.0, 0.0], [0.0, 1.0]]), 0.0, 1),  # the only pair is the typical pair
    (torch.ones(2, 4), 1.0, 1),
])
def test_pools_of_fewer_than_three_items(features, score, neighbours):
    result = measure_redundancy(features)
    assert (result.score, result.neighbours, result.items) == (score, neighbours, len(features))


def test_copies_everywhere_score_one_without_nan():
    assert measure_redundancy(torch.ones(50, 8)).score == 1.0
    # Most pairs are copies (typical distance 0): the copies count fully, the one other item not at all.
    mostly = torch.cat([torch.ones(40, 8), torch.eye(8)[:1]])
    assert 0.9 < measure_redundancy(mostly).score < 1.0
    # Zero rows and huge values: finite.
    odd = torch.cat([torch.zeros(3, 8), gaussian(20, 8) * 1e30])
    assert 0.0 <= measure_redundancy(odd).score <= 1.0


def reference_score(features, neighbours):
    """The definition over all items, from the full distance matrix."""
    points = torch.nn.functional.normalize(features.double(), dim=1)
    distances = torch.cdist(points, points)  # [N, N]
    pairs = distances[torch.triu_indices(len(points), len(points), 1).unbind()]
    nearest = (distances + torch.diag(torch.full((len(points),), torch.inf))).topk(neighbours, largest=False).values
    return float((1 - nearest / pairs.median()).clamp(0, 1).mean())


def test_chunked_search_matches_a_full_reference(monkeypatch):
    features = copies(gaussian(61, 16), 3) + 0.05 * gaussian(183, 16, seed=1)  # noisy triples, 16,653 pairs
    whole = measure_redundancy(features, neighbours=5)
    monkeypatch.setattr(lib.umap.neighbors, "CHUNK_ELEMENTS", 400)  # 2 queries per distance block
    chunked = measure_redundancy(features, neighbours=5)
    assert chunked.score == pytest.approx(whole.score, abs=1e-6)
    assert whole.score == pytest.approx(reference_score(features, 5), abs=1e-5)  # an odd count: one middle pair


# ---------------------------------------------------------------------------------
# select.py --report-redundancy.
# ---------------------------------------------------------------------------------


def run_select(pool, out, *flags, dataset="synthetic"):
    select.main(["--dataset", dataset, "--data-root", str(pool), "--out", str(out), *CPU, *flags])
    return json.loads(out.read_text())


def test_the_history_records_the_score_and_the_index_stays_byte_identical(synthetic_pool, trained_tiny, tmp_path,
                                                                           capsys):
    flags = ["--method", "entropy", "--index", str(trained_tiny / "index.json"), "--checkpoint",
             str(trained_tiny / "model.pt"), "--budget", "2", "--report-redundancy"]
    entry = run_select(synthetic_pool, tmp_path / "a.json", *flags)["history"][-1]
    run_select(synthetic_pool, tmp_path / "b.json", *flags)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    # 4 labeled + 8 candidates, each with its 11 others as neighbours
    assert entry["redundancy"]["items"] == entry["redundancy"]["queries"] == 12
    assert entry["redundancy"]["neighbours"] == 11 and 0 < entry["redundancy"]["score"] < 1
    assert f"redundancy {entry['redundancy']['score']:.2f} (11 nearest neighbours of 12 of 12 items" in \
        capsys.readouterr().out
    plain = run_select(synthetic_pool, tmp_path / "c.json", *flags[:-1])["history"][-1]
    assert "redundancy" not in plain and plain["added"] == entry["added"]


def test_features_from_a_file_with_any_method(synthetic_pool, trained_tiny, tmp_path):
    ids = sorted(path.stem for path in (synthetic_pool / "train" / "images").iterdir())
    features = gaussian(len(ids), 8).numpy()
    features[1::2] = features[::2]  # pairs of copies
    np.savez(tmp_path / "f.npz", ids=np.array(ids), features=features)
    for method in (["--method", "entropy", "--checkpoint", str(trained_tiny / "model.pt")], ["--method", "random"]):
        entry = run_select(synthetic_pool, tmp_path / "next.json", *method, "--index", str(trained_tiny / "index.json"),
                           "--budget", "2", "--features", str(tmp_path / "f.npz"), "--report-redundancy")["history"][-1]
        labeled = json.loads((trained_tiny / "index.json").read_text())["labeled"]
        rows = [ids.index(item) for item in labeled + [item for item in ids if item not in labeled]]
        assert entry["redundancy"]["score"] == round(measure_redundancy(features[rows]).score, 4)


def test_methods_that_read_features_compute_them_once(synthetic_pool, trained_tiny, tmp_path, monkeypatch):
    calls = []
    features = ItemReader.features
    monkeypatch.setattr(ItemReader, "features", lambda *args: calls.append(1) or features(*args))
    entry = run_select(synthetic_pool, tmp_path / "next.json", "--method", "coreset", "--checkpoint",
                       str(trained_tiny / "model.pt"), "--index", str(trained_tiny / "index.json"), "--budget", "2",
                       "--report-redundancy")["history"][-1]
    assert len(calls) == 1 and entry["redundancy"]["items"] == 12


def test_without_a_model_or_features_one_error_line(synthetic_pool, tmp_path, capsys):
    err = fail(select, ["--dataset", "synthetic", "--data-root", str(synthetic_pool), "--method", "random",
                        "--budget", "2", "--report-redundancy", "--out", str(tmp_path / "next.json")], capsys)
    assert "--report-redundancy needs image features: give --checkpoint or --features FILE" in err
    assert not (tmp_path / "next.json").exists()


# ---------------------------------------------------------------------------------
# Pools of growing redundancy, scored through select.py with one small model.
# ---------------------------------------------------------------------------------

POOL_IMAGES = 132  # 132 x 1, 22 x 6, 11 x 12, 6 x 22 frames
FRAMES = (1, 6, 12, 22)
HEIGHT, WIDTH = 48, 64


@pytest.fixture(scope="module")
def scene_model(synthetic_pool, tmp_path_factory):
    """A tiny model trained for 5 epochs on the 12 images of `synthetic_pool`: a 1-epoch model's features barely
    tell one scene from another, and its scores ordered the pools below for only some pool seeds."""
    folder = tmp_path_factory.mktemp("scene_model")
    data = ["--dataset", "synthetic", "--data-root", str(synthetic_pool)]
    select.main([*data, "--method", "random", "--budget", "12", "--out", str(folder / "index.json")])
    train.main([*data, "--index", str(folder / "index.json"), "--out", str(folder / "model.pt"), "--arch", "tiny",
                "--epochs", "5", "--batch-size", "2", "--crop", "32x48", *CPU])
    return folder / "model.pt"


def write_augmented_pool(root, originals):
    """A folder pool of every image of `originals` (a synthetic pool) and 5 augmented copies of it."""
    for sub in ("images", "masks"):
        (root / "train" / sub).mkdir(parents=True)
    (root / "classes.json").write_text((originals / "classes.json").read_text())
    rng = np.random.default_rng(0)
    for path in sorted((originals / "train" / "images").iterdir()):
        image = np.asarray(Image.open(path).convert("RGB"))
        mask = np.asarray(Image.open(originals / "train" / "masks" / path.name))
        for i, (copy, copy_mask) in enumerate([(image, mask), *augmented_copies(image, mask, rng)]):
            Image.fromarray(copy).save(root / "train" / "images" / f"{path.stem}_c{i}.png")
            Image.fromarray(copy_mask).save(root / "train" / "masks" / f"{path.stem}_c{i}.png")


def test_pools_of_longer_sequences_score_more_redundant(scene_model, tmp_path):
    def score(pool, dataset="synthetic"):
        index = run_select(pool, tmp_path / f"{pool.name}.json", "--method", "random", "--budget", "4", "--checkpoint",
                           str(scene_model), "--report-redundancy", dataset=dataset)
        return index["history"][-1]["redundancy"]["score"]

    scores = []
    for frames in FRAMES:
        write_synthetic_pool(tmp_path / f"f{frames}", sequences=POOL_IMAGES // frames, frames_per_sequence=frames,
                             val_images=1, height=HEIGHT, width=WIDTH, seed=0)
        scores.append(score(tmp_path / f"f{frames}"))
    assert all(a < b for a, b in zip(scores, scores[1:])), dict(zip(FRAMES, scores))
    write_synthetic_pool(tmp_path / "originals", sequences=POOL_IMAGES // 6, frames_per_sequence=1, val_images=1,
                         height=HEIGHT, width=WIDTH, seed=0)
    write_augmented_pool(tmp_path / "augmented", tmp_path / "originals")
    # Groups of 6 copies: below runs of 22 frames (where between F=1 and F=22 depends on the features: a tiny model
    # tells the colour-jittered copies apart more than consecutive frames)
    assert score(tmp_path / "augmented", dataset="folder") < scores[-1]


@pytest.mark.parametrize("frames, labeled, chosen", [
    (22, 20, "coreset"),  # runs of 22 frames: redundant, at any budget
    (1, 20, "entropy"),  # independent scenes, 24 of 132 labeled after the cycle: a high budget
    (1, 0, "random"),  # independent scenes, 4 of 132 (3 %) labeled after the cycle: a low budget
])
def test_auto_follows_the_guide_on_pools_whose_answer_is_known(scene_model, tmp_path, capsys, frames, labeled,
                                                              chosen):
    pool = tmp_path / "pool"
    write_synthetic_pool(pool, sequences=POOL_IMAGES // frames, frames_per_sequence=frames, val_images=1,
                         height=HEIGHT, width=WIDTH, seed=0)
    start = []
    if labeled:
        run_select(pool, tmp_path / "start.json", "--method", "random", "--budget", str(labeled))
        start = ["--index", str(tmp_path / "start.json")]
    index = run_select(pool, tmp_path / "next.json", "--method", "auto", "--budget", "4", "--checkpoint",
                       str(scene_model), *start)
    entry = index["history"][-1]
    assert entry["method"] == "auto" and entry["auto"]["method"] == chosen
    assert entry["auto"]["redundancy"] == entry["redundancy"]["score"] and entry["auto"]["semi_supervised"] is False
    assert f"auto: {chosen} (Table 6: " in capsys.readouterr().out
    dataset = open_dataset("synthetic", pool, "train")
    assert load_index(tmp_path / "next.json", dataset.ids).history[-1] == entry  # as the next training reads it
    # The choice selects as the chosen method would, from the same seed.
    direct = run_select(pool, tmp_path / "direct.json", "--method", chosen, "--budget", "4", "--checkpoint",
                        str(scene_model), *start)
    assert index["labeled"] == direct["labeled"]
    # The next cycle decides on the mean of both cycles' scores.
    after = run_select(pool, tmp_path / "after.json", "--method", "auto", "--budget", "4", "--checkpoint",
                       str(scene_model), "--index", str(tmp_path / "next.json"))["history"][-1]
    assert after["auto"]["redundancy_cycles"] == 2
    mean = (entry["redundancy"]["score"] + after["redundancy"]["score"]) / 2
    assert after["auto"]["redundancy"] == pytest.approx(mean, abs=1e-4)

