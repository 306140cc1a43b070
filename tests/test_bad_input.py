"""Bad input through the command lines: the cases of README's Troubleshooting table (tests/bad_input_kit.py).

Data, index files, images and masks, checkpoints and model files, budgets, NaN and
inf, flags, output folders.
"""
import errno
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from bad_input_kit import SCRIPTS, Case, Inputs, case_ids, check_case, for_scripts
from conftest import Killed, import_script, kill_after_epoch
from lib import fileio

train, select, evaluate = (import_script(f"{name}.py") for name in ("train", "select", "evaluate"))


class BrokenInputs(Inputs):
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

    def disk_full_at_fsync(self):
        """The disk fills up as a file is flushed: its bytes never reach the disk."""
        def no_space(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        self.monkeypatch.setattr(os, "fsync", no_space)
        return []

    def disk_full_at_write(self, room=4096):
        """The disk fills up inside a writer's write() calls (torch.save's C++ writer among them)."""
        fdopen = os.fdopen
        self.monkeypatch.setattr(fileio.os, "fdopen", lambda fd, mode: FullDisk(fdopen(fd, mode), room))
        return []

    def checkpoint(self, name, edit):
        """The trained checkpoint with `edit(checkpoint)` applied, saved as `name`."""
        checkpoint = torch.load(self.trained / "model.pt", weights_only=True)
        edit(checkpoint)
        torch.save(checkpoint, self.tmp / name)
        return ["--checkpoint", str(self.tmp / name)]

    def scripted(self, module):
        """A TorchScript file of `module`, as a model trained elsewhere."""
        torch.jit.script(module).save(str(self.tmp / "scripted.pt"))
        return ["--checkpoint", str(self.tmp / "scripted.pt"), "--dataset", "synthetic"]

    def resume_file(self, edit):
        """An <out>.resume of this very run (2 epochs), killed after epoch 1, then `edit(checkpoint)`ed."""
        with pytest.MonkeyPatch.context() as monkeypatch:
            kill_after_epoch(monkeypatch, train, 1)
            with pytest.raises(Killed):
                train.main(self.train("--epochs", "2", "--out", str(self.tmp / "model.pt")))
        checkpoint = torch.load(self.tmp / "model.pt.resume", weights_only=True)
        (self.tmp / "model.pt.resume").unlink()
        checkpoint.update(train_args={**checkpoint["train_args"], "out": str(self.out / "model.pt")})
        edit(checkpoint)
        torch.save(checkpoint, self.out / "model.pt.resume")
        return ["--epochs", "2", "--resume"]

    def cache_then_fewer_classes(self):
        """A --cache-dir filled by training on a copy of the pool whose classes.json then loses 5 of its 8 classes."""
        data_root = self.pool_copy(lambda path: None)
        cache = ["--cache-dir", str(self.tmp / "cache")]
        train.main(self.train(*data_root, *cache, "--out", str(self.tmp / "model.pt")))
        (self.tmp / "model.pt").unlink()
        three_classes(self.tmp / "pool" / "classes.json")
        return [*data_root, *cache]


class FullDisk:
    """A file whose write() fails with ENOSPC once `room` bytes are written, like a file system that fills up."""

    def __init__(self, handle, room):
        self.handle, self.room = handle, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.handle.__exit__(*exc)


# TorchScript models that break the contract of a segmentation model in one way each.
class RaisingModel(nn.Module):
    def forward(self, images):
        raise RuntimeError("this model is broken")


class LogitsOf(nn.Module):
    """Logits [B, 8, H, W] (or empty maps) of one dtype and value."""

    def __init__(self, value: float, dtype: torch.dtype, empty: bool = False):
        super().__init__()
        self.value, self.dtype, self.empty = value, dtype, empty

    def forward(self, images):
        height, width = (0, 0) if self.empty else (images.shape[2], images.shape[3])
        return torch.full((images.shape[0], 8, height, width), self.value).to(self.dtype)


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
         "--budget 1: 1 item asked but only 0 are unlabeled"),
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
    Case("budget-zero", "select", lambda s: s.select("--budget", "0"),
         "argument --budget: must select at least one item, got '0'"),
    Case("budget-negative", "select", lambda s: s.select("--budget=-2"),
         "argument --budget: must select at least one item, got '-2'"),
    # NaN and inf.
    Case("inf-features", "select",
         lambda s: s.select("--method", "coreset", *s.one_bad_row("f.npz", "features", np.inf)),
         "f.npz: features of id '{unlabeled}' is NaN or infinite in float32"),
    Case("nan-scores", "select", lambda s: s.select("--method", "topk", *s.one_bad_row("s.npz", "scores", np.nan)),
         "s.npz: score of id '{unlabeled}' is NaN or infinite"),
    # Output paths.
    *output_cases("missing-out-folder", lambda s: s.out / "missing", "missing/{file}: folder"),
    *output_cases("read-only-out-folder", BrokenInputs.read_only_folder, "read-only/{file}: "),  # either refusal
]

