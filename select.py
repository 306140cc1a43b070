r"""Pick the next items to annotate and write the next index file.

    # cycle 0: an initial random selection needs no model
    python select.py --dataset synthetic --data-root data/synthetic --method random \
        --budget 10% --seed 0 --out runs/x/cycle0/index.json
    # later cycles: score the unlabeled pool with the last model
    python select.py --dataset synthetic --data-root data/synthetic --method entropy \
        --index runs/x/cycle0/index.json --checkpoint runs/x/cycle0/model.pt \
        --budget 10% --seed 0 --out runs/x/cycle1/index.json

    # coreset / kmeanspp / top-k on your own features or scores, no model needed
    python select.py --dataset folder --data-root data/mine --method coreset \
        --index runs/x/cycle0/index.json --features my_features.npz --budget 300 --out next.json

    # patches and regions: the first cycle fixes the unit, later cycles read it from --index
    python select.py ... --method random --unit patch --grid 4x4 --budget 32 --out cycle0/index.json
    python select.py ... --method entropy --unit region --region-size 30 --region-ranking per-image \
        --regions-per-image 4 --budget 2.5%px --out cycle1/index.json

The new index holds the old labeled items plus the selection, and a history entry
for this cycle. The same inputs and --seed give a byte-identical file, also under
`torchrun --nproc-per-node N select.py ...`: the processes score and embed shares of
the pool, every one gets all the scores and features, and rank 0 writes the files.
"""
if __name__ == "select":
    # Imported in place of the standard library's `select`: hand over to it (lib/shadowing.py).
    from lib.shadowing import load_stdlib_module

    load_stdlib_module("select")
else:
    import functools
    from fractions import Fraction

    from lib.acquire import METHODS, cycle_seed
    from lib.acquire.auto import AutoRule
    from lib.acquire.budget import budget_text, parse_budget
    from lib.acquire.context import ItemReader, SelectionContext
    from lib.acquire.inputs import DEFAULT_POOLING, Pool, check_flags, inputs_read, load_inputs
    from lib.acquire.prefilter import PREFILTERS, prefilter_spec
    from lib.acquire.rank import NO_RULES, SelectionRules
    from lib.acquire.reduce import REDUCTIONS
    from lib.acquire.scores import FEATURE_POOLINGS
    from lib.cli import (
        add_resolution_flags, add_runtime_flags, add_slide_window_flag, float_in, positive_int, script_parser, seed,
        size_pair,
    )
    from lib.data import DATASETS, open_dataset
    from lib.data.pool_file import restrict_to_pool
    from lib.data.resolution import (
        NATIVE, Resolution, check_placed_resolution, placed_resolution, trained_resolution,
    )
    from lib.distributed import joined
    from lib.errors import UserError, run_cli
    from lib.fileio import is_number, write_json
    from lib.index import LabeledIndex, load_index, save_index
    from lib.model_files import CHECKPOINT, ModelFile, add_model_file_args
    from lib.outputs import check_outputs
    from lib.pretrained import pretrained_location
    from lib.sliding import DEFAULT_SLIDE_WINDOW
    from lib.text import plural
    from lib.threads import use_threads
    from lib.units import UNIT_TYPES, Unit, candidate_items, image_pixels, item_pixels, require_fit
    from lib.worklist import check_export_folder, write_worklist

DEFAULT_GRID = (4, 4)  # MEAL's 16 patches per image
DEFAULT_REGION_SIZE = 43  # S4AL+'s regions on Cityscapes at 688x688
# auto's thresholds. Redundancy scores under tiny models: 132-image synthetic pools of sequences of 1 frame 0.41,
# of 6 frames 0.51, of 22 frames 0.59 (5 epochs on 12 images); 120-image pools of single frames 0.33-0.45 and of
# 12-frame sequences 0.44-0.59 over 4 cycles and 3 seeds (20 epochs on 12-60 images); CamVid's 15 Hz val sequence
# 0.70, 101 of its 1 Hz train frames 0.51.
AUTO_REDUNDANT = 0.45
AUTO_LOW_BUDGET = 10.0  # % labeled: the study's 2-2 runs (its low budget) end at 10 %


