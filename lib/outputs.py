"""Never destroy what a user points us at: the check every script makes of its inputs and outputs.

A script declares what it reads and what it writes, each as {flag: path}, and calls
`check_outputs` before any work (before an epoch is trained or a pool scored). It
refuses, with one line naming both flags:

- an output that is, contains or lies inside an input: writing there could replace
  the user's files or bury outputs among them (a checkpoint over the labeled set,
  pseudo labels over ground-truth masks);
- two outputs that are one path, or a folder output that holds another output;
- a file output that names an existing folder, a folder output that names a file;
- an output whose folder is missing or not writable (before hours of training, not
  at the first save); folder outputs are created with their missing parents.

Paths are compared as the file system sees them: after resolving symbolic links and
`..`, and wherever both exist by identity (device and inode), so neither a hard link,
a bind mount nor another spelling on a case-insensitive file system slips through.
A flag may be both an input and an output (`--umap-cache` is read when it exists and
written when not; `--cache-dir` is read and filled): it is not compared with itself.

Folders that a script fills or replaces also carry a marker of what made them
(lib.owned).
"""
import os
from dataclasses import dataclass
from pathlib import Path

from lib.errors import UserError


@dataclass(frozen=True)
class _Declared:
    """A path as given on the command line, resolved, with the identity of itself and of its existing ancestors."""

    flag: str
    path: str
    real: Path
    exists: bool
    is_dir: bool
    chain: tuple  # (st_dev, st_ino) of the path itself if it exists, then of each existing ancestor up to /

    @classmethod
    def of(cls, flag, path):
        path = os.fspath(path)
        try:
            real = Path(os.path.realpath(path))
            stats = [os.stat(folder) for folder in (real, *real.parents) if os.path.exists(folder)]
            exists, is_dir = real.exists(), real.is_dir()
        except (OSError, RuntimeError) as err:  # a name too long, a loop of links
            raise UserError(f"{flag} {path}: cannot use this path ({getattr(err, 'strerror', None) or err})") from None
        return cls(flag, path, real, exists, is_dir, tuple((stat.st_dev, stat.st_ino) for stat in stats))

    def is_inside(self, other):
        """True when `other`, an existing folder, is one of this path's ancestors (or the path itself)."""
        return other.exists and other.chain[0] in self.chain


def check_outputs(inputs, files=None, folders=None):
    """Refuse outputs that could destroy an input or each other; {flag: path}, None paths skipped.

    `files` are outputs written as single files, `folders` outputs that are folders
    (created, filled or replaced as a whole).
    """
    inputs, files, folders = (_declare(paths or {}) for paths in (inputs, files, folders))
    for output in files:
        if output.is_dir:
            raise UserError(f"{output.flag} {output.path}: is an existing folder; give the path of a file to write")
    for output in folders:
        if output.exists and not output.is_dir:
            raise UserError(f"{output.flag} {output.path}: exists and is not a folder")
    outputs = files + folders
    for output in outputs:
        for given in inputs:
            if given.flag != output.flag:
                _refuse_overlap(output, given, "an input")
    for i, output in enumerate(outputs):
        for other in outputs[i + 1:]:
            if _same(output, other):
                raise UserError(f"{output.flag} {output.path}: is also {other.flag}; give each output its own path")
            if output in folders or other in folders:
                _refuse_overlap(output, other, "another output")
    for output in files:
        _check_writable(output, output.real.parent)
    for output in folders:  # written inside when it exists, else created with its missing parents
        _check_writable(output, next(folder for folder in (output.real, *output.real.parents) if folder.exists()))


def _declare(paths):
    return [_Declared.of(flag, path) for flag, path in paths.items() if path is not None]


def _same(a, b):
    if a.exists and b.exists:
        return a.chain[0] == b.chain[0]  # hard links, bind mounts, case-insensitive spellings
    return a.real == b.real


def _refuse_overlap(output, given, what):
    if _same(output, given):
        relation = "is"
    elif output.is_inside(given) or given.real in output.real.parents:
        relation = "lies inside"
    elif given.is_inside(output) or output.real in given.real.parents:
        relation = "contains"
    else:
        return
    raise UserError(f"{output.flag} {output.path}: {relation} {given.flag} {given.path}, {what}; "
                    f"write the output elsewhere")


def _check_writable(output, folder):
    if not folder.is_dir():
        raise UserError(f"{output.flag} {output.path}: folder {Path(output.path).parent} does not exist")
    if not os.access(folder, os.W_OK):
        raise UserError(f"{output.flag} {output.path}: folder {folder} is not writable")
