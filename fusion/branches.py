"""Sensor branches: `[B, in_channels, H, W]` -> feature maps at stages 0..depth.

Every branch is a stem (stage 0, any band count -> `width`) and `depth` blocks (stages
1..depth). By default all stages keep the input's full resolution (patches are a few pixels
wide, 7x7 or 11x11): `reductions` is all ones. In an encoder-decoder (an arch with a
`decoder`) the model calls `downsample()`: a 2x2 max pooling (ceil mode, so any size works)
then runs before every block, and stage s is at 1/2^s of the input (`reductions[s] = 2**s`).
Pooling lives in the base class so that every branch kind, plugins included, can downsample.

Dropout (`BranchSpec.dropout` > 0, `with_dropout()`) is channel dropout (`nn.Dropout2d`) on
every stage's output, stem included, also in the base class: it zeroes whole feature maps of a
sample, so in MC dropout one pass over a window draws one mask for all of its pixels, and each
pixel's output is a sample of the same distribution as one pass over its own patch (see
`autors.export.fullconv`). A plugin branch that overrides `forward` applies it itself.
"""

# No `from __future__ import annotations`: TorchScript reads the class-level attribute
# annotations below and cannot resolve them from strings.
import torch
from torch import Tensor, nn

from fusion.registry import BRANCHES


