"""Keep the top-level `select.py` script from shadowing the standard library's `select`.

Python puts the folder of the script it runs (or the current folder, for `-c`
and `-m`) first on sys.path, so with the repository root there, `import select`
inside subprocess, selectors, socket or multiprocessing finds our script. The
script detects that case (`__name__ == "select"`) and calls `load_stdlib_module`,
which executes the real module and puts it in sys.modules; the import system hands
that entry, not the script, to whoever imported `select`.
"""
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def load_stdlib_module(name):
    search_path = [entry for entry in sys.path if Path(entry or ".").resolve() != REPO_ROOT]
    spec = importlib.machinery.PathFinder.find_spec(name, search_path)
    if spec is None:
        raise ImportError(f"standard library module {name!r} not found outside {REPO_ROOT}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
