"""Fusion operators: per-sensor maps `[B, C_i, H, W]` (same H, W) -> `[B, out_channels, H, W]`.

Every operator accepts any number of sensors (1 included) with any channel counts. Outputs are
linear (no activation at the end) so the same operators also fuse logits in late fusion.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fusion.registry import FUSION_OPS


class FusionOp(nn.Module):
    """Base class: `in_channels` per sensor (in fusion order), one `out_channels`.

    `local`: the output at a position depends only on the inputs at that position (no pooling,
    attention or convolution across positions). Fully convolutional prediction
    (`autors.export.fullconv`) relies on it; an operator that is local only for some inputs
    sets it per instance in `__init__`.
    """

    # Not annotated: TorchScript cannot read this module's string annotations, and GateFusion
    # sets it per instance.
    local = False

    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__()
        self.in_channels = list(in_channels)
        self.out_channels = out_channels

    def forward(self, xs: list[Tensor]) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class _Projections(nn.Module):
    """A 1x1 conv per sensor whose channel count differs from `out_channels`, else identity."""

    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Identity() if c == out_channels else nn.Conv2d(c, out_channels, 1)
            for c in in_channels
        )

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        out: list[Tensor] = []
        for i, conv in enumerate(self.convs):
            out.append(conv(xs[i]))  # [B, out_channels, H, W]
        return out


@FUSION_OPS.register("concat")
class ConcatFusion(FusionOp):
    """Stack channels, mix them with a 1x1 conv."""

    local = True

    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__(in_channels, out_channels)
        self.mix = nn.Conv2d(sum(in_channels), out_channels, 1)

    def forward(self, xs: list[Tensor]) -> Tensor:
        return self.mix(torch.cat(xs, dim=1))  # [B, sum C_i, H, W] -> [B, out, H, W]


@FUSION_OPS.register("sum")
class SumFusion(FusionOp):
    """Project each sensor to `out_channels` where needed, then add."""

    local = True

    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__(in_channels, out_channels)
        self.proj = _Projections(in_channels, out_channels)

    def forward(self, xs: list[Tensor]) -> Tensor:
        return torch.stack(self.proj(xs), dim=0).sum(dim=0)


@FUSION_OPS.register("gate")
class GateFusion(FusionOp):
    """Weighted sum with learned per-sensor gates that depend on the input.

    Gates are a softmax over sensors of a linear map of every sensor's pooled features, so a
    sensor that is uninformative (or zeroed by modality dropout) can be down-weighted per
    sample. Zero-initialised: training starts from equal weights.
    """

    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__(in_channels, out_channels)
        n = len(in_channels)
        # One sensor's gate is softmax over one value, always 1: then nothing is pooled.
        self.local = n == 1
        self.proj = _Projections(in_channels, out_channels)
        self.gate = nn.Linear(n * out_channels, n)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def forward(self, xs: list[Tensor]) -> Tensor:
        ys = torch.stack(self.proj(xs), dim=1)  # [B, n, out, H, W]
        pooled = ys.mean(dim=(3, 4)).flatten(1)  # [B, n * out]
        w = torch.softmax(self.gate(pooled), dim=1)  # [B, n]
        return (ys * w[:, :, None, None, None]).sum(dim=1)


@FUSION_OPS.register("se")
class SEFusion(FusionOp):
    """Squeeze-and-excitation over the channels of all sensors together (cross-sensor channel
    attention), then a 1x1 mix to `out_channels`."""

    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__(in_channels, out_channels)
        total = sum(in_channels)
        hidden = max(total // 4, 4)
        self.excite = nn.Sequential(
            nn.Linear(total, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, total), nn.Sigmoid()
        )
        self.mix = nn.Conv2d(total, out_channels, 1)

    def forward(self, xs: list[Tensor]) -> Tensor:
        z = torch.cat(xs, dim=1)  # [B, sum C_i, H, W]
        s = self.excite(z.mean(dim=(2, 3)))  # [B, sum C_i]
        return self.mix(z * s[:, :, None, None])


@FUSION_OPS.register("cross_attention")
class CrossAttentionFusion(FusionOp):
    """Attention across sensors at every pixel: the n sensor vectors of a pixel (plus a learned
    sensor embedding) attend to each other, then are averaged.

    Cost is O(H*W * n^2 * C), cheap on small patches and tiles, unlike attention over all
    pixel pairs (O((H*W)^2 * C)).
    """

    local = True  # attention is across the sensors of one pixel, never across pixels

    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__(in_channels, out_channels)
        n, c = len(in_channels), out_channels
        self.proj = _Projections(in_channels, c)
        self.sensor_embed = nn.Parameter(torch.zeros(n, c))
        nn.init.normal_(self.sensor_embed, std=0.02)
        self.norm = nn.LayerNorm(c)
        self.qkv = nn.Linear(c, 3 * c, bias=False)
        self.out = nn.Linear(c, c)
        self.scale = float(c) ** -0.5

    def forward(self, xs: list[Tensor]) -> Tensor:
        t = torch.stack(self.proj(xs), dim=1)  # [B, n, C, H, W]
        t = t.permute(0, 3, 4, 1, 2) + self.sensor_embed  # [B, H, W, n, C]
        q, k, v = self.qkv(self.norm(t)).chunk(3, dim=-1)  # 3 x [B, H, W, n, C]
        attn = torch.softmax(q @ k.transpose(-1, -2) * self.scale, dim=-1)  # [B, H, W, n, n]
        t = t + self.out(attn @ v)
        return t.mean(dim=3).permute(0, 3, 1, 2)  # [B, C, H, W]
