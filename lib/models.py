"""DeepLabv3+ on torchvision backbones.

Chen, Zhu, Papandreou, Schroff, Adam, "Encoder-Decoder with Atrous Separable
Convolution for Semantic Image Segmentation", ECCV 2018 (DeepLabv3+), with the ASPP
of Chen, Papandreou, Schroff, Adam, "Rethinking Atrous Convolution for Semantic
Image Segmentation", arXiv:1706.05587 (DeepLabv3).

    image -> backbone -> low (stride 4) -> 1x1 to 48 ch ------------+
                      -> high (stride OS) -> ASPP -> upsample x OS/4 -> concat
                         -> 2x conv3x3 256 -> 1x1 classifier -> upsample x4 -> logits

The network is split in two so that acquisition can reuse the expensive part:
`encode(x) -> (low, aspp_out)` is deterministic, `decode(low, aspp_out, size)` holds
the dropout layers of `mc_dropout` models (three, p=0.1: the BALD setting of the
"best practices" study), so MC dropout runs the encoder once and the decoder T
times. Models without `mc_dropout` have no dropout at all, as in the study, where
Random, Entropy, EqualAL and Coreset are trained without it. Coreset's features are
the ASPP output averaged over an image or patch; MEAL's the backbone's last stage.

Models with `embed_dim` > 0 carry ReCo's representation head (Liu et al., ICLR 2022;
S4AL+'s contrastive head) on the decoder's last feature map, beside the classifier:
`forward_with_embeddings` returns its unit-norm embeddings for the contrastive loss
of training; `forward`, `encode` and `decode` never run it, so inference ignores it.

Models are built from a plain JSON-able dict (nanoGPT's `model_args`) that
checkpoints carry, so `select.py` / `evaluate.py` rebuild a network from the file
alone (`embed_dim` is optional: checkpoints from before the head lack it):

    model = build_model({"arch": "mobilenet_v2", "num_classes": 11, "output_stride": 16, "mc_dropout": False})
    load_pretrained_backbone(model, "imagenet", "mobilenet_v2")   # never downloads

Backbones never download weights (`weights=None` always); pretrained ImageNet
weights come from a local torchvision state dict through `load_pretrained_backbone`.
"""
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lib.errors import UserError

# torchvision is imported inside the builders that need it: importing it costs about
# 2.5 s per process (it pulls in torch._dynamo), and the `tiny` demo model and every
# short select/evaluate call should not pay that.

OUTPUT_STRIDES = (16, 8)
ASPP_CHANNELS = 256  # DeepLabv3: 256 filters per ASPP branch and after the projection
LOW_LEVEL_CHANNELS = 48  # DeepLabv3+ Sec. 4.1: 48 channels for the reduced low-level features
MC_DROPOUT = 0.1  # "best practices" study: 3 dropout layers, p=0.1, decoder only
REQUIRED_ARGS = ("arch", "num_classes", "output_stride", "mc_dropout")
OPTIONAL_ARGS = {"embed_dim": 0}  # the default builds the model these keys did not exist for


# ---------------------------------------------------------------------------------
# Backbones. Each returns (low [B, C_low, H/4, W/4], high [B, C_high, H/os, W/os]) and
# exposes `low_channels` / `high_channels`. Submodule names mirror the torchvision
# classification model so its state dict loads without renaming keys.
# ---------------------------------------------------------------------------------


class ResNetBackbone(nn.Module):
    """torchvision ResNet without avgpool/fc; low = layer1 (stride 4), high = layer4."""

    def __init__(self, resnet):
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4
        self.low_channels = self.layer1[-1].conv3.out_channels  # 256 for Bottleneck ResNets
        self.high_channels = self.layer4[-1].conv3.out_channels  # 2048
        self.head_channels = ASPP_CHANNELS

    def forward(self, x):  # x: [B, 3, H, W]
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # [B, 64, H/4, W/4]
        low = self.layer1(x)  # [B, 256, H/4, W/4]
        high = self.layer4(self.layer3(self.layer2(low)))  # [B, 2048, H/os, W/os]
        return low, high


def _resnet(factory, output_stride):
    # layer2/3/4 each halve the resolution (stride 8/16/32); dilating instead of
    # striding keeps OS 16 ([F, F, T]) or OS 8 ([F, T, T]) with the same weights.
    dilate = [False, False, True] if output_stride == 16 else [False, True, True]
    return ResNetBackbone(factory(weights=None, replace_stride_with_dilation=dilate))


