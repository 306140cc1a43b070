import csv
import io
import json
import sys

import pytest

from conftest import REPO_ROOT, import_script
from lib import published
from lib.acquire import METHODS
from lib.errors import UserError
from lib.published import load_setting, setting_names
from test_report import write_experiment, write_full

evaluate = import_script("evaluate.py")

# Every paper setting's script (scripts/<setting>.sh) has its table.
SETTINGS = {path.stem for path in (REPO_ROOT / "scripts").glob("*.sh")} - {"demo", "test"}
# The folder names lib.published documents: our methods, their -ssl variants, the study's Uniform(@5)+Entropy and
# the references trained on the whole pool.
ACQUIRED = {*METHODS, "uniform5-entropy"}
KNOWN_FOLDERS = {*ACQUIRED, *(f"{name}-ssl" for name in ACQUIRED), "_full", "_full-mcd"}
STUDY = "Best Practices in Active Learning for Semantic Segmentation"


def test_every_setting_has_a_complete_published_table():
    assert set(setting_names()) == SETTINGS
    for name in SETTINGS:
        setting = load_setting(name)
        assert setting["paper"] and setting["table"].startswith("Table ") and setting["caption"], name
        assert 0 < setting["miou_budget"] <= setting["budget"] <= 100, name
        assert {row["method"] for row in setting["rows"]} - {None} <= KNOWN_FOLDERS, name
        for row in setting["rows"]:
            assert row["miou"] is not None and 0 < row["miou"] < 100, (name, row["row"])
        assert sum(row["method"] == "_full" for row in setting["rows"]) == 1, name


def test_the_study_tables_agree_with_their_own_100_percent_rows():
    """A transcription check inside each table: the study's "100%" AUC@B is the flat curve at its mIoU from the
    initial budget, B / 5 in the 10-10, 5-5 and 2-2 settings, to B (A2D2-3K's AUC is on another scale), and
    every row's AUC@B is its mean mIoU over that span: near its mIoU@B, unless a column was misread."""
    for name in SETTINGS - {"a2d2_3k"}:
        setting = load_setting(name)
        if STUDY not in setting["paper"]:
            continue
        span = 0.8 * setting["budget"] / 100
        for row in setting["rows"]:
            if row["method"] in ("_full", "_full-mcd"):
                assert row["auc"] == pytest.approx(row["miou"] * span, abs=0.006), name
            assert row["auc"] / span == pytest.approx(row["miou"], abs=3), (name, row["row"])


def test_meal_fractions_are_read_as_percent():
    rows = {row["method"]: row for row in load_setting("camvid_meal")["rows"]}
    assert rows["meal-ft"]["miou"] == pytest.approx(57.3) and rows["meal-ft"]["miou_budget"] == 5
    assert rows["_full"]["miou_budget"] is None and rows["meal"]["auc"] is None


def test_unknown_or_malformed_settings_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="--setting nope: no published table .*nope.json"):
        load_setting("nope")
    monkeypatch.setattr(published, "PUBLISHED_DIR", tmp_path)
    good = {"paper": "P", "table": "Table 1", "caption": "C", "unit": "image", "notes": "", "x_axis": "items",
            "budget": 50, "miou_scale": "percent", "rows": [{"name": "Random", "method": "random", "miou": 50.0}]}
    (tmp_path / "good.json").write_text(json.dumps(good))
    assert load_setting("good")["miou_budget"] == 50
    for broken, message in (({**good, "x_axis": "images"}, "x_axis 'images'"),
                            ({**good, "budget": 0}, "budget and miou_budget"),
                            ({k: v for k, v in good.items() if k != "paper"}, "missing paper"),
                            ({**good, "rows": [{"name": "Random", "miou": 50}]}, "row 'Random': needs a method"),
                            ({**good, "rows": [{"name": "R", "method": "random", "mIoU": 5}]},
                             "row 'R': unknown keys mIoU"),
                            ({**good, "rows": good["rows"] * 2}, "two rows name the same method")):
        (tmp_path / "bad.json").write_text(json.dumps(broken))
        with pytest.raises(UserError, match=rf"bad.json: {message}"):
            load_setting("bad")


def lines_of(out):
    """The table's lines by their first word; the lines below it are indented."""
    return {line.split()[0]: line for line in out.splitlines() if line.strip() and not line.startswith(" ")}


