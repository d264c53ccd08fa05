"""EfficientNet-Lite0/1/2 feature extractors in plain torch, with timm's layer names, for serving.

Importing timm pulls in torchvision and torch._dynamo: measured 1.4 s and about 200 MB in every app kernel
(benchmarks/app_speed.py). Serving needs only these fixed architectures, so they are spelled out here and
load the same saved weights; training still builds them with timm. tests/test_efficientnet_lite.py checks both give
the same outputs.
"""

from __future__ import annotations

import math

from torch import nn

# (block kind, repeats, kernel, stride, expansion, output channels): timm's efficientnet_lite arch_def.
STAGES = [("ds", 1, 3, 1, 1, 16), ("ir", 2, 3, 2, 6, 24), ("ir", 2, 5, 2, 6, 40), ("ir", 3, 3, 2, 6, 80),
          ("ir", 3, 5, 1, 6, 112), ("ir", 4, 5, 2, 6, 192), ("ir", 1, 3, 1, 6, 320)]
FEATURES = 1280
STEM = 32
# timm name -> (channel multiplier, depth multiplier), as timm's _gen_efficientnet_lite.
VARIANTS = {"efficientnet_lite0": (1.0, 1.0), "efficientnet_lite1": (1.0, 1.1), "efficientnet_lite2": (1.1, 1.2)}


def scaled_channels(channels: int, multiplier: float) -> int:
    """timm's round_channels: scale, round to a multiple of 8, never more than 10 % below the scaled value."""
    if multiplier == 1.0:
        return channels
    scaled = channels * multiplier
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def scaled_stages(channel_multiplier: float, depth_multiplier: float) -> list[tuple]:
    """The stages of a Lite variant: first and last stage keep their repeats (timm's fix_first_last)."""
    stages = []
    for index, (kind, repeats, kernel, stride, expansion, outputs) in enumerate(STAGES):
        if 0 < index < len(STAGES) - 1:
            repeats = int(math.ceil(repeats * depth_multiplier))
        stages.append((kind, repeats, kernel, stride, expansion, scaled_channels(outputs, channel_multiplier)))
    return stages


def convolution(inputs: int, outputs: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A bias-free convolution with symmetric padding, as timm's non-TF EfficientNets use."""
    return nn.Conv2d(inputs, outputs, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)


class NormActivation(nn.BatchNorm2d):
    """Batch norm then ReLU6 (Lite models use ReLU6), named like timm's `BatchNormAct2d`."""

    def __init__(self, channels: int, activation: bool = True):
        super().__init__(channels)
        self.act = nn.ReLU6(inplace=True) if activation else nn.Identity()

    def forward(self, x):
        return self.act(super().forward(x))


class DepthwiseSeparable(nn.Module):
    """timm's `DepthwiseSeparableConv` without squeeze-excite (Lite models have none)."""

    def __init__(self, inputs: int, outputs: int, kernel: int, stride: int):
        super().__init__()
        self.conv_dw, self.bn1 = convolution(inputs, inputs, kernel, stride, inputs), NormActivation(inputs)
        self.conv_pw, self.bn2 = convolution(inputs, outputs), NormActivation(outputs, activation=False)
        self.skip = stride == 1 and inputs == outputs

    def forward(self, x):
        y = self.bn2(self.conv_pw(self.bn1(self.conv_dw(x))))
        return x + y if self.skip else y


class InvertedResidual(nn.Module):
    """timm's `InvertedResidual` (expand, depthwise, project) without squeeze-excite."""

    def __init__(self, inputs: int, outputs: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        middle = inputs * expansion
        self.conv_pw, self.bn1 = convolution(inputs, middle), NormActivation(middle)
        self.conv_dw, self.bn2 = convolution(middle, middle, kernel, stride, middle), NormActivation(middle)
        self.conv_pwl, self.bn3 = convolution(middle, outputs), NormActivation(outputs, activation=False)
        self.skip = stride == 1 and inputs == outputs

    def forward(self, x):
        y = self.bn3(self.conv_pwl(self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))))
        return x + y if self.skip else y


class EfficientNetLite(nn.Module):
    """The body of timm's `efficientnet_lite0/1/2` (no classifier): `forward_features` gives 1280 channels."""

    num_features = FEATURES

    def __init__(self, variant: str = "efficientnet_lite0"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}: one of {', '.join(VARIANTS)}")
        self.conv_stem, self.bn1 = convolution(3, STEM, 3, 2), NormActivation(STEM)
        stages, channels = [], STEM
        for kind, repeats, kernel, stride, expansion, outputs in scaled_stages(*VARIANTS[variant]):
            blocks = []
            for index in range(repeats):
                step = stride if index == 0 else 1
                blocks.append(DepthwiseSeparable(channels, outputs, kernel, step) if kind == "ds"
                              else InvertedResidual(channels, outputs, kernel, step, expansion))
                channels = outputs
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.conv_head, self.bn2 = convolution(channels, FEATURES), NormActivation(FEATURES)

    def forward_features(self, x):
        return self.bn2(self.conv_head(self.blocks(self.bn1(self.conv_stem(x)))))
