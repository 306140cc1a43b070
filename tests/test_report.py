import csv
import io
import json

import pytest

from lib.errors import UserError
from lib.report import collect_curves, curves_csv, default_budget, format_table, summarize, summary_csv


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
    table = format_table(summary)
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
    summary_rows = list(csv.DictReader(io.StringIO(summary_csv(summarize(curves, 50)))))
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
