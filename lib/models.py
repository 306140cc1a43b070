"""DeepLabv3+ on torchvision backbones.

Chen, Zhu, Papandreou, Schroff, Adam, "Encoder-Decoder with Atrous Separable
Convolution for Semantic Image Segmentation", ECCV 2018 (DeepLabv3+), with the ASPP
of Chen, Papandreou, Schroff, Adam, "Rethinking Atrous Convolution for Semantic
Image Segmentation", arXiv:1706.05587 (DeepLabv3).

    image -> backbone -> low (stride s) -> 1x1 to 48 ch ------------+
                      -> high (stride OS) -> ASPP -> upsample x OS/s -> concat
                         -> 2x conv3x3 256 -> 1x1 classifier -> upsample xs -> logits

s is the backbone's `low_stride`: 4, or 2 for wrn38, whose stride-2 features the
study's DeepLabv3+ fuses (ALSS:model/deeplabv3p.py, `bot_fine` on the trunk's mod2).

The network is split in two so that acquisition can reuse the expensive part:
`encode(x) -> (low, aspp_out)` is deterministic, `decode(low, aspp_out, size)` holds
the dropout layers of `mc_dropout` models (three, p=0.1: the BALD setting of the
"best practices" study), so MC dropout runs the encoder once and the decoder T
times. Models without `mc_dropout` have no dropout at all, as in the study, where
Random, Entropy, EqualAL and Coreset are trained without it; the one exception is
wrn38's backbone, whose Dropout2d (mod6, mod7) trains as in the study's WRN-38: in eval
mode it is off, so `encode` stays deterministic, and MC dropout never samples it
(it is no nn.Dropout, see has_mc_dropout). Coreset's features are
the ASPP output averaged over an image or patch; MEAL's the backbone's last stage.

Models with `embed_dim` > 0 carry ReCo's representation head (Liu et al., ICLR 2022;
S4AL+'s contrastive head) on the decoder's last feature map, beside the classifier:
`forward_with_embeddings` returns its unit-norm embeddings for the contrastive loss
of training; `forward`, `encode` and `decode` never run it, so inference ignores it.

Acquisition reads feature maps by name, never the network's parts: `feature_map(name,
images)` with a name of FEATURE_MAPS ("backbone": MEAL's, "aspp": coreset's).
TorchScript and torch.export models offer the same names through their --feature-layer
(lib.model_files.ForeignSegmenter).

Models are built from a plain JSON-able dict (nanoGPT's `model_args`) that
checkpoints carry, so `select.py` / `evaluate.py` rebuild a network from the file
alone (`embed_dim` is optional: checkpoints from before the head lack it):

    model = build_model({"arch": "mobilenet_v2", "num_classes": 11, "output_stride": 16, "mc_dropout": False})
    load_pretrained_backbone(model, "imagenet", "mobilenet_v2")   # lib.pretrained; never downloads

The backbones live in lib.backbones; pretrained ImageNet weights come from a local
torchvision state dict through lib.pretrained.
"""
import torch
import torch.nn.functional as F
from torch import nn

from lib.backbones import ARCHS, ASPP_CHANNELS, BACKBONES, conv_bn_relu
from lib.errors import UserError
from lib.state_dicts import first_non_finite, is_state_dict, key_mismatch

