"""Named reference architectures, usable anywhere an arch is expected.

Their branches depend on the task's sensors, so a baseline is a function of the sensors'
band counts (and of whether the task needs a per-pixel map).
"""

from __future__ import annotations

from collections.abc import Mapping

from fusion.arch import OFF, Arch, BranchSpec, FusionSpec, HeadSpec
from fusion.errors import ArchError

BASELINES: tuple[str, ...] = ("early_cnn", "late_cnn", "two_branch")


def _head(dense: bool) -> HeadSpec:
    return HeadSpec("segmentation", hidden=32, dropout=0.1) if dense else \
        HeadSpec("patch", hidden=64, dropout=0.1)


def baseline_arch(name: str, in_channels: Mapping[str, int], dense: bool = False) -> Arch:
    """The Arch of baseline `name` for sensors `{name: band count}`.

    - early_cnn: every sensor's bands stacked, one 3-layer CNN (width 64).
    - late_cnn: one 3-layer CNN classifier per sensor (width 32), logits summed.
    - two_branch: the classic two-stream HSI+LiDAR network: a spectral-spatial branch for the
      sensor with the most bands (the first one on a tie), a CNN branch for each other sensor,
      concatenated at the middle, MLP head. With one sensor it is that single spectral branch.
    """
    if name not in BASELINES:
        raise ArchError(f"unknown baseline {name!r}: valid baselines are {list(BASELINES)}")
    if not in_channels:
        raise ArchError("a baseline needs at least one sensor")
    conv = BranchSpec("conv", width=32, depth=2, kernel=3)
    if name == "early_cnn":
        return Arch(
            branches={s: conv for s in in_channels},
            fusion=FusionSpec("concat", "early", width=64,
                              trunk=BranchSpec("conv", width=64, depth=2, kernel=3)),
            head=_head(dense),
        )
    if name == "late_cnn":
        return Arch(
            branches={s: conv for s in in_channels},
            fusion=FusionSpec("sum", "late", trunk=BranchSpec(OFF)),
            head=_head(dense),
        )
    richest = max(in_channels, key=lambda s: in_channels[s])  # max() keeps the first on a tie
    spectral = BranchSpec("spectral", width=64, depth=2, kernel=3)
    return Arch(
        branches={s: (spectral if s == richest else conv) for s in in_channels},
        fusion=FusionSpec("concat", "middle", width=64, trunk=BranchSpec(OFF)),
        head=_head(dense),
    )
