r"""Evaluate a checkpoint, a folder of predictions, a whole experiment or a curve; map an experiment's selections.

    # mIoU and per-class IoU of one model on a split -> metrics JSON
    python evaluate.py --checkpoint runs/x/random/seed0/cycle0/model.pt \
        --data-root data/synthetic --split val --out metrics.json
    # any model's predictions: one PNG of class ids per image id
    python evaluate.py --predictions preds/ --dataset folder --data-root data/mine --split val
    # a whole experiment: curves, mIoU@B and AUC@B per method over seeds (mean Dice: --metric dice)
    python evaluate.py --experiment runs/x --budget 50
    # the same in a paper's table layout, its published numbers beside ours (published/<setting>.json)
    python evaluate.py --experiment runs/cityscapes_10_10 --setting cityscapes_10_10
    # one curve given as {"budgets": [...], "miou": [...]} in percent
    python evaluate.py --curve curve.json --budget 50
    # where each cycle's picks lie in the pool: <method>/seed<k>/cycle<c>/selection_map.png
    python evaluate.py --selection-maps runs/x

A checkpoint is also evaluated under `torchrun --nproc-per-node N evaluate.py ...`:
each process predicts a share of the images, their confusion matrices are summed,
and the metrics are those of one process; rank 0 prints and writes them.
"""
import json
from pathlib import Path

import numpy as np
import torch

from lib.cli import add_resolution_flags, add_runtime_flags, add_slide_window_flag, budget_percent, script_parser
from lib.data import DATASETS, open_dataset
from lib.data.base import read_label
from lib.data.resolution import NATIVE, Resolution, trained_resolution
from lib.distributed import joined, launched_world, shard_batches, sum_across
from lib.engine import evaluate_confusion, iterate_batches
from lib.errors import UserError, run_cli
from lib.fileio import read_json, write_json, write_text
from lib.label_stats import check_class_pixels
from lib.metrics import auc_at_budget, budget_position, check_curve, confusion_matrix, value_at_budget
from lib.model_files import CHECKPOINT, ModelFile, add_model_file_args
from lib.outputs import check_outputs
from lib.progress import Progress
from lib.published import load_setting, setting_names, with_published
from lib.report import (
    CURVE_AXES, CURVE_METRICS, FULL, budget_label, classes_never_scored, collect_curves, collect_references,
    default_budget, evaluation_record, summarize, table_rows,
)
from lib.report_files import curves_stem, draw_curves, summary_stem
from lib.report_tables import curves_csv, format_notes, format_per_class, format_reach, format_table, summary_csv
from lib.selection_maps import write_selection_maps
from lib.sliding import DEFAULT_SLIDE_WINDOW
from lib.text import plural
from lib.threads import use_threads


def get_args_parser():
    parser = script_parser(__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--checkpoint",
                      help="evaluate this model on --split: a checkpoint of train.py, a state dict, a torch.export "
                           "or a TorchScript file")
    mode.add_argument("--predictions", help="evaluate the prediction PNGs in this folder (<id>.png, class ids)")
    mode.add_argument("--experiment", help="summarise an experiment directory (<method>/seed<k>/cycle<c>)")
    mode.add_argument("--curve", help='AUC@B and mIoU@B of a JSON curve {"budgets": [...], "miou": [...]} in %%')
    mode.add_argument("--selection-maps", metavar="EXPERIMENT",
                      help="draw a map of the pool for every method, seed and cycle of this experiment directory, "
                           "each cycle's picks marked (<method>/seed<k>/cycle<c>/selection_map.png)")
    parser.add_argument("--dataset", choices=sorted(DATASETS),
                        help="dataset layout (default: the checkpoint's; --selection-maps: the experiment's)")
    parser.add_argument("--data-root", help="dataset root folder (--selection-maps: default the one the "
                                            "experiment's experiment.json records)")
    parser.add_argument("--split", default="val", help="split to evaluate on")
    parser.add_argument("--out", help="metrics JSON to write (checkpoint and predictions modes)")
    parser.add_argument("--budget", type=budget_percent, default=None,
                        help="B in %% of the pool for mIoU@B and AUC@B, linear between the two cycles around it "
                             "(default: the --setting's, else the largest budget all finished runs reach)")
    parser.add_argument("--setting", metavar="NAME",
                        help="--experiment: print the table of this paper setting with its published numbers beside "
                             f"ours ({', '.join(setting_names())})")
    parser.add_argument("--x-axis", default=None, choices=sorted(CURVE_AXES),
                        help="--experiment: budgets in %% of the pool's items (images, patches) or of its pixels "
                             "(default: the --setting's, else items)")
    parser.add_argument("--metric", default="miou", choices=sorted(CURVE_METRICS),
                        help="--experiment: the curves, the metric at B and AUC@B in mean IoU or mean Dice (F1) "
                             "(default: %(default)s)")
    add_runtime_flags(parser, "run the model", batch_size=4)
    add_slide_window_flag(parser, DEFAULT_SLIDE_WINDOW)
    add_resolution_flags(parser, "the resolution the --checkpoint was trained at, else the files'; masks are "
                                 "resized too, so the metrics are at this resolution")
    add_model_file_args(parser)
    return parser