OUTPUT_STRIDES = (16, 8)
LOW_LEVEL_CHANNELS = 48  # DeepLabv3+ Sec. 4.1: 48 channels for the reduced low-level features
MC_DROPOUT = 0.1  # "best practices" study: 3 dropout layers, p=0.1, decoder only
REQUIRED_ARGS = ("arch", "num_classes", "output_stride", "mc_dropout")
OPTIONAL_ARGS = {"embed_dim": 0}  # the default builds the model these keys did not exist for
# The feature maps acquisition reads by name (DeepLabV3Plus.feature_map): (model, images [B, 3, H, W]) -> [B, d, h, w].
FEATURE_MAPS = {
    "backbone": lambda model, x: model.backbone(x)[1],  # the last stage [B, C_high, H/os, W/os]: MEAL
    "aspp": lambda model, x: model.encode(x)[1],  # the ASPP output [B, head, H/os, W/os]: coreset, kmeanspp
}


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
        # over a 1x1 map sees one value per channel when the batch holds one image
        # (train.py -b 1) and raises; the projection's BN normalises the concatenation
        # anyway.
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
            conv_bn_relu(channels + LOW_LEVEL_CHANNELS, channels),
            _dropout(dropout),
            conv_bn_relu(channels, channels),
            _dropout(dropout),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def features(self, low, aspp_out):  # low: [B, C_low, H/s, W/s], aspp_out: [B, head, H/os, W/os]
        """The last feature map, which the classifier and the representation head share: [B, head, H/s, W/s]."""
        low = self.reduce(low)  # [B, 48, H/s, W/s]
        high = F.interpolate(self.aspp_dropout(aspp_out), size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([high, low], dim=1))  # [B, head, H/s, W/s]

    def forward(self, low, aspp_out):
        return self.classifier(self.features(low, aspp_out))  # [B, num_classes, H/s, W/s]


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
    feature_maps = tuple(FEATURE_MAPS)  # the names feature_map() knows

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

    def backbone_and_head_parameters(self):
        """(the backbone's trainable parameters, the others': ASPP, decoder and representation head), in the order
        of parameters(): the groups of train.py's --head-lr-mult."""
        in_backbone = {id(p) for p in self.backbone.parameters()}
        trainable = [p for p in self.parameters() if p.requires_grad]
        return [p for p in trainable if id(p) in in_backbone], [p for p in trainable if id(p) not in in_backbone]

    def train(self, mode=True):
        super().train(mode)
        if self.backbone_frozen:
            # A frozen backbone must not update its BatchNorm running statistics either.
            self.backbone.eval()
        return self

    def encode(self, x):
        """x [B, 3, H, W] -> (low [B, C_low, H/s, W/s], aspp_out [B, head, H/os, W/os]); no dropout in eval mode."""
        low, high = self.backbone(x)
        return low, self.aspp(high)

    def decode(self, low, aspp_out, out_size):
        """-> logits [B, num_classes, *out_size]; all dropout of the model happens here."""
        return _upsample(self.decoder(low, aspp_out), out_size)

    def feature_map(self, name, x):
        """The feature map `name` of FEATURE_MAPS for x [B, 3, H, W]: [B, d, H/os, W/os]."""
        return FEATURE_MAPS[name](self, x)

    def forward(self, x):  # x: [B, 3, H, W]
        low, aspp_out = self.encode(x)
        return self.decode(low, aspp_out, x.shape[-2:])  # [B, num_classes, H, W]

    def forward_with_embeddings(self, x):
        """Training with the contrastive loss, on a model with `embed_dim`: x [B, 3, H, W] ->
        (logits [B, num_classes, H, W] as forward's, embeddings [B, embed_dim, H/s, W/s] of unit L2 norm over dim 1)."""
        features = self.decoder.features(*self.encode(x))  # [B, head, H/s, W/s]
        logits = _upsample(self.decoder.classifier(features), x.shape[-2:])  # [B, num_classes, H, W]
        return logits, F.normalize(self.representation(features), dim=1)  # [B, embed_dim, H/s, W/s]


def _upsample(logits, size):  # [B, C, H/s, W/s] -> [B, C, *size]
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def has_mc_dropout(model):
    # nn.Dropout only: the Dropout2d of wrn38's backbone (an nn._DropoutNd, not an nn.Dropout) is no MC dropout,
    # and lib.acquire.scores.dropout_active leaves it in eval mode by the same test.
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
    if not is_state_dict(state):
        raise UserError(f"{path}: not {described}: the weights are not a mapping of names to tensors")
    mismatch = key_mismatch(model.state_dict(), state)
    if mismatch:
        raise UserError(f"{path}: not {described}: {mismatch}")
    broken = first_non_finite(state)
    if broken is not None:
        raise UserError(f"{path}: the weights hold NaN or infinite values ({broken}); train the model again")
    model.load_state_dict(state)
    return model


