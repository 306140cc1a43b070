"""`--cache-dir`: every image and mask kept decoded, as .npy files read by memory mapping.

Decoding a 2048x1024 PNG costs tens of milliseconds of CPU, and a training step reads
only a crop of it; from an uncompressed array mapped into memory only the crop's rows
are read, and a colour-coded mask (A2D2) is decoded once instead of every epoch.
bench/bench_loader.py measures the difference. The price is disk: an RGB image takes
3 bytes a pixel (6 MiB for a Cityscapes frame).

    DIR/<dataset>/<split>/{images,masks}/<id>.<size>-<mtime_ns>.npy

The source file's size and modification time are part of the entry's name, so an
edited source (a corrected mask) is decoded again, and its stale entry replaced. The
cache fills itself on first use; entries are written atomically, so loader workers
and concurrent runs may fill it at once.
"""
import contextlib
import glob
import re
from pathlib import Path

import numpy as np

from lib.errors import UserError
from lib.fileio import atomic_write


class DecodedCache:
    def __init__(self, folder):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise UserError(f"--cache-dir {folder}: no such folder")

    def load(self, dataset, kind, item_id, source, decode):
        """decode(source) -> array, from the cache when it holds the current version of `source`."""
        stat = Path(source).stat()
        folder = self.folder / dataset.name / dataset.split / kind
        entry = folder / f"{item_id}.{stat.st_size}-{stat.st_mtime_ns}.npy"
        if entry.is_file():
            return np.load(entry, mmap_mode="r")
        array = decode(source)
        folder.mkdir(parents=True, exist_ok=True)
        version = re.compile(re.escape(item_id) + r"\.\d+-\d+\.npy")  # not the entries of an id "<item_id>.x"
        for stale in folder.glob(glob.escape(item_id) + ".*.npy"):
            if version.fullmatch(stale.name):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
        with atomic_write(entry) as handle:
            np.save(handle, array)
        return array
