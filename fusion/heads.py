"""Heads: fused features `[B, C, H, W]` -> logits `[B, K]` (patch) or `[B, K, H, W]` (dense).

Dropout sits before the last layer and is a plain `nn.Dropout`, so MC-dropout only has to
switch those modules to train mode at inference.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fusion.registry import HEADS


class ValidFraction(nn.Module):
    """Mask `[B, 1, H, W]` -> the fraction of valid pixels `[B, 1, 1, 1]`."""

    def forward(self, m: Tensor) -> Tensor:
        return m.mean(dim=(2, 3), keepdim=True)


class CentreValid(nn.Module):
    """Mask `[B, 1, H, W]` -> the centre pixel's validity `[B, 1, 1, 1]`."""

    def forward(self, m: Tensor) -> Tensor:
        h, w = m.shape[2] // 2, m.shape[3] // 2
        return m[:, :, h:h + 1, w:w + 1]


class Head(nn.Module):
    """Base class; `dense` says whether the head predicts every pixel."""

    dense: bool = False

    def __init__(self, in_channels: int, num_classes: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes

    def pixelwise(self) -> nn.Module | None:
        """For a patch head that labels a patch by the feature at one position: the same head
        at every position, `[B, C, H, W] -> [B, K, H, W]`, sharing this head's weights (what
        fully convolutional prediction swaps in). None for heads without such a form."""
        return None

    def presence(self) -> nn.Module:
        """How much of a sensor this head's output rests on, from the sensor's validity mask
        `[B, 1, H, W]`: late fusion weights each sensor's logits by it. Per pixel for a dense
        head (the mask itself); else `[B, 1, 1, 1]`, by default the fraction of valid pixels
        (a head that pools over the patch)."""
        return nn.Identity() if self.dense else ValidFraction()


class PixelwiseMLP(nn.Module):
    """An MLP over channels applied at every position: `[B, C, H, W] -> [B, K, H, W]`."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _mlp(cin: int, num_classes: int, hidden: int, dropout: float) -> nn.Sequential:
    if hidden == 0:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(cin, num_classes))
    return nn.Sequential(
        nn.Linear(cin, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )


@HEADS.register("patch")
class PatchHead(Head):
    """Global average pool over the patch, then an MLP: one label per patch."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int, dropout: float) -> None:
        super().__init__(in_channels, num_classes, hidden, dropout)
        self.mlp = _mlp(in_channels, num_classes, hidden, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x.mean(dim=(2, 3)))  # [B, C] -> [B, K]


@HEADS.register("centre")
class CentreHead(Head):
    """Features of the centre pixel (the labelled one), then an MLP: one label per patch.
    The branches' receptive fields already bring in the context."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int, dropout: float) -> None:
        super().__init__(in_channels, num_classes, hidden, dropout)
        self.mlp = _mlp(in_channels, num_classes, hidden, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x[:, :, x.shape[2] // 2, x.shape[3] // 2])  # [B, C] -> [B, K]

    def pixelwise(self) -> nn.Module:
        """The MLP at every position: position (i, j) gets the label of the patch centred
        there."""
        return PixelwiseMLP(self.mlp)

    def presence(self) -> nn.Module:
        """The centre pixel's validity: the pixel whose feature this head reads."""
        return CentreValid()


@HEADS.register("segmentation")
class SegmentationHead(Head):
    """Per-pixel MLP (1x1 convs) at full resolution: `[B, K, H, W]`."""

    dense = True

    def __init__(self, in_channels: int, num_classes: int, hidden: int, dropout: float) -> None:
        super().__init__(in_channels, num_classes, hidden, dropout)
        if hidden == 0:
            layers = [nn.Dropout(dropout), nn.Conv2d(in_channels, num_classes, 1)]
        else:
            layers = [
                nn.Conv2d(in_channels, hidden, 1), nn.ReLU(inplace=True), nn.Dropout(dropout),
                nn.Conv2d(hidden, num_classes, 1),
            ]
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x)


class MultiHead(nn.Module):
    """One head per target on the shared trunk; their outputs concatenated along channels in
    target order (`[B, sum C_t]` or `[B, sum C_t, H, W]`), so every reader of one logits
    tensor (fully convolutional prediction, overlap tiles, export) keeps working and the
    model's `outputs` say which channels are whose. A head may read the fused map instead of
    the trunk's output (`reads_fused`: the model then calls `forward_two`)."""

    def __init__(self, heads: list[nn.Module], reads_fused: list[bool]) -> None:
        super().__init__()
        self.heads = nn.ModuleList(heads)
        self.reads_fused = list(reads_fused)
        first = heads[0]
        self.dense = bool(getattr(first, "dense", False))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([h(x) for h in self.heads], dim=1)

    def forward_two(self, fused: Tensor, last: Tensor) -> Tensor:
        """Heads that read the fused map get `fused`, the others the trunk's output."""
        outs: list[Tensor] = []
        for i, h in enumerate(self.heads):
            outs.append(h(fused) if self.reads_fused[i] else h(last))
        return torch.cat(outs, dim=1)

    def pixelwise(self) -> nn.Module | None:
        """Every head's pixelwise form, concatenated (None when one has none)."""
        parts = [h.pixelwise() for h in self.heads]
        if any(p is None for p in parts):
            return None
        return MultiHead(parts, self.reads_fused)

    def presence(self) -> nn.Module:
        return self.heads[0].presence()
