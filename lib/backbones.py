"""The backbones of DeepLabv3+ (lib.models): torchvision's, the study's WRN-38, and a tiny one for CPU demos and tests.

Each returns (low [B, C_low, H/low_stride, W/low_stride], high [B, C_high, H/os, W/os])
and exposes `low_channels` / `high_channels`, `low_stride` (4; 2 for wrn38, whose
stride-2 features the study's decoder fuses), and `head_channels`, the width of the
ASPP and decoder it suits. Submodule names mirror the classification model whose
ImageNet weights they take (torchvision's; the study's WRN-38 checkpoint) so its state
dict loads without renaming keys (lib.pretrained). Backbones never download weights
(`weights=None` always).
"""
from collections import OrderedDict

from torch import nn

# torchvision is imported inside the builders that need it: importing it costs about
# 2.5 s per process (it pulls in torch._dynamo), and the `tiny` demo model and every
# short select/evaluate call should not pay that.

ASPP_CHANNELS = 256  # DeepLabv3: 256 filters per ASPP branch and after the projection


class ResNetBackbone(nn.Module):
    """torchvision ResNet without avgpool/fc; low = layer1 (stride 4), high = layer4."""

    low_stride = 4

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
    low_stride = 4

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


# WRN-38, the study's backbone: Wu, Shen, van den Hengel, "Wider or Deeper: Revisiting the ResNet Model for Visual
# Recognition", Pattern Recognition 2019 (model A2 of its ImageNet experiments), in the dilated form of the study's
# code, ALSS:model/wider_resnet.py (sud0301/best_practices_ALSS; `WiderResNetA2(structure=[3, 3, 6, 3, 1, 1],
# dilation=True)`, after mapillary/inplace_abn). Written here from that description; module names are the ones of
# its ImageNet checkpoint, wider_resnet38.pth.tar. Per module mod2..mod7: (residual blocks, block widths (two: two
# 3x3 convs; three: a 1x1-3x3-1x1 bottleneck), Dropout2d p inside the bottleneck, stride of block1 in the
# undilated network). mod2 and mod3 are preceded by max pools (pool2, pool3) instead of a stride.
WRN38_MODULES = (
    (3, (128, 128), 0.0, 1),
    (3, (256, 256), 0.0, 1),
    (6, (512, 512), 0.0, 2),
    (3, (512, 1024), 0.0, 2),
    (1, (512, 1024, 2048), 0.3, 2),
    (1, (1024, 2048, 4096), 0.5, 1),
)


def bn_relu(channels):
    # A Sequential, as in the study's code (`bnrelu`): its checkpoint names BatchNorm `bn1.0.weight`.
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


def _conv3x3(in_ch, out_ch, stride, dilation):
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def _block_convs(in_ch, widths, stride, dilation, dropout):
    """The named layers of a block's residual branch: two 3x3 convs, or the bottleneck 1x1 (strided) - 3x3 - 1x1
    with Dropout2d(`dropout`) before the last 1x1, where ALSS:model/wider_resnet.py puts it."""
    if len(widths) == 2:
        return [
            ("conv1", _conv3x3(in_ch, widths[0], stride, dilation)),
            ("bn2", bn_relu(widths[0])),
            ("conv2", _conv3x3(widths[0], widths[1], 1, dilation)),
        ]
    return [
        ("conv1", nn.Conv2d(in_ch, widths[0], 1, stride=stride, bias=False)),
        ("bn2", bn_relu(widths[0])),
        ("conv2", _conv3x3(widths[0], widths[1], 1, dilation)),
        ("bn3", bn_relu(widths[1])),
        ("dropout", nn.Dropout2d(dropout)),
        ("conv3", nn.Conv2d(widths[1], widths[2], 1, bias=False)),
    ]


