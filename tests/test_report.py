import csv
import io
import json
import sys

import pytest
import torch
from PIL import Image

from conftest import import_script
from lib.draw import PALETTE
from lib.errors import UserError
from lib.report import (
    collect_curves, collect_references, default_budget, evaluation_record, labeled_to_reach, mean_curve, plot_curves,
    summarize, table_rows,
)
from lib.report_files import PLOTS_RECORD
from lib.report_tables import curves_csv, format_notes, format_per_class, format_reach, format_table, summary_csv

evaluate = import_script("evaluate.py")


def write_experiment(root, curves):
    """curves: {method: {seed: [(labeled %, mIoU %), ...]}} -> metrics.json files in the real layout."""
    for method, seeds in curves.items():
        for seed, points in seeds.items():
            for cycle, (budget, miou) in enumerate(points):
                folder = root / method / f"seed{seed}" / f"cycle{cycle}"
                folder.mkdir(parents=True)
                (folder / "metrics.json").write_text(json.dumps({"labeled_fraction": budget / 100, "miou": miou / 100}))
    (root / "_initial" / "seed0" / "cycle0").mkdir(parents=True)  # shared state is not a curve
    shared = {"labeled_fraction": 0.1, "miou": 0.1}
    (root / "_initial" / "seed0" / "cycle0" / "metrics.json").write_text(json.dumps(shared))


FLAT = [(b, 68.42) for b in (10, 20, 30, 40, 50)]
RISING = [(10, 40.0), (20, 50.0), (30, 60.0), (40, 60.0), (50, 70.0)]


def test_summary_over_seeds_matches_the_paper_definition(tmp_path):
    write_experiment(tmp_path, {"random": {0: FLAT, 1: FLAT},
                                "entropy": {0: RISING, 2: [(b, m + 2) for b, m in RISING]}})
    curves = collect_curves(tmp_path)
    assert set(curves) == {"random", "entropy"} and set(curves["entropy"]) == {0, 2}
    assert default_budget(curves) == pytest.approx(50)
    summary = summarize(curves, 50)
    random_row, entropy_row = summary["methods"]["random"], summary["methods"]["entropy"]
    assert random_row["auc_at_budget"]["mean"] == pytest.approx(27.368)
    assert random_row["auc_at_budget"]["std"] == pytest.approx(0.0)
    # Trapezoids of RISING: (45 + 55 + 60 + 65) * 10 / 100 = 22.5, and 23.3 two points higher.
    assert entropy_row["auc_at_budget"]["values"] == pytest.approx([22.5, 23.3])
    assert entropy_row["at_budget"]["mean"] == pytest.approx(71.0)
    assert entropy_row["at_budget"]["std"] == pytest.approx(2 ** 0.5)
    table = format_table(summary, table_rows(summary))
    assert "mIoU@50" in table and "AUC@50" in table and "27.37 ± 0.00" in table  # two seeds: a spread of 0
    assert format_notes(summary) is None  # every run finished, at a cycle of B


def test_intermediate_budget_and_rounded_budgets(tmp_path):
    # 10 % of 2975 images is 298: the curve's budgets are 10.02, 20.03, ... not 10, 20.
    write_experiment(tmp_path, {"random": {0: [(b * 1.0017, m) for b, m in RISING]}})
    summary = summarize(collect_curves(tmp_path), 30)
    assert summary["methods"]["random"]["at_budget"]["mean"] == pytest.approx(60.0)
    assert summary["methods"]["random"]["auc_at_budget"]["mean"] == pytest.approx(10.0 * 1.0017)
    assert format_notes(summary) is None  # 30.05 is the cycle of B = 30, not an interpolation
    with pytest.raises(UserError, match=r"budget 55 % is not reached by any run \(last budgets: random/seed0 50.1\)"):
        summarize(collect_curves(tmp_path), 55)
    with pytest.raises(UserError, match=r"budget 5 % is below the first budget of random/seed0 \(10 %"):
        summarize(collect_curves(tmp_path), 5)


