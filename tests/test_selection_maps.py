"""evaluate.py --selection-maps: a map of the pool per method, seed and cycle, each cycle's picks marked."""
import json
import shutil

import pytest
from PIL import Image

from conftest import fail, import_script
from lib.draw import MAP_POINTS
from lib.report_files import PLOTS_RECORD
from lib.selection_maps import MAP_NAME

evaluate = import_script("evaluate.py")
select = import_script("select.py")
NEW, LABELED = MAP_POINTS[2][1], MAP_POINTS[1][1]


def build_experiment(root, pool, trained):
    """root in the layout of lib.experiment: seed 0's initial cycle (the tiny model on 4 images), then random for
    two cycles and coreset for one, 2 images each."""
    initial = root / "_initial" / "seed0"
    initial.mkdir(parents=True)
    for name in ("index.json", "model.pt"):
        shutil.copy(trained / name, initial / name)
    data = ["--dataset", "synthetic", "--data-root", str(pool), "--workers", "0", "--device", "cpu"]
    for method, cycles in (("random", 2), ("coreset", 1)):
        previous = initial
        for cycle in range(1, cycles + 1):
            folder = root / method / "seed0" / f"cycle{cycle}"
            folder.mkdir(parents=True)
            model = ["--checkpoint", str(initial / "model.pt")] if method == "coreset" else []
            select.main([*data, *model, "--method", method, "--index", str(previous / "index.json"), "--budget", "2",
                         "--seed", "0", "--out", str(folder / "index.json")])
            previous = folder
    return root


def map_paths(root):
    return [root / "random/seed0/cycle1" / MAP_NAME, root / "random/seed0/cycle2" / MAP_NAME,
            root / "coreset/seed0/cycle1" / MAP_NAME]


def colours(path):
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (480, 480)
        return {colour for _, colour in image.convert("RGB").getcolors(maxcolors=1 << 20)}


@pytest.fixture()
def experiment(synthetic_pool, trained_tiny, tmp_path):
    return build_experiment(tmp_path / "exp", synthetic_pool, trained_tiny)


def test_a_map_per_method_seed_and_cycle_the_same_bytes_twice(experiment, synthetic_pool, capsys):
    argv = ["--selection-maps", str(experiment), "--data-root", str(synthetic_pool), "--workers", "0",
            "--device", "cpu"]
    evaluate.main(argv)
    out = capsys.readouterr().out
    assert "seed 0: the pool's 12 items (image) placed on one map" in out
    assert not (experiment / "_initial" / "seed0" / MAP_NAME).exists()
    first = {}
    for path in map_paths(experiment):
        assert f"wrote {path}" in out
        assert {NEW, LABELED} <= colours(path)
        first[path] = path.read_bytes()
    # Three cycles, three pictures: each marks its own picks.
    assert len(set(first.values())) == 3
    evaluate.main(argv)  # ours, unchanged since: drawn again, the same
    assert all(path.read_bytes() == content for path, content in first.items())
    evaluate.main([*argv, "--dataset", "folder"])  # the synthetic pool read in the plain folder layout: the same pool
    assert all(path.read_bytes() == content for path, content in first.items())
    assert sorted(json.loads((experiment / PLOTS_RECORD).read_text())) == [
        "coreset/seed0/cycle1/selection_map.png", "random/seed0/cycle1/selection_map.png",
        "random/seed0/cycle2/selection_map.png"]


def test_a_file_evaluate_did_not_draw_is_left_and_the_pool_is_the_recorded_one(experiment, synthetic_pool, capsys):
    (experiment / "experiment.json").write_text(json.dumps({"DATA_ROOT": str(synthetic_pool), "POOL": ""}))
    user, edited, ours = map_paths(experiment)
    user.write_bytes(b"the user's")
    evaluate.main(["--selection-maps", str(experiment), "--workers", "0", "--device", "cpu"])
    edited.write_bytes(b"\x89PNG drawn, then edited")
    evaluate.main(["--selection-maps", str(experiment), "--workers", "0", "--device", "cpu"])
    out = capsys.readouterr().out
    assert f"{user} is left as it was (not drawn by evaluate.py, or changed since)" in out
    assert f"{edited} is left as it was" in out and f"wrote {ours}" in out
    assert user.read_bytes() == b"the user's" and edited.read_bytes() == b"\x89PNG drawn, then edited"
    assert NEW in colours(ours)


def test_bad_input_is_one_error_line(experiment, synthetic_pool, tmp_path, capsys):
    data = ["--data-root", str(synthetic_pool), "--workers", "0", "--device", "cpu"]
    missing = tmp_path / "nothing"
    assert fail(evaluate, ["--selection-maps", str(missing), *data], capsys) == \
        f"error: --selection-maps {missing}: experiment directory does not exist\n"
    assert fail(evaluate, ["--selection-maps", str(experiment), "--workers", "0"], capsys) == (
        f"error: --selection-maps {experiment}: give --data-root, the pool's data folder "
        f"({experiment / 'experiment.json'} does not record it)\n")
    (experiment / "_initial" / "seed0" / "model.pt").unlink()
    assert fail(evaluate, ["--selection-maps", str(experiment), *data], capsys) == (
        f"error: {experiment}/_initial/seed0/model.pt: not found; the selection maps of seed 0 place the pool by "
        f"the features of the seed's initial model\n")
    assert not any(path.exists() for path in map_paths(experiment))