def resnet50_backbone(output_stride):
    from torchvision.models import resnet50

    return _resnet(resnet50, output_stride)


def resnet101_backbone(output_stride):
    from torchvision.models import resnet101

    return _resnet(resnet101, output_stride)


class MobileNetV2Backbone(nn.Module):
    """torchvision MobileNetV2 features[0..17]; low = features[3], high = features[17].

    features[18] (the 1x1 conv to 1280 channels) only serves the classifier and is
    dropped: ASPP sits on the 320-channel output of the last inverted residual, as in
    the DeepLabv3+ MobileNetV2 models.
    """

    LOW_INDEX = 3  # features[0..3] end at stride 4 with 24 channels

    def __init__(self, output_stride):
        super().__init__()
        from torchvision.models import mobilenet_v2

        features = mobilenet_v2(weights=None).features
        self.features = nn.Sequential(*features[:18])  # keeps the names features.0 .. features.17
        _dilate_mobilenet(self.features, output_stride)
        self.low_channels = self.features[self.LOW_INDEX].out_channels  # 24
        self.high_channels = self.features[-1].out_channels  # 320
        self.head_channels = ASPP_CHANNELS

    def forward(self, x):  # x: [B, 3, H, W]
        low = self.features[: self.LOW_INDEX + 1](x)  # [B, 24, H/4, W/4]
        high = self.features[self.LOW_INDEX + 1 :](low)  # [B, 320, H/os, W/os]
        return low, high


def _dilate_mobilenet(features, output_stride):
    """Turn the stride-2 depthwise convs past `output_stride` into stride 1 + dilation.

    Same rule as torchvision's `replace_stride_with_dilation` for ResNets: the block
    that loses its stride keeps the dilation it had, every 3x3 conv after it uses the
    doubled dilation (padding = dilation keeps the spatial size). Only the 3x3 convs
    (the depthwise ones and the stem, features[0]) have a spatial extent; 1x1 convs
    need no change.
    """
    stride, dilation = 1, 1  # stride reached so far, dilation for the next 3x3 conv
    for block in features:
        for conv in block.modules():
            if not (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3)):
                continue
            if conv.stride == (2, 2) and stride >= output_stride:
                conv.stride = (1, 1)
                conv.dilation = conv.padding = (dilation, dilation)
                dilation *= 2
                if hasattr(block, "stride"):  # InvertedResidual records its stride
                    block.stride = 1
            else:
                stride *= conv.stride[0]
                conv.dilation = conv.padding = (dilation, dilation)


def mobilenet_v2_backbone(output_stride):
    return MobileNetV2Backbone(output_stride)


def _conv_bn_relu(in_ch, out_ch, stride=1, dilation=1):
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class TinyBackbone(nn.Module):
    """Four plain 3x3 conv-BN-ReLU stages (~42k parameters) for CPU demos and tests.

    Not a model to report numbers with: it has the same interface and strides as the
    real backbones so every code path (ASPP rates, decoder fusion, OS 8/16) is
    exercised in seconds.
    """

    def __init__(self, output_stride):
        super().__init__()
        self.stem = nn.Sequential(_conv_bn_relu(3, 16, stride=2), _conv_bn_relu(16, 24, stride=2))  # stride 4
        self.stage3 = _conv_bn_relu(24, 48, stride=2)  # stride 8
        # At OS 8 the last stage keeps the resolution instead of halving it; its 3x3
        # conv keeps dilation 1 like the first block of a dilated ResNet stage.
        self.stage4 = _conv_bn_relu(48, 64, stride=2 if output_stride == 16 else 1)
        self.low_channels, self.high_channels = 24, 64
        # A 256-channel head at stride 4 would cost more than this whole backbone.
        self.head_channels = 64

    def forward(self, x):  # x: [B, 3, H, W]
        low = self.stem(x)  # [B, 24, H/4, W/4]
        high = self.stage4(self.stage3(low))  # [B, 64, H/os, W/os]
        return low, high


BACKBONES = {
    "mobilenet_v2": mobilenet_v2_backbone,
    "resnet50": resnet50_backbone,
    "resnet101": resnet101_backbone,
    "tiny": TinyBackbone,
}
ARCHS = sorted(BACKBONES)  # argparse choices


