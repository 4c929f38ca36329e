"""Fusion operators: per-sensor maps `[B, C_i, H, W]` (same H, W) -> `[B, out_channels, H, W]`.

Every operator accepts any number of sensors (1 included) with any channel counts. Outputs are
linear (no activation at the end) so the same operators also fuse logits in late fusion.

Missing inputs. An operator is called `op(xs, masks)`: `masks[i]` is sensor i's validity at
the fused maps' resolution, `[B, 1, H, W]` (or `[B, 1, 1, 1]` for one value per sample), in
[0, 1] (1 = valid; fractional values are presence weights, e.g. the fraction of a patch that
is valid); `masks=None` means valid everywhere, exactly as all-ones masks. Operators that
handle masks say so (`handles_masks = True`); every built-in one does:

- each operator owns a learned missing-sensor embedding per sensor (`missing`, one vector of
  C_i values per sensor, zero-initialised): `fill` replaces a sensor's features where its
  mask is 0 by that vector, so what mixes features sees one consistent "missing" value;
- weighting by presence excludes absent sensors (`sum`: masked mean rescaled to n sensors;
  `gate`: softmax over the present sensors; `cross_attention`: key padding and the mean over
  the present sensors; `se`: channel statistics over valid pixels; `concat`: the masks are
  appended as channels). Where no sensor is present every sensor counts (all hold their
  embedding), so the output there is a learned value and nothing divides by zero.

An operator without `handles_masks` is called `op(xs)` on the filled maps (`MaskFilled`).
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
    sets it per instance in `__init__`. Per-pixel mask handling keeps an operator local.

    `handles_masks`: `forward(xs, masks=None)` takes the sensors' validity (see the module
    docstring). False (the default, for operators written before masks existed): the model
    calls `forward(xs)` on maps whose invalid positions hold the missing-sensor embedding.
    """

    # Not annotated: TorchScript cannot read this module's string annotations, and GateFusion
    # sets `local` per instance.
    local = False
    handles_masks = False

    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__()
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        # The missing-sensor embeddings, sensor i's at [offsets[i], offsets[i + 1]).
        self.missing = nn.Parameter(torch.zeros(sum(self.in_channels)))
        self.offsets = [sum(self.in_channels[:i]) for i in range(len(self.in_channels) + 1)]

    def forward(self, xs: list[Tensor], masks: list[Tensor] | None = None
                ) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def valid(self, xs: list[Tensor], masks: list[Tensor] | None) -> list[Tensor]:
        """The masks, `[B, 1, H, W]` per sensor; all ones where `masks` is None."""
        if masks is None:
            return [torch.ones_like(x[:, :1]) for x in xs]
        return masks

    def fill(self, xs: list[Tensor], masks: list[Tensor]) -> list[Tensor]:
        """Each sensor's maps with its missing embedding where its mask is 0."""
        out: list[Tensor] = []
        for i, x in enumerate(xs):
            e = self.missing[self.offsets[i]:self.offsets[i + 1]].view(1, -1, 1, 1).to(x.dtype)
            out.append(torch.where(masks[i] > 0, x, e))
        return out


def present(m: Tensor) -> Tensor:
    """Per-position sensor weights from stacked masks `[B, n, 1, H, W]`: the masks, or all
    ones at positions where no sensor is present (there every sensor holds its embedding).
    Their sum over sensors is never 0."""
    anyone = m.sum(dim=1, keepdim=True) > 0  # [B, 1, 1, H, W]
    return torch.where(anyone, m, torch.ones_like(m))


def valid_mean(x: Tensor, m: Tensor) -> Tensor:
    """Mean of `x` `[B, C, H, W]` over the positions where `m` (`[B, 1, H, W]`, or
    `[B, 1, 1, 1]`) is valid, weighted by it -> `[B, C]`; over every position where nothing is
    valid (the maps hold the missing embedding there, so that is the embedding)."""
    w = m.to(x.dtype).expand(-1, -1, x.shape[2], x.shape[3]).flatten(2)  # [B, 1, HW]
    anywhere = w.sum(dim=2, keepdim=True) > 0  # [B, 1, 1]
    w = torch.where(anywhere, w, torch.ones_like(w))
    # a matrix product: no [B, C, H, W] temporary
    # [..., 0], not squeeze(2): ONNX would wrap a squeeze of a dimension it cannot size in an If
    return (x.flatten(2) @ w.transpose(1, 2))[:, :, 0] / w.sum(dim=2)


def weighted_sum(ys: list[Tensor], w: Tensor) -> Tensor:
    """sum_i ys[i] * w[:, i] for maps `[B, C, H, W]` and weights `[B, n, 1, H, W]`, one sensor
    at a time (no stacked `[B, n, C, H, W]` copy)."""
    out = ys[0] * w[:, 0]
    for i in range(1, len(ys)):
        out = out + ys[i] * w[:, i]
    return out


class MaskFilled(nn.Module):
    """Runs an operator that does not handle masks (`handles_masks = False`) on the filled
    maps: `op(op.fill(xs, masks))`. Filling is per position, so `op.local` still holds."""

    def __init__(self, op: FusionOp) -> None:
        super().__init__()
        self.op = op

    def forward(self, xs: list[Tensor], masks: list[Tensor] | None = None) -> Tensor:
        return self.op(self.op.fill(xs, self.op.valid(xs, masks)))


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
    """Stack channels and the sensors' masks, mix them with a 1x1 conv."""

    local = True
    handles_masks = True

    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__(in_channels, out_channels)
        self.mix = nn.Conv2d(sum(in_channels) + len(in_channels), out_channels, 1)

    def forward(self, xs: list[Tensor], masks: list[Tensor] | None = None) -> Tensor:
        ms = self.valid(xs, masks)
        hw = xs[0].shape[2:]
        feats = self.fill(xs, ms)
        for m in ms:  # a per-sample mask [B, 1, 1, 1] becomes a constant channel
            feats.append(m.expand(-1, -1, hw[0], hw[1]).to(xs[0].dtype))
        return self.mix(torch.cat(feats, dim=1))  # [B, sum C_i + n, H, W] -> [B, out, H, W]