def test_csv_outputs(tmp_path):
    write_experiment(tmp_path, {"random": {0: FLAT}})
    curves = collect_curves(tmp_path)
    rows = list(csv.DictReader(io.StringIO(curves_csv(curves))))
    assert [(r["cycle"], float(r["labeled_percent"])) for r in rows] == [(str(c), b) for c, (b, _) in enumerate(FLAT)]
    summary = summarize(curves, 50)
    summary_rows = list(csv.DictReader(io.StringIO(summary_csv(summary, table_rows(summary)))))
    assert float(summary_rows[0]["auc_mean"]) == pytest.approx(27.368)


def test_empty_or_missing_experiment(tmp_path):
    with pytest.raises(UserError, match="no <method>/seed<k>/cycle<c>/metrics.json"):
        collect_curves(tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        collect_curves(tmp_path / "nope")


def test_curves_against_pixels_read_the_pixel_share(tmp_path):
    """Patches of unequal size: the item and pixel shares of a cycle differ, and each axis reads its own."""
    for cycle, (items, pixels) in enumerate([(0.1, 0.08), (0.2, 0.17)]):
        folder = tmp_path / "entropy" / "seed0" / f"cycle{cycle}"
        folder.mkdir(parents=True)
        metrics = {"labeled_fraction": items, "labeled_pixel_fraction": pixels, "miou": 0.5}
        (folder / "metrics.json").write_text(json.dumps(metrics))
    assert [p[1] for p in collect_curves(tmp_path, "items")["entropy"][0]] == pytest.approx([10, 20])
    assert [p[1] for p in collect_curves(tmp_path, "pixels")["entropy"][0]] == pytest.approx([8, 17])
    (tmp_path / "entropy" / "seed0" / "cycle1" / "metrics.json").write_text(
        json.dumps({"labeled_fraction": 0.2, "labeled_pixel_fraction": None, "miou": 0.5}))
    with pytest.raises(UserError, match="with labeled_pixel_fraction and miou"):
        collect_curves(tmp_path, "pixels")


def write_full(root, mious):
    """The FULL=1 reference: one metrics.json per seed, mIoU in %."""
    for seed, miou in enumerate(mious):
        (root / "_full" / f"seed{seed}").mkdir(parents=True)
        metrics = {"labeled_fraction": 1.0, "miou": miou / 100}
        (root / "_full" / f"seed{seed}" / "metrics.json").write_text(json.dumps(metrics))


def test_labeled_share_to_reach_a_target_interpolates_between_cycles():
    budgets, mious = [10, 20, 30, 40], [50.0, 60.0, 70.0, 65.0]
    # 95 % of 68: 64.6, between 60 at 20 % and 70 at 30 %: 20 + 4.6 / 10 * 10.
    assert labeled_to_reach(budgets, mious, 0.95 * 68) == pytest.approx(24.6)
    assert labeled_to_reach(budgets, mious, 70.0) == pytest.approx(30.0)
    assert labeled_to_reach(budgets, mious, 45.0) == 10  # reached by the initial model
    assert labeled_to_reach(budgets, mious, 71.0) is None


def test_mean_curve_keeps_the_cycles_every_seed_reached():
    seeds = {0: [(0, 10.0, 50.0), (1, 20.0, 60.0), (2, 30.0, 70.0)], 1: [(0, 10.2, 52.0), (1, 20.2, 62.0)]}
    budgets, mean, std = mean_curve(seeds)
    assert budgets == pytest.approx([10.1, 20.1])
    assert mean == pytest.approx([51.0, 61.0])
    assert std == pytest.approx([2 ** 0.5] * 2)


def test_full_reference_gives_the_100_percent_row_and_the_share_to_95(tmp_path):
    write_experiment(tmp_path, {"random": {0: FLAT}, "entropy": {0: RISING, 1: [(b, m + 2) for b, m in RISING]},
                                "coreset": {0: [(b, m - 10) for b, m in RISING]}})
    write_full(tmp_path, [68.42, 68.42])
    references = collect_references(tmp_path)
    assert references == {"_full": {0: pytest.approx(68.42), 1: pytest.approx(68.42)}}
    summary = summarize(collect_curves(tmp_path), 50, 30, references)
    full = summary["references"]["_full"]
    assert summary["metric_budget"] == 30 and summary["methods"]["entropy"]["at_budget"]["mean"] == pytest.approx(61)
    # The study's check: a flat curve at 68.42 from 10 % to 50 % is 27.37.
    assert full["auc_at_budget"]["mean"] == pytest.approx(27.368)
    assert summary["reach"]["target"] == pytest.approx(0.95 * 68.42)
    # entropy's mean curve: 41, 51, 61, 61, 71; 65 is crossed between 40 % and 50 %.
    assert summary["methods"]["entropy"]["labeled_to_95"] == pytest.approx(40 + (0.95 * 68.42 - 61) / 10 * 10)
    assert summary["methods"]["random"]["labeled_to_95"] == 10  # the initial model already reaches it
    assert summary["methods"]["coreset"]["labeled_to_95"] is None
    rows = table_rows(summary)
    assert [row["method"] for row in rows] == ["coreset", "entropy", "random", "_full"]
    reach = format_reach(summary, rows, "items")
    assert "mIoU 68.42 ± 0.00; 95% of it: 65.00" in reach and "not reached" in reach
    records = {r["method"]: r for r in csv.DictReader(io.StringIO(summary_csv(summary, rows)))}
    assert float(records["entropy"]["labeled_to_95"]) == pytest.approx(43.999)
    assert records["coreset"]["labeled_to_95"] == "" and float(records["_full"]["auc_mean"]) == pytest.approx(27.368)


def test_no_full_reference_no_reach(tmp_path):
    write_experiment(tmp_path, {"random": {0: FLAT}})
    summary = summarize(collect_curves(tmp_path), 50, references=collect_references(tmp_path))
    assert "reach" not in summary and "references" not in summary
    assert format_reach(summary, table_rows(summary), "items") is None
    assert "labeled_to_95" not in next(csv.DictReader(io.StringIO(summary_csv(summary, table_rows(summary)))))


def test_plot_without_matplotlib_draws_nothing(tmp_path, monkeypatch):
    write_experiment(tmp_path, {"random": {0: FLAT}})
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    assert plot_curves(collect_curves(tmp_path), tmp_path / "curves.png", "items", "test") is False
    assert not (tmp_path / "curves.png").exists()


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    write_experiment(tmp_path, {"random": {0: FLAT, 1: FLAT}, "entropy": {0: RISING}})
    assert plot_curves(collect_curves(tmp_path), tmp_path / "curves.png", "pixels", "test", full_value=68.42)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# A 96-item pool, 10 items a cycle from 10: 10.4, 20.8, 31.2, 41.7 % of it.
POOL_96 = [(100 * n / 96, m) for n, m in ((10, 40.0), (20, 50.0), (30, 56.0), (40, 60.0))]


def test_budget_between_cycles_is_interpolated_and_the_table_says_so(tmp_path):
    write_experiment(tmp_path, {"coreset": {0: POOL_96, 1: [(b, m + 2) for b, m in POOL_96]}})
    curves = collect_curves(tmp_path)
    summary = summarize(curves, 40)
    b2, b3 = POOL_96[2][0], POOL_96[3][0]
    line_at_40 = 56.0 + (40 - b2) / (b3 - b2) * (60.0 - 56.0)  # the straight line from 31.25 % to 41.67 %
    auc = (100 * 10 / 96 * ((40 + 50) / 2 + (50 + 56) / 2) + (40 - b2) * (56.0 + line_at_40) / 2) / 100
    coreset = summary["methods"]["coreset"]
    assert coreset["at_budget"]["values"] == pytest.approx([line_at_40, line_at_40 + 2])
    assert coreset["auc_at_budget"]["values"][0] == pytest.approx(auc)
    table, notes = format_table(summary, table_rows(summary)), format_notes(summary)
    assert "mIoU@40" in table and "AUC@40" in table and f"{line_at_40 + 1:.2f} ± 1.41" in table
    assert notes == "B = 40 % lies between cycles (31.2 % and 41.7 %): @40 values are interpolated linearly"
    # The default B is the last cycle's, labeled as printed: 41.7, not 41.6667.
    summary = summarize(curves, default_budget(curves))
    assert "mIoU@41.7" in format_table(summary, table_rows(summary)) and format_notes(summary) is None


def test_a_run_short_of_b_is_left_out_not_extrapolated(tmp_path):
    write_experiment(tmp_path, {"random": {0: FLAT}, "entropy": {0: RISING[:3], 1: RISING[:4]}})
    summary = summarize(collect_curves(tmp_path), 45, 35)
    entropy = summary["methods"]["entropy"]
    # mIoU@35: seed 0 ends at 30 %; seed 1 gives 60 (flat from 30 % to 40 %). AUC@45: seed 1 ends at 40 %.
    assert entropy["at_budget"]["seeds"] == [1] and entropy["at_budget"]["values"] == pytest.approx([60.0])
    assert entropy["auc_at_budget"] is None
    rows = {row.split()[0]: row for row in format_table(summary, table_rows(summary)).splitlines()}
    assert rows["entropy"].split() == ["entropy", "2", "60.00"]  # one seed: no ± 0.00; AUC@45 empty
    assert rows["random"].split() == ["random", "1", "68.42", f"{68.42 * 35 / 100:.2f}"]
    assert format_notes(summary).splitlines() == [
        "unfinished: entropy/seed0 at cycle 2 of 4, entropy/seed1 at cycle 3 of 4",  # random reached cycle 4
        "B = 35 % lies between cycles (30 % and 40 %): @35 values are interpolated linearly",
        "left out of mIoU@35, short of 35 %: entropy/seed0 (ends at 30 %)",
        "B = 45 % lies between cycles (40 % and 50 %): @45 values are interpolated linearly",
        "left out of AUC@45, short of 45 %: entropy/seed0 (ends at 30 %), entropy/seed1 (ends at 40 %)",
    ]
    record = next(r for r in csv.DictReader(io.StringIO(summary_csv(summary, table_rows(summary))))
                  if r["method"] == "entropy")
    assert float(record["miou_mean"]) == pytest.approx(60.0) and record["auc_mean"] == ""


def test_a_table_made_mid_run_lists_the_unfinished_runs(tmp_path):
    write_experiment(tmp_path, {"random": {0: FLAT, 1: FLAT}, "entropy": {0: RISING, 1: RISING[:3]}})
    curves = collect_curves(tmp_path)
    assert default_budget(curves) == pytest.approx(50)  # the finished runs' B, not 30 where entropy/seed1 is
    summary = summarize(curves, default_budget(curves))
    assert summary["runs"]["unfinished"] == [{"run": "entropy/seed1", "cycle": 2, "budget": pytest.approx(30)}]
    assert summary["methods"]["entropy"]["at_budget"]["values"] == pytest.approx([70.0])
    assert format_notes(summary).splitlines() == [
        "unfinished: entropy/seed1 at cycle 2 of 4",
        "left out of mIoU@50 and AUC@50, short of 50 %: entropy/seed1 (ends at 30 %)",
    ]


def test_evaluate_writes_one_summary_per_budget(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    write_experiment(tmp_path, {"random": {0: FLAT}, "entropy": {0: RISING}})
    evaluate.main(["--experiment", str(tmp_path), "--budget", "40"])
    evaluate.main(["--experiment", str(tmp_path), "--budget", "25"])
    evaluate.main(["--experiment", str(tmp_path)])
    out = capsys.readouterr().out
    assert f"wrote {tmp_path}/summary@40.json, {tmp_path}/summary@40.csv, {tmp_path}/curves.csv" in out
    for name in ("40", "25", "50"):  # the default B: the last cycle's
        assert json.loads((tmp_path / f"summary@{name}.json").read_text())["budget"] == float(name)
    assert [r["miou_budget"] for r in csv.DictReader((tmp_path / "summary@25.csv").open())] == ["25", "25"]
    assert "B = 25 % lies between cycles (20 % and 30 %)" in out


def fake_plot(curves, path, *args):
    """plot_curves where matplotlib is installed: a file at `path`."""
    path.write_bytes(b"\x89PNG drawn")
    return True


def png_colours(path):
    """The set of RGB colours of the picture at `path`, which must be a PNG Pillow reads."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        return {colour for _, colour in image.convert("RGB").getcolors(maxcolors=1 << 20)}, image.size


def test_curves_are_drawn_with_pillow_without_matplotlib(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    write_experiment(tmp_path, {"random": {0: FLAT, 1: FLAT}, "entropy": {0: RISING}})
    write_full(tmp_path, [70.0])
    png = tmp_path / "curves.png"
    evaluate.main(["--experiment", str(tmp_path)])
    assert f"wrote {png}" in capsys.readouterr().out
    colours, (width, height) = png_colours(png)
    assert 400 <= width <= 2000 and 300 <= height <= 2000
    # entropy and random, sorted, take matplotlib's first two colours; the band over random's two seeds is paler.
    assert {PALETTE[0], PALETTE[1], (0, 0, 0)} <= colours
    first = png.read_bytes()
    evaluate.main(["--experiment", str(tmp_path)])  # ours, unchanged since: drawn again, the same bytes
    assert f"wrote {png}" in capsys.readouterr().out and png.read_bytes() == first
    write_experiment(tmp_path / "one", {"random": {0: FLAT}})
    evaluate.main(["--experiment", str(tmp_path / "one")])
    colours, _ = png_colours(tmp_path / "one" / "curves.png")
    assert PALETTE[0] in colours and PALETTE[1] not in colours


@pytest.mark.parametrize("matplotlib", ["installed", "absent"])
def test_a_curves_png_evaluate_did_not_draw_is_left_as_it_was(tmp_path, capsys, monkeypatch, matplotlib):
    write_experiment(tmp_path, {"random": {0: FLAT}})
    argv, png = ["--experiment", str(tmp_path)], tmp_path / "curves.png"
    if matplotlib == "installed":
        monkeypatch.setattr("lib.report_files.plot_curves", fake_plot)
    else:
        monkeypatch.setitem(sys.modules, "matplotlib", None)
    # The user's file, and one evaluate.py drew that was changed since: neither is replaced.
    png.write_bytes(b"the user's")
    evaluate.main(argv)
    assert f"{png} is left as it was (not drawn by evaluate.py, or changed since)" in capsys.readouterr().out
    assert png.read_bytes() == b"the user's" and not (tmp_path / PLOTS_RECORD).exists()
    png.unlink()
    evaluate.main(argv)
    assert f"wrote {png}" in capsys.readouterr().out and (tmp_path / PLOTS_RECORD).is_file()
    png.write_bytes(b"\x89PNG drawn, then edited")
    evaluate.main(argv)
    assert f"{png} is left as it was" in capsys.readouterr().out
    assert png.read_bytes() == b"\x89PNG drawn, then edited"


# The binary task of tests/test_metrics.py: background 70 right, 10 called lesion; lesion 15 right, 5 missed.
LESION = [[70, 10], [5, 15]]


def test_evaluation_record_has_dice_and_the_foreground():
    record = evaluation_record(torch.tensor(LESION), ["background", "lesion"])
    assert record["per_class_dice"] == pytest.approx({"background": 140 / 155, "lesion": 30 / 45})
    assert record["mean_dice"] == pytest.approx((140 / 155 + 30 / 45) / 2)
    assert record["foreground"] == {"class": "lesion", "iou": pytest.approx(0.5), "dice": pytest.approx(2 / 3)}
    assert "foreground" not in evaluation_record(torch.eye(3, dtype=torch.long), ["a", "b", "c"])
    table = format_per_class(record).splitlines()
    assert table[2].split() == ["lesion", "50.00", "66.67"]
    assert table[-1] == "foreground (lesion): IoU 50.00, Dice 66.67"


def test_curves_of_mean_dice_old_files_from_their_confusion_matrix(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for cycle, (share, confusion) in enumerate([(0.1, [[80, 10], [5, 5]]), (0.2, LESION)]):
        folder = tmp_path / "entropy" / "seed0" / f"cycle{cycle}"
        folder.mkdir(parents=True)
        record = {**evaluation_record(torch.tensor(confusion), ["background", "lesion"]), "labeled_fraction": share}
        if cycle == 0:  # written before Dice was recorded
            record = {key: value for key, value in record.items() if "dice" not in key and key != "foreground"}
        (folder / "metrics.json").write_text(json.dumps(record))
    dice0, dice1 = (160 / 175 + 10 / 25) / 2, (140 / 155 + 30 / 45) / 2
    assert [p[2] for p in collect_curves(tmp_path, metric="dice")["entropy"][0]] == pytest.approx([100 * dice0,
                                                                                                  100 * dice1])
    evaluate.main(["--experiment", str(tmp_path), "--metric", "dice"])
    out = capsys.readouterr().out
    assert "mDice@20" in out and "AUC(mDice)@20" in out and f"{100 * dice1:.2f}" in out
    summary = json.loads((tmp_path / "summary-dice@20.json").read_text())
    assert summary["metric"] == "dice" and (tmp_path / "curves-dice.csv").is_file()
    assert next(csv.DictReader((tmp_path / "summary-dice@20.csv").open()))["dice_mean"] == f"{100 * dice1:.4f}"
    # Without a confusion matrix an old file has no Dice to give: said only when Dice is asked for.
    old = tmp_path / "entropy" / "seed0" / "cycle0" / "metrics.json"
    old.write_text(json.dumps({"labeled_fraction": 0.1, "miou": 0.5}))
    evaluate.main(["--experiment", str(tmp_path), "--budget", "20"])
    with pytest.raises(UserError, match=f"{old}: not a checkpoint evaluation with labeled_fraction and mean_dice "
                                        r"\(mean_dice is missing, and no confusion matrix to compute it from"):
        evaluate.main(["--experiment", str(tmp_path), "--metric", "dice"])


def test_a_class_no_evaluation_scored_is_said_under_the_table(tmp_path, capsys, monkeypatch):
    """0/255 binary masks read without a mapping: the lesion is ignore everywhere, and mIoU is background's 100 %."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    unscored = evaluation_record(torch.tensor([[100, 0], [0, 0]]), ["background", "lesion"])
    for cycle, share in enumerate((0.1, 0.2)):
        folder = tmp_path / "random" / "seed0" / f"cycle{cycle}"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({**unscored, "labeled_fraction": share}))
    evaluate.main(["--experiment", str(tmp_path)])
    out = capsys.readouterr().out
    assert "100.00" in out and ("mIoU is of the other classes: no evaluation scored lesion (no pixel of it in the "
                                "masks, none predicted; see evaluate.py's warnings)") in out
    assert json.loads((tmp_path / "summary@20.json").read_text())["classes_not_scored"] == ["lesion"]
    # One evaluation that scores it: the mean is over both classes there, and the table says nothing.
    scored = evaluation_record(torch.tensor(LESION), ["background", "lesion"])
    (tmp_path / "random" / "seed0" / "cycle1" / "metrics.json").write_text(
        json.dumps({**scored, "labeled_fraction": 0.2}))
    evaluate.main(["--experiment", str(tmp_path)])
    assert "no evaluation scored" not in capsys.readouterr().out
