"""`--cache-dir`: every image and mask kept decoded, as .npy files read by memory mapping.

Decoding a 2048x1024 PNG costs tens of milliseconds of CPU, and a training step reads
only a crop of it; from an uncompressed array mapped into memory only the crop's rows
are read, and a colour-coded mask (A2D2) is decoded once instead of every epoch.
bench/bench_loader.py measures the difference. The price is disk: an RGB image takes
3 bytes a pixel (6 MiB for a Cityscapes frame).

    DIR/<dataset>/<split>/images/<id>.<size>-<mtime_ns>[<resolution>].npy
    DIR/<dataset>/<split>/masks/<id>.<size>-<mtime_ns>-c<classes>[-m<label map hash>][<resolution>].npy

The source file's size and modification time are part of the entry's name, so an
edited source (a corrected mask) is decoded again, and its stale entry replaced. A
mask's name also holds the number of classes it was checked against when decoded,
and a hash of the layout's mapping of mask values to classes (a folder's mask_values):
after classes.json changes, every mask is decoded and checked again. Arrays read at
--resize or --scale are kept resized, their names ending in the resolution
(-r256x512, -s1_2 for 1/2; lib.data.resolution): an entry of one resolution is never
served at another, and the entries of each resolution are kept side by side. An entry that
cannot be read back as the array it should hold (a torn copy, a full disk) is decoded
again too. The cache fills itself on first use; entries are written atomically, so
loader workers and concurrent runs may fill it at once.

DIR must be new, empty, or a cache of ours (its marker, lib.owned): stale entries
are deleted, and this toolkit deletes nothing it did not make.
"""
import contextlib
import glob
import re
from pathlib import Path

import numpy as np

from lib.errors import UserError
from lib.fileio import atomic_write
from lib.owned import check_folder, claim_folder

KIND = "a decoded cache of --cache-dir"
DIMENSIONS = {"images": 3, "masks": 2}  # [H, W, 3] RGB and [H, W] class ids, uint8 both


def check_cache_folder(folder, dataset_names):
    """Fail before any work unless `folder` can be the cache: new, empty, or ours (writable: lib.outputs)."""
    check_folder(folder, KIND, "--cache-dir", _legacy(dataset_names))


# An entry, or atomic_write's temporary file of one: <dataset>/<split>/{images,masks}/<id>.<size>-<mtime>[-c<n>].npy
_ENTRY = re.compile(r"[^/]+/[^/]+/(images|masks)/([^/]+\.\d+-\d+(-c\d+)?\.npy|\.[^/]+\.tmp)")


def _legacy(dataset_names):
    """A cache written before caches were marked: <dataset> folders of entries, and nothing else."""
    def made_by_an_older_version(path):
        return all(entry.is_dir() and entry.name in dataset_names for entry in path.iterdir()) and all(
            _ENTRY.fullmatch(file.relative_to(path).as_posix()) for file in path.rglob("*") if not file.is_dir())
    return made_by_an_older_version


class DecodedCache:
    def __init__(self, folder, dataset_names):
        """`dataset_names`: the layouts, whose folders alone make an unmarked folder a cache of an older version."""
        self.folder = claim_folder(folder, KIND, "--cache-dir", _legacy(dataset_names))

    def load(self, dataset, kind, item_id, source, decode, tag="", resolution=""):
        """decode(source) -> array, from the cache when it holds the current version of `source`.

        `tag` names what else the decoded array was checked against or made with (masks: the class count and
        label map, SegmentationDataset._mask_tag); `resolution` the resolution it is at (Resolution.tag).
        """
        stat = Path(source).stat()
        folder = self.folder / dataset.name / dataset.split / kind
        entry = folder / f"{item_id}.{stat.st_size}-{stat.st_mtime_ns}{tag}{resolution}.npy"
        cached = _read_entry(entry, DIMENSIONS[kind]) if entry.is_file() else None
        if cached is not None:
            return cached
        array = decode(source)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # a full disk, no inodes left
            raise UserError(f"--cache-dir {self.folder}: cannot create {folder} ({err.strerror or err})") from None
        # Only the versions of this id at this resolution, not the entries of an id "<item_id>.x".
        version = re.compile(re.escape(item_id) + r"\.\d+-\d+(-c\d+(-m[0-9a-f]+)?)?" + re.escape(resolution) + r"\.npy")
        for stale in folder.glob(glob.escape(item_id) + ".*.npy"):
            if version.fullmatch(stale.name):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
        with atomic_write(entry) as handle:
            np.save(handle, array)
        return array


def _read_entry(entry, dimensions):
    """The memory-mapped array of an entry, or None when it is damaged: not an .npy, torn, or of another shape."""
    try:
        array = np.load(entry, mmap_mode="r")
    except (ValueError, OSError, EOFError):  # a bad header, a file shorter than its header says
        return None
    if array.dtype != np.uint8 or array.ndim != dimensions or (dimensions == 3 and array.shape[2] != 3):
        return None
    return array