def test_experiment_in_the_paper_layout(tmp_path, monkeypatch, capsys):
    curve = [(10, 50.0), (20, 55.0), (30, 60.0), (40, 62.0), (50, 64.0)]
    write_experiment(tmp_path, {"random": {0: curve, 1: [(b, m + 1) for b, m in curve]},
                                "kmeanspp": {0: curve}})
    write_full(tmp_path, [68.0])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # the same output with or without it
    evaluate.main(["--experiment", str(tmp_path), "--setting", "cityscapes_10_10"])
    out = capsys.readouterr().out
    assert "cityscapes_10_10: ours beside Mittal" in out and "Table 2, Cityscapes" in out
    assert "mIoU@30" in out and "AUC@50" in out
    lines = lines_of(out)
    # Ours at 30 %: 60 and 61; AUC@50: (525 + 575 + 610 + 630) / 100 = 23.4, and 23.8 a point higher.
    assert lines["random"].split()[1:] == [
        "Random", "2", "60.50", "±", "0.71", "58.90", "23.60", "±", "0.28", "23.29"]
    assert lines["equal"].split()[1:] == ["EqualAL", "-", "62.41", "-", "24.32"]  # the paper's alone
    assert lines["_full"].split()[1:] == ["100%", "1", "68.00", "68.42", "27.20", "27.37"]  # one seed: no ± 0.00
    order = [line.split()[0] for line in out.splitlines()[3:16]]
    assert order[:3] == ["random", "entropy", "equal"] and order[-2:] == ["_full-mcd", "kmeanspp"]
    # 95 % of 68 is 64.6, not reached by random (64.5 at 50 %); kmeanspp tops at 64.
    assert "95% of it: 64.60" in out and "\n  kmeanspp             not reached\n" in out
    assert f"wrote {tmp_path / 'curves.png'}" in out  # drawn with Pillow

    records = {r["paper_row"]: r for r in csv.DictReader(io.StringIO((tmp_path / "summary@30-50.csv").read_text()))}
    assert records["Random"]["method"] == "random" and float(records["Random"]["miou_mean"]) == pytest.approx(60.5)
    assert records["Random"]["published_miou"] == "58.9" and records["Random"]["published_miou_budget"] == "30"
    assert records["EqualAL"]["miou_mean"] == "" and records["EqualAL"]["published_auc"] == "24.32"
    assert records[""]["method"] == "kmeanspp" and records[""]["published_miou"] == ""

    summary = json.loads((tmp_path / "summary@30-50.json").read_text())
    assert summary["methods"]["random"]["published"]["miou"] == 58.9
    assert summary["references"]["_full"]["published"]["auc"] == 27.37
    assert "published" not in summary["methods"]["kmeanspp"]
    assert [row["row"] for row in summary["setting"]["rows"]][:2] == ["Random", "Entropy"]
    assert summary["setting"]["table"] == "Table 2" and summary["x_axis"] == "items"


def test_budget_flag_marks_the_published_budget(tmp_path, capsys):
    write_experiment(tmp_path, {"random": {0: [(10, 50.0), (20, 55.0), (30, 60.0), (40, 62.0), (50, 64.0)]}})
    evaluate.main(["--experiment", str(tmp_path), "--setting", "cityscapes_10_10", "--budget", "40"])
    # (52.5 + 57.5 + 61) * 10 / 100 = 17.1 up to 40 %; the paper's numbers are at 30 % and 50 %.
    assert lines_of(capsys.readouterr().out)["random"].split()[2:] == [
        "1", "62.00", "58.90@30", "17.10", "23.29@50"]


def test_the_paper_budget_must_be_reached(tmp_path):
    write_experiment(tmp_path, {"random": {0: [(10, 50.0), (20, 55.0)]}})
    with pytest.raises(UserError, match=r"budget 30 % is not reached by any run \(last budgets: random/seed0 20\); "
                                        "--setting cityscapes_10_10 compares at the paper's budget, --budget chooses"):
        evaluate.main(["--experiment", str(tmp_path), "--setting", "cityscapes_10_10"])
    with pytest.raises(UserError, match="--setting goes with --experiment"):
        evaluate.main(["--curve", str(tmp_path / "curve.json"), "--setting", "cityscapes_10_10"])


def write_pixel_curve(root, method, points):
    """Region units: the curve's x axis is the labeled share of the pool's pixels."""
    for cycle, (pixels, miou) in enumerate(points):
        folder = root / method / "seed0" / f"cycle{cycle}"
        folder.mkdir(parents=True)
        metrics = {"labeled_fraction": 0.1, "labeled_pixel_fraction": pixels / 100, "miou": miou / 100}
        (folder / "metrics.json").write_text(json.dumps(metrics))


def test_s4al_settings_report_the_share_to_95_percent(tmp_path, capsys):
    write_pixel_curve(tmp_path, "entropy-ssl", [(10.0, 58.0), (12.08, 61.0), (14.16, 62.0)])
    evaluate.main(["--experiment", str(tmp_path), "--setting", "camvid_s4al"])
    out = capsys.readouterr().out
    # AUC@12.1: one trapezoid, (58 + 61) / 2 * 2.08 / 100; the paper gives none.
    assert lines_of(out)["entropy-ssl"].split()[-5:] == ["1", "61.00", "62.65", "1.24", "-"]
    assert lines_of(out)["-"].split()[-4:] == ["-", "61.36@13.8", "-", "-"]  # S4AL: not ours, at its own budget
    assert ("needs _full/seed<k>/metrics.json in the experiment (run the setting with FULL=1); "
            "the paper's: S4AL+ (12.1%) 12.1") in out
    write_full(tmp_path, [63.55])
    evaluate.main(["--experiment", str(tmp_path), "--setting", "camvid_s4al"])
    out = capsys.readouterr().out
    # 95 % of 63.55 is 60.3725, between 58 at 10 % and 61 at 12.08 %.
    assert "labeled % of the pool's pixels at which the mean curve reaches it:" in out
    share = 10 + (0.95 * 63.55 - 58) / 3 * 2.08
    assert f"entropy-ssl                {share:.2f}   (paper, S4AL+ (12.1%): 12.1)" in out
    summary = json.loads((tmp_path / "summary-pixels@12.1.json").read_text())
    assert summary["methods"]["entropy-ssl"]["labeled_to_95"] == pytest.approx(share)
    assert summary["methods"]["entropy-ssl"]["published"]["labeled_to_95"] == 12.1
    assert summary["x_axis"] == "pixels"
    records = list(csv.DictReader(io.StringIO((tmp_path / "summary-pixels@12.1.csv").read_text())))
    assert [r["published_labeled_to_95"] for r in records] == ["", "12.1", ""]


def test_png_beside_the_table_when_matplotlib_is_there(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    write_experiment(tmp_path, {"random": {0: [(10, 50.0), (20, 55.0), (30, 60.0), (40, 62.0), (50, 64.0)]}})
    evaluate.main(["--experiment", str(tmp_path), "--setting", "voc_10_10"])
    assert f"wrote {tmp_path / 'curves.png'}" in capsys.readouterr().out
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
