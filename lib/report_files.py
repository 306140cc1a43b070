"""The files evaluate.py writes into the experiment folder, and how its pictures are told from the user's.

    summary@40.json, summary@40.csv    the table at B = 40 (summary@30-50: mIoU@30 and AUC@50, the study's)
    curves.csv, curves.png             every run's curve: the same whatever B

Each name says what its numbers depend on, so that tables for several B (or metrics, or x axes) sit side by side
instead of overwriting each other: another metric than mIoU or x axis than items joins the name
(summary-dice-pixels@12.1.json, curves-dice.png).

The curves are drawn with matplotlib where it is importable, else with Pillow (lib.draw), so curves.png is always
there. A picture is only ever replaced when evaluate.py drew it and nobody changed it since: PLOTS_RECORD in the
experiment folder keeps the sha256 of each picture drawn in it (curves.png, the selection maps of lib.selection_maps).
Any other file of that name is the user's, and stays.
"""
from pathlib import Path

from lib.draw import curves_png
from lib.errors import UserError
from lib.fileio import atomic_write, read_json, sha256_of, write_json
from lib.report import budget_label, plot_curves

PLOTS_RECORD = ".evaluate-plots.json"


def summary_stem(metric, axis, metric_budget, budget):
    """'summary@40', 'summary@30-50' (the metric at 30, AUC at 50), 'summary-dice@40'."""
    budgets = "-".join(dict.fromkeys(budget_label(b) for b in (metric_budget, budget)))
    return f"summary{_qualifiers(metric, axis)}@{budgets}"


def curves_stem(metric, axis):
    """'curves', 'curves-dice-pixels'."""
    return f"curves{_qualifiers(metric, axis)}"


def _qualifiers(metric, axis):
    return "".join(f"-{value}" for value, default in ((metric, "miou"), (axis, "items")) if value != default)


def draw_curves(curves, path, axis, title, full_value, metric):
    """Draw the curves' PNG at `path`, with matplotlib where it is importable, else with Pillow; the experiment
    folder is `path`'s. Returns the line to print."""
    path = Path(path)
    if not may_replace(path, path.parent):
        return left_as_it_was(path)
    if not plot_curves(curves, path, axis, title, full_value, metric):  # no matplotlib
        write_picture(path, curves_png(curves, axis, title, full_value, metric))
    record_picture(path, path.parent)
    return f"wrote {path}"


def may_replace(path, root):
    """True when `path` is missing, or a picture evaluate.py drew there (PLOTS_RECORD of the experiment folder
    `root`) that nobody changed since."""
    if not path.exists():
        return True
    return path.is_file() and _recorded_pictures(root).get(_name(path, root)) == sha256_of(path)


def left_as_it_was(path):
    return f"{path} is left as it was (not drawn by evaluate.py, or changed since)"


def write_picture(path, png):
    with atomic_write(path) as handle:
        handle.write(png)


def record_picture(path, root):
    """Record the picture at `path` as drawn by evaluate.py, with its content now."""
    record = {**_recorded_pictures(root), _name(path, root): sha256_of(path)}
    write_json(Path(root) / PLOTS_RECORD, dict(sorted(record.items())))


def _name(path, root):
    """A picture's key in PLOTS_RECORD: its path in the experiment folder ("curves.png",
    "entropy/seed0/cycle1/selection_map.png")."""
    return Path(path).relative_to(root).as_posix()


def _recorded_pictures(root):
    """{path in `root`: sha256} of the pictures evaluate.py drew in the experiment folder `root`; {} when the record
    is missing or unreadable (then no picture there is known to be ours, and none is replaced)."""
    record_file = Path(root) / PLOTS_RECORD
    if not record_file.is_file():
        return {}
    try:
        record = read_json(record_file, "plot record")
    except UserError:
        return {}
    return record if isinstance(record, dict) else {}