def get_args_parser():
    methods = "; ".join(f"{name}: {method.summary}" for name, method in METHODS.items())
    parser = script_parser(__doc__)
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS), help="dataset layout")
    parser.add_argument("--data-root", required=True, help="dataset root folder")
    parser.add_argument("--split", default="train", help="split the pool is drawn from")
    parser.add_argument("--pool", default=None,
                        help="JSON list of image ids: the pool is these images of --split (default: all of them)")
    parser.add_argument("--index", default=None, help="current index file; omit to start a new experiment")
    parser.add_argument("--checkpoint", default=None,
                        help="model that scores the pool (methods that need one): a checkpoint of train.py, "
                             "a state dict, a torch.export or a TorchScript file")
    parser.add_argument("--method", required=True, choices=list(METHODS), help=methods)
    parser.add_argument("--budget", type=budget_text, default=None,
                        help="items to add: a count (300), a share of the pool's items (10%%) or of its pixels "
                             "(2.5%%px); with --region-ranking per-image it defaults to regions-per-image x images")
    parser.add_argument("--prefilter", type=prefilter_spec, default=None,
                        help=f"keep only some candidates before the method runs: {', '.join(PREFILTERS)}@N "
                             "(uniform@5: every 5th frame of each sequence)")
    parser.add_argument("--mc-samples", type=positive_int, default=20, help="bald: stochastic decoder passes")
    parser.add_argument("--features", default=None,
                        help="coreset/kmeanspp/auto/--report-redundancy: .npz with ids and features [N, d] of every "
                             "pool item, instead of the model's")
    # Taken, unused, by the methods that read no features (as --auto-redundant): SELECT_ARGS go to every method.
    parser.add_argument("--feature-pooling", default=DEFAULT_POOLING, choices=list(FEATURE_POOLINGS),
                        help="coreset/kmeanspp/auto/--report-redundancy without --features: how the model's ASPP map "
                             "becomes one vector per item: its mean over the item's box, or grid2x2, the means of the "
                             "box's 2x2 grid of cells concatenated (4x wider: the study's code)")
    parser.add_argument("--report-redundancy", action="store_true",
                        help="also print how redundant the labeled + candidate items are, from 0 (no near-copies) "
                             "to 1 (exact copies of every item), measured on the model's pooled ASPP features or "
                             "--features (lib/redundancy.py), and record it in the index's history")
    parser.add_argument("--scores", default=None,
                        help="topk: .npz with ids and scores, or a --scores-out JSON, one score per candidate")
    parser.add_argument("--seed", type=seed, default=0, help="seed of random choices")
    parser.add_argument("--out", required=True, help="next index file to write")
    parser.add_argument("--scores-out", default=None, help="also write the score of every candidate to this JSON file")
    parser.add_argument("--export", default=None, metavar="DIR",
                        help="also write a worklist for annotators here: worklist.csv, previews/, masks/ "
                             "(patch and region units)")
    add_runtime_flags(parser, "score", batch_size=4)
    add_slide_window_flag(parser, DEFAULT_SLIDE_WINDOW)
    add_resolution_flags(parser, "the --index's for patch and region units, else the resolution the --checkpoint "
                                 "was trained at, else the files'")
    units = parser.add_argument_group("unit of annotation (set by the first cycle; later cycles read it from --index)")
    units.add_argument("--unit", default=None, choices=UNIT_TYPES,
                       help="what one selected item is (default: the index's unit; image for a new experiment)")
    units.add_argument("--grid", type=size_pair, default=None,
                       help=f"--unit patch: cells per image as RxC (default: {DEFAULT_GRID[0]}x{DEFAULT_GRID[1]})")
    units.add_argument("--region-size", type=positive_int, default=None,
                       help=f"--unit region: side of the square regions in pixels (default: {DEFAULT_REGION_SIZE})")
    units.add_argument("--region-stride", type=positive_int, default=None,
                       help="--unit region: pixels between window starts (default: the region side)")
    units.add_argument("--region-ranking", default="global", choices=("global", "per-image"),
                       help="--unit region: best regions of the whole pool, or of every image "
                            "(the published S4AL code)")
    units.add_argument("--regions-per-image", type=positive_int, default=4,
                       help="--region-ranking per-image: at most this many regions of one image per cycle")
    units.add_argument("--reduce", default="mean", choices=sorted(REDUCTIONS),
                       help="how the pixel scores of an item become its score (entropy, equal, bald, meal)")
    add_model_file_args(parser)
    auto = parser.add_argument_group("auto (the study's Table 6, lib/acquire/auto.py)")
    # Taken, unused, by the other methods (as --mc-samples and --informative are): an experiment's SELECT_ARGS
    # go to every method of it.
    auto.add_argument("--auto-redundant", type=float_in(0, 1), default=AUTO_REDUNDANT,
                      help="a pool whose redundancy (--report-redundancy's score, the mean of the cycles so far) is "
                           "at least this is redundant: coreset")
    auto.add_argument("--auto-low-budget", type=float_in(0, 100, open_low=True), default=AUTO_LOW_BUDGET,
                      help="a diverse pool with at most this %% of its items labeled after the cycle gets random, "
                           "above it entropy (the study's low-budget runs end at 10 %%)")
    meal = parser.add_argument_group("MEAL (meal, meal-ft)")
    meal.add_argument("--informative", type=positive_int, default=200,
                      help="the most uncertain candidates that K-Means++ chooses the budget from")
    meal.add_argument("--umap-cache", default=None,
                      help="meal: file keeping the UMAP map of the pool, fitted by the first cycle and reused "
                           "by the later ones (one per experiment and seed); without it the map is refitted every "
                           "cycle")
    meal.add_argument("--pretrained", default=None,
                      help="meal: the ImageNet backbone weights the map is fitted with (a torchvision state-dict "
                           "file, or 'imagenet' for the torch hub cache); needed until --umap-cache holds a map")
    return parser


