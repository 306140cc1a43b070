"""What the bad-input tables share: the inputs a case breaks, the case itself, and the check every case passes.

Every case runs a script's command line as a user would, fails with exit code 2 and one
`error:` line that names the culprit file, id or flag, and leaves every file as it was:
the inputs, the data root, and the outputs of an earlier run in the output folder are
byte-identical afterwards, and nothing appears.
"""
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import pytest

from conftest import fail, import_script
from lib.data import open_dataset

SCRIPTS = {name: import_script(f"{name}.py") for name in ("train", "select", "evaluate")}


@dataclass
class Inputs:
    """What a case builds its command line from. Broken inputs are written under `tmp`, never into the pool."""

    tmp: Path
    pool: Path  # the shared synthetic pool: 32x48 images, 8 classes
    trained: Path  # the `trained_tiny` fixture: index.json and model.pt
    monkeypatch: pytest.MonkeyPatch

    def __post_init__(self):
        self.index = json.loads((self.trained / "index.json").read_text())
        self.pool_ids = open_dataset("synthetic", self.pool, "train").ids
        unlabeled = [image_id for image_id in self.pool_ids if image_id not in self.index["labeled"]]
        # Ids and paths of each kind, for the expected messages.
        self.ids = {"labeled": self.index["labeled"][0], "unlabeled": unlabeled[0], "first": self.pool_ids[0],
                    "last": self.pool_ids[-1], "val": open_dataset("synthetic", self.pool, "val").ids[0],
                    "root": str(self.pool), "tmp": str(self.tmp), "trained": str(self.trained)}

    @property
    def out(self):
        """The outputs' folder; it holds the outputs of an earlier run."""
        return self.tmp / "out"

    # Command lines that succeed as they are: a case appends flags, and a repeated flag's last value wins.
    def select(self, *flags):
        return ["--dataset", "synthetic", "--data-root", str(self.pool), "--index", str(self.trained / "index.json"),
                "--checkpoint", str(self.trained / "model.pt"), "--method", "entropy", "--budget", "2",
                "--out", str(self.out / "next.json"), "--workers", "0", "--device", "cpu", *flags]

    def first_cycle(self, *flags):
        """select.py starting an experiment: no index, no model."""
        return ["--dataset", "synthetic", "--data-root", str(self.pool), "--method", "random", "--budget", "2",
                "--out", str(self.out / "next.json"), *flags]

    def train(self, *flags):
        return ["--dataset", "synthetic", "--data-root", str(self.pool), "--index", str(self.trained / "index.json"),
                "--out", str(self.out / "model.pt"), "--arch", "tiny", "--epochs", "1", "--batch-size", "2",
                "--crop", "32x48", "--workers", "0", "--device", "cpu", *flags]

    def evaluate(self, *flags):
        return ["--checkpoint", str(self.trained / "model.pt"), "--data-root", str(self.pool),
                "--out", str(self.out / "metrics.json"), "--workers", "0", "--device", "cpu", *flags]

    # Broken inputs: each returns the flags that hand it to the script.
    def pool_copy(self, edit, *paths):
        """A copy of the pool with `edit(root / path)` applied to each path ({labeled}-style ids filled in)."""
        root = self.tmp / "pool"
        shutil.copytree(self.pool, root)
        for path in paths:
            edit(root / path.format(**self.ids))
        return ["--data-root", str(root)]

    def index_file(self, **fields):
        """The trained index with `fields` replaced; ids in `labeled` may hold {first}-style ids."""
        if "labeled" in fields:
            fields["labeled"] = [item_id.format(**self.ids) for item_id in fields["labeled"]]
        path = self.tmp / "index.json"
        path.write_text(json.dumps({**self.index, **fields}))
        return ["--index", str(path)]

    def text_file(self, name, text):
        self.tmp.joinpath(name).write_text(text)
        return str(self.tmp / name)

    def first_half(self, source, destination):
        """A file cut off halfway, like a copy that did not finish."""
        self.tmp.joinpath(destination).write_bytes(source.read_bytes()[: source.stat().st_size // 2])
        return self.tmp / destination


class Case(NamedTuple):
    name: str
    script: str  # a key of SCRIPTS, or of the `scripts` given to check_case
    argv: Callable  # Inputs -> argv; writes the broken input on the way
    expect: str  # in the error line; {labeled}, {first}, {root}, {tmp} ...: see Inputs.ids


def for_scripts(name, scripts, argv, expect):
    """One case per script: `argv(inputs, script's argv builder)`."""
    return [Case(name, script, lambda s, script=script: argv(s, getattr(s, script)), expect) for script in scripts]


def case_ids(cases):
    return [f"{case.script}-{case.name}" for case in cases]


def snapshot(*folders):
    """Every file's bytes and every folder (None) under `folders`: what a failed run must leave as it was."""
    return {path: path.read_bytes() if path.is_file() else None
            for folder in folders for path in sorted(folder.rglob("*"))}


def check_case(case, inputs, capsys, scripts=SCRIPTS):
    """Run a case over the outputs of an earlier run; assert its one error line and that no file changed."""
    inputs.out.mkdir()
    shutil.copy(inputs.trained / "index.json", inputs.out / "next.json")
    shutil.copy(inputs.trained / "model.pt", inputs.out / "model.pt")
    (inputs.out / "metrics.json").write_text('{"miou": 0.5}\n')
    argv = case.argv(inputs)
    before = snapshot(inputs.tmp, inputs.trained, inputs.pool)
    assert case.expect.format(**inputs.ids) in fail(scripts[case.script], argv, capsys)
    assert snapshot(inputs.tmp, inputs.trained, inputs.pool) == before
