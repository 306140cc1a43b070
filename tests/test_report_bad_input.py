"""Bad input to evaluate.py's summaries through its command line: malformed metrics.json files of an
experiment, malformed curves, a bad --budget, and a split with nothing to evaluate.

Every case fails with exit code 2 and one `error:` line naming the file, flag or method/seed at fault,
and leaves every file as it was: the summary of an earlier run is byte-identical afterwards and
nothing appears.
"""
import json
import shutil
from typing import NamedTuple

import numpy as np
import pytest
from PIL import Image

from conftest import fail, import_script, train_tiny_model

evaluate = import_script("evaluate.py")

CYCLE1, CYCLE2 = "random/seed0/cycle1/metrics.json", "random/seed0/cycle2/metrics.json"
FULL_SEED0 = "_full/seed0/metrics.json"


def metrics(share, miou, pixel_share="0.2"):
    """A metrics.json of evaluate.py, each value a JSON literal as written (NaN, 1e999, "0.2", true)."""
    return f'{{"labeled_fraction": {share}, "labeled_pixel_fraction": {pixel_share}, "miou": {miou}}}'


def curve(budgets, mious):
    return f'{{"budgets": [{budgets}], "miou": [{mious}]}}'


# An experiment that summarises as it is: three cycles of one method and seed, the whole-pool reference,
# a curve, and the outputs of an earlier summary. A case writes its files over these.
GOOD = {
    "random/seed0/cycle0/metrics.json": metrics("0.1", "0.4", "0.1"),
    CYCLE1: metrics("0.2", "0.5", "0.2"),
    CYCLE2: metrics("0.3", "0.6", "0.3"),
    FULL_SEED0: '{"labeled_fraction": 1.0, "miou": 0.7}',
    "curve.json": curve("10, 20, 30", "40, 50, 60"),
    "summary.json": "{}\n", "summary.csv": "method\n", "curves.csv": "method\n", "curves.png": "not a png",
}


class Case(NamedTuple):
    name: str
    files: dict  # path under the experiment folder -> text written over GOOD's
    mode: str  # "experiment" (--experiment EXP) or "curve" (--curve EXP/curve.json)
    flags: tuple  # after the mode's
    expect: str  # the error line after "error: "; {exp} is the experiment folder


def experiment_case(name, files, expect, *flags):
    return Case(name, files, "experiment", flags, expect)


def curve_case(name, text, expect, *flags):
    return Case(name, {"curve.json": text}, "curve", flags, "{exp}/curve.json: " + expect)


def metrics_case(name, path, text, expect, *flags):
    """One broken metrics.json: the message names it."""
    return experiment_case(name, {path: text}, f"{{exp}}/{path}: {expect}", *flags)


def budget_cases(mode, values):
    return [Case(f"budget-{value}", {}, mode, ("--budget", value),
                 f"argument --budget: must be a finite number in (0, 100], got '{value}'") for value in values]


HUGE = "1" + "0" * 400  # an integer JSON reads exactly, beyond what a float holds

