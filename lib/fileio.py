"""Atomic file writes and content hashes.

Every file the toolkit writes goes through `atomic_write`: the bytes land in a
temporary file in the destination folder, are flushed to disk, and only then
replace the destination with `os.replace`. A run killed at any point leaves either
the previous complete file or the new complete file, never a torn one, which is
what lets the shell scripts skip a step whose output exists.
"""
import contextlib
import ctypes
import errno
import hashlib
import json
import os
import tempfile

from lib.errors import UserError


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Yield a file object whose content replaces `path` only when the block succeeds."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"{path}: output folder {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    except OSError as err:
        raise UserError(f"{path}: cannot write in {folder} ({err.strerror})") from None
    try:
        os.fchmod(fd, new_file_mode())  # mkstemp's 0o600 would hide results from the rest of a lab
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        cause = os_error_behind(err)
        if cause is not None:
            raise UserError(f"{path}: write failed ({cause.strerror or cause})") from None
        raise


def os_error_behind(err):
    """The OSError that caused `err`, or None. Writers in C++ wrap it: torch.save reports a full disk as
    `RuntimeError: [enforce fail at inline_container.cc ...]`, the OSError of the file's write() as its context."""
    while err is not None:
        if isinstance(err, OSError):
            return err
        err = err.__cause__ or err.__context__
    return None


def new_file_mode():
    """The permissions open() gives a new file: 0o666 less the process's umask."""
    return 0o666 & ~_umask()


def new_folder_mode():
    """The permissions mkdir() gives a new folder: 0o777 less the process's umask."""
    return 0o777 & ~_umask()


def _umask():
    umask = os.umask(0)  # the only way to read it; set straight back
    os.umask(umask)
    return umask


def write_json(path, obj):
    with atomic_write(path, "w") as handle:
        json.dump(obj, handle, indent=1)
        handle.write("\n")


def write_text(path, text):
    with atomic_write(path, "w") as handle:
        handle.write(text)


def read_json(path, what="JSON file"):
    """Parse a JSON file; a missing or malformed file is a one-line UserError."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not a valid {what} ({err})") from None
    except RecursionError:  # the parser recurses once per level of [ or {
        raise UserError(f"{path}: not a valid {what} (nested too deeply to read)") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read {what} ({err.strerror})") from None


def is_number(value):
    """A number read from JSON: int or float, never a bool (JSON's true and false read as Python's, which are ints)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def sha256_of(path, chunk_size=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


# renameat2(2)'s flag: swap two paths in one step (Linux 3.15+, on ext4, xfs, btrfs, tmpfs and others).
_RENAME_EXCHANGE, _AT_FDCWD = 2, -100


def exchange_paths(a, b):
    """Swap the folders (or files) at `a` and `b` atomically; False where the system cannot, and nothing moved."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:  # not glibc 2.28+ (macOS, musl): the caller falls back
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a file system without the flag (NFS, old kernels)
        return False
    raise OSError(code, os.strerror(code), os.fspath(b))
