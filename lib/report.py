"""Evaluation records and experiment summaries: the files evaluate.py writes.

An experiment directory has one folder per method, seed and cycle:

    OUT/<method>/seed<k>/cycle<c>/{index.json, model.pt, metrics.json}

Folders whose name starts with '_' or '.' hold shared or temporary state and are
not curves, except the references trained on the whole pool (FULL=1):

    OUT/_full/seed<k>/metrics.json

Each metrics.json gives one point of a curve: (labeled %, mIoU %), the labeled
share counted in items of the unit or in pixels (CURVE_AXES).
"""
import csv
import io
import json

import numpy as np

from lib.errors import UserError
from lib.experiment import FULL, Layout
from lib.fileio import atomic_write, is_number, read_json
from lib.metrics import auc_at_budget, iou_per_class, mean_iou, mean_std, miou_at_budget, pixel_accuracy

# Budgets from rounded cycle sizes (10 % of 2975 images = 298) miss the nominal
# budget by a little; a curve point within this many percentage points is B.
BUDGET_MATCH_PP = 0.5
# Curve x axes: the metrics.json key holding the labeled share of the pool.
CURVE_AXES = {"items": "labeled_fraction", "pixels": "labeled_pixel_fraction"}
AXIS_LABELS = {"items": "labeled % of the pool's items", "pixels": "labeled % of the pool's pixels"}
# S4AL+'s measure: the labeled share at which a method reaches 95 % of the _full mIoU.
REACH = 0.95


def evaluation_record(confusion, class_names):
    """The metrics of one evaluation, JSON-ready: fractions in [0, 1], None for absent classes."""
    return {
        "miou": mean_iou(confusion),
        "pixel_accuracy": pixel_accuracy(confusion),
        "per_class_iou": dict(zip(class_names, iou_per_class(confusion))),
        "confusion": confusion.tolist(),
    }


def collect_curves(experiment_dir, axis="items"):
    """{method: {seed: [(cycle, budget %, mIoU %), ...] by cycle}} from every metrics.json found."""
    key = CURVE_AXES[axis]
    layout = Layout(experiment_dir)
    if not layout.root.is_dir():
        raise UserError(f"{layout.root}: experiment directory does not exist")
    curves = {method: {seed: _seed_curve(files, key, f"{method}/seed{seed}") for seed, files in seeds.items()}
              for method, seeds in layout.metrics_files().items()}
    if not curves:
        raise UserError(f"{layout.root}: no <method>/seed<k>/cycle<c>/metrics.json found")
    return curves


def _seed_curve(files, key, where):
    """[(cycle, budget %, mIoU %), ...] of one method and seed by cycle; every cycle labels more than the one
    before, else AUC@B and mIoU@B have no curve to read (a cycle folder copied from another run, say)."""
    points = [(cycle, path, *read_fractions(path, (key, "miou"))) for cycle, path in files]
    for (_, file0, share0, _), (_, file1, share1, _) in zip(points, points[1:]):
        if not share1 > share0:
            raise UserError(f"{where}: the labeled share must grow every cycle, but {key} is {share0:g} in "
                            f"{file0} and {share1:g} in {file1}")
    return [(cycle, 100 * share, 100 * miou) for cycle, _, share, miou in points]


def collect_references(experiment_dir):
    """{name: {seed: mIoU %}} of the models trained on the whole pool: OUT/_full*/seed<k>/metrics.json."""
    return {name: {seed: 100 * read_fractions(path, ("miou",))[0] for seed, path in seeds.items()}
            for name, seeds in Layout(experiment_dir).reference_files().items()}


def read_fractions(metrics_file, keys):
    """The values of `keys` in a metrics.json of evaluate.py, each checked to be a fraction in [0, 1] here,
    where the file is known: a wrong value found later could not say which file to fix."""
    metrics = read_json(metrics_file, "metrics file")
    if not isinstance(metrics, dict):
        raise UserError(f"{metrics_file}: expected a JSON object of metrics, got a {type(metrics).__name__}")
    for key in keys:
        value = metrics.get(key)
        if value is None:  # also labeled_pixel_fraction of checkpoints written before patch units
            state = "null" if key in metrics else "missing"
            raise UserError(f"{metrics_file}: not a checkpoint evaluation with {' and '.join(keys)} ({key} is {state})")
        if not is_number(value):
            raise UserError(f"{metrics_file}: {key} {json.dumps(value)} is not a number")
        if not 0 <= value <= 1:  # NaN fails it too, and 1e999 reads as Infinity
            raise UserError(f"{metrics_file}: {key} {json.dumps(value)} is not a fraction in [0, 1]")
    return [metrics[key] for key in keys]


def match_budget(budgets, budget, where):
    """The budget of the curve that stands for the nominal budget B."""
    nearest = min(budgets, key=lambda b: abs(b - budget))
    if abs(nearest - budget) > BUDGET_MATCH_PP:
        shown = ", ".join(f"{b:.1f}" for b in budgets)
        raise UserError(f"budget {budget:g} % is not reached by {where} (budgets: {shown})")
    return nearest