def requested_unit(args):
    """The unit the flags ask for, or None when they leave it to the index."""
    for flag, value, unit in (("--grid", args.grid, "patch"), ("--region-size", args.region_size, "region")):
        if value is not None and args.unit != unit:
            raise UserError(f"{flag} describes --unit {unit}, but --unit is {args.unit or 'not given'}")
    if args.unit == "patch":
        return Unit("patch", args.grid or DEFAULT_GRID)
    if args.unit == "region":
        return Unit("region", size=args.region_size or DEFAULT_REGION_SIZE)
    return None if args.unit is None else Unit("image")


def current_index(args, dataset):
    unit = requested_unit(args)
    if args.index is None:
        return LabeledIndex(args.dataset, args.split, unit or Unit("image"), len(dataset.ids))
    index = load_index(args.index, dataset.ids, dataset=args.dataset, unit=unit)
    if index.split != args.split:
        raise UserError(f"{args.index}: index is for split {index.split!r}, not --split {args.split!r}")
    return index


def pool_resolution(args, index):
    """The resolution the pool is read at (lib.data.resolution): --resize or --scale, else the one `index`'s patches
    or regions were placed at, else the one the --checkpoint was trained at, else the files'. One that differs from
    either is refused: items would fall elsewhere, a model would see its images at another scale."""
    given = Resolution.from_flags(args.resize, args.scale) if args.resize or args.scale else None
    placed = placed_resolution(index, args.index) if args.index else None
    trained = None
    if args.checkpoint:
        model_file = ModelFile(args.checkpoint)
        trained = trained_resolution(model_file.content, args.checkpoint) if model_file.kind == CHECKPOINT else None
    resolution = given or placed or trained or NATIVE
    if args.index:
        check_placed_resolution(index, args.index, resolution)
    if trained is not None and trained != resolution:
        raise UserError(f"{args.checkpoint}: was trained on the images at {trained.describe()}, not at "
                        f"{resolution.describe()}: give {trained.as_flags()}")
    return resolution


def check_unit(args, method, unit):
    if unit.type not in method.units:
        raise UserError(f"--method {args.method} picks {' or '.join(method.units)} units, not {unit.describe()}")
    if args.region_ranking != "global" and unit.type != "region":
        raise UserError(f"--region-ranking {args.region_ranking} ranks regions, but the unit is {unit.describe()}")
    if args.region_stride is not None and unit.type != "region":
        raise UserError(f"--region-stride places regions, but the unit is {unit.describe()}")


