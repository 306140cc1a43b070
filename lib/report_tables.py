"""The text and CSV of an experiment's summary (lib.report.summarize), and the per-class table of one evaluation.

The printed table gives, per method, the metric at B and AUC@B over seeds as mean ± sample std (the mean alone
for one seed: a single value has no spread to show), and, when the summary has a paper setting, the published
numbers beside ours. The lines under it say what the numbers are not: unfinished runs, runs that end short
of B (left out of that column), and B read off the straight line between two cycles (lib.report describes the
rule). Budgets are printed rounded (budget_label): mIoU@41.7, not mIoU@41.6667.
"""
import csv
import io

from lib.experiment import FULL
from lib.report import AXIS_LABELS, CURVE_METRICS, REACH, budget_label
from lib.text import plural


def format_table(summary, rows):
    """Ours per row, mean ± std over seeds, with the paper's numbers beside them when the summary has a setting.

    A published number measured at another budget than the column's says so (58.90@30). A cell is empty
    where no run of the method reaches the column's budget (format_notes says which).
    """
    paper = "setting" in summary
    metric_b, auc_b = summary["metric_budget"], summary["budget"]
    value_label, auc_label = column_labels(summary)
    columns = [("method", 20, "<")] + ([("paper row", 22, "<")] if paper else []) + [("seeds", 5, ">")]
    columns += [(value_label, 15, ">")] + ([("paper", 9, ">")] if paper else [])
    columns += [(auc_label, 15, ">")] + ([("paper", 9, ">")] if paper else [])
    header = _line([name for name, _, _ in columns], columns)
    lines = [_title(summary["setting"])] if paper else []
    lines += [header, "-" * len(header)]
    for row in rows:
        ours, published = row["ours"], row["published"] or {}
        cells = [row["method"] or "-"] + ([row["row"] or ""] if paper else [])
        cells += [str(len(ours["seeds"])) if ours else "", _mean_std(ours, "at_budget")]
        cells += [_published_cell(published, "miou", metric_b)] if paper else []
        cells += [_mean_std(ours, "auc_at_budget")]
        cells += [_published_cell(published, "auc", auc_b)] if paper else []
        lines.append(_line(cells, columns))
    return "\n".join(lines)


def column_labels(summary):
    """('mIoU@30', 'AUC@50'); AUC of another metric than mIoU names it: ('mDice@40', 'AUC(mDice)@40')."""
    label = CURVE_METRICS[summary["metric"]].label
    auc = "AUC" if summary["metric"] == "miou" else f"AUC({label})"
    return f"{label}@{budget_label(summary['metric_budget'])}", f"{auc}@{budget_label(summary['budget'])}"


def format_notes(summary):
    """The lines under the table: classes no evaluation scored, unfinished runs, B between cycles, runs short of B;
    None when all is plain."""
    runs = summary["runs"]
    lines = []
    if summary.get("classes_not_scored"):
        names = ", ".join(summary["classes_not_scored"])
        lines.append(f"{CURVE_METRICS[summary['metric']].label} is of the other classes: no evaluation scored "
                     f"{names} (no pixel of it in the masks, none predicted; see evaluate.py's warnings)")
    if runs["unfinished"]:
        lines.append("unfinished: " + ", ".join(f"{run['run']} at cycle {run['cycle']} of {runs['cycles']}"
                                                for run in runs["unfinished"]))
    labels = dict(zip(("metric", "auc"), column_labels(summary)))
    for reading in runs["readings"]:
        at = budget_label(reading["budget"])
        if reading["between"]:  # runs of a pool count the same cycles: one pair as printed, mostly
            pairs = "; ".join(dict.fromkeys(f"{budget_label(b0)} % and {budget_label(b1)} %"
                                            for b0, b1 in reading["between"]))
            lines.append(f"B = {at} % lies between cycles ({pairs}): @{at} values are interpolated linearly")
        if reading["short"]:
            short = ", ".join(f"{run['run']} (ends at {budget_label(run['budget'])} %)" for run in reading["short"])
            columns = " and ".join(labels[column] for column in reading["columns"])
            lines.append(f"left out of {columns}, short of {at} %: {short}")
    return "\n".join(lines) or None


def _title(setting):
    column = f", {setting['column']}" if "column" in setting else ""
    return f"{setting['name']}: ours beside {setting['paper']}, {setting['table']}{column}"


def _line(cells, columns):
    return "  ".join(f"{cell:{align}{width}}" for cell, (_, width, align) in zip(cells, columns)).rstrip()


def _mean_std(ours, key):
    if not ours:
        return "-"
    return mean_std_text(ours[key]) if ours[key] else ""


def mean_std_text(stats):
    """'60.50 ± 0.71' over seeds; '60.50' for one seed."""
    return f"{stats['mean']:.2f}" + (f" ± {stats['std']:.2f}" if len(stats["values"]) > 1 else "")


def _published_cell(published, key, column_budget):
    value, budget = published.get(key), published.get(f"{key}_budget")
    if value is None:
        return "-"
    at = f"@{budget_label(budget)}" if budget is not None and abs(budget - column_budget) > 1e-9 else ""
    return f"{value:.2f}{at}"


