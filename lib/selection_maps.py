"""Selection maps: where each cycle's picks lie in the pool (evaluate.py --selection-maps OUT).

    OUT/<method>/seed<k>/cycle<c>/selection_map.png    every cycle c >= 1, beside the index.json it shows

The maps of a seed share one picture of the pool: the pooled "aspp" features of every item under the seed's
initial model (OUT/_initial/seed<k>/model.pt, the one every method starts from), projected to 2-D by our UMAP
seeded with the seed. A point is thus the same item on every map of the seed, whatever the method or cycle, and
the maps of two methods compare at a glance (entropy's picks crowding where coreset's spread out). On each map: the
unlabeled items small and grey, the items labeled before the cycle blue, the cycle's picks (the "added" of its
history entry) large and orange (lib.draw.selection_map_png).

The pool is the experiment's: the dataset, split and unit its index files name, its data folder and --pool file as
OUT/experiment.json records them (DATA_ROOT, POOL); --dataset and --data-root override them. Image and patch units
only: regions overlap, and a pool of them is too many points for a readable map. A map replaces only a picture
evaluate.py drew there and nobody changed since (lib.report_files).
"""
import numpy as np

from lib.acquire.context import ItemReader
from lib.acquire.inputs import ASPP_MAP
from lib.data import open_dataset
from lib.data.resolution import NATIVE, placed_resolution
from lib.data.pool_file import restrict_to_pool
from lib.draw import selection_map_png
from lib.distributed import resolve_device
from lib.errors import UserError
from lib.experiment import Layout
from lib.fileio import read_json
from lib.index import load_index
from lib.model_files import ModelFile
from lib.outputs import check_outputs
from lib.recorded_settings import RECORD
from lib.report_files import left_as_it_was, may_replace, record_picture, write_picture
from lib.text import plural
from lib.umap import UMAP

MAP_NAME = "selection_map.png"


def write_selection_maps(args):
    """Draw every selection map of the experiment `args.selection_maps`, printing each path."""
    layout = Layout(args.selection_maps)
    if not layout.root.is_dir():
        raise UserError(f"--selection-maps {layout.root}: experiment directory does not exist")
    cycles = mapped_cycles(layout)
    if not cycles:
        raise UserError(f"{layout.root}: no <method>/seed<k>/cycle<c>/index.json of a cycle after the initial one")
    models = {seed: initial_model(layout, seed) for seed in cycles}  # every seed checked before any work
    first = load_index(cycles[min(cycles)][0][2])
    if first.unit.type == "region":
        raise UserError(f"{layout.root}: selection maps show image and patch units; this experiment labels regions")
    data_root, pool_file = recorded_pool(args, layout)
    check_outputs({"--data-root": data_root, "--cache-dir": args.cache_dir},
                  folders={"--selection-maps": layout.root, "--cache-dir": args.cache_dir})
    # The images as the experiment read them (--resize / --scale, recorded in the index history)
    resolution = placed_resolution(first, cycles[min(cycles)][0][2]) or NATIVE
    dataset = open_dataset(args.dataset or first.dataset, data_root, first.split, args.cache_dir, resolution)
    if pool_file:
        restrict_to_pool(dataset, pool_file)
    indexes = {(method, seed, cycle): load_index(path, dataset.ids, first.dataset, first.unit)
               for seed, found in cycles.items() for method, cycle, path in found}
    device = resolve_device(args.device)
    reader = ItemReader(dataset, first.unit, device, amp=args.amp and device.type == "cuda",
                        batch_size=args.batch_size, workers=args.workers, slide_window=args.slide_window)
    for seed, found in cycles.items():
        ids, places = pool_places(args, reader, models[seed], seed)
        print(f"seed {seed}: the pool's {plural(len(ids), 'item')} ({first.unit.describe()}) placed on one map by "
              f"the features of {models[seed]}")
        for method, cycle, path in found:
            state = item_states(ids, indexes[method, seed, cycle], cycle, path)
            title = f"{method}, seed {seed}, cycle {cycle}: {(state == 2).sum()} new, {(state > 0).sum()} labeled"
            print(draw_map(path.parent / MAP_NAME, layout.root, places, state, title))


def mapped_cycles(layout):
    """{seed: [(method, cycle, index.json), ...]} of every cycle after the initial one, by seed, method, cycle."""
    found = {}
    for method, seeds in layout.cycle_files("index.json").items():
        for seed, files in seeds.items():
            found.setdefault(seed, []).extend((method, cycle, path) for cycle, path in files if cycle >= 1)
    return {seed: found[seed] for seed in sorted(found) if found[seed]}


def initial_model(layout, seed):
    """The model the maps of `seed` place the pool with: the seed's initial model, else (no method of the experiment
    trains with default flags) the first by name of those trained with a method's flags (Layout.initial)."""
    folder = layout.initial(seed)
    candidates = [folder / "model.pt", *sorted(folder.glob("*/model.pt"))]
    model = next((path for path in candidates if path.is_file()), None)
    if model is None:
        raise UserError(f"{folder / 'model.pt'}: not found; the selection maps of seed {seed} place the pool by the "
                        f"features of the seed's initial model")
    return model


def recorded_pool(args, layout):
    """(the pool's data folder, its --pool file or None): --data-root, else those OUT/experiment.json records."""
    record_file = layout.root / RECORD
    recorded = read_json(record_file, "experiment record") if record_file.is_file() else {}
    recorded = recorded if isinstance(recorded, dict) else {}
    data_root = args.data_root or recorded.get("DATA_ROOT")
    if not data_root:
        raise UserError(f"--selection-maps {layout.root}: give --data-root, the pool's data folder ({record_file} "
                        f"does not record it)")
    return data_root, recorded.get("POOL") or None


def pool_places(args, reader, model_path, seed):
    """(item ids, places [N, 2] float32) of every item of the pool on the map of `seed`."""
    loaded = ModelFile(model_path).load(args, reader.dataset, reader.device)
    if ASPP_MAP not in getattr(loaded.model, "feature_maps", ()):
        raise UserError(f"{model_path}: a {loaded.kind} has no {ASPP_MAP!r} feature map to place the pool by")
    ids, features = reader.embed_images(loaded.model, loaded.preprocess, ASPP_MAP, reader.dataset.ids)  # [N, d]
    if len(ids) < 2:
        raise UserError(f"{reader.dataset.name}: a pool of {plural(len(ids), 'item')} has no map to draw")
    return ids, UMAP(seed=seed, device=reader.device).fit(features).numpy()  # [N, 2]


def item_states(ids, index, cycle, path):
    """[N] per item of `ids`: 0 unlabeled, 1 labeled before `cycle`, 2 added by it (lib.draw.MAP_POINTS' rows)."""
    entry = next((entry for entry in index.history if entry["cycle"] == cycle), None)
    if entry is None:
        raise UserError(f"{path}: no history entry of cycle {cycle}, whose picks the map shows")
    added = set(entry["added"])
    labeled = set(index.labeled) - added
    return np.array([2 if item_id in added else 1 if item_id in labeled else 0 for item_id in ids])


def draw_map(path, root, places, state, title):
    """Write one map at `path` unless a picture that is not ours is there; the line to print."""
    if not may_replace(path, root):
        return left_as_it_was(path)
    write_picture(path, selection_map_png(places, state, title))
    record_picture(path, root)
    return f"wrote {path}"