def check_unit_fits_pool(args, dataset, unit):
    """Every pool image holds every item of a patch or region unit: an empty cell would score NaN,
    and an image smaller than a region could never be labeled. Sizes are header reads, cached."""
    if unit.type == "image":
        return
    flag = f"--grid {unit.grid[0]}x{unit.grid[1]}" if unit.type == "patch" else f"--region-size {unit.size}"
    culprit = flag if args.unit else f"{args.index}: unit {unit.describe()}"  # the unit read from --index
    require_fit(unit, dataset.ids, dataset.image_size, dataset.image_path, culprit)


def pool_candidates(args, dataset, index):
    """(candidate item ids, selection rules): the unlabeled items of the images that pass --prefilter."""
    check_unit_fits_pool(args, dataset, index.unit)
    images = args.prefilter.apply(dataset, dataset.ids) if args.prefilter else dataset.ids
    try:
        candidates, boxes = candidate_items(index.unit, images, index.labeled, dataset.image_size, args.region_stride)
    except ValueError as err:  # a labeled region that does not fit its image
        raise UserError(f"{args.index}: {err}") from None
    if boxes is None:
        return candidates, NO_RULES
    per_image = args.regions_per_image if args.region_ranking == "per-image" else None
    return candidates, SelectionRules(boxes, per_image)


def budget_items(args, dataset, index, candidates):
    """The number of items --budget asks for."""
    if args.budget is None:
        if args.region_ranking != "per-image":
            raise UserError("--budget is required (it may be left out only with --region-ranking per-image)")
        return args.regions_per_image * len({index.unit.image_of(item_id) for item_id in candidates})
    pool_pixels = mean_item_pixels = None
    if args.budget.endswith("%px"):
        if not candidates:
            raise UserError(f"--budget {args.budget}: no unlabeled items are left")
        pool_pixels = image_pixels(dataset.ids, dataset.image_size)
        mean_item_pixels = Fraction(item_pixels(index.unit, candidates, dataset.image_size), len(candidates))
    per_image = index.unit.items_per_image
    return parse_budget(args.budget, per_image and index.pool_size * per_image, pool_pixels, mean_item_pixels)


def pool_items(dataset, index, candidates):
    """Every id a --features or --scores file may name."""
    if index.unit.type == "region":  # windows depend on the stride: the labeled ones and today's candidates
        return index.labeled + candidates
    return candidate_items(index.unit, dataset.ids, [], dataset.image_size)[0]


def recorded_redundancy(index):
    """The redundancy scores the index's earlier cycles measured, oldest first."""
    return tuple(entry["redundancy"]["score"] for entry in index.history
                 if isinstance(entry.get("redundancy"), dict) and is_number(entry["redundancy"].get("score")))


def cycle_settings(args, method, unit, resolution, redundancy=None):
    """The options beyond method, seed and budget that shaped this cycle, the pool's `resolution` and its measured
    `redundancy` (lib.redundancy.Redundancy), for the index history."""
    settings = {}
    if args.prefilter:
        settings["prefilter"] = str(args.prefilter)
    if "model" in method.inputs and args.reduce != "mean":  # the methods that score pixels
        settings["reduce"] = args.reduce
    if "features" in inputs_read(method, args) and not args.features and args.feature_pooling != DEFAULT_POOLING:
        settings["feature_pooling"] = args.feature_pooling
    if unit.type == "region":
        settings["region_ranking"] = args.region_ranking
        if args.region_ranking == "per-image":
            settings["regions_per_image"] = args.regions_per_image
        if args.region_stride:
            settings["region_stride"] = args.region_stride
    if "model" in inputs_read(method, args) and tuple(args.slide_window) != DEFAULT_SLIDE_WINDOW:  # large images
        settings["slide_window"] = list(args.slide_window)
    if not resolution.native:  # where patches and regions lie, and what a model scored (lib.data.resolution)
        settings["resolution"] = resolution.to_json()
    if redundancy is not None:
        settings["redundancy"] = redundancy.to_json()
    return settings


