"""Evaluation records and experiment summaries: the files evaluate.py writes.

An experiment directory has one folder per method, seed and cycle:

    OUT/<method>/seed<k>/cycle<c>/{index.json, model.pt, metrics.json}

Folders whose name starts with '_' or '.' hold shared or temporary state and are
not curves, except the references trained on the whole pool (FULL=1):

    OUT/_full/seed<k>/metrics.json

Each metrics.json gives one point of a curve: (labeled %, metric %), the labeled
share counted in items of the unit or in pixels (CURVE_AXES), the metric mIoU or
mean Dice (CURVE_METRICS).

B and the cycles. A run's value at B, and the end of its AUC@B, is its cycle whose
budget is within BUDGET_MATCH_PP of B (budgets of rounded cycle sizes miss the
nominal one a little; the paper settings compare at such cycles, so their numbers
are the cycles' own). A B between two cycles is read off the straight line between
them (lib.metrics), and the table says so under it. A run that ends short of B is
never extrapolated: it is left out of that column and named under the table.

Unfinished runs. The default B is the largest budget every finished run reaches. A
run is finished when it reached the last cycle of the experiment: the largest cycle
any of its runs reached (experiment.json does not record CYCLES, which may grow). A
table made mid-run thus compares at the finished runs' budget and lists the others,
rather than falling back to the budget the slowest run reached.
"""
import json
from typing import Callable, NamedTuple

import numpy as np

from lib.errors import UserError
from lib.experiment import FULL, Layout
from lib.fileio import atomic_write, is_number, read_json
from lib.metrics import (
    auc_at_budget, dice_per_class, iou_per_class, mean_dice, mean_iou, mean_std, pixel_accuracy, value_at_budget,
)
from lib.text import plural

# Budgets from rounded cycle sizes (10 % of 2975 images = 298) miss the nominal
# budget by a little; a curve point within this many percentage points is B.
BUDGET_MATCH_PP = 0.5
# Curve x axes: the metrics.json key holding the labeled share of the pool.
CURVE_AXES = {"items": "labeled_fraction", "pixels": "labeled_pixel_fraction"}
AXIS_LABELS = {"items": "labeled % of the pool's items", "pixels": "labeled % of the pool's pixels"}
# S4AL+'s measure: the labeled share at which a method reaches 95 % of the _full value.
REACH = 0.95
# In a two-class task, class 1 is the foreground (lesion, organ) and class 0 the background.
FOREGROUND_CLASS = 1


class CurveMetric(NamedTuple):
    key: str  # in metrics.json, a fraction
    label: str  # in table columns: mIoU@40
    name: str  # on a plot's axis
    from_confusion: Callable  # for metrics.json files written before `key` was recorded


# evaluate.py --experiment --metric: what the curves, the metric at B and AUC@B are of.
CURVE_METRICS = {
    "miou": CurveMetric("miou", "mIoU", "mIoU", mean_iou),
    "dice": CurveMetric("mean_dice", "mDice", "mean Dice", mean_dice),
}
_FROM_CONFUSION = {metric.key: metric.from_confusion for metric in CURVE_METRICS.values()}


def evaluation_record(confusion, class_names):
    """The metrics of one evaluation, JSON-ready: fractions in [0, 1], None for absent classes; with two classes
    also the foreground's (FOREGROUND_CLASS) IoU and Dice."""
    ious, dices = iou_per_class(confusion), dice_per_class(confusion)
    record = {
        "miou": mean_iou(confusion),
        "mean_dice": mean_dice(confusion),
        "pixel_accuracy": pixel_accuracy(confusion),
        "per_class_iou": dict(zip(class_names, ious)),
        "per_class_dice": dict(zip(class_names, dices)),
    }
    if len(class_names) == 2:
        record["foreground"] = {"class": class_names[FOREGROUND_CLASS], "iou": ious[FOREGROUND_CLASS],
                                "dice": dices[FOREGROUND_CLASS]}
    return {**record, "confusion": confusion.tolist()}