def given_resolution(args):
    """--resize or --scale; None when neither is given."""
    return Resolution.from_flags(args.resize, args.scale) if args.resize or args.scale else None


def evaluation_resolution(args, model_file, world):
    """--resize or --scale, else the resolution the checkpoint was trained at, else the files'. Another than the
    training one is taken, and said: protocols may evaluate at another (the study's A2D2, scripts/lib/study.sh)."""
    trained = trained_resolution(model_file.content, args.checkpoint) if model_file.kind == CHECKPOINT else None
    resolution = given_resolution(args) or trained or NATIVE
    if trained is not None and trained != resolution and world.is_writer:
        print(f"note: evaluating at {resolution.describe()} a model trained at {trained.describe()}")
    return resolution


def evaluate_checkpoint(args, world, device):
    model_file = ModelFile(args.checkpoint)
    dataset_name = args.dataset or model_file.dataset_name
    if dataset_name is None:
        raise UserError(f"{args.checkpoint}: a {model_file.kind} does not name its dataset: give --dataset")
    dataset = open_dataset(dataset_name, args.data_root, args.split, args.cache_dir,
                           evaluation_resolution(args, model_file, world))
    ids = [image_id for image_id in dataset.ids if dataset.has_mask(image_id)]
    if not ids:
        raise UserError(f"{args.data_root}: split {args.split!r} has no masks to evaluate against")
    loaded = model_file.load(args, dataset, device)  # a model of other classes: said before the masks are read
    check_class_pixels(dataset, ids, args.workers, args.data_root, f"split {args.split!r}", "evaluate")
    shard = shard_batches(ids, args.batch_size, world)  # this process's images: all of them without torchrun
    batches = iterate_batches(dataset, shard, loaded.preprocess["mean"], loaded.preprocess["std"], args.batch_size,
                              args.workers, with_masks=True, pin_memory=device.type == "cuda")
    progress = Progress(f"evaluate {args.split}", len(shard))
    confusion = sum_across(evaluate_confusion(loaded.model, batches, dataset.num_classes, device,
                                              args.amp and device.type == "cuda", progress, args.slide_window), world)
    record = {
        **evaluation_record(confusion, dataset.class_names),
        "split": args.split,
        "images": len(ids),
        "checkpoint": str(Path(args.checkpoint).resolve()),
        "resolution": dataset.resolution.to_json(),  # None: the files'
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
    dataset = open_dataset(args.dataset, args.data_root, args.split, resolution=given_resolution(args) or NATIVE)
    folder = Path(args.predictions)
    ids = [image_id for image_id in dataset.ids if dataset.has_mask(image_id)]
    missing = [image_id for image_id in ids if not (folder / f"{image_id}.png").exists()]
    if missing:
        raise UserError(f"{folder}: no prediction for {len(missing)} of {plural(len(ids), 'image')}, "
                        f"e.g. {missing[0]}.png")
    check_class_pixels(dataset, ids, args.workers, args.data_root, f"split {args.split!r}", "evaluate")
    confusion = torch.zeros(dataset.num_classes, dataset.num_classes, dtype=torch.long)
    for image_id in ids:
        path = folder / f"{image_id}.png"
        prediction, mask = read_label(path), dataset.load_mask(image_id)
        if prediction.shape != mask.shape:
            raise UserError(f"{path}: prediction is {prediction.shape[1]}x{prediction.shape[0]}, "
                            f"its mask {mask.shape[1]}x{mask.shape[0]}")
        if prediction.max() >= dataset.num_classes:
            raise UserError(f"{path}: class id {int(prediction.max())} but the dataset has "
                            f"{dataset.num_classes} classes")
        confusion += confusion_matrix(torch.from_numpy(prediction.astype(np.int64)),
                                      torch.from_numpy(mask.astype(np.int64)), dataset.num_classes)
    return {**evaluation_record(confusion, dataset.class_names), "split": args.split,
            "images": len(ids), "predictions": str(folder.resolve()), "resolution": dataset.resolution.to_json()}


def summarize_experiment(args):
    setting = load_setting(args.setting) if args.setting else None
    if setting and args.metric != "miou":
        raise UserError(f"--metric {args.metric}: the paper tables of --setting give mIoU; leave --setting out for "
                        f"a table of {CURVE_METRICS[args.metric].label}")
    axis = args.x_axis or (setting["x_axis"] if setting else "items")
    root = Path(args.experiment)
    curves = collect_curves(root, axis, args.metric)
    try:
        summary = summarize(curves, *experiment_budgets(args.budget, setting, curves),
                            collect_references(root, args.metric), args.metric)
    except UserError as err:
        if setting is None or args.budget is not None:
            raise
        raise UserError(f"{err}; --setting {args.setting} compares at the paper's budget, --budget chooses "
                        "another") from None
    summary["classes_not_scored"] = classes_never_scored(root)
    if setting:
        summary = with_published(summary, setting)
    rows = table_rows(summary)
    for text in (format_table(summary, rows), format_notes(summary), format_reach(summary, rows, axis)):
        if text:
            print(text)
    stem = summary_stem(args.metric, axis, summary["metric_budget"], summary["budget"])
    curves_name = curves_stem(args.metric, axis)
    write_json(root / f"{stem}.json", {**summary, "x_axis": axis,
                                       "curves": {m: {str(s): p for s, p in c.items()} for m, c in curves.items()}})
    write_text(root / f"{stem}.csv", summary_csv(summary, rows))
    write_text(root / f"{curves_name}.csv", curves_csv(curves, args.metric))
    print(f"wrote {root / stem}.json, {root / stem}.csv, {root / curves_name}.csv")
    full = summary.get("references", {}).get(FULL)
    print(draw_curves(curves, root / f"{curves_name}.png", axis, args.setting or root.name,
                      full["at_budget"]["mean"] if full else None, args.metric))


def experiment_budgets(budget, setting, curves):
    """(B of AUC@B, B of mIoU@B): --budget for both, else the setting's, else the largest all finished runs
    reach (lib.report.default_budget)."""
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
        miou = value_at_budget(budgets, mious, budget)
        i, t = budget_position(budgets, budget)
    except ValueError as err:
        raise UserError(f"{args.curve}: {err}") from None
    at = budget_label(budget)
    print(f"mIoU@{at} = {miou:.2f}  AUC@{at} = {auc:.2f}")
    if t:
        print(f"B = {at} % lies between points ({budget_label(budgets[i])} % and {budget_label(budgets[i + 1])} %): "
              f"@{at} values are interpolated linearly")


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    use_threads(args.threads)
    if launched_world().distributed and not args.checkpoint:
        raise UserError("only --checkpoint is evaluated under torchrun (the other modes run in one process): "
                        "run evaluate.py without it")
    if args.setting and not args.experiment:
        raise UserError("--setting goes with --experiment: it prints an experiment's table beside the paper's")
    if args.experiment:
        return summarize_experiment(args)
    if args.curve:
        return evaluate_curve(args)
    if args.selection_maps:
        return write_selection_maps(args)
    if not args.data_root:
        raise UserError("--data-root is required to evaluate a checkpoint or predictions")
    inputs = {"--checkpoint": args.checkpoint, "--predictions": args.predictions, "--data-root": args.data_root,
              "--cache-dir": args.cache_dir}
    check_outputs(inputs, files={"--out": args.out}, folders={"--cache-dir": args.cache_dir})
    if not args.checkpoint:
        return report(args, evaluate_predictions(args))
    with joined(args.device) as (world, device):
        record = evaluate_checkpoint(args, world, device)
        if world.is_writer:
            report(args, record)


def report(args, record):
    """Print the metrics `record` of a checkpoint or predictions, and write it to --out."""
    print(f"mIoU {100 * record['miou']:.2f}, mean Dice {100 * record['mean_dice']:.2f} on "
          f"{plural(record['images'], f'{args.split} image')}")
    print(format_per_class(record))
    if args.out:
        write_json(args.out, record)
    else:  # the per-class numbers are in the table above
        shown = {key: value for key, value in record.items()
                 if key not in ("confusion", "per_class_iou", "per_class_dice")}
        print(json.dumps(shown, indent=1))


if __name__ == "__main__":
    run_cli(main)
