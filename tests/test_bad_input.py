"""Bad input through the command lines: the cases of README's Troubleshooting table.

Every case fails with exit code 2 and one `error:` line that names the culprit file,
id or flag, and leaves every file as it was: the outputs of an earlier run (an
index, a checkpoint, metrics) are byte-identical afterwards and nothing appears.
"""
import errno
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import fail, import_script, train_tiny_model
from lib.data import open_dataset

train, select, evaluate = (import_script(f"{name}.py") for name in ("train", "select", "evaluate"))
SCRIPTS = {"train": train, "select": select, "evaluate": evaluate}


@pytest.fixture(scope="module")
def trained(synthetic_pool, tmp_path_factory):
    """index.json (4 random images) and model.pt (a tiny model trained on them)."""
    return train_tiny_model(synthetic_pool, tmp_path_factory.mktemp("trained"))


@dataclass
class Inputs:
    """What a case builds its command line from. Broken inputs are written under `tmp`, never into the pool."""

    tmp: Path
    pool: Path  # the shared synthetic pool
    trained: Path  # the `trained` fixture
    monkeypatch: pytest.MonkeyPatch

    def __post_init__(self):
        self.index = json.loads((self.trained / "index.json").read_text())
        self.pool_ids = open_dataset("synthetic", self.pool, "train").ids
        unlabeled = [image_id for image_id in self.pool_ids if image_id not in self.index["labeled"]]
        # An id of each kind, for the expected messages.
        self.ids = {"labeled": self.index["labeled"][0], "unlabeled": unlabeled[0], "first": self.pool_ids[0],
                    "val": open_dataset("synthetic", self.pool, "val").ids[0]}

    @property
    def out(self):
        """The outputs' folder; it holds the outputs of an earlier run."""
        return self.tmp / "out"

    # Command lines that succeed as they are: a case appends flags, and a repeated flag's last value wins.
    def select(self, *flags):
        return ["--dataset", "synthetic", "--data-root", str(self.pool), "--index", str(self.trained / "index.json"),
                "--checkpoint", str(self.trained / "model.pt"), "--method", "entropy", "--budget", "2",
                "--out", str(self.out / "next.json"), "--workers", "0", "--device", "cpu", *flags]

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

    def cut_resume_file(self):
        """An <out>.resume cut off halfway (copied from another machine, say), with --resume to read it."""
        self.first_half(self.trained / "model.pt", "out/model.pt.resume")
        return ["--resume"]

    def nan_checkpoint(self):
        """A checkpoint whose weights are all NaN: every logit, and so every score, is NaN."""
        checkpoint = torch.load(self.trained / "model.pt", weights_only=True)
        for tensor in checkpoint["model"].values():
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
        torch.save(checkpoint, self.tmp / "nan.pt")
        return ["--checkpoint", str(self.tmp / "nan.pt")]

    def one_bad_row(self, name, array, value):
        """--features or --scores: one row per pool image, zeros but `value` at the first unlabeled image."""
        rows = np.zeros((len(self.pool_ids), 1))
        rows[self.pool_ids.index(self.ids["unlabeled"])] = value
        np.savez(self.tmp / name, ids=np.array(self.pool_ids), **{array: rows if array == "features" else rows[:, 0]})
        return [f"--{array}", str(self.tmp / name)]

    def read_only_folder(self):
        """An output folder nobody may write in; root ignores permission bits, so there the refusal is simulated."""
        folder = self.out / "read-only"
        folder.mkdir()
        if os.geteuid() != 0:
            folder.chmod(0o555)
            return folder
        mkstemp = tempfile.mkstemp

        def refuse_in_folder(*args, dir=None, **kwargs):
            if dir == str(folder):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
            return mkstemp(*args, dir=dir, **kwargs)

        self.monkeypatch.setattr(tempfile, "mkstemp", refuse_in_folder)
        return folder

    def disk_full(self):
        """The disk fills up while a file is written: its bytes never reach the disk."""
        def no_space(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        self.monkeypatch.setattr(os, "fsync", no_space)
        return []


def garbage(path):
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))  # a PNG signature, then nothing a decoder accepts


