"""The decoder of an encoder-decoder: fused maps at scales 0..L -> `[B, width, H, W]`.

Scale s is 1/2^s of the input (the encoders' stage s, after s 2x2 poolings in ceil mode, so
its side is ceil(H / 2^s)). The decoder starts from the deepest map (scale L), optionally
through a context module, and for s = L-1 .. 0: upsamples by exactly 2 (then crops to scale
s's size), concatenates the fused map of scale s when s is one of `skips`, and mixes with a
3x3 conv-BN-ReLU of `width` channels.

Upsampling is always by a factor of 2 anchored at the top-left corner (never "to the size of
the skip"), so a pixel's output depends only on its neighbourhood and on where it lies
relative to the 2^L grid: a map predicted in windows aligned to 2^L is the same whatever the
window size. For the same reason there is no image-level pooling branch in the context module
(DeepLab's global average would make every pixel depend on the whole window).
"""

# No `from __future__ import annotations`: TorchScript reads the class-level annotations.
import torch
from torch import Tensor, nn
from torch.nn import functional

from fusion.branches import conv_bn_act


class BilinearUp(nn.Module):
    """x2 bilinear upsampling (no weights)."""

    def __init__(self, channels: int) -> None:
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class TransposedUp(nn.Module):
    """x2 learned upsampling: a 2x2 transposed convolution with stride 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(channels, channels, 2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Aspp(nn.Module):
    """Atrous spatial pyramid pooling without the image-level branch: a 1x1 conv and 3x3 convs
    at dilations `RATES` in parallel, concatenated, mixed by a 1x1 conv. The rates are in
    pixels of the deepest scale (at scale 3, rate 4 reaches 32 input pixels)."""

    RATES = (2, 4)

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.paths = nn.ModuleList(
            [conv_bn_act(channels, width, 1)]
            + [conv_bn_act(channels, width, 3, dilation=r) for r in self.RATES]
        )
        self.project = conv_bn_act(width * len(self.paths), width, 1)

    def forward(self, x: Tensor) -> Tensor:
        outs: list[Tensor] = []
        for path in self.paths:
            outs.append(path(x))
        return self.project(torch.cat(outs, dim=1))


UPSAMPLERS: dict[str, type[nn.Module]] = {"bilinear": BilinearUp, "transposed": TransposedUp}
# Context modules on the deepest map: channels in -> decoder width out.
CONTEXTS = ("none", "aspp")


class _UpBlock(nn.Module):
    """One decoder level: x2 up, crop to the skip scale's size, [concat skip], conv."""

    skip: bool

    def __init__(self, cin: int, skip_channels: int, width: int, up: str) -> None:
        super().__init__()
        self.up = UPSAMPLERS[up](cin)
        self.skip = skip_channels > 0
        self.conv = conv_bn_act(cin + skip_channels, width, 3)

    def forward(self, x: Tensor, ref: Tensor) -> Tensor:
        x = self.up(x)[:, :, : ref.shape[2], : ref.shape[3]]
        if self.skip:
            x = torch.cat([x, ref], dim=1)
        return self.conv(x)


class Decoder(nn.Module):
    """`forward(maps)`: `maps[s]` is the fused map of scale s for s = 0..L (`channels[s]`
    channels); a scale without a fused map passes any tensor of that scale's size (only its
    size is read: it is not in `skips`). Returns `[B, width, H_0, W_0]`."""

    scales: list[int]

    def __init__(self, channels: list[int], skips: list[int], width: int, up: str,
                 context: str) -> None:
        super().__init__()
        deepest = len(channels) - 1
        if context == "aspp":
            self.context: nn.Module = Aspp(channels[deepest], width)
            cin = width
        else:
            self.context = nn.Identity()
            cin = channels[deepest]
        self.scales = list(range(deepest - 1, -1, -1))
        blocks = []
        for s in self.scales:
            blocks.append(_UpBlock(cin, channels[s] if s in skips else 0, width, up))
            cin = width
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = cin

    def forward(self, maps: list[Tensor]) -> Tensor:
        x = self.context(maps[len(maps) - 1])
        for i, block in enumerate(self.blocks):
            x = block(x, maps[self.scales[i]])
        return x