CASES = [
    # One metrics.json of a curve.
    metrics_case("list", CYCLE1, "[0.2, 0.5]", "expected a JSON object of metrics, got a list"),
    metrics_case("string", CYCLE1, metrics('"0.2"', "0.5"), 'labeled_fraction "0.2" is not a number'),
    metrics_case("null", CYCLE1, metrics("0.2", "null"),
                 "not a checkpoint evaluation with labeled_fraction and miou (miou is null)"),
    metrics_case("missing", CYCLE1, '{"miou": 0.5}',
                 "not a checkpoint evaluation with labeled_fraction and miou (labeled_fraction is missing)"),
    metrics_case("nan", CYCLE1, metrics("0.2", "NaN"), "miou NaN is not a fraction in [0, 1]"),
    metrics_case("infinity", CYCLE1, metrics("Infinity", "0.5"),
                 "labeled_fraction Infinity is not a fraction in [0, 1]"),
    metrics_case("beyond-float", CYCLE1, metrics("0.2", "1e999"), "miou Infinity is not a fraction in [0, 1]"),
    metrics_case("huge-integer", CYCLE1, metrics(HUGE, "0.5"), f"labeled_fraction {HUGE} is not a fraction in [0, 1]"),
    metrics_case("miou-percent", CYCLE1, metrics("0.2", "50"), "miou 50 is not a fraction in [0, 1]"),
    metrics_case("miou-negative", CYCLE1, metrics("0.2", "-0.5"), "miou -0.5 is not a fraction in [0, 1]"),
    metrics_case("share-percent", CYCLE1, metrics("20", "0.5"), "labeled_fraction 20 is not a fraction in [0, 1]"),
    metrics_case("share-negative", CYCLE1, metrics("-0.2", "0.5"), "labeled_fraction -0.2 is not a fraction in [0, 1]"),
    metrics_case("boolean", CYCLE1, metrics("0.2", "true"), "miou true is not a number"),
    metrics_case("pixel-share-string", CYCLE1, metrics("0.2", "0.5", '"all"'),
                 'labeled_pixel_fraction "all" is not a number', "--x-axis", "pixels"),
    metrics_case("pixel-share-null", CYCLE1, metrics("0.2", "0.5", "null"),
                 "not a checkpoint evaluation with labeled_pixel_fraction and miou (labeled_pixel_fraction is null)",
                 "--x-axis", "pixels"),
    # The whole-pool reference.
    metrics_case("full-list", FULL_SEED0, "[0.7]", "expected a JSON object of metrics, got a list"),
    metrics_case("full-string", FULL_SEED0, '{"miou": "0.7"}', 'miou "0.7" is not a number'),
    metrics_case("full-null", FULL_SEED0, '{"miou": null}', "not a checkpoint evaluation with miou (miou is null)"),
    metrics_case("full-nan", FULL_SEED0, '{"miou": NaN}', "miou NaN is not a fraction in [0, 1]"),
    metrics_case("full-percent", FULL_SEED0, '{"miou": 70}', "miou 70 is not a fraction in [0, 1]"),
    # A curve over cycles: the labeled share must grow.
    experiment_case("repeated-budget", {CYCLE2: metrics("0.2", "0.6")},
                    "random/seed0: the labeled share must grow every cycle, but labeled_fraction is 0.2 in "
                    f"{{exp}}/{CYCLE1} and 0.2 in {{exp}}/{CYCLE2}"),
    experiment_case("decreasing-budget", {CYCLE2: metrics("0.15", "0.6")},
                    "random/seed0: the labeled share must grow every cycle, but labeled_fraction is 0.2 in "
                    f"{{exp}}/{CYCLE1} and 0.15 in {{exp}}/{CYCLE2}"),
    experiment_case("repeated-pixel-budget", {CYCLE2: metrics("0.3", "0.6", "0.2")},
                    "random/seed0: the labeled share must grow every cycle, but labeled_pixel_fraction is 0.2 in "
                    f"{{exp}}/{CYCLE1} and 0.2 in {{exp}}/{CYCLE2}", "--x-axis", "pixels"),
    # The paper tables give mIoU only.
    experiment_case("dice-with-setting", {}, "--metric dice: the paper tables of --setting give mIoU; leave --setting "
                    "out for a table of mDice", "--metric", "dice", "--setting", "cityscapes_10_10"),
    # --curve.
    curve_case("not-an-object", "[[10, 20], [40, 50]]", 'expected {"budgets": [...], "miou": [...]}'),
    curve_case("empty", curve("", ""), "need one mIoU per budget, got 0 budgets and 0 mIoUs"),
    curve_case("lengths", curve("10, 20, 30", "40, 50"), "need one mIoU per budget, got 3 budgets and 2 mIoUs"),
    curve_case("string", curve('10, "20"', "40, 50"), 'budgets[1] "20" is not a number'),
    curve_case("null", curve("10, 20", "40, null"), "miou[1] null is not a number"),
    curve_case("boolean", curve("true, 20", "40, 50"), "budgets[0] true is not a number"),
    curve_case("nan", curve("10, 20", "NaN, 50"), "miou[0] NaN is not a percentage in [0, 100]"),
    curve_case("infinity", curve("10, Infinity", "40, 50"), "budgets[1] Infinity is not a percentage in [0, 100]"),
    curve_case("beyond-float", curve("10, 20", "40, 1e999"), "miou[1] Infinity is not a percentage in [0, 100]"),
    curve_case("huge-integer", curve(f"10, {HUGE}", "40, 50"), f"budgets[1] {HUGE} is not a percentage in [0, 100]"),
    curve_case("budget-over-100", curve("10, 120", "40, 50"), "budgets[1] 120 is not a percentage in [0, 100]"),
    curve_case("miou-negative", curve("10, 20", "-1, 50"), "miou[0] -1 is not a percentage in [0, 100]"),
    curve_case("repeated-budget", curve("10, 20, 20", "40, 50, 60"),
               "budgets must be strictly increasing, got budgets[1] 20 then budgets[2] 20"),
    curve_case("decreasing-budget", curve("10, 30, 20", "40, 50, 60"),
               "budgets must be strictly increasing, got budgets[1] 30 then budgets[2] 20"),
    # --budget, refused where it is parsed.
    *budget_cases("experiment", ["nan", "inf", "-5", "0", "1e999", "101", "ten"]),
    *budget_cases("curve", ["nan", "100.5"]),
]