def format_reach(summary, rows, axis):
    """The lines below the table: the _full value and, per method, the labeled % at which its mean curve
    reaches 95 % of it, beside the paper's where it gives one; None when neither has anything to say."""
    if "reach" not in summary:
        paper = ", ".join(f"{row['row']} {_paper_reach(row):g}" for row in rows if _paper_reach(row) is not None)
        return (f"labeled % to reach {REACH:.0%} of full supervision: needs {FULL}/seed<k>/metrics.json in the "
                f"experiment (run the setting with FULL=1); the paper's: {paper}") if paper else None
    full, reach = summary["references"][FULL], summary["reach"]
    lines = [
        f"full supervision ({FULL}, {plural(len(full['seeds']), 'seed')}): {CURVE_METRICS[summary['metric']].label} "
        f"{mean_std_text(full['at_budget'])}; {reach['share']:.0%} of it: {reach['target']:.2f}",
        f"{AXIS_LABELS[axis]} at which the mean curve reaches it:",
    ]
    for row in rows:
        ours, paper = (row["ours"] or {}).get("labeled_to_95", "-"), _paper_reach(row)
        if ours == "-" and paper is None:
            continue  # a reference, or a paper row without the measure that we did not run
        value = "not reached" if ours is None else ours if ours == "-" else f"{ours:.2f}"
        beside = f"   (paper, {row['row']}: {paper:g})" if paper is not None else ""
        lines.append(f"  {row['method'] or '-':<20} {value:>11}{beside}")
    return "\n".join(lines)


def _paper_reach(row):
    return (row["published"] or {}).get("labeled_to_95")


def curves_csv(curves, metric="miou"):
    """Long-form curve table, one row per method, seed and cycle: what plotting tools want."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["method", "seed", "cycle", "labeled_percent", f"{metric}_percent"])
    for method, seeds in sorted(curves.items()):
        for seed, points in sorted(seeds.items()):
            for cycle, budget, value in points:
                writer.writerow([method, seed, cycle, f"{budget:.4f}", f"{value:.4f}"])
    return out.getvalue()


def summary_csv(summary, rows):
    """The table as CSV, its metric's columns named after it (miou_mean, dice_mean); the published columns when
    the summary has a setting, labeled_to_95 with _full. Empty cells where no seed reaches the budget."""
    metric = summary["metric"]
    fields = ["method", "seeds", f"{metric}_budget", f"{metric}_mean", f"{metric}_std", "budget", "auc_mean", "auc_std"]
    if "setting" in summary:
        fields += ["paper_row", "published_miou", "published_miou_budget", "published_auc", "published_auc_budget"]
    if "reach" in summary:
        fields += ["labeled_to_95"] + (["published_labeled_to_95"] if "setting" in summary else [])
    out = io.StringIO()
    writer = csv.DictWriter(out, fields, restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(_csv_record(summary, row))
    return out.getvalue()


def _csv_record(summary, row):
    metric = summary["metric"]
    record = {"method": row["method"] or "", "paper_row": row["row"] or "",
              f"{metric}_budget": f"{summary['metric_budget']:g}", "budget": f"{summary['budget']:g}"}
    ours = row["ours"]
    if ours:
        record["seeds"] = len(ours["seeds"])
        for prefix, key in ((metric, "at_budget"), ("auc", "auc_at_budget")):
            if ours[key]:
                record[f"{prefix}_mean"] = f"{ours[key]['mean']:.4f}"
                record[f"{prefix}_std"] = f"{ours[key]['std']:.4f}"
        if ours.get("labeled_to_95") is not None:
            record["labeled_to_95"] = f"{ours['labeled_to_95']:.4f}"
    for key, value in (row["published"] or {}).items():
        if key not in ("row", "method") and value is not None:
            record[f"published_{key}"] = f"{value:g}"
    return record


def format_per_class(record):
    """One evaluation's (lib.report.evaluation_record) IoU and Dice per class in %, '-' for a class absent from
    ground truth and prediction; with two classes, a last line for the foreground (class 1)."""
    class_names = list(record["per_class_iou"])
    width = max(12, *(len(name) for name in class_names))
    lines = [f"{'class':<{width}}  {'IoU':>6}  {'Dice':>6}"]
    for name in class_names:
        iou, dice = record["per_class_iou"][name], record["per_class_dice"][name]
        lines.append(f"{name:<{width}}  {_percent(iou):>6}  {_percent(dice):>6}")
    lines.append(f"{'mean':<{width}}  {_percent(record['miou']):>6}  {_percent(record['mean_dice']):>6}")
    if "foreground" in record:
        fg = record["foreground"]
        lines.append(f"foreground ({fg['class']}): IoU {_percent(fg['iou'])}, Dice {_percent(fg['dice'])}")
    return "\n".join(lines)


def _percent(fraction):
    return "-" if fraction is None else f"{100 * fraction:.2f}"