def default_budget(curves):
    """The largest budget every curve reaches: the fair point of comparison."""
    return min(points[-1][1] for seeds in curves.values() for points in seeds.values())


def summarize(curves, budget, miou_budget=None, references=None):
    """Per method: mIoU@B and AUC@B over seeds (mean, std, values); per reference (collect_references) the
    same of a flat curve at its mIoU; with _full, the labeled share at which each mean curve reaches 95 % of it.

    `budget` is the B of AUC@B, and of mIoU@B unless `miou_budget` is given.
    """
    miou_budget = budget if miou_budget is None else miou_budget
    methods = {method: _summarize_method(method, seeds, budget, miou_budget)
               for method, seeds in sorted(curves.items())}
    summary = {"budget": budget, "miou_budget": miou_budget, "methods": methods}
    if references:
        start = min(points[0][1] for seeds in curves.values() for points in seeds.values())
        summary["references"] = {name: _summarize_reference(seeds, start, budget)
                                 for name, seeds in sorted(references.items())}
    if references and FULL in references:
        target = REACH * summary["references"][FULL]["miou_at_budget"]["mean"]
        summary["reach"] = {"reference": FULL, "share": REACH, "target_miou": target}
        for method, seeds in curves.items():
            budgets, mean, _ = mean_curve(seeds)
            methods[method]["labeled_to_95"] = labeled_to_reach(budgets, mean, target)
    return summary


def _summarize_method(method, seeds, budget, miou_budget):
    at_b, auc = [], []
    for seed, points in sorted(seeds.items()):
        budgets, mious = [p[1] for p in points], [p[2] for p in points]
        where = f"{method}/seed{seed}"
        at_b.append(miou_at_budget(budgets, mious, match_budget(budgets, miou_budget, where)))
        auc.append(auc_at_budget(budgets, mious, match_budget(budgets, budget, where)))
    return {"seeds": sorted(seeds), "miou_at_budget": _stats(at_b), "auc_at_budget": _stats(auc)}


def _summarize_reference(seeds, start, budget):
    """A model of the whole pool as the study's "100%" row: its mIoU at every budget, so its AUC@B is the
    flat curve's from the initial budget to B (68.42 from 10 % to 50 % gives 27.37)."""
    mious = [seeds[seed] for seed in sorted(seeds)]
    return {
        "seeds": sorted(seeds),
        "miou_at_budget": _stats(mious),
        "auc_at_budget": _stats([(budget - start) * miou / 100 for miou in mious]),
    }


def _stats(values):
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "values": values}


def mean_curve(seeds):
    """(budgets, mean mIoU, std mIoU) over the seeds, one point per cycle that every seed reached."""
    by_cycle = [{cycle: (budget, miou) for cycle, budget, miou in points} for points in seeds.values()]
    cycles = sorted(set.intersection(*(set(points) for points in by_cycle)))
    budgets = [float(np.mean([points[c][0] for points in by_cycle])) for c in cycles]
    stats = [mean_std([points[c][1] for points in by_cycle]) for c in cycles]
    return budgets, [mean for mean, _ in stats], [std for _, std in stats]


def labeled_to_reach(budgets, mious, target):
    """The smallest labeled % at which the curve reaches `target` mIoU, linear between cycles; None if never."""
    for i, (budget, miou) in enumerate(zip(budgets, mious)):
        if miou >= target:
            if i == 0:  # nothing before the initial budget to interpolate from
                return budget
            b0, m0 = budgets[i - 1], mious[i - 1]
            return b0 + (target - m0) * (budget - b0) / (miou - m0)
    return None


def table_rows(summary):
    """The rows evaluate.py prints and writes: the paper's rows in its order when the summary has a setting
    (lib.published), ours beside each where we ran its method; then our methods and references it lacks."""
    ours = {**summary["methods"], **summary.get("references", {})}
    published = summary.get("setting", {}).get("rows", [])
    rows = [{"method": p["method"], "row": p["row"], "ours": ours.get(p["method"]), "published": p} for p in published]
    listed = {p["method"] for p in published}
    return rows + [{"method": name, "row": None, "ours": entry, "published": None}
                   for name, entry in ours.items() if name not in listed]


