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
         "added": ["s0000_f00", ...]}   # plus the options that shaped the cycle, values or lists of
                                        # values, e.g. "prefilter": "uniform@5", "region_ranking": "per-image"
      ]
    }

Item ids are stable strings derived from image ids (lib.units): the image id
itself for the `image` unit, `<image id>#r<row>c<col>` for a patch of the grid and
`<image id>#y<top>x<left>` for a square region, so an index stays valid when the
pool is listed in another order. Numbers are ASCII decimals without leading zeros,
so that each item has one id, and labeled regions never overlap.
"""
from dataclasses import dataclass, field

from lib.errors import UserError
from lib.fileio import read_json, write_json
from lib.text import plural
from lib.units import Unit, overlapping_regions

SCHEMA = "al-seg-index"
VERSION = 1
# The fields every history entry has, and what they are; the others are the settings of the cycle
# (cycle_settings in select.py).
HISTORY_FIELDS = {"cycle": (int, "an integer"), "method": (str, "a string"), "seed": (int, "an integer"),
                  "budget": (str, "a string")}
SCALARS = (str, int, float, bool, type(None))


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
            f"{path}: index was made for a pool of {plural(obj['pool_size'], 'image')}, this one has {len(pool_ids)} "
            f"(another --pool?)"
        )
    _validate_ids(path, obj["labeled"], file_unit, None if pool_ids is None else set(pool_ids))
    if file_unit.type == "region":
        _validate_no_overlap(path, obj["labeled"], file_unit)
    _validate_history(path, obj["history"])
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


def _validate_no_overlap(path, labeled, unit):
    """Selection never labels a pixel twice; an index whose regions overlap was edited by hand."""
    pair = overlapping_regions(unit, labeled)
    if pair:
        raise UserError(f"{path}: labeled regions {pair[0]!r} and {pair[1]!r} overlap (a pixel is labeled once)")


def _validate_history(path, history):
    """Entries are copied into every later index, so each must be one select.py could have written: a value
    nested deeper than json.dump's recursion limit would otherwise fail only when the next index is saved."""
    for number, entry in enumerate(history):
        problem = _history_entry_problem(entry)
        if problem:
            raise UserError(f"{path}: history entry {number} {problem}")


def _history_entry_problem(entry):
    """What is wrong with one history entry, or None."""
    if not isinstance(entry, dict):
        return "is not an object"
    for key, (kind, noun) in HISTORY_FIELDS.items():
        if not isinstance(entry.get(key), kind) or isinstance(entry[key], bool):  # JSON's true is no integer
            return f"field {key!r} missing or not {noun}"
    added = entry.get("added")
    if not (isinstance(added, list) and all(isinstance(item_id, str) for item_id in added)):
        return "field 'added' missing or not a list of ids"
    for key, value in entry.items():
        if not (_flat(value) or (isinstance(value, dict) and all(_flat(v) for v in value.values()))):
            return f"field {key!r} is neither a value, a list of values nor an object of those"
    return None


def _flat(value):
    """A value, or a list of values: what a history field holds, or the fields of an object in it (select.py's
    "redundancy" and "auto" records)."""
    return isinstance(value, SCALARS) or (isinstance(value, list) and all(isinstance(v, SCALARS) for v in value))
