r"""Evaluate a checkpoint, a folder of predictions, a whole experiment, or a curve.

    # mIoU and per-class IoU of one model on a split -> metrics JSON
    python evaluate.py --checkpoint runs/x/random/seed0/cycle0/model.pt \
        --data-root data/synthetic --split val --out metrics.json
    # any model's predictions: one PNG of class ids per image id
    python evaluate.py --predictions preds/ --dataset folder --data-root data/mine --split val
    # a whole experiment: curves, mIoU@B and AUC@B per method over seeds
    python evaluate.py --experiment runs/x --budget 50
    # the same in a paper's table layout, its published numbers beside ours (published/<setting>.json)
    python evaluate.py --experiment runs/cityscapes_10_10 --setting cityscapes_10_10
    # one curve given as {"budgets": [...], "miou": [...]} in percent
    python evaluate.py --curve curve.json --budget 50
"""
import json
from pathlib import Path

import numpy as np
import torch

from lib.cli import add_runtime_flags, add_slide_window_flag, budget_percent, script_parser
from lib.data import DATASETS, open_dataset
from lib.data.base import read_label
from lib.engine import evaluate_confusion, iterate_batches, resolve_device
from lib.errors import UserError, run_cli
from lib.fileio import read_json, write_json, write_text
from lib.metrics import auc_at_budget, check_curve, confusion_matrix, miou_at_budget
from lib.model_files import ModelFile, add_model_file_args
from lib.outputs import check_outputs
from lib.progress import Progress
from lib.published import load_setting, setting_names, with_published
from lib.report import (
    CURVE_AXES, FULL, collect_curves, collect_references, curves_csv, default_budget, evaluation_record,
    format_reach, format_table, plot_curves, summarize, summary_csv, table_rows,
)
from lib.sliding import DEFAULT_SLIDE_WINDOW


def get_args_parser():
    parser = script_parser(__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--checkpoint",
                      help="evaluate this model on --split: a checkpoint of train.py, a state dict or a TorchScript file")
    mode.add_argument("--predictions", help="evaluate the prediction PNGs in this folder (<id>.png, class ids)")
    mode.add_argument("--experiment", help="summarise an experiment directory (<method>/seed<k>/cycle<c>)")
    mode.add_argument("--curve", help='AUC@B and mIoU@B of a JSON curve {"budgets": [...], "miou": [...]} in %%')
    parser.add_argument("--dataset", choices=sorted(DATASETS), help="dataset layout (default: the checkpoint's)")
    parser.add_argument("--data-root", help="dataset root folder")
    parser.add_argument("--split", default="val", help="split to evaluate on")
    parser.add_argument("--out", help="metrics JSON to write (checkpoint and predictions modes)")
    parser.add_argument("--budget", type=budget_percent, default=None,
                        help="B in %% of the pool for mIoU@B and AUC@B (default: the --setting's, else the largest "
                             "budget all curves reach)")
    parser.add_argument("--setting", metavar="NAME",
                        help="--experiment: print the table of this paper setting with its published numbers beside "
                             f"ours ({', '.join(setting_names())})")
    parser.add_argument("--x-axis", default=None, choices=sorted(CURVE_AXES),
                        help="--experiment: budgets in %% of the pool's items (images, patches) or of its pixels "
                             "(default: the --setting's, else items)")
    add_runtime_flags(parser, "run the model", batch_size=4)
    add_slide_window_flag(parser, DEFAULT_SLIDE_WINDOW)
    add_model_file_args(parser)
    return parser


def evaluate_checkpoint(args):
    model_file = ModelFile(args.checkpoint)
    dataset_name = args.dataset or model_file.dataset_name
    if dataset_name is None:
        raise UserError(f"{args.checkpoint}: a {model_file.kind} does not name its dataset: give --dataset")
    dataset = open_dataset(dataset_name, args.data_root, args.split, args.cache_dir)
    ids = [image_id for image_id in dataset.ids if dataset.has_mask(image_id)]
    if not ids:
        raise UserError(f"{args.data_root}: split {args.split!r} has no masks to evaluate against")
    device = resolve_device(args.device)
    loaded = model_file.load(args, dataset, device)
    batches = iterate_batches(dataset, ids, loaded.preprocess["mean"], loaded.preprocess["std"], args.batch_size,
                              args.workers, with_masks=True)
    progress = Progress(f"evaluate {args.split}", len(ids))
    confusion = evaluate_confusion(loaded.model, batches, dataset.num_classes, device,
                                   args.amp and device.type == "cuda", progress, args.slide_window)
    record = {
        **split_record(confusion, dataset.class_names, args.data_root, args.split),
        "split": args.split,
        "images": len(ids),
        "checkpoint": str(Path(args.checkpoint).resolve()),
    }
    if loaded.trained_on is None:  # a model trained elsewhere: no labeled set to report
        return record
    trained_on = loaded.trained_on
    return {
        **record,
        "cycle": trained_on["cycle"],
        "labeled": trained_on["labeled"],
        "pool_size": trained_on["pool_size"],
        "labeled_fraction": trained_on["labeled_fraction"],
        # Checkpoints written before patch and region units lack it.
        "labeled_pixel_fraction": trained_on.get("labeled_pixel_fraction"),
        "unit": trained_on.get("unit", {"type": "image"}),
    }


