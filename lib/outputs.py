"""Never destroy what a user points us at: the check every script makes of its inputs and outputs.

A script declares what it reads and what it writes, each as {flag: path}, and calls
`check_outputs` before any work (before an epoch is trained or a pool scored). It
refuses, with one line naming both flags:

- an output that is, contains or lies inside an input: writing there could replace
  the user's files or bury outputs among them (a checkpoint over the labeled set,
  pseudo labels over ground-truth masks);
- two outputs that are one path, or a folder output that holds another output;
- a file output that names an existing folder;
- an output whose folder is missing or not writable (before hours of training, not
  at the first save); folder outputs are created with their missing parents.

Paths are compared after resolving symbolic links and `..`, and existing files also
by identity (`os.path.samefile`), so no other spelling of an input slips through. A
flag may be both an input and an output (`--umap-cache` is read when it exists and
written when not; `--cache-dir` is read and filled): it is not compared with itself.

Folders a script fills or replaces (a worklist, pseudo labels, a decoded cache, a
generated pool) carry a marker file naming what made them. `check_folder` accepts
only a missing folder, an empty one, or one whose marker names the same kind, and
`claim_folder` creates the folder and its marker when the work begins; a script
never writes into, or replaces, a non-empty folder that some other hand made.
"""
import os
from pathlib import Path

from lib.errors import UserError
from lib.fileio import read_json, write_json

MARKER = ".al-seg.json"  # {"made_by": <kind>} in every folder this toolkit fills


def check_outputs(inputs, files=None, folders=None):
    """Refuse outputs that could destroy an input or each other; {flag: path}, None paths skipped.

    `files` are outputs written as single files, `folders` outputs that are folders
    (created, filled or replaced as a whole).
    """
    inputs = _given(inputs)
    files, folders = _given(files or {}), _given(folders or {})
    outputs = {**files, **folders}
    for flag, path in files.items():
        if Path(path).is_dir():
            raise UserError(f"{flag} {path}: is an existing folder; give the path of a file to write")
    for flag, path in folders.items():
        if Path(path).exists() and not Path(path).is_dir():
            raise UserError(f"{flag} {path}: exists and is not a folder")
    for flag, path in outputs.items():
        for input_flag, input_path in inputs.items():
            if input_flag != flag:
                _refuse_overlap(flag, path, input_flag, input_path, "an input")
    flags = list(outputs)
    for i, flag in enumerate(flags):
        for other in flags[i + 1:]:
            if _same(outputs[flag], outputs[other]):
                raise UserError(f"{flag} {outputs[flag]}: is also {other}; give each output its own path")
            if flag in folders or other in folders:
                _refuse_overlap(flag, outputs[flag], other, outputs[other], "another output")
    for flag, path in files.items():
        _check_writable(flag, path, Path(path).parent)
    for flag, path in folders.items():  # written inside when it exists, else created with its missing parents
        _check_writable(flag, path, _nearest_existing(Path(path)))


def _given(paths):
    return {flag: os.fspath(path) for flag, path in paths.items() if path is not None}


def _real(path):
    return Path(os.path.realpath(path))


def _same(a, b):
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)  # hard links, case-insensitive file systems
    return _real(a) == _real(b)


def _refuse_overlap(flag, path, other_flag, other_path, what):
    if _same(path, other_path):
        raise UserError(f"{flag} {path}: is {other_flag} {other_path}, {what}; write the output elsewhere")
    real, other_real = _real(path), _real(other_path)
    if other_real in real.parents:
        raise UserError(f"{flag} {path}: lies inside {other_flag} {other_path}, {what}; write the output elsewhere")
    if real in other_real.parents:
        raise UserError(f"{flag} {path}: contains {other_flag} {other_path}, {what}; write the output elsewhere")


def _nearest_existing(path):
    return next(folder for folder in (path, *path.parents) if folder.exists())


def _check_writable(flag, path, folder):
    folder = Path(folder)
    if not folder.resolve().is_dir():
        raise UserError(f"{flag} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UserError(f"{flag} {path}: folder {folder} is not writable")


def check_folder(path, kind, flag=None, legacy=None):
    """Fail unless `path` may become (or already is) a folder of `kind` made by this toolkit.

    Accepted: a missing folder, an empty one, one whose marker names `kind`, and one
    for which `legacy(path)` is true (made by a version that wrote no marker).
    A symbolic link is followed: the folder it points to is the one checked.
    """
    path = Path(path)
    named = f"{flag} {path}" if flag else str(path)
    if not path.exists():
        if path.is_symlink():
            raise UserError(f"{named}: is a symbolic link to nothing ({os.readlink(path)})")
        return
    if not path.is_dir():
        raise UserError(f"{named}: exists and is not a folder")
    maker = made_by(path)
    if maker == kind or (maker is None and (not any(path.iterdir()) or (legacy is not None and legacy(path)))):
        return
    found = f"holds {maker}" if maker else "is a non-empty folder this toolkit did not make"
    raise UserError(f"{named}: {found}, not {kind}; give a new or empty folder")


def claim_folder(path, kind, flag=None, legacy=None):
    """Create `path` as a folder of `kind` (checked by check_folder) and mark it; returns its real path.

    `flag` names the path in messages (None for a positional argument).
    """
    check_folder(path, kind, flag, legacy)
    path = _real(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{path}: cannot create folder ({err.strerror or err})") from None
    if made_by(path) != kind:
        mark_folder(path, kind)
    return path


def mark_folder(path, kind):
    write_json(Path(path) / MARKER, {"made_by": kind})


def made_by(path):
    """The kind named by a folder's marker, or None when it has none (or a foreign file by that name)."""
    marker = Path(path) / MARKER
    if not marker.is_file():
        return None
    try:
        content = read_json(marker, "folder marker")
    except UserError:
        return None
    return content.get("made_by") if isinstance(content, dict) else None
