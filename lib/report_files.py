"""The files `evaluate.py --experiment` writes into the experiment folder, and the plots it may remove.

    summary@40.json, summary@40.csv    the table at B = 40 (summary@30-50: mIoU@30 and AUC@50, the study's)
    curves.csv, curves.png             every run's curve: the same whatever B

Each name says what its numbers depend on, so that tables for several B (or metrics, or x axes) sit side by side
instead of overwriting each other: another metric than mIoU or x axis than items joins the name
(summary-dice-pixels@12.1.json, curves-dice.png).

A curves.png that cannot be drawn again (matplotlib uninstalled since) is removed rather than left showing older
curves beside a newer table, but only one that evaluate.py drew and nobody changed since: PLOTS_RECORD in the
experiment folder keeps the sha256 of each plot drawn there. Any other file of that name is the user's, and stays.
"""
from pathlib import Path

from lib.errors import UserError
from lib.fileio import read_json, sha256_of, write_json
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
    """Draw the curves' PNG at `path` and record it as ours; without matplotlib, remove a stale one of ours.
    Returns the line to print."""
    path = Path(path)
    if plot_curves(curves, path, axis, title, full_value, metric):
        _record_plot(path, sha256_of(path))
        return f"wrote {path}"
    why = f"{path.name} not drawn: matplotlib is not installed (pip install matplotlib)"
    if not path.exists():
        return why
    if _recorded_plots(path.parent).get(path.name) != sha256_of(path):
        return f"{why}; {path} is left as it was (not drawn by evaluate.py, or changed since)"
    path.unlink()
    _record_plot(path, None)
    return f"{why}; removed the stale {path} of an earlier run"


def _recorded_plots(folder):
    """{file name: sha256} of the plots evaluate.py drew in `folder`; {} when the record is missing or unreadable
    (then no plot there is known to be ours, and none is removed)."""
    record_file = Path(folder) / PLOTS_RECORD
    if not record_file.is_file():
        return {}
    try:
        record = read_json(record_file, "plot record")
    except UserError:
        return {}
    return record if isinstance(record, dict) else {}


def _record_plot(path, sha256):
    """Record `path` as drawn with this content; sha256 None: removed."""
    record = {name: digest for name, digest in _recorded_plots(path.parent).items() if name != path.name}
    if sha256 is not None:
        record[path.name] = sha256
    write_json(path.parent / PLOTS_RECORD, dict(sorted(record.items())))
