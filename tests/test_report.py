import csv
import io
import json
import sys

import pytest

from lib.errors import UserError
from lib.report import (
    collect_curves, collect_references, curves_csv, default_budget, format_reach, format_table, labeled_to_reach,
    mean_curve, plot_curves, summarize, summary_csv, table_rows,
)


def write_experiment(root, curves):
    """curves: {method: {seed: [(labeled %, mIoU %), ...]}} -> metrics.json files in the real layout."""
    for method, seeds in curves.items():
        for seed, points in seeds.items():
            for cycle, (budget, miou) in enumerate(points):
                folder = root / method / f"seed{seed}" / f"cycle{cycle}"
                folder.mkdir(parents=True)
                (folder / "metrics.json").write_text(json.dumps({"labeled_fraction": budget / 100, "miou": miou / 100}))
    (root / "_initial" / "seed0" / "cycle0").mkdir(parents=True)  # shared state is not a curve
    (root / "_initial" / "seed0" / "cycle0" / "metrics.json").write_text(json.dumps({"labeled_fraction": 0.1, "miou": 0.1}))


FLAT = [(b, 68.42) for b in (10, 20, 30, 40, 50)]
RISING = [(10, 40.0), (20, 50.0), (30, 60.0), (40, 60.0), (50, 70.0)]


def test_summary_over_seeds_matches_the_paper_definition(tmp_path):
    write_experiment(tmp_path, {"random": {0: FLAT, 1: FLAT}, "entropy": {0: RISING, 2: [(b, m + 2) for b, m in RISING]}})
    curves = collect_curves(tmp_path)
    assert set(curves) == {"random", "entropy"} and set(curves["entropy"]) == {0, 2}
    assert default_budget(curves) == pytest.approx(50)
    summary = summarize(curves, 50)
    random_row, entropy_row = summary["methods"]["random"], summary["methods"]["entropy"]
    assert random_row["auc_at_budget"]["mean"] == pytest.approx(27.368)
    assert random_row["auc_at_budget"]["std"] == pytest.approx(0.0)
    # Trapezoids of RISING: (45 + 55 + 60 + 65) * 10 / 100 = 22.5, and 23.3 two points higher.
    assert entropy_row["auc_at_budget"]["values"] == pytest.approx([22.5, 23.3])
    assert entropy_row["miou_at_budget"]["mean"] == pytest.approx(71.0)
    assert entropy_row["miou_at_budget"]["std"] == pytest.approx(2 ** 0.5)
    table = format_table(summary, table_rows(summary))
    assert "mIoU@50" in table and "AUC@50" in table and "27.37" in table


def test_intermediate_budget_and_rounded_budgets(tmp_path):
    # 10 % of 2975 images is 298: the curve's budgets are 10.02, 20.03, ... not 10, 20.
    write_experiment(tmp_path, {"random": {0: [(b * 1.0017, m) for b, m in RISING]}})
    summary = summarize(collect_curves(tmp_path), 30)
    assert summary["methods"]["random"]["miou_at_budget"]["mean"] == pytest.approx(60.0)
    assert summary["methods"]["random"]["auc_at_budget"]["mean"] == pytest.approx(10.0 * 1.0017)
    with pytest.raises(UserError, match="budget 35 % is not reached by random/seed0"):
        summarize(collect_curves(tmp_path), 35)


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
    assert summary["miou_budget"] == 30 and summary["methods"]["entropy"]["miou_at_budget"]["mean"] == pytest.approx(61)
    # The study's check: a flat curve at 68.42 from 10 % to 50 % is 27.37.
    assert full["auc_at_budget"]["mean"] == pytest.approx(27.368)
    assert summary["reach"]["target_miou"] == pytest.approx(0.95 * 68.42)
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
    assert plot_curves(collect_curves(tmp_path), tmp_path / "curves.png", "pixels", "test", full_miou=68.42)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