def conv_bn_act(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    """k x k conv (size-preserving) + BatchNorm + ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation,
                  bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Branch(nn.Module):
    """Base class. Subclasses set `self.stem` and `self.blocks`; the timm-like contract is
    `out_channels[i]` and `reductions[i]` for stage i (0 = stem)."""

    out_channels: list[int]
    reductions: list[int]
    # What the branch reads: "real" (any band stack) or "complex" (real/imaginary channel
    # pairs of a `sar_units: complex` sensor, `fusion.complex`); the search spaces ask it.
    input_kind = "real"
    # Whether the branch reads when a time series' dates are (their order, day of year), not
    # only which values occurred: the temporal kinds with a timing-aware operator
    # (`fusion.temporal`); the search spaces ask it.
    sees_timing = False

    def __init__(self, in_channels: int, width: int, depth: int, kernel: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = [width] * (depth + 1)
        self.reductions = [1] * (depth + 1)
        self.stem: nn.Module = nn.Identity()
        self.blocks = nn.ModuleList()
        self.pooled = False
        self.entry = 1  # the input's average pooling (a sensor entering at a coarser scale)
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True)  # no weights: harmless when unused
        self.drop: nn.Module = nn.Identity()  # channel dropout on every stage (with_dropout)

    def with_dropout(self, p: float) -> "Branch":
        """Channel dropout of rate `p` on every stage's output (none for 0). Returns self."""
        self.drop = nn.Dropout2d(p) if p > 0 else nn.Identity()
        return self

    def downsample(self, scale: int = 0) -> "Branch":
        """Halve the resolution before every block, the input taken at `scale` (average-pooled
        2^scale times): stage s at 1/2^(scale + s). Returns self."""
        self.pooled = True
        self.entry = 2**scale
        self.reductions = [2 ** (scale + s) for s in range(len(self.out_channels))]
        return self

    def enter(self, x: Tensor) -> Tensor:
        """The input at the branch's entry scale."""
        if self.entry == 1:
            return x
        return nn.functional.avg_pool2d(x, self.entry, self.entry, ceil_mode=True)

    def forward(self, x: Tensor) -> Tensor:
        """`[B, C_in, H, W]` -> last stage `[B, width, H / r, W / r]`, r = reductions[-1]."""
        x = self.drop(self.stem(self.enter(x)))
        for block in self.blocks:
            if self.pooled:
                x = self.pool(x)
            x = self.drop(block(x))
        return x

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Every stage's output, `depth + 1` maps; stage s is `[B, width, H / r_s, W / r_s]`."""
        x = self.drop(self.stem(self.enter(x)))
        feats = [x]
        for block in self.blocks:
            if self.pooled:
                x = self.pool(x)
            x = self.drop(block(x))
            feats.append(x)
        return feats


@BRANCHES.register("conv")
class ConvBranch(Branch):
    """Plain stack of conv-BN-ReLU layers."""

    def __init__(self, in_channels: int, width: int, depth: int, kernel: int) -> None:
        super().__init__(in_channels, width, depth, kernel)
        self.stem = conv_bn_act(in_channels, width, kernel)
        self.blocks = nn.ModuleList(conv_bn_act(width, width, kernel) for _ in range(depth))


class _ResidualBlock(nn.Module):
    def __init__(self, width: int, kernel: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_act(width, width, kernel),
            nn.Conv2d(width, width, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(width),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.body(x))


@BRANCHES.register("residual")
class ResidualBranch(Branch):
    """ResNet basic blocks (two convs and an identity shortcut) after a conv stem."""

    def __init__(self, in_channels: int, width: int, depth: int, kernel: int) -> None:
        super().__init__(in_channels, width, depth, kernel)
        self.stem = conv_bn_act(in_channels, width, kernel)
        self.blocks = nn.ModuleList(_ResidualBlock(width, kernel) for _ in range(depth))


def _separable(cin: int, cout: int, kernel: int) -> nn.Sequential:
    """Depthwise k x k + pointwise 1x1 + BN + ReLU: about k*k/cout of a full conv's weights."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, kernel, padding=kernel // 2, groups=cin, bias=False),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


@BRANCHES.register("separable")
class SeparableBranch(Branch):
    """Compact branch of depthwise-separable convolutions (MobileNet-style)."""

    def __init__(self, in_channels: int, width: int, depth: int, kernel: int) -> None:
        super().__init__(in_channels, width, depth, kernel)
        self.stem = _separable(in_channels, width, kernel)
        self.blocks = nn.ModuleList(_separable(width, width, kernel) for _ in range(depth))


class SpectralStem(nn.Module):
    """1D convolution along the band axis, then a 1x1 spectral reduction to `width`.

    The 1D filters (shared by all bands and pixels) see neighbouring bands, which suits
    hundreds of contiguous hyperspectral bands; the 1x1 then mixes all of them per pixel.
    """

    FILTERS = 4
    SPECTRAL_KERNEL = 7

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        k = self.SPECTRAL_KERNEL
        self.spectral = nn.Sequential(
            nn.Conv3d(1, self.FILTERS, (k, 1, 1), padding=(k // 2, 0, 0), bias=False),
            nn.BatchNorm3d(self.FILTERS),
            nn.ReLU(inplace=True),
        )
        self.reduce = conv_bn_act(self.FILTERS * in_channels, width, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.spectral(x.unsqueeze(1))  # [B, F, C, H, W]
        return self.reduce(y.flatten(1, 2))  # [B, F*C, H, W] -> [B, width, H, W]


@BRANCHES.register("spectral")
class SpectralBranch(Branch):
    """Hyperspectral spectral-spatial branch: spectral stem, then spatial conv blocks."""

    def __init__(self, in_channels: int, width: int, depth: int, kernel: int) -> None:
        super().__init__(in_channels, width, depth, kernel)
        self.stem = SpectralStem(in_channels, width)
        self.blocks = nn.ModuleList(conv_bn_act(width, width, kernel) for _ in range(depth))


class SignedLog1p(nn.Module):
    """sign(x) * log(1 + |x|): defined for every real value (dB is negative, linear power
    spans decades, speckle makes outliers) and compresses heavy tails without NaN."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.sign(x) * torch.log1p(torch.abs(x))


@BRANCHES.register("sar")
class SarBranch(Branch):
    """SAR branch: log-safe stem, then dilated convs (dilation 2) for a larger receptive
    field, which averages speckle over more pixels."""

    DILATION = 2

    def __init__(self, in_channels: int, width: int, depth: int, kernel: int) -> None:
        super().__init__(in_channels, width, depth, kernel)
        self.stem = nn.Sequential(SignedLog1p(), conv_bn_act(in_channels, width, kernel))
        self.blocks = nn.ModuleList(
            conv_bn_act(width, width, kernel, dilation=self.DILATION) for _ in range(depth)
        )