def evaluate_predictions(args):
    if not args.dataset:
        raise UserError("--predictions needs --dataset (the layout its masks are read from)")
    dataset = open_dataset(args.dataset, args.data_root, args.split)
    folder = Path(args.predictions)
    ids = [image_id for image_id in dataset.ids if dataset.has_mask(image_id)]
    missing = [image_id for image_id in ids if not (folder / f"{image_id}.png").exists()]
    if missing:
        raise UserError(f"{folder}: no prediction for {len(missing)} of {len(ids)} images, e.g. {missing[0]}.png")
    confusion = torch.zeros(dataset.num_classes, dataset.num_classes, dtype=torch.long)
    for image_id in ids:
        path = folder / f"{image_id}.png"
        prediction, mask = read_label(path), dataset.load_mask(image_id)
        if prediction.shape != mask.shape:
            raise UserError(f"{path}: prediction is {prediction.shape[1]}x{prediction.shape[0]}, "
                            f"its mask {mask.shape[1]}x{mask.shape[0]}")
        if prediction.max() >= dataset.num_classes:
            raise UserError(f"{path}: class id {int(prediction.max())} but the dataset has {dataset.num_classes} classes")
        confusion += confusion_matrix(torch.from_numpy(prediction.astype(np.int64)),
                                      torch.from_numpy(mask.astype(np.int64)), dataset.num_classes)
    return {**split_record(confusion, dataset.class_names, args.data_root, args.split), "split": args.split,
            "images": len(ids), "predictions": str(folder.resolve())}


def split_record(confusion, class_names, data_root, split):
    """The evaluation record of a split. Masks that are ignore (255) everywhere leave the confusion matrix
    empty, and mIoU 0 / 0: the data's fault, to be said as such, not a bug's traceback."""
    if confusion.sum() == 0:
        raise UserError(f"{data_root}: every mask pixel of split {split!r} is ignore (255): nothing to evaluate")
    return evaluation_record(confusion, class_names)


def summarize_experiment(args):
    setting = load_setting(args.setting) if args.setting else None
    axis = args.x_axis or (setting["x_axis"] if setting else "items")
    root = Path(args.experiment)
    curves = collect_curves(root, axis)
    try:
        summary = summarize(curves, *experiment_budgets(args.budget, setting, curves), collect_references(root))
    except UserError as err:
        if setting is None or args.budget is not None:
            raise
        raise UserError(f"{err}; --setting {args.setting} compares at the paper's budget, --budget chooses "
                        "another") from None
    if setting:
        summary = with_published(summary, setting)
    rows = table_rows(summary)
    print(format_table(summary, rows))
    reach = format_reach(summary, rows, axis)
    if reach:
        print(reach)
    write_json(root / "summary.json", {**summary, "x_axis": axis,
                                       "curves": {m: {str(s): p for s, p in c.items()} for m, c in curves.items()}})
    write_text(root / "summary.csv", summary_csv(summary, rows))
    write_text(root / "curves.csv", curves_csv(curves))
    print(f"wrote {root / 'summary.json'}, {root / 'summary.csv'}, {root / 'curves.csv'}")
    full = summary.get("references", {}).get(FULL)
    if plot_curves(curves, root / "curves.png", axis, args.setting or root.name,
                   full["miou_at_budget"]["mean"] if full else None):
        print(f"wrote {root / 'curves.png'}")
    else:
        print("curves.png not drawn: matplotlib is not installed (pip install matplotlib)")


def experiment_budgets(budget, setting, curves):
    """(B of AUC@B, B of mIoU@B): --budget for both, else the setting's, else the largest all curves reach."""
    if budget is not None:
        return budget, budget
    if setting:
        return setting["budget"], setting["miou_budget"]
    budget = default_budget(curves)
    return budget, budget


def evaluate_curve(args):
    curve = read_json(args.curve, "curve file")
    if not (isinstance(curve, dict) and isinstance(curve.get("budgets"), list) and isinstance(curve.get("miou"), list)):
        raise UserError(f'{args.curve}: expected {{"budgets": [...], "miou": [...]}}')
    try:
        budgets, mious = check_curve(curve["budgets"], curve["miou"])  # before its last budget is read
        budget = args.budget if args.budget is not None else budgets[-1]
        auc = auc_at_budget(budgets, mious, budget)
        miou = miou_at_budget(budgets, mious, budget)
    except ValueError as err:
        raise UserError(f"{args.curve}: {err}") from None
    print(f"mIoU@{budget:g} = {miou:.2f}  AUC@{budget:g} = {auc:.2f}")


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if args.setting and not args.experiment:
        raise UserError("--setting goes with --experiment: it prints an experiment's table beside the paper's")
    if args.experiment:
        return summarize_experiment(args)
    if args.curve:
        return evaluate_curve(args)
    if not args.data_root:
        raise UserError("--data-root is required to evaluate a checkpoint or predictions")
    inputs = {"--checkpoint": args.checkpoint, "--predictions": args.predictions, "--data-root": args.data_root,
              "--cache-dir": args.cache_dir}
    check_outputs(inputs, files={"--out": args.out}, folders={"--cache-dir": args.cache_dir})
    record = evaluate_checkpoint(args) if args.checkpoint else evaluate_predictions(args)
    print(f"mIoU {100 * record['miou']:.2f} on {record['images']} {args.split} images")
    if args.out:
        write_json(args.out, record)
    else:
        print(json.dumps({k: v for k, v in record.items() if k != "confusion"}, indent=1))


if __name__ == "__main__":
    run_cli(main)