class PreActBlock(nn.Module):
    """A pre-activation residual block (He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016).

    BN-ReLU on the input feeds the residual branch; the shortcut is the input itself, or,
    where the width or the resolution changes, a 1x1 projection of the activated input.
    """

    def __init__(self, in_ch, widths, stride, dilation, dropout):
        super().__init__()
        self.bn1 = bn_relu(in_ch)
        self.convs = nn.Sequential(OrderedDict(_block_convs(in_ch, widths, stride, dilation, dropout)))
        projected = stride != 1 or in_ch != widths[-1]
        self.proj_conv = nn.Conv2d(in_ch, widths[-1], 1, stride=stride, bias=False) if projected else None

    def forward(self, x):  # x: [B, in_ch, h, w]
        activated = self.bn1(x)
        shortcut = x if self.proj_conv is None else self.proj_conv(activated)
        return self.convs(activated) + shortcut  # [B, widths[-1], h / stride, w / stride]


def wrn38_strides(output_stride):
    """[(stride of block1, dilation of the 3x3 convs)] of mod2..mod7 at `output_stride`.

    The undilated network halves the resolution in mod4, mod5 and mod6 (stride 32). Past
    `output_stride` a module keeps the resolution and doubles the dilation, for all its
    blocks and the modules after it: at 8, mod5 at dilation 2 and mod6-7 at 4, the
    study's (ALSS:model/wider_resnet.py, `dilation=True`); at 16, mod6-7 at 2.
    """
    reached, dilation, strides = 4, 1, []  # pool2 and pool3 reach stride 4 before mod3
    for _, _, _, stride in WRN38_MODULES:
        if stride == 2 and reached < output_stride:
            reached *= 2
        elif stride == 2:
            stride, dilation = 1, dilation * 2
        strides.append((stride, dilation))
    return strides


class WRN38Backbone(nn.Module):
    """WiderResNet-38 A2 without bn_out and classifier (the study's `wrn38` trunk); low = mod2 (stride 2, 128 ch),
    high = mod7 (4096 ch).

    Both outputs are residual sums with no BN-ReLU after them, as the study's trunk hands
    them to ASPP and decoder. mod6 and mod7 keep their Dropout2d (0.3, 0.5) in training,
    as the study trains them; it is off in eval mode and is not MC dropout
    (lib.models.has_mc_dropout).
    """

    low_stride = 2  # the study's DeepLabv3+ fuses mod2's stride-2 features (ALSS:model/deeplabv3p.py, bot_fine)

    def __init__(self, output_stride):
        super().__init__()
        self.mod1 = nn.Sequential(OrderedDict(conv1=nn.Conv2d(3, 64, 3, padding=1, bias=False)))
        self.pool2 = nn.MaxPool2d(3, stride=2, padding=1)
        self.pool3 = nn.MaxPool2d(3, stride=2, padding=1)
        in_ch = 64
        for number, ((blocks, widths, dropout, _), (stride, dilation)) in enumerate(
                zip(WRN38_MODULES, wrn38_strides(output_stride)), start=2):
            module = OrderedDict()
            for b in range(blocks):  # block1 takes the previous module's width and the stride
                module[f"block{b + 1}"] = PreActBlock(in_ch, widths, stride if b == 0 else 1, dilation, dropout)
                in_ch = widths[-1]
            self.add_module(f"mod{number}", nn.Sequential(module))
        self.low_channels, self.high_channels = WRN38_MODULES[0][1][-1], in_ch  # 128, 4096
        self.head_channels = ASPP_CHANNELS

    def forward(self, x):  # x: [B, 3, H, W]
        low = self.mod2(self.pool2(self.mod1(x)))  # [B, 128, H/2, W/2]
        x = self.mod3(self.pool3(low))  # [B, 256, H/4, W/4]
        high = self.mod7(self.mod6(self.mod5(self.mod4(x))))  # [B, 4096, H/os, W/os]
        return low, high


def conv_bn_relu(in_ch, out_ch, stride=1, dilation=1):
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

    low_stride = 4

    def __init__(self, output_stride):
        super().__init__()
        self.stem = nn.Sequential(conv_bn_relu(3, 16, stride=2), conv_bn_relu(16, 24, stride=2))  # stride 4
        self.stage3 = conv_bn_relu(24, 48, stride=2)  # stride 8
        # At OS 8 the last stage keeps the resolution instead of halving it; its 3x3
        # conv keeps dilation 1 like the first block of a dilated ResNet stage.
        self.stage4 = conv_bn_relu(48, 64, stride=2 if output_stride == 16 else 1)
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
    "wrn38": WRN38Backbone,
}
ARCHS = sorted(BACKBONES)  # argparse choices
