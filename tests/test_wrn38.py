"""--arch wrn38: the study's WiderResNet-38 A2, its ImageNet checkpoint and the study scripts' choice of it.

No checkpoint is downloaded: the tests write files with the key names and shapes of
the study's wider_resnet38.pth.tar (described below from ALSS:model/wider_resnet.py,
sud0301/best_practices_ALSS), each tensor an expanded scalar of its own value, so a
file of 105 M parameters takes a few kB and every weight shows where it came from.
Structure checks run on the meta device (shapes without memory or compute); one
forward pass runs for real.
"""
import math
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from conftest import REPO_ROOT
from lib.acquire.scores import dropout_active
from lib.errors import UserError
from lib.models import build_model, has_mc_dropout
from lib.pretrained import load_pretrained_backbone, resolve_pretrained

# WiderResNet-38 A2 as the study's checkpoint lays it out: blocks and block widths of mod2..mod7.
STRUCTURE = (3, 3, 6, 3, 1, 1)
WIDTHS = ((128, 128), (256, 256), (512, 512), (512, 1024), (512, 1024, 2048), (1024, 2048, 4096))
STUDY_PARAMETERS = 109_167_912  # of wider_resnet38_a2(classes=1000), counted on the study's class
BN_ENTRIES = ("weight", "bias", "running_mean", "running_var")
DROPPED = ("module.bn_out.", "module.classifier.")  # the study's trunk ends at mod7


def checkpoint_shapes(batches_tracked=True):
    """{key: shape} of the state dict in wider_resnet38.pth.tar, DataParallel's "module." included."""
    shapes = {"mod1.conv1.weight": (64, 3, 3, 3)}

    def bn(name, channels):  # BN-ReLU Sequentials: the BatchNorm is entry 0
        shapes.update({f"{name}.0.{entry}": (channels,) for entry in BN_ENTRIES})
        if batches_tracked:
            shapes[f"{name}.0.num_batches_tracked"] = ()

    cin = 64
    for module, (blocks, widths) in enumerate(zip(STRUCTURE, WIDTHS), start=2):
        for block in range(1, blocks + 1):
            name = f"mod{module}.block{block}"
            bn(f"{name}.bn1", cin)
            if len(widths) == 2:
                shapes[f"{name}.convs.conv1.weight"] = (widths[0], cin, 3, 3)
                bn(f"{name}.convs.bn2", widths[0])
                shapes[f"{name}.convs.conv2.weight"] = (widths[1], widths[0], 3, 3)
            else:
                shapes[f"{name}.convs.conv1.weight"] = (widths[0], cin, 1, 1)
                bn(f"{name}.convs.bn2", widths[0])
                shapes[f"{name}.convs.conv2.weight"] = (widths[1], widths[0], 3, 3)
                bn(f"{name}.convs.bn3", widths[1])
                shapes[f"{name}.convs.conv3.weight"] = (widths[2], widths[1], 1, 1)
            if block == 1:  # every module changes the width in its first block
                shapes[f"{name}.proj_conv.weight"] = (widths[-1], cin, 1, 1)
            cin = widths[-1]
    bn("bn_out", cin)
    shapes.update({"classifier.fc.weight": (1000, cin), "classifier.fc.bias": (1000,)})
    return {f"module.{key}": shape for key, shape in shapes.items()}


def write_checkpoint(path, shapes, wrap=True):
    """A file of `shapes`; tensor i holds the value i + 1 everywhere (an expanded scalar: bytes per key, not per
    weight). Returns {key: value}."""
    values = {key: i + 1 for i, key in enumerate(shapes)}
    state = {key: torch.full((), values[key], dtype=torch.long if key.endswith("tracked") else torch.float32)
             .expand(shape) for key, shape in shapes.items()}
    torch.save({"state_dict": state, "epoch": 90} if wrap else state, path)
    return values


def wrn38(output_stride=8, mc_dropout=False):
    return build_model({"arch": "wrn38", "num_classes": 5, "output_stride": output_stride, "mc_dropout": mc_dropout})


def on_meta(output_stride=8, mc_dropout=False):
    with torch.device("meta"):
        return wrn38(output_stride, mc_dropout)


