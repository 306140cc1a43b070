"""How often each class occurs in the masks a run learns from or is scored on.

One pass over the masks, in DataLoader workers (a mask is decoded there and only its
[C] counts come back): train.py checks the labeled area of its labeled images before
training, evaluate.py the masks of its split before scoring. A class that never occurs
is a warning, a split of nothing but ignore an error: both are how masks stored with
other values than class ids look (a binary 0/255 export reads its foreground as ignore),
so the messages list the values the files hold, read in a second pass only then.
"""
import sys

import numpy as np
from torch.utils.data import DataLoader, Dataset

from lib.data.base import IGNORE_INDEX, read_label
from lib.errors import UserError
from lib.text import plural

SHOWN_VALUES = 12  # mask values a message lists at most


class _MaskCounts(Dataset):
    """Item i: [C + 1] int64 pixel counts of image ids[i]'s mask, the last entry its ignored pixels; with `values`,
    [256] pixels of each value its file stores, before any mapping to classes. Only the area of its items in
    `labeled` (image id -> items of `unit`) when `unit` is not None and not images."""

    def __init__(self, dataset, ids, unit=None, labeled=None, values=False):
        self.dataset, self.ids, self.unit, self.labeled = dataset, list(ids), unit, labeled
        self.values = values

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        image_id = self.ids[i]
        if self.values:
            mask = read_label(self.dataset.mask_path(image_id))  # [H, W] uint8 as stored
        else:
            mask = self.dataset.load_mask(image_id)  # [H, W] uint8 class ids, IGNORE_INDEX for void
        if self.unit is not None and self.unit.type != "image":
            mask = mask[self.unit.labeled_area(self.labeled[image_id], *mask.shape)]
        counts = np.bincount(mask.reshape(-1), minlength=IGNORE_INDEX + 1).astype(np.int64)  # [256]
        if self.values:
            return counts
        return np.append(counts[:self.dataset.num_classes], counts[IGNORE_INDEX])


def _summed(counts, length, workers):
    """The sum of the [length] items of `counts` (a _MaskCounts), each made in a DataLoader worker."""
    total = np.zeros(length, dtype=np.int64)
    for item in DataLoader(counts, batch_size=None, num_workers=workers):
        total += np.asarray(item)
    return total


def class_pixel_counts(dataset, ids, workers=0, unit=None, labeled=None):
    """([C] int64 pixels of each class, ignored pixels) over the masks of `ids`, each restricted to its labeled
    items when `unit` (a lib.units.Unit) and `labeled` ({image id: item ids}) are given.

    Every image of `ids` must have a mask file.
    """
    total = _summed(_MaskCounts(dataset, ids, unit, labeled), dataset.num_classes + 1, workers)
    return total[:-1], int(total[-1])


def stored_values(dataset, ids, workers=0, unit=None, labeled=None):
    """The values the mask files of `ids` store (where class_pixel_counts reads them), before the layout maps them
    to classes: sorted ints; None for a layout whose masks are no single channel of values (A2D2's colours)."""
    if dataset.decode_mask is not None:
        return None
    total = _summed(_MaskCounts(dataset, ids, unit, labeled, values=True), IGNORE_INDEX + 1, workers)
    return np.flatnonzero(total).tolist()


def check_class_pixels(dataset, ids, workers, culprit, scope, task, unit=None, labeled=None):
    """[C] int64 pixels of each class in the masks of `ids` (class_pixel_counts), checked: one `warning:` line for
    each class that never occurs, a UserError when every pixel is ignore.

    Messages name `culprit` (the file or folder at fault), `scope` (the masks: "split 'val'") and `task` (what
    the masks are for: "evaluate").
    """
    counts, _ = class_pixel_counts(dataset, ids, workers, unit, labeled)
    absent = np.flatnonzero(counts == 0)
    if absent.size == 0:
        return counts
    values = stored_values(dataset, ids, workers, unit, labeled)
    read = plural(len(ids), "mask") + " read"
    if values is not None:
        shown = ", ".join(map(str, values[:SHOWN_VALUES]))
        read += f"; values stored: {shown}" + (f", ... ({len(values)} values)" if len(values) > SHOWN_VALUES else "")
    hint = _mapping_hint(dataset, values)
    if counts.sum() == 0:
        raise UserError(f"{culprit}: every mask pixel of {scope} is ignore ({IGNORE_INDEX}): nothing to {task} "
                        f"({read}){hint}")
    for class_id in absent:
        print(f"warning: {culprit}: class {class_id} {dataset.class_names[class_id]!r} never occurs in {scope} "
              f"({read}){hint}", file=sys.stderr)
    return counts


def _mapping_hint(dataset, values):
    """The end of a message when the masks store IGNORE_INDEX, read as ignore, and a classes.json could map it."""
    label_map = dataset.label_map
    if (dataset.class_file is None or values is None or IGNORE_INDEX not in values
            or (label_map is not None and label_map[IGNORE_INDEX] != IGNORE_INDEX)):
        return ""
    return (f"; {IGNORE_INDEX} is read as ignore: to make it a class, map mask values to classes in "
            f"{dataset.class_file} (README: the folder layout)")