def cut_in_half(path):
    """The header survives, so the image's size can be read; its pixels cannot."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def class_id_9(path):
    mask = np.array(Image.open(path))
    mask[0, 0] = 9  # the synthetic pool has 8 classes
    Image.fromarray(mask).save(path)


def one_row_short(path):
    Image.fromarray(np.array(Image.open(path))[:-1]).save(path)


def three_classes(path):
    path.write_text('["road", "car", "sky"]')


def remove_images(path):
    for image in path.iterdir():
        image.unlink()


class Case(NamedTuple):
    name: str
    script: str
    argv: Callable  # Inputs -> argv; writes the broken input on the way
    expect: str  # in the error line; {labeled}, {unlabeled}, {val}: the ids of Inputs.ids


def for_scripts(name, scripts, argv, expect):
    """One case per script: `argv(inputs, script's argv builder)`."""
    return [Case(name, script, lambda s, script=script: argv(s, getattr(s, script)), expect) for script in scripts]


def output_cases(name, folder, expect):
    """--out of each script in `folder(inputs)`."""
    files = {"select": "next.json", "train": "model.pt", "evaluate": "m.json"}
    return [Case(name, script, lambda s, script=script: getattr(s, script)("--out", str(folder(s) / files[script])),
                 expect.format(file=files[script])) for script in files]


CASES = [
    # Data root and layout.
    *for_scripts("missing-data-root", SCRIPTS, lambda s, argv: argv("--data-root", str(s.tmp / "nowhere")),
                 "nowhere: data root does not exist"),
    Case("wrong-layout", "select",
         lambda s: s.select(*s.pool_copy(lambda p: p.rename(p.with_name("img")), "train/images")),
         "pool/train/images: no such folder (layout: ROOT/<split>/images, ROOT/<split>/masks)"),
    Case("no-class-list", "select", lambda s: s.select(*s.pool_copy(Path.unlink, "classes.json")),
         "pool/classes.json: class list not found"),
    Case("empty-pool", "select",
         lambda s: s.select("--dataset", "folder", *s.pool_copy(remove_images, "train/images")),
         "pool/train/images: no images (.png, .jpg, .jpeg)"),
    # Index files.
    Case("non-json-index", "select", lambda s: s.select("--index", s.text_file("x.json", "labeled: [a, b]\n")),
         "x.json: not a valid index file"),
    *for_scripts("truncated-index", ("select", "train"),
                 lambda s, argv: argv("--index", str(s.first_half(s.trained / "index.json", "cut.json"))),
                 "cut.json: not a valid index file"),
    Case("unknown-index-version", "select", lambda s: s.select(*s.index_file(version=2)),
         "index.json: unknown index version 2 (this toolkit reads version 1)"),
    *for_scripts("id-not-in-pool", ("select", "train"),
                 lambda s, argv: argv(*s.index_file(labeled=[*s.index["labeled"], "s9999_f00"])),
                 "index.json: id 's9999_f00' is not in the pool"),
    Case("duplicate-id", "select",
         lambda s: s.select(*s.index_file(labeled=[*s.index["labeled"], s.ids["labeled"]])),
         "index.json: duplicate id '{labeled}'"),
    Case("all-labeled", "select", lambda s: s.select(*s.index_file(labeled=s.pool_ids), "--budget", "1"),
         "--budget 1: 1 items asked but only 0 are unlabeled"),
    # Images and masks.
    Case("corrupt-image", "select", lambda s: s.select(*s.pool_copy(garbage, "train/images/{unlabeled}.png")),
         "pool/train/images/{unlabeled}.png: cannot decode image"),
    Case("corrupt-image", "evaluate", lambda s: s.evaluate(*s.pool_copy(garbage, "val/images/{val}.png")),
         "pool/val/images/{val}.png: cannot decode image"),
    # Decoded in a loader process (--workers 1), which raises the error again in the main one.
    Case("truncated-image", "train",
         lambda s: s.train(*s.pool_copy(cut_in_half, "train/images/{labeled}.png"), "--workers", "1"),
         "pool/train/images/{labeled}.png: cannot decode image"),
    Case("mask-class-id", "train", lambda s: s.train(*s.pool_copy(class_id_9, "train/masks/{labeled}.png")),
         "pool/train/masks/{labeled}.png: class id 9 is out of range (8 classes, 255 = ignore)"),
    Case("mask-class-id", "evaluate", lambda s: s.evaluate(*s.pool_copy(class_id_9, "val/masks/{val}.png")),
         "pool/val/masks/{val}.png: class id 9 is out of range (8 classes, 255 = ignore)"),
    Case("mask-size", "train", lambda s: s.train(*s.pool_copy(one_row_short, "train/masks/{labeled}.png")),
         "pool/train/masks/{labeled}.png: mask is 48x31 but its image is 48x32"),
    Case("mask-size", "evaluate", lambda s: s.evaluate(*s.pool_copy(one_row_short, "val/masks/{val}.png")),
         "pool/val/masks/{val}.png: mask is 48x31 but its image is 48x32"),
    # Checkpoints.
    Case("other-dataset-checkpoint", "select", lambda s: s.select(*s.pool_copy(three_classes, "classes.json")),
         "model.pt: checkpoint was trained on other classes (8: sky, building, road, sidewalk, ...) "
         "than those of this 'synthetic' dataset (3: road, car, sky)"),
    Case("other-dataset-checkpoint", "evaluate",
         lambda s: s.evaluate("--dataset", "folder", *s.pool_copy(three_classes, "classes.json")),
         "model.pt: checkpoint was trained on other classes (8: sky, building, road, sidewalk, ...) "
         "than those of this 'folder' dataset (3: road, car, sky)"),
    *for_scripts("truncated-checkpoint", ("select", "evaluate"),
                 lambda s, argv: argv("--checkpoint", str(s.first_half(s.trained / "model.pt", "cut.pt"))),
                 "cut.pt: cannot read checkpoint"),
    Case("truncated-resume", "train", lambda s: s.train(*s.cut_resume_file()),
         "out/model.pt.resume: cannot read checkpoint"),
    # Budgets.
    Case("budget-over-pool", "select", lambda s: s.select("--budget", "9"),
         "--budget 9: 9 items asked but only 8 are unlabeled"),
    Case("budget-zero", "select", lambda s: s.select("--budget", "0"), "--budget '0': must select at least one item"),
    Case("budget-negative", "select", lambda s: s.select("--budget", "-2"),
         "--budget '-2': must select at least one item"),
    # NaN and inf.
    Case("inf-features", "select",
         lambda s: s.select("--method", "coreset", *s.one_bad_row("f.npz", "features", np.inf)),
         "f.npz: features of id '{unlabeled}' is NaN or infinite"),
    Case("nan-scores", "select", lambda s: s.select("--method", "topk", *s.one_bad_row("s.npz", "scores", np.nan)),
         "s.npz: score of id '{unlabeled}' is NaN or infinite"),
    Case("nan-model", "select", lambda s: s.select(*s.nan_checkpoint()),
         "--checkpoint: the model's score of item '{unlabeled}' is NaN or infinite"),
    Case("nan-model-features", "select", lambda s: s.select("--method", "coreset", *s.nan_checkpoint()),
         "--checkpoint: the model's features of item '{first}' is NaN or infinite"),
    # Output paths.
    *output_cases("missing-out-folder", lambda s: s.out / "missing", "missing/{file}: folder"),
    *output_cases("read-only-out-folder", Inputs.read_only_folder, "read-only/{file}: "),  # either refusal
    Case("disk-full", "train", lambda s: s.train(*s.disk_full()),
         "out/model.pt: write failed (No space left on device)"),
]


def snapshot(*folders):
    """Every file's bytes and every folder (None) under `folders`: what a failed run must leave as it was."""
    return {path: path.read_bytes() if path.is_file() else None
            for folder in folders for path in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("case", CASES, ids=[f"{case.script}-{case.name}" for case in CASES])
def test_bad_input_is_one_line_and_changes_no_file(case, synthetic_pool, trained, tmp_path, monkeypatch, capsys):
    inputs = Inputs(tmp_path, synthetic_pool, trained, monkeypatch)
    inputs.out.mkdir()
    shutil.copy(trained / "index.json", inputs.out / "next.json")
    shutil.copy(trained / "model.pt", inputs.out / "model.pt")
    (inputs.out / "metrics.json").write_text('{"miou": 0.5}\n')
    argv = case.argv(inputs)
    before = snapshot(tmp_path, trained, synthetic_pool)
    assert case.expect.format(**inputs.ids) in fail(SCRIPTS[case.script], argv, capsys)
    assert snapshot(tmp_path, trained, synthetic_pool) == before


def to_grey(path):
    Image.open(path).convert("L").save(path)


def to_rgba(path):
    Image.open(path).convert("RGBA").save(path)


def to_16_bit(path):
    Image.fromarray(np.asarray(Image.open(path).convert("L"), dtype=np.uint16) * 257).save(path)


def convert_in_turn(folder):
    for n, path in enumerate(sorted(folder.iterdir())):
        [to_grey, to_rgba, to_16_bit][n % 3](path)


def test_greyscale_rgba_and_16_bit_images_train_and_score(synthetic_pool, trained, tmp_path, monkeypatch):
    """Not errors: such images are converted to 8-bit RGB wherever they are read."""
    inputs = Inputs(tmp_path, synthetic_pool, trained, monkeypatch)
    data_root = inputs.pool_copy(convert_in_turn, "train/images")
    assert {Image.open(path).mode for path in (tmp_path / "pool/train/images").iterdir()} == {"L", "RGBA", "I;16"}
    inputs.out.mkdir()
    train.main(inputs.train(*data_root))
    select.main(inputs.select(*data_root, "--checkpoint", str(inputs.out / "model.pt")))
    added = json.loads((inputs.out / "next.json").read_text())["history"][-1]["added"]
    assert len(added) == 2 and not set(added) & set(inputs.index["labeled"])