@pytest.fixture(scope="module")
def target():
    """A real wrn38 model that the loading tests overwrite (about 0.5 GB)."""
    return wrn38()


def test_checkpoint_description_counts_the_studys_parameters():
    shapes = checkpoint_shapes()
    learned = [shape for key, shape in shapes.items() if not key.endswith(("running_mean", "running_var", "tracked"))]
    assert sum(math.prod(shape) for shape in learned) == STUDY_PARAMETERS
    assert len(shapes) == 230 and len(checkpoint_shapes(batches_tracked=False)) == 193


def test_backbone_has_the_checkpoints_names_and_shapes():
    ours = {key: tuple(value.shape) for key, value in on_meta().backbone.state_dict().items()}
    theirs = {key.removeprefix("module."): shape for key, shape in checkpoint_shapes().items()
              if not key.startswith(DROPPED)}
    assert ours == theirs


@pytest.mark.parametrize(("output_stride", "strided", "dilated"), [
    (8, {"mod4.block1"}, {"mod5": 2, "mod6": 4, "mod7": 4}),  # the study's (ALSS:model/wider_resnet.py)
    (16, {"mod4.block1", "mod5.block1"}, {"mod6": 2, "mod7": 2}),
])
def test_strides_and_dilations(output_stride, strided, dilated):
    for name, conv in on_meta(output_stride).backbone.named_modules():
        if not isinstance(conv, nn.Conv2d) or name == "mod1.conv1":
            continue
        module, block = name.split(".")[0], ".".join(name.split(".")[:2])
        three_by_three = conv.kernel_size == (3, 3)
        # The stride sits on the first conv of a block's branch and on its projection.
        first = name.endswith(("convs.conv1", "proj_conv"))
        assert conv.stride == ((2, 2) if block in strided and first else (1, 1)), name
        dilation = dilated.get(module, 1) if three_by_three else 1
        assert conv.dilation == (dilation, dilation) and conv.padding == ((dilation,) * 2 if three_by_three else (0, 0))


@pytest.mark.parametrize("output_stride", [8, 16])
def test_shapes_at_both_output_strides(output_stride):
    """The study's decoder fuses mod2's stride-2 features; ASPP sits on mod7 at the output stride."""
    model = on_meta(output_stride).eval()
    x = torch.empty(2, 3, 65, 97, device="meta")  # odd: every stride rounds up
    low, high = model.backbone(x)
    assert model.backbone.low_stride == 2 and low.shape == (2, 128, 33, 49)
    assert high.shape == (2, 4096, math.ceil(65 / output_stride), math.ceil(97 / output_stride))
    assert model(x).shape == (2, 5, 65, 97)


def test_forward_at_output_stride_8():
    torch.manual_seed(0)
    model = wrn38().eval()
    x = torch.randn(1, 3, 33, 47)  # [B, 3, H, W]
    with torch.no_grad():  # one pass: encode then decode is forward (tests/test_models.py)
        low, aspp_out = model.encode(x)
        logits = model.decode(low, aspp_out, x.shape[-2:])
    assert low.shape == (1, 128, 17, 24) and aspp_out.shape == (1, 256, 5, 6)  # strides 2 and 8, rounded up
    assert logits.shape == (1, 5, 33, 47) and torch.isfinite(logits).all()


def test_backbone_dropout_trains_but_is_no_mc_dropout():
    """mod6/mod7's Dropout2d (0.3, 0.5) train as in the study; BALD's sampling leaves them off."""
    plain, sampled = on_meta(), on_meta(mc_dropout=True)
    assert not has_mc_dropout(plain) and has_mc_dropout(sampled)
    backbone = {name: m.p for name, m in sampled.backbone.named_modules() if isinstance(m, nn.Dropout2d)}
    assert backbone == {"mod6.block1.convs.dropout": 0.3, "mod7.block1.convs.dropout": 0.5}
    sampled.eval()
    with dropout_active(sampled):
        assert all(m.training for m in sampled.decoder.modules() if isinstance(m, nn.Dropout))
        assert not any(m.training for m in sampled.backbone.modules())  # encode stays deterministic
    assert all(m.training for m in sampled.train().backbone.modules() if isinstance(m, nn.Dropout2d))


