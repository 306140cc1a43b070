"""Evaluation records and experiment summaries: the files evaluate.py writes.

An experiment directory has one folder per method, seed and cycle:

    OUT/<method>/seed<k>/cycle<c>/{index.json, model.pt, metrics.json}

Folders whose name starts with '_' or '.' hold shared or temporary state and are
not curves. Each metrics.json gives one point of a curve: (labeled %, mIoU %), the
labeled share counted in items of the unit or in pixels (CURVE_AXES).
"""
import csv
import io
import re
from pathlib import Path

from lib.errors import UserError
from lib.fileio import read_json
from lib.metrics import auc_at_budget, iou_per_class, mean_iou, mean_std, miou_at_budget, pixel_accuracy

_SEED_DIR = re.compile(r"^seed(\d+)$")
_CYCLE_DIR = re.compile(r"^cycle(\d+)$")
# Budgets from rounded cycle sizes (10 % of 2975 images = 298) miss the nominal
# budget by a little; a curve point within this many percentage points is B.
BUDGET_MATCH_PP = 0.5
# Curve x axes: the metrics.json key holding the labeled share of the pool.
CURVE_AXES = {"items": "labeled_fraction", "pixels": "labeled_pixel_fraction"}


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
    root = Path(experiment_dir)
    if not root.is_dir():
        raise UserError(f"{root}: experiment directory does not exist")
    curves = {}
    for method_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name[0] not in "_."):
        for seed_dir in sorted(method_dir.iterdir()):
            seed = _SEED_DIR.match(seed_dir.name)
            if not seed:
                continue
            points = []
            for cycle_dir in seed_dir.iterdir():
                cycle = _CYCLE_DIR.match(cycle_dir.name)
                metrics_file = cycle_dir / "metrics.json"
                if cycle and metrics_file.exists():
                    metrics = read_json(metrics_file, "metrics file")
                    if metrics.get(key) is None or "miou" not in metrics:
                        raise UserError(f"{metrics_file}: not a checkpoint evaluation with {key} and miou")
                    points.append((int(cycle[1]), 100 * metrics[key], 100 * metrics["miou"]))
            if points:
                curves.setdefault(method_dir.name, {})[int(seed[1])] = sorted(points)
    if not curves:
        raise UserError(f"{root}: no <method>/seed<k>/cycle<c>/metrics.json found")
    return curves


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


def summarize(curves, budget):
    """Per method: mIoU@B and AUC@B over seeds (mean, std, values) and the mean curve."""
    summary = {}
    for method, seeds in sorted(curves.items()):
        at_b, auc = [], []
        for seed, points in sorted(seeds.items()):
            budgets, mious = [p[1] for p in points], [p[2] for p in points]
            matched = match_budget(budgets, budget, f"{method}/seed{seed}")
            at_b.append(miou_at_budget(budgets, mious, matched))
            auc.append(auc_at_budget(budgets, mious, matched))
        summary[method] = {
            "seeds": sorted(seeds),
            "miou_at_budget": _stats(at_b),
            "auc_at_budget": _stats(auc),
        }
    return {"budget": budget, "methods": summary}


def _stats(values):
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "values": values}


def format_table(summary):
    budget = f"{summary['budget']:g}"
    header = f"{'method':<16} {'seeds':>5}  {'mIoU@' + budget:>15}  {'AUC@' + budget:>15}"
    lines = [header, "-" * len(header)]
    for method, row in summary["methods"].items():
        miou, auc = row["miou_at_budget"], row["auc_at_budget"]
        lines.append(
            f"{method:<16} {len(row['seeds']):>5}  {miou['mean']:>7.2f} ± {miou['std']:<5.2f}  "
            f"{auc['mean']:>7.2f} ± {auc['std']:<5.2f}"
        )
    return "\n".join(lines)


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


def summary_csv(summary):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["method", "seeds", "budget", "miou_mean", "miou_std", "auc_mean", "auc_std"])
    for method, row in summary["methods"].items():
        miou, auc = row["miou_at_budget"], row["auc_at_budget"]
        writer.writerow([method, len(row["seeds"]), f"{summary['budget']:g}", f"{miou['mean']:.4f}",
                         f"{miou['std']:.4f}", f"{auc['mean']:.4f}", f"{auc['std']:.4f}"])
    return out.getvalue()