def collect_curves(experiment_dir, axis="items", metric="miou"):
    """{method: {seed: [(cycle, budget %, metric %), ...] by cycle}} from every metrics.json found."""
    key = CURVE_AXES[axis]
    layout = Layout(experiment_dir)
    if not layout.root.is_dir():
        raise UserError(f"{layout.root}: experiment directory does not exist")
    curves = {method: {seed: _seed_curve(files, key, CURVE_METRICS[metric].key, f"{method}/seed{seed}")
                       for seed, files in seeds.items()}
              for method, seeds in layout.metrics_files().items()}
    if not curves:
        raise UserError(f"{layout.root}: no <method>/seed<k>/cycle<c>/metrics.json found")
    return curves


def _seed_curve(files, key, metric_key, where):
    """[(cycle, budget %, metric %), ...] of one method and seed by cycle; every cycle labels more than the one
    before, else AUC@B and the metric at B have no curve to read (a cycle folder copied from another run, say)."""
    points = [(cycle, path, *read_fractions(path, (key, metric_key))) for cycle, path in files]
    for (_, file0, share0, _), (_, file1, share1, _) in zip(points, points[1:]):
        if not share1 > share0:
            raise UserError(f"{where}: the labeled share must grow every cycle, but {key} is {share0:g} in "
                            f"{file0} and {share1:g} in {file1}")
    return [(cycle, 100 * share, 100 * value) for cycle, _, share, value in points]


def classes_never_scored(experiment_dir):
    """The classes no evaluation of the experiment scored (null in per_class_iou of every metrics.json that has
    one: no pixel of them in the masks, none predicted). The mean metric is of the other classes, which the table
    must say: a binary set whose foreground is never scored reads 100 %."""
    layout = Layout(experiment_dir)
    files = [path for seeds in layout.metrics_files().values() for cycles in seeds.values() for _, path in cycles]
    files += [path for seeds in layout.reference_files().values() for path in seeds.values()]
    per_class = [metrics["per_class_iou"] for metrics in (read_json(path, "metrics file") for path in files)
                 if isinstance(metrics, dict) and isinstance(metrics.get("per_class_iou"), dict)]
    if not per_class:
        return []
    return [name for name in per_class[0] if all(scores.get(name, 0) is None for scores in per_class)]


def collect_references(experiment_dir, metric="miou"):
    """{name: {seed: metric %}} of the models trained on the whole pool: OUT/_full*/seed<k>/metrics.json."""
    key = CURVE_METRICS[metric].key
    return {name: {seed: 100 * read_fractions(path, (key,))[0] for seed, path in seeds.items()}
            for name, seeds in Layout(experiment_dir).reference_files().items()}


def read_fractions(metrics_file, keys):
    """The values of `keys` in a metrics.json of evaluate.py, each checked to be a fraction in [0, 1] here,
    where the file is known: a wrong value found later could not say which file to fix. A curve metric that
    the file lacks (mean_dice, written before Dice was recorded) is computed from its confusion matrix."""
    metrics = read_json(metrics_file, "metrics file")
    if not isinstance(metrics, dict):
        raise UserError(f"{metrics_file}: expected a JSON object of metrics, got a {type(metrics).__name__}")
    return [_fraction(metrics_file, metrics, key, keys) for key in keys]


def _fraction(metrics_file, metrics, key, keys):
    if key not in metrics and key in _FROM_CONFUSION and "confusion" in metrics:
        return _from_confusion(metrics_file, metrics["confusion"], _FROM_CONFUSION[key])
    value = metrics.get(key)
    if value is None:  # also labeled_pixel_fraction of checkpoints written before patch units
        state = "null" if key in metrics else "missing"
        if key in _FROM_CONFUSION and key not in metrics:
            state += ", and no confusion matrix to compute it from: evaluate.py --checkpoint writes both"
        raise UserError(f"{metrics_file}: not a checkpoint evaluation with {' and '.join(keys)} ({key} is {state})")
    if not is_number(value):
        raise UserError(f"{metrics_file}: {key} {json.dumps(value)} is not a number")
    if not 0 <= value <= 1:  # NaN fails it too, and 1e999 reads as Infinity
        raise UserError(f"{metrics_file}: {key} {json.dumps(value)} is not a fraction in [0, 1]")
    return value


