"""The papers' published numbers, as data: published/<setting>.json, one per setting.

Each file transcribes the part of one table that gives per-method numbers for one
experiment setting (scripts/<setting>.sh), so that `evaluate.py --setting` prints
ours beside them in the paper's layout:

    paper        authors and title
    table        the table's number ("Table 2") and its caption
    column       the table's column group when it holds several settings
    x_axis       what the budgets count: items (images, patches) or pixels (lib.report.CURVE_AXES)
    unit         what one item is (image, patch, region)
    budget       B of AUC@B in % of the pool, and of mIoU@B unless miou_budget says otherwise
    miou_budget  B of the published mIoU@B (the study reports mIoU at 3/5 of B)
    miou_scale   how the paper prints mIoU: "percent" (58.90) or "fraction" (0.509)
    notes        what the transcription had to decide
    rows         the table's rows in its order, each {name (as printed), method, and the numbers
                 the paper gives: miou, auc, miou_budget (a row measured at its own budget),
                 labeled_to_95 (the labeled % at which the method reaches 95 % of full supervision)}

`method` is our experiment folder for the row, or null for a method the toolkit lacks
(the row is printed with the paper's numbers alone): a name of lib.acquire.METHODS;
<name>-ssl, the same acquisition on models trained semi-supervised (train.py --ssl,
the paper's "Random-SSL"); uniform5-entropy, the study's Uniform(@5)+Entropy (entropy
after select.py --prefilter uniform@5); or a reference trained on the whole pool,
whose name starts with "_full" (lib.report.FULL; _full-mcd with the MC-dropout decoder).
"""
from pathlib import Path

from lib.errors import UserError
from lib.fileio import is_number, read_json
from lib.report import CURVE_AXES, FULL

PUBLISHED_DIR = Path(__file__).resolve().parent.parent / "published"
MIOU_SCALES = {"percent": 1.0, "fraction": 100.0}
_TEXT_KEYS = ("paper", "table", "caption", "unit", "notes")
_ROW_NUMBERS = ("miou", "auc", "miou_budget", "labeled_to_95")


def setting_names():
    return sorted(path.stem for path in PUBLISHED_DIR.glob("*.json"))


def load_setting(name):
    """The setting's published table with every mIoU in %, each row's budgets spelled out."""
    path = PUBLISHED_DIR / f"{name}.json"
    if not path.is_file():
        raise UserError(f"--setting {name}: no published table {path} (settings: {', '.join(setting_names())})")
    data = read_json(path, "published table")
    problem = _problem(data)
    if problem:
        raise UserError(f"{path}: {problem}")
    miou_budget = data.get("miou_budget", data["budget"])
    rows = [_spelled_out(row, data["budget"], miou_budget, MIOU_SCALES[data["miou_scale"]]) for row in data["rows"]]
    return {**data, "name": name, "miou_budget": miou_budget, "rows": rows}


def _problem(data):
    """What makes a published table unusable, or None."""
    if not isinstance(data, dict):
        return "expected a JSON object"
    missing = [key for key in (*_TEXT_KEYS, "x_axis", "budget", "miou_scale", "rows") if key not in data]
    if missing:
        return f"missing {', '.join(missing)}"
    if not all(isinstance(data[key], str) for key in _TEXT_KEYS):
        return f"{', '.join(_TEXT_KEYS)} must be text"
    if data["x_axis"] not in CURVE_AXES:
        return f"x_axis {data['x_axis']!r} is not one of {', '.join(CURVE_AXES)}"
    if data["miou_scale"] not in MIOU_SCALES:
        return f"miou_scale {data['miou_scale']!r} is not one of {', '.join(MIOU_SCALES)}"
    if not all(_is_budget(budget) for budget in (data["budget"], data.get("miou_budget", data["budget"]))):
        return "budget and miou_budget must be percentages in (0, 100]"
    if not isinstance(data["rows"], list) or not data["rows"]:
        return "rows must be a non-empty list"
    for row in data["rows"]:
        problem = _row_problem(row)
        if problem:
            return f"row {row.get('name') if isinstance(row, dict) else row!r}: {problem}"
    methods = [row["method"] for row in data["rows"] if row["method"] is not None]
    if len(set(methods)) != len(methods):
        return "two rows name the same method"
    return None


def _row_problem(row):
    if not isinstance(row, dict) or not isinstance(row.get("name"), str):
        return "needs a name"
    if "method" not in row or not (row["method"] is None or isinstance(row["method"], str)):
        return "needs a method: our folder name, or null"
    unknown = set(row) - {"name", "method", *_ROW_NUMBERS}
    if unknown:
        return f"unknown keys {', '.join(sorted(unknown))}"
    if not all(is_number(row[key]) for key in _ROW_NUMBERS if key in row):
        return f"{', '.join(_ROW_NUMBERS)} must be numbers"
    return None


def _is_budget(value):
    return is_number(value) and 0 < value <= 100


def _spelled_out(row, budget, miou_budget, scale):
    """A row with the budget of each number: None where the paper gives no number, or for a reference's mIoU,
    which is the 100 % model's whatever B."""
    reference = (row["method"] or "").startswith(FULL)
    has_miou = "miou" in row
    return {
        "row": row["name"],
        "method": row["method"],
        "miou": round(row["miou"] * scale, 4) if has_miou else None,
        "miou_budget": row.get("miou_budget", miou_budget) if has_miou and not reference else None,
        "auc": row.get("auc"),
        "auc_budget": budget if "auc" in row else None,
        "labeled_to_95": row.get("labeled_to_95"),
    }


def with_published(summary, setting):
    """The summary with the setting's table beside it: each of our methods and references gets its row's
    numbers under "published", and "setting" keeps every row in the paper's order."""
    by_method = {row["method"]: row for row in setting["rows"] if row["method"] is not None}

    def beside(entries):
        return {name: {**entry, "published": by_method[name]} if name in by_method else entry
                for name, entry in entries.items()}

    described = {key: setting[key] for key in ("name", *_TEXT_KEYS, "column", "x_axis", "budget", "miou_budget")
                 if key in setting}
    return {
        **summary,
        "methods": beside(summary["methods"]),
        "references": beside(summary.get("references", {})),
        "setting": {**described, "rows": setting["rows"]},
    }
