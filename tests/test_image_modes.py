"""Images that are not 8-bit RGB (greyscale, RGBA, 16-bit) are not bad input: they are converted wherever
they are read."""
import json

import numpy as np
from PIL import Image

from bad_input_kit import Inputs
from conftest import import_script

train, select = (import_script(f"{name}.py") for name in ("train", "select"))


def to_grey(path):
    Image.open(path).convert("L").save(path)


def to_rgba(path):
    Image.open(path).convert("RGBA").save(path)


def to_16_bit(path):
    Image.fromarray(np.asarray(Image.open(path).convert("L"), dtype=np.uint16) * 257).save(path)


def convert_in_turn(folder):
    for n, path in enumerate(sorted(folder.iterdir())):
        [to_grey, to_rgba, to_16_bit][n % 3](path)


def test_greyscale_rgba_and_16_bit_images_train_and_score(synthetic_pool, trained_tiny, tmp_path, monkeypatch):
    """Not errors: such images are converted to 8-bit RGB wherever they are read."""
    inputs = Inputs(tmp_path, synthetic_pool, trained_tiny, monkeypatch)
    data_root = inputs.pool_copy(convert_in_turn, "train/images")
    assert {Image.open(path).mode for path in (tmp_path / "pool/train/images").iterdir()} == {"L", "RGBA", "I;16"}
    inputs.out.mkdir()
    train.main(inputs.train(*data_root))
    select.main(inputs.select(*data_root, "--checkpoint", str(inputs.out / "model.pt")))
    added = json.loads((inputs.out / "next.json").read_text())["history"][-1]["added"]
    assert len(added) == 2 and not set(added) & set(inputs.index["labeled"])
