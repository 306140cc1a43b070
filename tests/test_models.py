"""DeepLabv3+ shapes, the encode/decode split, build_model errors, pretrained loading.

Tiny inputs only (65x97 is odd on purpose: every stride-2 layer rounds up). The
pretrained-weights files are written by the tests themselves from randomly
initialised torchvision models; nothing is downloaded and /work/shared is not read.
"""
import functools
import json
import math

import pytest
import torch
import torchvision
from torch import nn

from lib.backbones import BACKBONES
from lib.checkpoint import model_from_checkpoint
from lib.errors import UserError
from lib.models import ARCHS, build_model, has_mc_dropout
from lib.pretrained import IMAGENET_FILES, load_pretrained_backbone

NUM_CLASSES = 5
# wrn38's 105 M parameters take seconds a forward pass on the CPU: tests/test_wrn38.py checks its shapes quickly.
ARCH_PARAMS = [pytest.param(arch, marks=pytest.mark.slow) if arch == "wrn38" else arch for arch in ARCHS]


@functools.cache
def _model(arch, output_stride):
    # Building resnet101 costs ~1 s; the shape tests share one instance per setting.
    torch.manual_seed(0)
    model_args = {"arch": arch, "num_classes": NUM_CLASSES, "output_stride": output_stride, "mc_dropout": False}
    return build_model(model_args).eval()


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Any attempt to fetch weights from the internet fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("lib.models tried to download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_registry():
    assert {"mobilenet_v2", "resnet50", "resnet101", "tiny"} <= set(BACKBONES)
    assert ARCHS == sorted(BACKBONES)


@pytest.mark.parametrize("output_stride", [16, 8])
@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_backbone_strides(arch, output_stride):
    model = _model(arch, output_stride)
    with torch.no_grad():
        low, high = model.backbone(torch.randn(1, 3, 64, 64))
    low_stride = model.backbone.low_stride  # 4; 2 for wrn38
    assert low.shape == (1, model.backbone.low_channels, 64 // low_stride, 64 // low_stride)
    assert high.shape == (1, model.backbone.high_channels, 64 // output_stride, 64 // output_stride)


@pytest.mark.parametrize("output_stride", [16, 8])
@pytest.mark.parametrize("arch", ARCH_PARAMS)
def test_output_shapes_odd_input(arch, output_stride):
    model = _model(arch, output_stride)
    x = torch.randn(2, 3, 65, 97)  # [B, 3, H, W]
    with torch.no_grad():
        low, aspp_out = model.encode(x)
        logits = model(x)
    # Every stride-2 layer rounds up (padding 1), so sizes are ceil(H / stride).
    low_stride = model.backbone.low_stride
    assert low.shape[-2:] == (math.ceil(65 / low_stride), math.ceil(97 / low_stride))
    head = 64 if arch == "tiny" else 256  # DeepLabv3+'s 256 channels; the CPU demo model is narrower
    assert aspp_out.shape == (2, head, math.ceil(65 / output_stride), math.ceil(97 / output_stride))
    assert logits.shape == (2, NUM_CLASSES, 65, 97)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", ["tiny", "mobilenet_v2"])
def test_named_feature_maps(arch):
    """What acquisition reads by name: the backbone's last stage (MEAL) and the ASPP output (coreset)."""
    model = _model(arch, 16)
    x = torch.randn(2, 3, 65, 97)
    with torch.no_grad():
        backbone, aspp = model.feature_map("backbone", x), model.feature_map("aspp", x)
        torch.testing.assert_close(aspp, model.encode(x)[1])
        torch.testing.assert_close(model.aspp(backbone), aspp)  # the ASPP reads the backbone's map
    assert set(model.feature_maps) == {"backbone", "aspp"}
    assert backbone.shape == (2, model.backbone.high_channels, 5, 7)  # stride 16, rounded up
    assert aspp.shape == (2, model.backbone.head_channels, 5, 7)


@pytest.mark.parametrize("arch", ["tiny", "mobilenet_v2"])
def test_encode_decode_equals_forward(arch):
    model = _model(arch, 16)
    x = torch.randn(2, 3, 65, 97)
    with torch.no_grad():
        logits = model(x)
        low, aspp_out = model.encode(x)
        split = model.decode(low, aspp_out, x.shape[-2:])
    torch.testing.assert_close(split, logits)


def test_no_dropout_without_mc_dropout():
    model = build_model({"arch": "tiny", "num_classes": NUM_CLASSES, "output_stride": 16, "mc_dropout": False})
    assert not has_mc_dropout(model)
    with_dropout = build_model({"arch": "tiny", "num_classes": NUM_CLASSES, "output_stride": 16, "mc_dropout": True})
    assert model.state_dict().keys() == with_dropout.state_dict().keys()


def test_mc_dropout_only_in_decoder():
    """MC dropout contract: encode is deterministic, decode samples three dropout layers."""
    model = build_model({"arch": "tiny", "num_classes": NUM_CLASSES, "output_stride": 16, "mc_dropout": True}).eval()
    assert has_mc_dropout(model)
    dropouts = [m for m in model.decoder.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 3 and all(m.p == 0.1 for m in dropouts)
    assert not any(isinstance(m, nn.Dropout) for m in [*model.backbone.modules(), *model.aspp.modules()])
    for m in dropouts:
        m.train()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        low, aspp_out = model.encode(x)
        torch.testing.assert_close(model.encode(x)[1], aspp_out)
        first, second = (model.decode(low, aspp_out, x.shape[-2:]) for _ in range(2))
    assert not torch.equal(first, second)


def test_train_step_with_batch_of_one():
    """The image-pooling branch has no BatchNorm, so a one-image batch trains, and the gradient that reaches the
    first layer is the loss's slope there: a step of h along it changes the loss by h |grad|."""
    torch.manual_seed(0)
    model = build_model({"arch": "tiny", "num_classes": NUM_CLASSES, "output_stride": 8, "mc_dropout": False})
    model = model.double().train()  # float64: a central difference measures the slope to ~1e-8
    images = torch.randn(1, 3, 33, 47, dtype=torch.float64)
    target = torch.randint(NUM_CLASSES, (1, 33, 47))

    def loss():
        return nn.functional.cross_entropy(model(images), target)

    loss().backward()
    weight = model.backbone.stem[0][0].weight  # the first layer: the gradient went through the whole network
    gradient = weight.grad.clone()
    direction, h = gradient / gradient.norm(), 1e-5
    with torch.no_grad():
        weight += h * direction
        up = loss()
        weight -= 2 * h * direction
        down = loss()
    assert gradient.norm() > 0
    assert ((up - down) / (2 * h)).item() == pytest.approx(gradient.norm().item(), rel=1e-4)


@pytest.mark.parametrize("extra", [{}, {"embed_dim": 16}], ids=["plain", "with head"])
def test_model_args_are_json(extra):
    args = {"arch": "tiny", "num_classes": 3, "output_stride": 8, "mc_dropout": True, **extra}
    model = build_model(json.loads(json.dumps(args)))
    assert model.model_args == args
    assert model.aspp.branches[1][0].dilation == (12, 12)  # rates double at OS 8


TINY_ARGS = {"arch": "tiny", "num_classes": NUM_CLASSES, "output_stride": 16, "mc_dropout": False}


def test_representation_head_embeddings_are_unit_norm_and_forward_ignores_them():
    torch.manual_seed(0)
    model = build_model({**TINY_ARGS, "embed_dim": 16}).eval()
    x = torch.randn(2, 3, 65, 97)  # [B, 3, H, W]
    with torch.no_grad():
        logits = model(x)
        with_embeddings, embeddings = model.forward_with_embeddings(x)
    assert torch.is_tensor(logits) and logits.shape == (2, NUM_CLASSES, 65, 97)
    torch.testing.assert_close(with_embeddings, logits)
    assert embeddings.shape == (2, 16, math.ceil(65 / 4), math.ceil(97 / 4))  # the decoder's stride 4
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(2, 17, 25))


def test_the_head_changes_nothing_else():
    """Same seed, same weights outside the head; without `embed_dim` (checkpoints from before it) no head at all."""
    torch.manual_seed(0)
    plain = build_model(TINY_ARGS)
    torch.manual_seed(0)
    headed = build_model({**TINY_ARGS, "embed_dim": 16})
    shared = plain.state_dict()
    assert not any(key.startswith("representation.") for key in shared) and plain.representation is None
    assert build_model({**TINY_ARGS, "embed_dim": 0}).state_dict().keys() == shared.keys()
    for key, tensor in shared.items():
        assert torch.equal(headed.state_dict()[key], tensor), key
    old_checkpoint = {"model_args": dict(TINY_ARGS), "model": shared}
    reloaded = model_from_checkpoint(old_checkpoint, torch.device("cpu"), "old.pt")
    assert reloaded.model_args == TINY_ARGS and reloaded.representation is None


@pytest.mark.parametrize(
    "args, needle",
    [
        ({"arch": "vgg16", "num_classes": 3, "output_stride": 16, "mc_dropout": False}, "'vgg16'.*mobilenet_v2.*tiny"),
        ({"arch": "tiny", "num_classes": 3, "output_stride": 32, "mc_dropout": False}, "32.*16, 8"),
        ({"arch": "tiny", "num_classes": 1, "output_stride": 16, "mc_dropout": False}, "classes 1"),
        ({"arch": "tiny", "num_classes": "3", "output_stride": 16, "mc_dropout": False}, "classes '3'"),
        ({"arch": "tiny", "num_classes": 3, "mc_dropout": False}, "output_stride"),
        ({"arch": "tiny", "num_classes": 3, "output_stride": 16, "mc_dropout": "yes"}, "mc_dropout"),
        ({**TINY_ARGS, "embed_dim": -1}, "embed_dim -1"),
        ({**TINY_ARGS, "embed_dim": True}, "embed_dim True"),
        ({**TINY_ARGS, "depth": 2}, "may have.*depth"),
    ],
)
def test_build_model_errors(args, needle):
    with pytest.raises(UserError, match=needle):
        build_model(args)


@pytest.mark.parametrize("arch", sorted(IMAGENET_FILES))
def test_backbone_keys_mirror_torchvision(arch):
    """Every backbone tensor has the torchvision classification model's name and shape."""
    classifier = getattr(torchvision.models, arch)()
    theirs = {k: v.shape for k, v in classifier.state_dict().items()}
    ours = {k: v.shape for k, v in _model(arch, 16).backbone.state_dict().items()}
    assert all(theirs.get(k) == shape for k, shape in ours.items())


def test_load_pretrained_from_file(mobilenet_file):
    model = build_model({"arch": "mobilenet_v2", "num_classes": NUM_CLASSES, "output_stride": 8, "mc_dropout": False})
    assert load_pretrained_backbone(model, str(mobilenet_file), "mobilenet_v2") == mobilenet_file
    state = torch.load(mobilenet_file, weights_only=True)
    for key in ("features.0.0.weight", "features.17.conv.2.weight", "features.9.conv.1.1.running_var"):
        torch.testing.assert_close(model.backbone.state_dict()[key], state[key], rtol=0, atol=0)


def test_load_pretrained_wrong_keys(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, path)
    model = _model("mobilenet_v2", 16)
    n_keys = sum(not k.endswith("num_batches_tracked") for k in model.backbone.state_dict())
    with pytest.raises(UserError, match=rf"other\.pth.*{n_keys} of {n_keys} backbone keys missing"):
        load_pretrained_backbone(model, path, "mobilenet_v2")


def test_load_pretrained_wrong_arch(mobilenet_file):
    model = _model("resnet50", 16)
    with pytest.raises(UserError, match="not a torchvision resnet50 state dict"):
        load_pretrained_backbone(model, mobilenet_file, "resnet50")


def test_load_pretrained_wrong_shape(tmp_path, mobilenet_file):
    state = torch.load(mobilenet_file, weights_only=True)
    state["features.0.0.weight"] = torch.zeros(8, 3, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(UserError, match="1 with the wrong shape"):
        load_pretrained_backbone(_model("mobilenet_v2", 16), path, "mobilenet_v2")


@pytest.mark.parametrize("content", [b"hello\n", "list", "missing"])
def test_load_pretrained_not_a_state_dict(tmp_path, content):
    path = tmp_path / "weights.pth"
    if content == "list":
        torch.save([torch.zeros(1)], path)
    elif content != "missing":
        path.write_bytes(content)
    with pytest.raises(UserError, match=str(path)):
        load_pretrained_backbone(_model("tiny", 16), path, "mobilenet_v2")


def test_tiny_has_no_pretrained_weights(mobilenet_file):
    with pytest.raises(UserError, match="'tiny' has no pretrained"):
        load_pretrained_backbone(_model("tiny", 16), mobilenet_file, "tiny")


def test_imagenet_from_hub_cache(tmp_path, monkeypatch, mobilenet_file):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    model = build_model({"arch": "mobilenet_v2", "num_classes": NUM_CLASSES, "output_stride": 16, "mc_dropout": False})
    expected = tmp_path / "checkpoints" / "mobilenet_v2-7ebf99e0.pth"
    with pytest.raises(UserError, match=str(expected)):
        load_pretrained_backbone(model, "imagenet", "mobilenet_v2")

    expected.parent.mkdir()
    expected.write_bytes(mobilenet_file.read_bytes())
    assert load_pretrained_backbone(model, "imagenet", "mobilenet_v2") == expected
    state = torch.load(expected, weights_only=True)
    torch.testing.assert_close(model.backbone.features[0][0].weight, state["features.0.0.weight"], rtol=0, atol=0)