@FUSION_OPS.register("sum")
class SumFusion(FusionOp):
    """Project each sensor to `out_channels` where needed, then add; with missing sensors the
    mean over the present ones times n (the plain sum when every sensor is present)."""

    local = True
    handles_masks = True

    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__(in_channels, out_channels)
        self.proj = _Projections(in_channels, out_channels)

    def forward(self, xs: list[Tensor], masks: list[Tensor] | None = None) -> Tensor:
        ms = self.valid(xs, masks)
        ys = self.proj(self.fill(xs, ms))  # n x [B, out, H, W]
        w = present(torch.stack(ms, dim=1).to(ys[0].dtype))  # [B, n, 1, H, W]
        scale = float(len(ms)) / w.sum(dim=1)  # [B, 1, H, W]; 1 when every sensor is present
        return weighted_sum(ys, w) * scale


@FUSION_OPS.register("gate")
class GateFusion(FusionOp):
    """Weighted sum with learned per-sensor gates that depend on the input.

    Gates are a softmax over sensors of a linear map of every sensor's pooled features (mean
    over its valid pixels), so a sensor that is uninformative can be down-weighted per sample;
    at each position the softmax runs over the sensors present there. Zero-initialised:
    training starts from equal weights.
    """

    handles_masks = True

    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__(in_channels, out_channels)
        n = len(in_channels)
        # One sensor's gate is softmax over one value, always 1: then nothing is pooled.
        self.local = n == 1
        self.proj = _Projections(in_channels, out_channels)
        self.gate = nn.Linear(n * out_channels, n)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def forward(self, xs: list[Tensor], masks: list[Tensor] | None = None) -> Tensor:
        ms = self.valid(xs, masks)
        ys = self.proj(self.fill(xs, ms))  # n x [B, out, H, W]
        pooled: list[Tensor] = []
        for i, y in enumerate(ys):
            pooled.append(valid_mean(y, ms[i]))  # [B, out]
        logits = self.gate(torch.cat(pooled, dim=1))[:, :, None, None, None]  # [B, n, 1, 1, 1]
        m = torch.stack(ms, dim=1).to(ys[0].dtype)  # [B, n, 1, H, W]
        # log(0) = -inf leaves absent sensors out; present() keeps one sensor in everywhere
        w = torch.softmax(logits + torch.log(present(m)), dim=1)  # [B, n, 1, H, W]
        return weighted_sum(ys, w)


@FUSION_OPS.register("se")
class SEFusion(FusionOp):
    """Squeeze-and-excitation over the channels of all sensors together (cross-sensor channel
    attention), then a 1x1 mix to `out_channels`. A sensor's channel statistics are taken
    over its valid pixels (its embedding when it has none)."""

    handles_masks = True

    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__(in_channels, out_channels)
        total = sum(in_channels)
        hidden = max(total // 4, 4)
        self.excite = nn.Sequential(
            nn.Linear(total, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, total), nn.Sigmoid()
        )
        self.mix = nn.Conv2d(total, out_channels, 1)

    def forward(self, xs: list[Tensor], masks: list[Tensor] | None = None) -> Tensor:
        ms = self.valid(xs, masks)
        feats = self.fill(xs, ms)
        stats: list[Tensor] = []
        for i, f in enumerate(feats):
            stats.append(valid_mean(f, ms[i]))  # [B, C_i]
        z = torch.cat(feats, dim=1)  # [B, sum C_i, H, W]
        s = self.excite(torch.cat(stats, dim=1))  # [B, sum C_i]
        return self.mix(z * s[:, :, None, None])


@FUSION_OPS.register("cross_attention")
class CrossAttentionFusion(FusionOp):
    """Attention across sensors at every pixel: the n sensor vectors of a pixel (plus a learned
    sensor embedding) attend to each other, then are averaged. Only the sensors present at a
    pixel are attended to (key padding) and averaged.

    Cost is O(H*W * n^2 * C), cheap on small patches and tiles, unlike attention over all
    pixel pairs (O((H*W)^2 * C)).
    """

    local = True  # attention is across the sensors of one pixel, never across pixels
    handles_masks = True

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

    def forward(self, xs: list[Tensor], masks: list[Tensor] | None = None) -> Tensor:
        ms = self.valid(xs, masks)
        t = torch.stack(self.proj(self.fill(xs, ms)), dim=1)  # [B, n, C, H, W]
        t = t.permute(0, 3, 4, 1, 2) + self.sensor_embed  # [B, H, W, n, C]
        w = present(torch.stack(ms, dim=1).to(t.dtype)).permute(0, 3, 4, 2, 1)  # [B, H, W, 1, n]
        q, k, v = self.qkv(self.norm(t)).chunk(3, dim=-1)  # 3 x [B, H, W, n, C]
        scores = q @ k.transpose(-1, -2) * self.scale + torch.log(w)  # [B, H, W, n, n]
        t = t + self.out(torch.softmax(scores, dim=-1) @ v)
        w = w.transpose(-1, -2)  # [B, H, W, n, 1]
        return ((t * w).sum(dim=3) / w.sum(dim=3)).permute(0, 3, 1, 2)  # [B, C, H, W]