def _from_confusion(metrics_file, confusion, metric):
    try:
        matrix = np.asarray(confusion, dtype=np.float64)
    except (TypeError, ValueError):  # ragged rows, or text
        matrix = np.zeros(0)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or not (np.isfinite(matrix) & (matrix >= 0)).all() \
            or matrix.sum() == 0:
        raise UserError(f"{metrics_file}: confusion is not a square matrix of pixel counts")
    return metric(matrix)


def budget_label(budget):
    """A budget as tables and file names show it: 40, 41.7, 12.1, 0.0723; never 41.6667."""
    return f"{budget:.3g}"


def budget_point(budgets, budget, where):
    """The budget at which a run's curve is read for the nominal B: its cycle's within BUDGET_MATCH_PP of B, else
    B itself when B lies between two of its cycles; None when the run ends short of B."""
    nearest = min(budgets, key=lambda b: abs(b - budget))
    if abs(nearest - budget) <= BUDGET_MATCH_PP:
        return nearest
    if budget > budgets[-1]:
        return None
    if budget < budgets[0]:
        raise UserError(f"budget {budget_label(budget)} % is below the first budget of {where} "
                        f"({budget_label(budgets[0])} %, the initial cycle's)")
    return budget


def unfinished_runs(curves):
    """(last cycle of the experiment, [{run, cycle, budget}] of the runs that have not reached it)."""
    last = max(points[-1][0] for seeds in curves.values() for points in seeds.values())
    unfinished = [{"run": f"{method}/seed{seed}", "cycle": points[-1][0], "budget": points[-1][1]}
                  for method, seeds in sorted(curves.items()) for seed, points in sorted(seeds.items())
                  if points[-1][0] < last]
    return last, unfinished


def default_budget(curves):
    """The largest budget every finished run reaches (see unfinished_runs): the fair point of comparison."""
    last, _ = unfinished_runs(curves)
    return min(points[-1][1] for seeds in curves.values() for points in seeds.values() if points[-1][0] == last)


def summarize(curves, budget, metric_budget=None, references=None, metric="miou"):
    """Per method: the metric at B and AUC@B over seeds (mean, std, values, seeds; None where no run reaches the
    budget); per reference (collect_references) the same of a flat curve at its value; with _full, the labeled
    share at which each mean curve reaches 95 % of it. "runs" says which runs are unfinished, which end short
    of each budget, and between which cycles a budget was interpolated.

    `budget` is the B of AUC@B, and of the metric at B unless `metric_budget` is given.
    """
    metric_budget = budget if metric_budget is None else metric_budget
    at = {"metric": _read_at(curves, metric_budget), "auc": _read_at(curves, budget)}
    methods = {method: _summarize_method(method, seeds, at) for method, seeds in sorted(curves.items())}
    last, unfinished = unfinished_runs(curves)
    runs = {"cycles": last, "unfinished": unfinished, "readings": _readings(curves, at, metric_budget, budget)}
    summary = {"metric": metric, "budget": budget, "metric_budget": metric_budget, "methods": methods, "runs": runs}
    if references:
        start = min(points[0][1] for seeds in curves.values() for points in seeds.values())
        summary["references"] = {name: _summarize_reference(seeds, start, budget)
                                 for name, seeds in sorted(references.items())}
    if references and FULL in references:
        target = REACH * summary["references"][FULL]["at_budget"]["mean"]
        summary["reach"] = {"reference": FULL, "share": REACH, "target": target}
        for method, seeds in curves.items():
            budgets, mean, _ = mean_curve(seeds)
            methods[method]["labeled_to_95"] = labeled_to_reach(budgets, mean, target)
    return summary


def _read_at(curves, budget):
    """{(method, seed): the budget at which the run is read for B, or None} (budget_point); UserError when no run
    reaches B: there is no table to show."""
    read = {(method, seed): budget_point([p[1] for p in points], budget, f"{method}/seed{seed}")
            for method, seeds in curves.items() for seed, points in seeds.items()}
    if all(point is None for point in read.values()):
        ends = ", ".join(f"{method}/seed{seed} {budget_label(curves[method][seed][-1][1])}"
                         for method, seed in sorted(read))
        raise UserError(f"budget {budget_label(budget)} % is not reached by any run (last budgets: {ends})")
    return read