@pytest.mark.parametrize("form", ["checkpoint", "bare state dict"])
def test_load_the_studys_checkpoint(tmp_path, target, form):
    """The study's file ({"state_dict": ...}, "module." keys); or its bare state dict, without "module." and
    without BatchNorm's num_batches_tracked (older torch)."""
    shapes = checkpoint_shapes(batches_tracked=form == "checkpoint")
    if form == "bare state dict":
        shapes = {key.removeprefix("module."): shape for key, shape in shapes.items()}
    path = tmp_path / "wider_resnet38.pth.tar"
    values = write_checkpoint(path, shapes, wrap=form == "checkpoint")
    assert load_pretrained_backbone(target, str(path), "wrn38") == path
    own = target.backbone.state_dict()
    loaded = {key.removeprefix("module."): value for key, value in values.items()}
    for name, tensor in own.items():
        if name.endswith("num_batches_tracked") and name not in loaded:
            continue  # a step counter no forward pass reads: older files lack it
        assert tensor.eq(loaded[name]).all(), name  # each tensor holds the value of its own key in the file


def test_misnamed_keys_are_named(tmp_path, target):
    """mapillary's own InPlaceABN checkpoints name BatchNorm `bn1.weight`: not the study's file."""
    shapes = {key.replace(".0.", "."): shape for key, shape in checkpoint_shapes().items()}
    path = tmp_path / "wide_resnet38_ipabn.pth.tar"
    write_checkpoint(path, shapes)
    with pytest.raises(UserError, match=rf"{path}: not the study's WRN-38 .*first missing: mod2\.block1\.bn1\.0\.weight"
                                        r".*first unexpected: mod2\.block1\.bn1\.weight"):
        load_pretrained_backbone(target, path, "wrn38")


def test_wrong_shape_is_named(tmp_path, target):
    shapes = checkpoint_shapes()
    shapes["module.mod7.block1.convs.conv3.weight"] = (4096, 1024, 1, 1)
    path = tmp_path / "wider_resnet38.pth.tar"
    write_checkpoint(path, shapes)
    with pytest.raises(UserError, match=r"1 with the wrong shape.*mod7\.block1\.convs\.conv3\.weight, "
                                        r"\[4096, 1024, 1, 1\] in the file, \[4096, 2048, 1, 1\] in the backbone"):
        load_pretrained_backbone(target, path, "wrn38")


def test_imagenet_has_no_wrn38_file():
    with pytest.raises(UserError, match="torchvision has no wrn38 weights.*wider_resnet38.pth.tar"):
        resolve_pretrained("imagenet", "wrn38")


def study_backbone(**variables):
    """(--arch, --output-stride, stderr) of the train.py flags that scripts/lib/study.sh plans under `variables`."""
    env = {k: v for k, v in os.environ.items() if k not in ("ARCH", "PRETRAINED", "OUTPUT_STRIDE")}
    script = (f'source "{REPO_ROOT}/scripts/lib/study.sh"; run_experiment() {{ echo "$TRAIN_ARGS"; }}; '
              "run_study cityscapes 10% 10% 4")
    run = subprocess.run(["bash", "-c", script], env={**env, "PYTHON": sys.executable, **variables},
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    words = run.stdout.split()
    return words[words.index("--arch") + 1], words[words.index("--output-stride") + 1], run.stderr


@pytest.mark.parametrize(("variables", "arch", "output_stride", "note"), [
    ({"PRETRAINED": "/w/wider_resnet38.pth.tar"}, "wrn38", "8", False),
    ({}, "resnet50", "16", True),  # PRETRAINED=imagenet: torchvision has no WRN-38
    ({"PRETRAINED": ""}, "resnet50", "16", True),
    ({"PRETRAINED": "/w/wider_resnet38.pth.tar", "OUTPUT_STRIDE": "16"}, "wrn38", "16", False),
    ({"ARCH": "resnet101"}, "resnet101", "16", False),
])
def test_study_scripts_choose_wrn38_when_its_weights_are_given(variables, arch, output_stride, note):
    chosen_arch, chosen_stride, stderr = study_backbone(**variables)
    assert (chosen_arch, chosen_stride) == (arch, output_stride)
    assert ("resnet50 at output stride 16 stands in" in stderr) == note
