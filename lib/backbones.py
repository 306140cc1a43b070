"""The torchvision backbones of DeepLabv3+ (lib.models), and a tiny one for CPU demos and tests.

Each returns (low [B, C_low, H/4, W/4], high [B, C_high, H/os, W/os]) and exposes
`low_channels` / `high_channels`, and `head_channels`, the width of the ASPP and
decoder it suits. Submodule names mirror the torchvision classification model so its
state dict loads without renaming keys (lib.pretrained). Backbones never download
weights (`weights=None` always).
"""
from torch import nn

# torchvision is imported inside the builders that need it: importing it costs about
# 2.5 s per process (it pulls in torch._dynamo), and the `tiny` demo model and every
# short select/evaluate call should not pay that.

ASPP_CHANNELS = 256  # DeepLabv3: 256 filters per ASPP branch and after the projection


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
}
ARCHS = sorted(BACKBONES)  # argparse choices