def _readings(curves, at, metric_budget, budget):
    """Per distinct budget: the columns read there, the runs short of it, and the cycles (budget before, budget
    after) it was interpolated between, one pair per run read so."""
    columns = {"metric": metric_budget, "auc": budget}
    readings = []
    for b in dict.fromkeys((metric_budget, budget)):
        read = at["metric" if b == metric_budget else "auc"]
        budgets = {run: [p[1] for p in curves[run[0]][run[1]]] for run in sorted(read)}
        short = [{"run": f"{method}/seed{seed}", "budget": budgets[method, seed][-1]}
                 for (method, seed), point in sorted(read.items()) if point is None]
        between = [_neighbours(budgets[run], b) for run, point in sorted(read.items())
                   if point is not None and point not in budgets[run]]
        readings.append({"budget": b, "columns": [name for name, value in columns.items() if value == b],
                         "short": short, "between": between})
    return readings


def _neighbours(budgets, budget):
    """[the last budget below `budget`, the first above]."""
    i = next(i for i, b in enumerate(budgets) if b > budget)
    return [budgets[i - 1], budgets[i]]


def _summarize_method(method, seeds, at):
    at_b, auc = {}, {}
    for seed, points in sorted(seeds.items()):
        budgets, values = [p[1] for p in points], [p[2] for p in points]
        if at["metric"][method, seed] is not None:
            at_b[seed] = value_at_budget(budgets, values, at["metric"][method, seed])
        if at["auc"][method, seed] is not None:
            auc[seed] = auc_at_budget(budgets, values, at["auc"][method, seed])
    return {"seeds": sorted(seeds), "at_budget": _stats(at_b), "auc_at_budget": _stats(auc)}


def _summarize_reference(seeds, start, budget):
    """A model of the whole pool as the study's "100%" row: its value at every budget, so its AUC@B is the
    flat curve's from the initial budget to B (68.42 from 10 % to 50 % gives 27.37)."""
    return {
        "seeds": sorted(seeds),
        "at_budget": _stats(seeds),
        "auc_at_budget": _stats({seed: (budget - start) * value / 100 for seed, value in seeds.items()}),
    }


def _stats(by_seed):
    """Mean, std and values over the seeds of {seed: value}; None for no seed."""
    if not by_seed:
        return None
    seeds = sorted(by_seed)
    values = [by_seed[seed] for seed in seeds]
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "values": values, "seeds": seeds}


def mean_curve(seeds):
    """(budgets, mean value, std value) over the seeds, one point per cycle that every seed reached."""
    by_cycle = [{cycle: (budget, value) for cycle, budget, value in points} for points in seeds.values()]
    cycles = sorted(set.intersection(*(set(points) for points in by_cycle)))
    budgets = [float(np.mean([points[c][0] for points in by_cycle])) for c in cycles]
    stats = [mean_std([points[c][1] for points in by_cycle]) for c in cycles]
    return budgets, [mean for mean, _ in stats], [std for _, std in stats]


def labeled_to_reach(budgets, mious, target):
    """The smallest labeled % at which the curve reaches `target` (mIoU %), linear between cycles; None if never."""
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


def plot_curves(curves, path, axis, title, full_value=None, metric="miou"):
    """Draw the metric (%) against the labeled share, one line per method with a ±1 std band over seeds, as a PNG.

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
        (line,) = ax.plot(budgets, mean, marker="o", markersize=3, label=f"{method} ({plural(len(seeds), 'seed')})")
        ax.fill_between(budgets, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    if full_value is not None:
        # Not FULL as the label: matplotlib leaves names starting with "_" out of the legend.
        ax.axhline(full_value, color="black", linestyle="--", linewidth=1, label="full supervision")
    ax.set(xlabel=AXIS_LABELS[axis], ylabel=f"{CURVE_METRICS[metric].name} (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    with atomic_write(path) as handle:
        fig.savefig(handle, format="png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    return True