# ---------------------------------------------------------------------------------
# Head.
# ---------------------------------------------------------------------------------


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabv3 Sec. 3.3): 1x1, three atrous 3x3, image pooling.

    No dropout after the projection, unlike the reference implementations (0.1-0.5
    there): that dropout lives at the input of `Decoder` instead, so `encode` stays
    deterministic and MC dropout can sample it while running the encoder once.
    """

    def __init__(self, in_channels, rates, out_channels=ASPP_CHANNELS):
        super().__init__()
        branches = [
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)
            )
        ]
        for rate in rates:
            branches.append(
                nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 3, padding=rate, dilation=rate, bias=False),
                    nn.BatchNorm2d(out_channels),
                    nn.ReLU(inplace=True),
                )
            )
        self.branches = nn.ModuleList(branches)
        # Image-level features. No BatchNorm here, unlike the paper: in training mode BN
        # over a 1x1 map sees one value per channel when the batch holds one image (a
        # last batch of an epoch can) and raises; the projection's BN normalises the
        # concatenation anyway.
        self.pooling = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1), nn.ReLU(inplace=True)
        )
        self.project = nn.Sequential(
            nn.Conv2d(out_channels * (len(rates) + 2), out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):  # x: [B, C_high, h, w]
        outs = [branch(x) for branch in self.branches]  # each [B, head, h, w]
        pooled = self.pooling(x)  # [B, head, 1, 1]
        outs.append(pooled.expand(-1, -1, x.shape[-2], x.shape[-1]))  # bilinear from 1x1 is a broadcast
        return self.project(torch.cat(outs, dim=1))  # [B, head, h, w]


class Decoder(nn.Module):
    """DeepLabv3+ decoder: low-level 1x1 -> 48 ch, concat with upsampled ASPP, 2x conv3x3 256, 1x1.

    Holds the model's only dropout layers (three, p=`dropout`, none when 0): on the
    ASPP output (where DeepLabv3+ puts its projection dropout) and after each 3x3 conv.
    """

    def __init__(self, low_channels, num_classes, dropout, channels=ASPP_CHANNELS):
        super().__init__()
        self.reduce = nn.Sequential(
            nn.Conv2d(low_channels, LOW_LEVEL_CHANNELS, 1, bias=False),
            nn.BatchNorm2d(LOW_LEVEL_CHANNELS),
            nn.ReLU(inplace=True),
        )
        # Identity instead of Dropout(0): the state dict is the same either way, and
        # `has_mc_dropout` can tell the two kinds of model apart.
        self.aspp_dropout = _dropout(dropout)
        self.fuse = nn.Sequential(
            _conv_bn_relu(channels + LOW_LEVEL_CHANNELS, channels),
            _dropout(dropout),
            _conv_bn_relu(channels, channels),
            _dropout(dropout),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def features(self, low, aspp_out):  # low: [B, C_low, H/4, W/4], aspp_out: [B, head, H/os, W/os]
        """The last feature map, which the classifier and the representation head share: [B, head, H/4, W/4]."""
        low = self.reduce(low)  # [B, 48, H/4, W/4]
        high = F.interpolate(self.aspp_dropout(aspp_out), size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([high, low], dim=1))  # [B, head, H/4, W/4]

    def forward(self, low, aspp_out):
        return self.classifier(self.features(low, aspp_out))  # [B, num_classes, H/4, W/4]


def _init_convs(*modules):
    for module in modules:
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


def _dropout(p):
    return nn.Dropout(p) if p > 0 else nn.Identity()


def representation_head(channels, embed_dim):
    """ReCo's representation head, 1x1 convolutions on the decoder's features (theirs starts with a 3x3 on the
    fused input; here the decoder's two 3x3 convs are shared with the classifier)."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, embed_dim, 1),
    )