def format_table(summary, rows):
    """Ours per row, mean ± std over seeds, with the paper's numbers beside them when the summary has a setting.

    A published number measured at another budget than the column's says so (58.90@30).
    """
    paper = "setting" in summary
    miou_b, auc_b = summary["miou_budget"], summary["budget"]
    columns = [("method", 20, "<")] + ([("paper row", 22, "<")] if paper else []) + [("seeds", 5, ">")]
    columns += [(f"mIoU@{miou_b:g}", 15, ">")] + ([("paper", 9, ">")] if paper else [])
    columns += [(f"AUC@{auc_b:g}", 15, ">")] + ([("paper", 9, ">")] if paper else [])
    header = _line([name for name, _, _ in columns], columns)
    lines = [_title(summary["setting"])] if paper else []
    lines += [header, "-" * len(header)]
    for row in rows:
        ours, published = row["ours"], row["published"] or {}
        cells = [row["method"] or "-"] + ([row["row"] or ""] if paper else [])
        cells += [str(len(ours["seeds"])) if ours else "", _mean_std(ours, "miou_at_budget")]
        cells += [_published_cell(published, "miou", miou_b)] if paper else []
        cells += [_mean_std(ours, "auc_at_budget")]
        cells += [_published_cell(published, "auc", auc_b)] if paper else []
        lines.append(_line(cells, columns))
    return "\n".join(lines)


def _title(setting):
    column = f", {setting['column']}" if "column" in setting else ""
    return f"{setting['name']}: ours beside {setting['paper']}, {setting['table']}{column}"


def _line(cells, columns):
    return "  ".join(f"{cell:{align}{width}}" for cell, (_, width, align) in zip(cells, columns)).rstrip()


def _mean_std(ours, key):
    return f"{ours[key]['mean']:.2f} ± {ours[key]['std']:.2f}" if ours else "-"


def _published_cell(published, key, column_budget):
    value, budget = published.get(key), published.get(f"{key}_budget")
    if value is None:
        return "-"
    at = f"@{budget:g}" if budget is not None and abs(budget - column_budget) > 1e-9 else ""
    return f"{value:.2f}{at}"


def format_reach(summary, rows, axis):
    """The lines below the table: the _full mIoU and, per method, the labeled % at which its mean curve
    reaches 95 % of it, beside the paper's where it gives one; None when neither has anything to say."""
    if "reach" not in summary:
        paper = ", ".join(f"{row['row']} {_paper_reach(row):g}" for row in rows if _paper_reach(row) is not None)
        return (f"labeled % to reach {REACH:.0%} of full supervision: needs {FULL}/seed<k>/metrics.json in the "
                f"experiment (run the setting with FULL=1); the paper's: {paper}") if paper else None
    full, reach = summary["references"][FULL], summary["reach"]
    stats = full["miou_at_budget"]
    lines = [
        f"full supervision ({FULL}, {len(full['seeds'])} seeds): mIoU {stats['mean']:.2f} ± {stats['std']:.2f}; "
        f"{reach['share']:.0%} of it: {reach['target_miou']:.2f}",
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


def curves_csv(curves):
    """Long-form curve table, one row per method, seed and cycle: what plotting tools want."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["method", "seed", "cycle", "labeled_percent", "miou_percent"])
    for method, seeds in sorted(curves.items()):
        for seed, points in sorted(seeds.items()):
            for cycle, budget, miou in points:
                writer.writerow([method, seed, cycle, f"{budget:.4f}", f"{miou:.4f}"])
    return out.getvalue()


def summary_csv(summary, rows):
    """The table as CSV; the published columns when the summary has a setting, labeled_to_95 with _full."""
    fields = ["method", "seeds", "miou_budget", "miou_mean", "miou_std", "budget", "auc_mean", "auc_std"]
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
    record = {"method": row["method"] or "", "paper_row": row["row"] or "",
              "miou_budget": f"{summary['miou_budget']:g}", "budget": f"{summary['budget']:g}"}
    ours = row["ours"]
    if ours:
        record["seeds"] = len(ours["seeds"])
        for prefix, key in (("miou", "miou_at_budget"), ("auc", "auc_at_budget")):
            record[f"{prefix}_mean"] = f"{ours[key]['mean']:.4f}"
            record[f"{prefix}_std"] = f"{ours[key]['std']:.4f}"
        if ours.get("labeled_to_95") is not None:
            record["labeled_to_95"] = f"{ours['labeled_to_95']:.4f}"
    for key, value in (row["published"] or {}).items():
        if key not in ("row", "method") and value is not None:
            record[f"published_{key}"] = f"{value:g}"
    return record


def plot_curves(curves, path, axis, title, full_miou=None):
    """Draw mIoU (%) against the labeled share, one line per method with a ±1 std band over seeds, as a PNG.

    False when matplotlib is missing: it is optional, never a requirement of the toolkit.
    """
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")  # draws to files only: works without a display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, seeds in sorted(curves.items()):
        budgets, mean, std = (np.asarray(values) for values in mean_curve(seeds))
        (line,) = ax.plot(budgets, mean, marker="o", markersize=3, label=f"{method} ({len(seeds)} seeds)")
        ax.fill_between(budgets, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    if full_miou is not None:
        # Not FULL as the label: matplotlib leaves names starting with "_" out of the legend.
        ax.axhline(full_miou, color="black", linestyle="--", linewidth=1, label="full supervision")
    ax.set(xlabel=AXIS_LABELS[axis], ylabel="mIoU (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    with atomic_write(path) as handle:
        fig.savefig(handle, format="png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    return True
