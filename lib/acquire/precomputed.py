"""Features and scores computed outside the toolkit, for select.py --features / --scores.

Users with their own embedding or scoring pipeline run the batch methods and top-k
on their numbers with the same index-file output:

    features.npz   ids [N] (strings), features [N, d] (floats): one row per pool item
    scores.npz     ids [N] (strings), scores [N] (floats)
    scores.json    {"scores": {"<id>": score, ...}} as select.py --scores-out writes it,
                   or the plain {"<id>": score, ...}

Every problem is a one-line error naming the file and, where there is one, the id.
"""
import zipfile
from collections import Counter

import numpy as np
import torch

from lib.errors import UserError
from lib.fileio import is_number, read_json


def _read_npz(path, keys):
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in keys if key not in archive.files]
            if missing:
                raise UserError(f"{path}: no array {missing[0]!r} (expected {', '.join(keys)})")
            return [archive[key] for key in keys]
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        # allow_pickle=False refuses object arrays with a ValueError: ids must be strings.
        raise UserError(f"{path}: not a readable .npz of numeric and string arrays ({err})") from None


def _check_rows(path, ids, values, what, pool_ids, float32=False):
    """The ids as a list, once the rows are checked; with `float32`, values must stay finite in float32."""
    if ids.ndim != 1 or ids.dtype.kind != "U":
        raise UserError(f"{path}: 'ids' must be a 1-D array of strings, got {ids.dtype} of shape {ids.shape}")
    if values.dtype.kind not in "fiu" or len(values) != len(ids):
        raise UserError(f"{path}: {what} must be numbers with one row per id ({len(ids)}), "
                        f"got {values.dtype} of shape {values.shape}")
    ids = ids.tolist()
    repeated = [item_id for item_id, count in Counter(ids).items() if count > 1]
    if repeated:
        raise UserError(f"{path}: duplicate id {repeated[0]!r}")
    with np.errstate(over="ignore"):  # an overflow becomes inf, refused below with the id
        checked = values.astype(np.float32) if float32 else values  # 1e300 is finite in float64, inf in float32
    finite = np.isfinite(checked.reshape(len(ids), -1)).all(axis=1)
    if not finite.all():
        raise UserError(f"{path}: {what} of id {ids[int(np.argmin(finite))]!r} is NaN or infinite"
                        + (" in float32" if float32 else ""))
    pool = set(pool_ids)
    stranger = next((item_id for item_id in ids if item_id not in pool), None)
    if stranger is not None:
        raise UserError(f"{path}: id {stranger!r} is not in the pool")
    return ids


def _rows_for(path, ids, wanted):
    """Positions in `ids` of every wanted id, in the wanted order; a missing one is an error."""
    row = {item_id: i for i, item_id in enumerate(ids)}
    missing = [item_id for item_id in wanted if item_id not in row]
    if missing:
        raise UserError(f"{path}: no row for pool item {missing[0]!r} ({len(missing)} missing)")
    return [row[item_id] for item_id in wanted]


def load_features(path, pool_ids, wanted):
    """Features [len(wanted), d] float32 of the `wanted` ids, from an .npz covering the pool."""
    ids, features = _read_npz(path, ("ids", "features"))
    if features.ndim != 2:
        raise UserError(f"{path}: 'features' must be a [N, d] matrix, got shape {features.shape}")
    ids = _check_rows(path, ids, features, "features", pool_ids, float32=True)  # what the methods compute in
    return torch.from_numpy(features[_rows_for(path, ids, wanted)].astype(np.float32))


def load_scores(path, pool_ids, wanted):
    """{id: score} for the `wanted` ids, from an .npz or a JSON file."""
    if str(path).endswith(".json"):
        table = read_json(path, "scores file")
        table = table.get("scores", table) if isinstance(table, dict) else table
        if not isinstance(table, dict):
            raise UserError(f"{path}: expected {{\"scores\": {{id: score}}}} or {{id: score}}")
        bad = next((k for k, v in table.items() if not is_number(v)), None)
        if bad is not None:
            raise UserError(f"{path}: score of id {bad!r} is not a number")
        ids, scores = np.array(list(table), dtype=str), np.array(list(table.values()), dtype=np.float64)
    else:
        ids, scores = _read_npz(path, ("ids", "scores"))
        if scores.ndim != 1:
            raise UserError(f"{path}: 'scores' must be a 1-D array, got shape {scores.shape}")
    ids = _check_rows(path, ids, scores, "score", pool_ids)
    rows = _rows_for(path, ids, wanted)
    return {item_id: float(scores[i]) for item_id, i in zip(wanted, rows)}
