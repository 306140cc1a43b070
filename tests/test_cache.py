"""--cache-dir: decoded images and masks on disk, refreshed when their source changes."""
import errno
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import import_script
from lib.data import open_dataset
from lib.data.base import read_rgb
from lib.data.cache import DecodedCache
from lib.errors import UserError

select, train = import_script("select.py"), import_script("train.py")


def counting(decode):
    def counted(path):
        counted.calls += 1
        return decode(path)
    counted.calls = 0
    return counted


def test_an_entry_is_decoded_once_and_again_when_its_source_changes(tmp_path):
    (tmp_path / "cache").mkdir()
    cache, dataset = DecodedCache(tmp_path / "cache", ()), SimpleNamespace(name="folder", split="train")
    source = tmp_path / "a.png"
    Image.fromarray(np.full((4, 6, 3), 7, np.uint8)).save(source)
    decode = counting(read_rgb)
    first, second = (cache.load(dataset, "images", "a", source, decode) for _ in range(2))
    assert decode.calls == 1 and isinstance(second, np.memmap) and (second == first).all()
    Image.fromarray(np.full((4, 6, 3), 9, np.uint8)).save(source)
    os.utime(source, ns=(1, 10**18))  # a new version, whatever the file system's clock resolution
    assert (cache.load(dataset, "images", "a", source, decode) == 9).all() and decode.calls == 2
    assert len(list((tmp_path / "cache/folder/train/images").iterdir())) == 1  # the stale entry is gone


def test_an_id_is_not_mistaken_for_one_that_extends_it(tmp_path):
    (tmp_path / "cache").mkdir()
    cache, dataset = DecodedCache(tmp_path / "cache", ()), SimpleNamespace(name="folder", split="train")
    for name, value in (("a", 1), ("a.b", 2)):
        Image.fromarray(np.full((2, 2, 3), value, np.uint8)).save(tmp_path / f"{name}.png")
        cache.load(dataset, "images", name, tmp_path / f"{name}.png", read_rgb)
    os.utime(tmp_path / "a.png", ns=(1, 10**18))
    cache.load(dataset, "images", "a", tmp_path / "a.png", read_rgb)
    assert (cache.load(dataset, "images", "a.b", tmp_path / "a.b.png", counting(read_rgb)) == 2).all()
    assert len(list((tmp_path / "cache/folder/train/images").iterdir())) == 2


def test_training_from_the_cache_reaches_the_same_weights(synthetic_pool, tmp_path, monkeypatch):
    (tmp_path / "cache").mkdir()
    data = ["--dataset", "synthetic", "--data-root", str(synthetic_pool)]
    select.main([*data, "--method", "random", "--budget", "4", "--out", str(tmp_path / "index.json")])
    common = [*data, "--index", str(tmp_path / "index.json"), "--arch", "tiny", "--epochs", "2", "--batch-size", "2",
              "--crop", "32x32", "--workers", "0", "--device", "cpu"]
    train.main([*common, "--out", str(tmp_path / "plain.pt")])
    train.main([*common, "--out", str(tmp_path / "cached.pt"), "--cache-dir", str(tmp_path / "cache")])
    plain, cached = (torch.load(tmp_path / name, weights_only=True)["model"] for name in ("plain.pt", "cached.pt"))
    assert all(torch.equal(plain[key], cached[key]) for key in plain)
    dataset = open_dataset("synthetic", synthetic_pool, "train", tmp_path / "cache")
    assert len(list((tmp_path / "cache/synthetic/train/masks").iterdir())) == 4  # the labeled images' masks
    image_id = dataset.ids[0]
    decoded = open_dataset("synthetic", synthetic_pool, "train").load_image(image_id)
    assert (dataset.load_image(image_id) == decoded).all()


def test_a_damaged_entry_is_decoded_again_and_replaced(tmp_path):
    cache, dataset = DecodedCache(tmp_path / "cache", ()), SimpleNamespace(name="folder", split="train")
    source = tmp_path / "a.png"
    Image.fromarray(np.full((4, 6, 3), 7, np.uint8)).save(source)
    cache.load(dataset, "images", "a", source, read_rgb)
    (entry,) = (tmp_path / "cache/folder/train/images").iterdir()
    for damage in (entry.read_bytes()[:100], b"not an array", np.lib.format.magic(1, 0) + b"\x00" * 20):
        entry.write_bytes(damage)  # torn by a full disk or a copy, or not an .npy at all
        decode = counting(read_rgb)
        assert (cache.load(dataset, "images", "a", source, decode) == 7).all() and decode.calls == 1
        assert np.load(entry).shape == (4, 6, 3)
    np.save(entry, np.zeros((4, 6), np.uint8))  # an array, but not an image
    assert cache.load(dataset, "images", "a", source, read_rgb).shape == (4, 6, 3)


def test_a_full_disk_while_the_cache_grows_is_one_line(tmp_path, monkeypatch):
    cache, dataset = DecodedCache(tmp_path / "cache", ()), SimpleNamespace(name="folder", split="train")
    Image.fromarray(np.full((4, 6, 3), 7, np.uint8)).save(tmp_path / "a.png")

    def no_inodes_left(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "mkdir", no_inodes_left)
    with pytest.raises(UserError, match=r"^--cache-dir .*/cache: cannot create .*/cache/folder/train/images "
                                        r"\(No space left on device\)$"):
        cache.load(dataset, "images", "a", tmp_path / "a.png", read_rgb)