class DeepLabV3Plus(nn.Module):
    def __init__(self, arch, num_classes, output_stride=16, mc_dropout=False, embed_dim=0):
        super().__init__()
        self.model_args = {
            "arch": arch, "num_classes": num_classes, "output_stride": output_stride, "mc_dropout": mc_dropout,
        }
        if embed_dim:  # a model without the head keeps the model_args it always had
            self.model_args["embed_dim"] = embed_dim
        dropout = MC_DROPOUT if mc_dropout else 0.0
        self.backbone = BACKBONES[arch](output_stride)
        self.backbone_frozen = False  # a training choice (freeze_backbone), not part of model_args
        # DeepLabv3: rates (6, 12, 18) at OS 16, doubled at OS 8 so the field of view
        # in input pixels stays the same.
        rates = tuple(r * 16 // output_stride for r in (6, 12, 18))
        self.aspp = ASPP(self.backbone.high_channels, rates, self.backbone.head_channels)
        self.decoder = Decoder(self.backbone.low_channels, num_classes, dropout, self.backbone.head_channels)
        # Only the head is initialised here; torchvision initialised the backbone.
        _init_convs(self.aspp, self.decoder)
        self.representation = None
        if embed_dim:
            # Built and initialised last: the rest of the network starts from the same
            # weights for a seed with or without it.
            self.representation = representation_head(self.backbone.head_channels, embed_dim)
            _init_convs(self.representation)

    def freeze_backbone(self):
        """Train only ASPP and decoder (MEAL's protocol): the backbone gets no gradients and keeps its BatchNorm
        statistics."""
        self.backbone.requires_grad_(False)
        self.backbone_frozen = True
        self.backbone.eval()

    def train(self, mode=True):
        super().train(mode)
        if self.backbone_frozen:
            # A frozen backbone must not update its BatchNorm running statistics either.
            self.backbone.eval()
        return self

    def encode(self, x):
        """x [B, 3, H, W] -> (low [B, C_low, H/4, W/4], aspp_out [B, head, H/os, W/os]); no dropout."""
        low, high = self.backbone(x)
        return low, self.aspp(high)

    def decode(self, low, aspp_out, out_size):
        """-> logits [B, num_classes, *out_size]; all dropout of the model happens here."""
        return _upsample(self.decoder(low, aspp_out), out_size)

    def forward(self, x):  # x: [B, 3, H, W]
        low, aspp_out = self.encode(x)
        return self.decode(low, aspp_out, x.shape[-2:])  # [B, num_classes, H, W]

    def forward_with_embeddings(self, x):
        """Training with the contrastive loss, on a model with `embed_dim`: x [B, 3, H, W] ->
        (logits [B, num_classes, H, W] as forward's, embeddings [B, embed_dim, H/4, W/4] of unit L2 norm over dim 1)."""
        features = self.decoder.features(*self.encode(x))  # [B, head, H/4, W/4]
        logits = _upsample(self.decoder.classifier(features), x.shape[-2:])  # [B, num_classes, H, W]
        return logits, F.normalize(self.representation(features), dim=1)  # [B, embed_dim, H/4, W/4]


def _upsample(logits, size):  # [B, C, H/4, W/4] -> [B, C, *size]
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def has_mc_dropout(model):
    return any(isinstance(m, nn.Dropout) for m in model.modules())


def build_model(model_args):
    """Build a DeepLabV3Plus from {"arch", "num_classes", "output_stride", "mc_dropout"} and optionally
    "embed_dim" (as stored in checkpoints)."""
    allowed = {*REQUIRED_ARGS, *OPTIONAL_ARGS}
    if not isinstance(model_args, dict) or not set(REQUIRED_ARGS) <= model_args.keys() <= allowed:
        got = sorted(model_args) if isinstance(model_args, dict) else type(model_args).__name__
        raise UserError(f"model_args must have the keys {sorted(REQUIRED_ARGS)} and may have "
                        f"{sorted(OPTIONAL_ARGS)}, got {got}")
    model_args = {**OPTIONAL_ARGS, **model_args}
    arch, num_classes, output_stride = model_args["arch"], model_args["num_classes"], model_args["output_stride"]
    if arch not in BACKBONES:
        raise UserError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")
    if isinstance(output_stride, bool) or output_stride not in OUTPUT_STRIDES:
        choices = ", ".join(map(str, OUTPUT_STRIDES))
        raise UserError(f"unsupported output stride {output_stride!r}; choose from {choices}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise UserError(f"invalid number of classes {num_classes!r}; it must be an integer >= 2")
    if not isinstance(model_args["mc_dropout"], bool):
        raise UserError(f"mc_dropout must be true or false, got {model_args['mc_dropout']!r}")
    embed_dim = model_args["embed_dim"]
    if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < 0:
        raise UserError(f"invalid embed_dim {embed_dim!r}; it must be an integer >= 0 (0: no representation head)")
    return DeepLabV3Plus(arch, num_classes, output_stride, model_args["mc_dropout"], embed_dim)


def model_with_weights(model_args, state, path, described):
    """build_model(model_args) holding the weights `state` read from `path`, which should be `described`.

    A foreign or mis-sized dict names the first key at fault, and NaN or infinite
    weights are refused: every prediction of such a model would be garbage.
    """
    try:
        model = build_model(model_args)
    except UserError as err:  # model_args read from the file
        raise UserError(f"{path}: {err}") from None
    own = model.state_dict()
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise UserError(f"{path}: not {described}: the weights are not a mapping of names to tensors")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected:
        first = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise UserError(f"{path}: not {described}: {len(missing)} keys missing, "
                        f"{len(unexpected)} unexpected (first {first})")
    if mismatched:
        key = mismatched[0]
        raise UserError(f"{path}: not {described}: {key} is {list(state[key].shape)} "
                        f"in the file, {list(own[key].shape)} in the model")
    broken = first_non_finite(state)
    if broken is not None:
        raise UserError(f"{path}: the weights hold NaN or infinite values ({broken}); train the model again")
    model.load_state_dict(state)
    return model


def first_non_finite(state):
    """The first key of a state dict whose floating-point tensor holds NaN or inf, or None."""
    return next((key for key, tensor in state.items()
                 if tensor.is_floating_point() and not torch.isfinite(tensor).all()), None)


# ---------------------------------------------------------------------------------
# Pretrained backbone weights, local files only.
# ---------------------------------------------------------------------------------

# torchvision's file names for the ImageNet classification weights (V1 and V2), as
# they land in `torch.hub.get_dir()/checkpoints/` after a download elsewhere.
IMAGENET_FILES = {
    "mobilenet_v2": ("mobilenet_v2-b0353104.pth", "mobilenet_v2-7ebf99e0.pth"),
    "resnet50": ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"),
    "resnet101": ("resnet101-63fe2227.pth", "resnet101-cd907fc2.pth"),
}
# Keys of the classification model that the backbone drops on purpose.
UNUSED_PREFIXES = {
    "mobilenet_v2": ("classifier.", "features.18."),
    "resnet50": ("fc.",),
    "resnet101": ("fc.",),
}


def resolve_pretrained(spec, arch):
    """`imagenet` -> the torchvision checkpoint in the torch hub cache; anything else is a path."""
    if arch not in IMAGENET_FILES:
        have = ", ".join(sorted(IMAGENET_FILES))
        raise UserError(f"arch {arch!r} has no pretrained backbone weights; they exist for {have}")
    if spec != "imagenet":
        return Path(spec)
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    for name in IMAGENET_FILES[arch]:
        if (folder / name).is_file():
            return folder / name
    looked = " or ".join(str(folder / name) for name in IMAGENET_FILES[arch])
    raise UserError(
        f"pretrained 'imagenet': no {arch} weights at {looked}; this toolkit never downloads: "
        f"copy a torchvision {arch} state dict there or pass its path"
    )


def pretrained_location(spec):
    """What `--pretrained` reads, for the output checks: its file, or for 'imagenet' the hub cache's folder."""
    return Path(torch.hub.get_dir()) / "checkpoints" if spec == "imagenet" else spec


def load_pretrained_backbone(model, spec, arch):
    """Load a torchvision classification state dict (file path or `imagenet`) into model.backbone.

    Every backbone key must be present with the right shape; only the classifier's
    keys may be left over. Returns the path that was loaded.
    """
    path = resolve_pretrained(spec, arch)
    if not path.is_file():
        raise UserError(f"pretrained weights {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    # The unpickler raises many exception types on foreign bytes (KeyError on a text
    # file, UnpicklingError on a pickled module...); all mean "not a weights file".
    except Exception as err:
        raise UserError(f"pretrained weights {path}: not a torch weights file ({type(err).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise UserError(f"pretrained weights {path}: not a state dict (a mapping of parameter names to tensors)")

    own = model.backbone.state_dict()
    # Older files lack BatchNorm's num_batches_tracked, a step counter that no
    # forward pass reads (momentum is fixed), so it is not required.
    required = [k for k in own if not k.endswith("num_batches_tracked")]
    missing = [k for k in required if k not in state]
    mismatched = [k for k in own if k in state and state[k].shape != own[k].shape]
    unexpected = [k for k in state if k not in own and not k.startswith(UNUSED_PREFIXES[arch])]
    if missing or mismatched or unexpected:
        raise UserError(
            f"pretrained weights {path}: not a torchvision {arch} state dict: "
            f"{len(missing)} of {len(required)} backbone keys missing, {len(mismatched)} with the wrong shape, "
            f"{len(unexpected)} unexpected"
            + (f" (first missing: {missing[0]})" if missing else "")
        )
    model.backbone.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return path
