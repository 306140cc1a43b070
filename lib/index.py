"""Index files: the JSON contract between train.py, select.py and evaluate.py.

An index file says which items of a pool are labeled, in what unit, and how they
came to be labeled. It is the only state an experiment carries between cycles, so
it is versioned, validated on load and written atomically.

Schema (version 1)::

    {
      "schema": "al-seg-index",
      "version": 1,
      "dataset": "synthetic",          # dataset layout name, checked against --dataset
      "split": "train",                # the split the pool is drawn from
      "unit": {"type": "image"}        # or {"type": "patch", "grid": [4, 4]}
                                       # or {"type": "region", "size": 43}
      "pool_size": 120,                # number of images in the pool
      "labeled": ["s0000_f00", ...],   # labeled item ids, in the order they were added
      "history": [                     # one entry per acquisition cycle
        {"cycle": 0, "method": "random", "seed": 0, "budget": "10%",
         "added": ["s0000_f00", ...]}   # plus the options that shaped the cycle, e.g.
                                        # "prefilter": "uniform@5", "region_ranking": "per-image"
      ]
    }

Item ids are stable strings derived from image ids (lib.units): the image id
itself for the `image` unit, `<image id>#r<row>c<col>` for a patch of the grid and
`<image id>#y<top>x<left>` for a square region, so an index stays valid when the
pool is listed in another order.
"""
from dataclasses import dataclass, field

from lib.errors import UserError
from lib.fileio import read_json, write_json
from lib.units import Unit

SCHEMA = "al-seg-index"
VERSION = 1


@dataclass
class LabeledIndex:
    dataset: str
    split: str
    unit: Unit
    pool_size: int
    labeled: list = field(default_factory=list)
    history: list = field(default_factory=list)

    @property
    def next_cycle(self):
        return len(self.history)

    def with_cycle(self, method, seed, budget, added, settings=None):
        """A new index with one more acquisition cycle; the receiver is left unchanged.

        `settings` are recorded in the history entry: the selection options that
        shaped this cycle beyond method, seed and budget (a pre-filter, a region ranking).
        """
        overlap = set(added) & set(self.labeled)
        if overlap:
            raise ValueError(f"items already labeled: {sorted(overlap)[:3]}")
        entry = {"cycle": self.next_cycle, "method": method, "seed": seed, "budget": budget, **(settings or {})}
        entry["added"] = list(added)
        return LabeledIndex(
            self.dataset, self.split, self.unit, self.pool_size, self.labeled + list(added), self.history + [entry]
        )

    def to_json(self):
        return {
            "schema": SCHEMA,
            "version": VERSION,
            "dataset": self.dataset,
            "split": self.split,
            "unit": self.unit.to_json(),
            "pool_size": self.pool_size,
            "labeled": self.labeled,
            "history": self.history,
        }


def save_index(path, index):
    write_json(path, index.to_json())


def load_index(path, pool_ids=None, dataset=None, unit=None):
    """Read and validate an index file.

    `pool_ids` (the image ids of the pool split), `dataset` and `unit` are checked
    when given; every problem is a one-line UserError naming the file and the
    offending value.
    """
    obj = read_json(path, "index file")
    if not isinstance(obj, dict) or obj.get("schema") != SCHEMA:
        raise UserError(f"{path}: not an index file (missing \"schema\": \"{SCHEMA}\")")
    if obj.get("version") != VERSION:
        raise UserError(f"{path}: unknown index version {obj.get('version')!r} (this toolkit reads version {VERSION})")
    for key, kind in (("dataset", str), ("split", str), ("pool_size", int), ("labeled", list), ("history", list)):
        if not isinstance(obj.get(key), kind):
            raise UserError(f"{path}: field {key!r} missing or not a {kind.__name__}")
    try:
        file_unit = Unit.from_json(obj.get("unit"))
    except UserError as err:
        raise UserError(f"{path}: {err}") from None

    if dataset is not None and obj["dataset"] != dataset:
        raise UserError(f"{path}: index is for dataset {obj['dataset']!r}, not {dataset!r}")
    if unit is not None and file_unit != unit:
        raise UserError(f"{path}: index unit is {file_unit.describe()}, expected {unit.describe()}")
    if pool_ids is not None and obj["pool_size"] != len(pool_ids):
        raise UserError(
            f"{path}: index was made for a pool of {obj['pool_size']} images, this one has {len(pool_ids)} "
            f"(another --pool?)"
        )
    _validate_ids(path, obj["labeled"], file_unit, None if pool_ids is None else set(pool_ids))
    return LabeledIndex(obj["dataset"], obj["split"], file_unit, obj["pool_size"], obj["labeled"], obj["history"])


def _validate_ids(path, labeled, unit, pool):
    seen = set()
    for item_id in labeled:
        if not isinstance(item_id, str):
            raise UserError(f"{path}: labeled id {item_id!r} is not a string")
        if item_id in seen:
            raise UserError(f"{path}: duplicate id {item_id!r}")
        seen.add(item_id)
        try:
            image_id = unit.image_of(item_id)
        except ValueError as err:
            raise UserError(f"{path}: id {item_id!r} does not fit unit {unit.describe()}: {err}") from None
        if pool is not None and image_id not in pool:
            raise UserError(f"{path}: id {item_id!r} is not in the pool")