def check_paths(args):
    """Before any work: no output may overwrite or bury an input, or another output (lib.outputs)."""
    inputs = {"--data-root": args.data_root, "--index": args.index, "--checkpoint": args.checkpoint,
              "--pool": args.pool, "--features": args.features, "--scores": args.scores,
              "--umap-cache": args.umap_cache, "--cache-dir": args.cache_dir,
              "--pretrained": args.pretrained and pretrained_location(args.pretrained)}
    files = {"--out": args.out, "--scores-out": args.scores_out, "--umap-cache": args.umap_cache}
    check_outputs(inputs, files, folders={"--export": args.export, "--cache-dir": args.cache_dir})
    if args.export:
        check_export_folder(args.export)


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    use_threads(args.threads)
    check_paths(args)
    method = METHODS[args.method]
    check_flags(method, args)
    with joined(args.device) as (world, device):
        select(args, method, world, device)


def select(args, method, world, device):
    """Everything after the checks of flags and paths; under torchrun on every process (lib.distributed)."""
    dataset = open_dataset(args.dataset, args.data_root, args.split, args.cache_dir)
    if args.pool:
        restrict_to_pool(dataset, args.pool)
    index = current_index(args, dataset)
    dataset.resolution = pool_resolution(args, index)  # before any image or size is read
    if args.export and not dataset.resolution.native:  # its boxes and masks would be in the resized pixels
        raise UserError(f"--export: annotators label the files, and this pool is read at "
                        f"{dataset.resolution.describe()}; a worklist is written at the files' resolution only")
    check_unit(args, method, index.unit)
    candidates, rules = pool_candidates(args, dataset, index)
    k = budget_items(args, dataset, index, candidates)
    if method.picks_among_informative and k > args.informative:
        raise UserError(f"--budget {args.budget}: {k} items asked but --method {args.method} chooses among the "
                        f"--informative {args.informative} most uncertain")
    capacity = rules.capacity(candidates)
    if k > capacity:
        left = (plural(capacity, "unlabeled item passes", "unlabeled items pass") + " --prefilter" if args.prefilter
                else plural(capacity, "is", "are") + " unlabeled")
        if rules.per_image is not None:
            left = plural(capacity, "fits", "fit") + f" --regions-per-image {rules.per_image}"
        raise UserError(f"--budget {args.budget}: {plural(k, 'item')} asked but only {left}")

    reader = ItemReader(dataset, index.unit, device, args.region_stride, amp=args.amp and device.type == "cuda",
                        batch_size=args.batch_size, workers=args.workers, slide_window=args.slide_window, world=world)
    pool = Pool(reader, index.labeled, candidates, functools.partial(pool_items, dataset, index, candidates))
    pool_size = index.unit.items_per_image and index.pool_size * index.unit.items_per_image  # None for regions
    context = SelectionContext(reader, candidates, index.labeled, pool_size, rules, reduce=args.reduce,
                               mc_samples=args.mc_samples, informative=args.informative,
                               auto_rule=AutoRule(args.auto_redundant, args.auto_low_budget),
                               earlier_redundancy=recorded_redundancy(index), **load_inputs(method, args, pool))

    if context.redundancy is not None:
        print(context.redundancy.describe())
    selection = method.select(context, k, cycle_seed(args.seed, index.next_cycle))
    if len(selection.ids) < k:
        raise UserError(f"--budget {args.budget}: {plural(k, 'region')} asked but only "
                        f"{plural(len(selection.ids), 'fits', 'fit')} "
                        f"without overlapping each other or the labeled ones")
    settings = cycle_settings(args, method, index.unit, dataset.resolution, context.redundancy)
    new_index = index.with_cycle(args.method, args.seed, args.budget or str(k), selection.ids,
                                 {**settings, **selection.record})
    if selection.report:
        print(selection.report)
    if not world.is_writer:
        return
    if args.scores_out:
        write_json(args.scores_out, {"method": args.method, "cycle": new_index.next_cycle - 1,
                                     "scores": selection.scores})
    if args.export:  # before the index: a failed export leaves no new index, so a re-run redoes the cycle
        write_worklist(args.export, dataset, index.unit, selection.ids, selection.scores, args.method,
                       new_index.next_cycle - 1)
    save_index(args.out, new_index)
    print(f"{args.method}: selected {len(selection.ids)} of "
          f"{plural(len(candidates), f'unlabeled {index.unit.describe()} item')} "
          f"-> {len(new_index.labeled)} labeled, wrote {args.out}")


if __name__ == "__main__":
    run_cli(main)
