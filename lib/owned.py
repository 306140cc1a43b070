"""Folders this toolkit fills or replaces, and the marker that tells them from a user's.

A worklist (`select.py --export`), pseudo labels (`train.py --pseudo-dir`), a decoded
cache (`--cache-dir`) and the pools of the generators are folders that a script writes
into, or replaces as a whole. Each carries a marker file, `.al-seg.json`:

    {"made_by": "<kind>", "inode": <the folder's inode when it was marked>[, "files": {<path>: <sha256>}]}

`check_folder` accepts only a missing folder, an empty one, or one whose marker names
the same kind and was written for this very folder: a marker copied with the folder
(`cp -r`) has another inode, and its copy is treated as the user's. A folder that is
replaced as a whole (the worklist) also lists every file it was written with: one
that holds anything else, or a file changed since (an annotator's work), is refused
too. `claim_folder` creates and marks the folder when the work begins.
"""
import os
from pathlib import Path

from lib.errors import UserError
from lib.fileio import read_json, sha256_of, write_json

MARKER = ".al-seg.json"
# atomic_write's temporary files for the marker: a folder holding only those is a marker being written
# (by a concurrent run, or one killed at that instant), so as good as empty.
_MARKER_TEMPORARY = (f".{MARKER}.", ".tmp")


def read_marker(folder):
    """The marker of `folder` when it is ours for this very folder; None when there is none, it is foreign,
    or it was copied from another folder."""
    marker = Path(folder) / MARKER
    if not marker.is_file():
        return None
    try:
        content = read_json(marker, "folder marker")
    except UserError:
        return None
    if not (isinstance(content, dict) and isinstance(content.get("made_by"), str)):
        return None
    return content if content.get("inode") == os.stat(folder).st_ino else None


def mark_folder(folder, kind, files=None):
    """Write the marker of `folder`; `files`: the relative paths it holds, for a folder replaced as a whole."""
    content = {"made_by": kind, "inode": os.stat(folder).st_ino}
    if files is not None:
        content["files"] = {name: sha256_of(Path(folder) / name) for name in sorted(files)}
    write_json(Path(folder) / MARKER, content)


def listed_files(folder):
    """Every file under `folder` but its marker, as relative POSIX paths."""
    folder = Path(folder)
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")
                  if path.is_file() and path.name != MARKER)


def _is_empty(folder):
    return all(entry.name.startswith(_MARKER_TEMPORARY[0]) and entry.name.endswith(_MARKER_TEMPORARY[1])
               for entry in Path(folder).iterdir())


def _foreign_file(folder, listed):
    """The first file of `folder` that its marker does not list, or whose content changed since; None if none."""
    for name in listed_files(folder):
        if name not in listed or sha256_of(Path(folder) / name) != listed[name]:
            return name
    return None


def check_folder(path, kind, flag=None, legacy=None):
    """Fail unless `path` may become (or already is) a folder of `kind` made by this toolkit.

    Accepted: a missing folder, an empty one, one whose marker names `kind` (and, if
    it lists its files, holds them unchanged and nothing else), and one for which
    `legacy(path)` is true (made by a version that wrote no marker). A symbolic link
    is followed: the folder it points to is the one checked. `flag` names the path in
    messages (None for a positional argument).
    """
    path = Path(path)
    named = f"{flag} {path}" if flag else str(path)
    if not path.exists():
        if path.is_symlink():
            raise UserError(f"{named}: is a symbolic link to nothing ({os.readlink(path)})")
        return
    if not path.is_dir():
        raise UserError(f"{named}: exists and is not a folder")
    marker = read_marker(path)
    if marker is None:
        if _is_empty(path) or (legacy is not None and legacy(path)):
            return
        copied = "holds a marker copied from another folder" if (path / MARKER).is_file() else \
            "is a non-empty folder this toolkit did not make"
        raise UserError(f"{named}: {copied}, not {kind}; give a new or empty folder")
    if marker["made_by"] != kind:
        raise UserError(f"{named}: holds {marker['made_by']}, not {kind}; give a new or empty folder")
    foreign = _foreign_file(path, marker["files"]) if isinstance(marker.get("files"), dict) else None
    if foreign is not None:
        raise UserError(f"{named}: holds {foreign}, which {kind} did not write or which was changed since; "
                        f"move it out, or give a new or empty folder")


def claim_folder(path, kind, flag=None, legacy=None):
    """Create `path` as a folder of `kind` (checked by check_folder) and mark it; returns its real path."""
    check_folder(path, kind, flag, legacy)
    path = Path(os.path.realpath(path))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{path}: cannot create folder ({err.strerror or err})") from None
    if read_marker(path) is None:
        mark_folder(path, kind)
    return path