NO_SPACE = "write failed (No space left on device)"
# Group 1: the disk fills up while a checkpoint is written, in the real torch.save's writes or at the flush.
DISK_FULL_CASES = [
    Case("disk-full-at-fsync", "train", lambda s: s.train(*s.disk_full_at_fsync()), f"out/model.pt: {NO_SPACE}"),
    Case("disk-full-in-torch-save", "train", lambda s: s.train(*s.disk_full_at_write()), f"out/model.pt: {NO_SPACE}"),
    Case("disk-full-in-torch-save-of-resume", "train", lambda s: s.train("--epochs", "2", *s.disk_full_at_write()),
         f"out/model.pt.resume: {NO_SPACE}"),
]


def nan_weights(checkpoint):
    for tensor in checkpoint["model"].values():
        if tensor.is_floating_point():
            tensor.fill_(float("nan"))


# Group 2: non-finite weights are never saved, and never read as a model's predictions.
NON_FINITE_CASES = [
    # One step of 4 images (the loss before it is finite) multiplies the weights by lr x weight decay = 9e76.
    Case("training-ends-non-finite", "train",
         lambda s: s.train("--lr", "3e38", "--weight-decay", "3e38", "--batch-size", "4"),
         "training diverged, NaN or infinite weights (backbone.stem.0.0.weight) after epoch 1, nothing saved: "
         "lower --lr (3e+38) or --weight-decay (3e+38)"),
    *for_scripts("nan-weights", ("select", "evaluate"), lambda s, argv: argv(*s.checkpoint("nan.pt", nan_weights)),
                 "nan.pt: the weights hold NaN or infinite values"),
    *for_scripts("nan-logits-torchscript", ("select", "evaluate"),
                 lambda s, argv: argv(*s.scripted(LogitsOf(float("nan"), torch.float32))),
                 "scripted.pt: the model returns NaN or infinite logits"),
    *for_scripts("inf-logits-torchscript", ("select", "evaluate"),
                 lambda s, argv: argv(*s.scripted(LogitsOf(float("inf"), torch.float32))),
                 "scripted.pt: the model returns NaN or infinite logits"),
]


def without(key):
    return lambda checkpoint: checkpoint.pop(key)


def another_arch(checkpoint):
    checkpoint["model_args"]["arch"] = "mobilenet_v2"


# Group 4: checkpoints and model files that are empty, incomplete, inconsistent, or misbehave.
CHECKPOINT_CASES = [
    *for_scripts("empty-checkpoint", ("select", "evaluate"),
                 lambda s, argv: argv("--checkpoint", s.text_file("e.pt", "")),
                 "e.pt: cannot read checkpoint (EOFError)"),
    Case("empty-teacher", "train",
         lambda s: s.train("--ssl", "selftrain", "--teacher", s.text_file("e.pt", ""),
                           "--pseudo-dir", str(s.tmp / "p")),
         "e.pt: cannot read checkpoint (EOFError)"),
    *for_scripts("checkpoint-without-preprocess", ("select", "evaluate"),
                 lambda s, argv: argv(*s.checkpoint("c.pt", without("preprocess"))),
                 "c.pt: damaged checkpoint: 'preprocess' is missing or not an object"),
    *for_scripts("checkpoint-without-weights", ("select", "evaluate"),
                 lambda s, argv: argv(*s.checkpoint("c.pt", without("model"))),
                 "c.pt: damaged checkpoint: 'model' is missing or not a state dict"),
    *for_scripts("nan-in-the-index-entry", ("select", "evaluate"),
                 lambda s, argv: argv(*s.checkpoint("c.pt", lambda c: c["index"].update(cycle=float("nan")))),
                 "c.pt: damaged checkpoint: index 'cycle' is missing or not a number"),
    *for_scripts("weights-of-another-model", ("select", "evaluate"),
                 lambda s, argv: argv(*s.checkpoint("c.pt", another_arch)),
                 "c.pt: not the weights of its model_args"),
    Case("resume-without-optimizer", "train", lambda s: s.train(*s.resume_file(without("optimizer"))),
         "out/model.pt.resume: cannot resume from it (KeyError: 'optimizer')"),
    Case("resume-without-epoch", "train", lambda s: s.train(*s.resume_file(without("epoch"))),
         "out/model.pt.resume: damaged checkpoint: no train_args, epoch or index sha256"),
    *for_scripts("torchscript-forward-raises", ("select", "evaluate"),
                 lambda s, argv: argv(*s.scripted(RaisingModel())),
                 "scripted.pt: the model's forward failed on a batch of [4, 3, 32, 48]"),
    *for_scripts("torchscript-empty-maps", ("select", "evaluate"),
                 lambda s, argv: argv(*s.scripted(LogitsOf(0.0, torch.float32, empty=True))),
                 "scripted.pt: the model returns empty maps [4, 8, 0, 0]"),
    *for_scripts("torchscript-integer-logits", ("select", "evaluate"),
                 lambda s, argv: argv(*s.scripted(LogitsOf(1.0, torch.int64))),
                 "scripted.pt: the model returns torch.int64 logits"),
    *for_scripts("torchscript-bool-logits", ("select", "evaluate"),
                 lambda s, argv: argv(*s.scripted(LogitsOf(1.0, torch.bool))),
                 "scripted.pt: the model returns torch.bool logits"),
]