def write_files(root, files):
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)


def snapshot(folder):
    """Every file's bytes and every folder (None) under `folder`: what a failed run must leave as it was."""
    return {path: path.read_bytes() if path.is_file() else None for path in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("case", CASES, ids=[f"{case.mode}-{case.name}" for case in CASES])
def test_bad_summary_input_is_one_line_and_changes_no_file(case, tmp_path, capsys):
    exp = tmp_path / "exp"
    write_files(exp, {**GOOD, **case.files})
    source = ["--experiment", str(exp)] if case.mode == "experiment" else ["--curve", str(exp / "curve.json")]
    argv = [*source, *case.flags]
    before = snapshot(tmp_path)
    assert fail(evaluate, argv, capsys).startswith("error: " + case.expect.replace("{exp}", str(exp)))
    assert snapshot(tmp_path) == before


def test_the_good_experiment_and_curve_summarise(tmp_path, capsys):
    """The inputs the cases break are good as they are: each failure above is the case's doing."""
    write_files(tmp_path, GOOD)
    evaluate.main(["--experiment", str(tmp_path), "--budget", "30"])
    evaluate.main(["--experiment", str(tmp_path), "--x-axis", "pixels"])
    evaluate.main(["--curve", str(tmp_path / "curve.json")])
    assert "mIoU@30 = 60.00  AUC@30 = 10.00" in capsys.readouterr().out
    assert json.loads((tmp_path / "summary@30.json").read_text())["methods"]["random"]["seeds"] == [0]


@pytest.fixture(scope="module")
def trained(synthetic_pool, tmp_path_factory):
    """index.json (4 random images) and model.pt (a tiny model trained on them)."""
    return train_tiny_model(synthetic_pool, tmp_path_factory.mktemp("trained"))


def ignore_everywhere(pool, root):
    """A copy of the pool whose val masks are ignore (255) at every pixel."""
    shutil.copytree(pool, root)
    for mask in (root / "val" / "masks").iterdir():
        Image.fromarray(np.full_like(np.array(Image.open(mask)), 255)).save(mask)
    return root


def zero_predictions(root, folder):
    """Class 0 everywhere, one PNG per val image, the size of its mask."""
    folder.mkdir()
    for mask in (root / "val" / "masks").iterdir():
        Image.fromarray(np.zeros_like(np.array(Image.open(mask)))).save(folder / mask.name)
    return folder


@pytest.mark.parametrize("mode", ["--checkpoint", "--predictions"])
def test_split_of_ignore_only_masks_is_one_line_and_changes_no_file(mode, synthetic_pool, trained, tmp_path, capsys):
    root = ignore_everywhere(synthetic_pool, tmp_path / "pool")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "metrics.json").write_text('{"miou": 0.5}\n')  # an earlier run's
    source = (["--checkpoint", str(trained / "model.pt"), "--workers", "0", "--device", "cpu"] if mode == "--checkpoint"
              else ["--predictions", str(zero_predictions(root, tmp_path / "preds")), "--dataset", "synthetic"])
    argv = [*source, "--data-root", str(root), "--out", str(tmp_path / "out" / "metrics.json")]
    before = snapshot(tmp_path), snapshot(trained)
    assert fail(evaluate, argv, capsys) == (f"error: {root}: every mask pixel of split 'val' is ignore (255): "
                                            "nothing to evaluate (4 masks read; values stored: 255); 255 is read as "
                                            "ignore: to make it a class, map mask values to classes in "
                                            f"{root / 'classes.json'} (README: the folder layout)\n")
    assert (snapshot(tmp_path), snapshot(trained)) == before