# Group 3: a cache filled before the class list changed is checked against the new one.
CACHE_CASES = [
    Case("cache-before-classes-changed", "train", lambda s: s.train(*s.cache_then_fewer_classes()),
         "is out of range (3 classes, 255 = ignore)"),
]


def flag_case(script, flag, value, expect, *extra):
    return Case(f"{flag}={value}", script, lambda s: getattr(s, script)(*extra, f"{flag}={value}"),
                f"argument {flag}: {expect}, got '{value}'")


FINITE_POSITIVE = "must be a finite number in (0, inf)"
FINITE_NON_NEGATIVE = "must be a finite number in [0, inf)"
SEED = "must be in [0, 2**32)"
# Group 7: flags are checked where they are parsed, so the right one is blamed.
FLAG_CASES = [
    flag_case("train", "--momentum", "nan", "must be a finite number in [0, 1)"),
    flag_case("train", "--momentum", "1", "must be a finite number in [0, 1)"),
    flag_case("train", "--weight-decay", "inf", FINITE_NON_NEGATIVE),
    flag_case("train", "--lr", "inf", FINITE_POSITIVE),
    flag_case("train", "--lr", "1e300", FINITE_POSITIVE),  # finite in float64, inf in float32
    flag_case("train", "--lr", "-0.1", FINITE_POSITIVE),
    flag_case("train", "--lambda-fm", "nan", FINITE_NON_NEGATIVE, "--ssl", "s4gan"),
    flag_case("train", "--disc-lr", "inf", FINITE_POSITIVE, "--ssl", "s4gan"),
    flag_case("train", "--reco-temperature", "nan", FINITE_POSITIVE, "--contrastive", "reco"),
    flag_case("train", "--log-interval", "nan", FINITE_POSITIVE),
    flag_case("train", "--seed", "-1", SEED),
    flag_case("select", "--seed", "4294967296", SEED),
    flag_case("train", "--crop", "100000x100000", "at most 8192 pixels a side"),
    flag_case("select", "--input-size", "100000x100000", "at most 8192 pixels a side"),
    flag_case("select", "--std", "1,0,1", "expected three comma-separated finite numbers above 0 R,G,B"),
    flag_case("evaluate", "--std", "1e-46,1,1", "expected three comma-separated finite numbers above 0 R,G,B"),
    flag_case("train", "--lr", "1e-46", FINITE_POSITIVE),  # 0 in float32
    flag_case("evaluate", "--mean", "nan,0,0", "expected three comma-separated finite numbers R,G,B"),
    flag_case("select", "--budget", "1e5000%", "a share of the pool is at most 100%"),
    Case("--budget=nan%", "select", lambda s: s.select("--budget", "nan%"), "argument --budget: expected a count"),
    Case("features-beyond-float32", "select",
         lambda s: s.select("--method", "coreset", *s.one_bad_row("f.npz", "features", 1e300)),
         "f.npz: features of id '{unlabeled}' is NaN or infinite in float32"),
]

GROUPS = {"bad-input": CASES, "disk-full": DISK_FULL_CASES, "non-finite": NON_FINITE_CASES,
          "checkpoints": CHECKPOINT_CASES, "cache": CACHE_CASES, "flags": FLAG_CASES}
ALL_CASES = [case for cases in GROUPS.values() for case in cases]


@pytest.mark.parametrize("case", ALL_CASES, ids=case_ids(ALL_CASES))
def test_bad_input_is_one_line_and_changes_no_file(case, synthetic_pool, trained_tiny, tmp_path, monkeypatch, capsys):
    check_case(case, BrokenInputs(tmp_path, synthetic_pool, trained_tiny, monkeypatch), capsys)
