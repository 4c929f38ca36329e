"""Named reference architectures, usable anywhere an arch is expected.

Their branches depend on the task's sensors, so a baseline is a function of the sensors'
band counts (and of whether the task needs a per-pixel map).
"""

from __future__ import annotations

from collections.abc import Mapping

from fusion.arch import OFF, Arch, BranchSpec, DecoderSpec, FusionSpec, HeadSpec
from fusion.errors import ArchError

_DESIGNS = ("early_cnn", "late_cnn", "two_branch")
CENTRE_SUFFIX = "_centre"
# Encoder-decoders: per-pixel maps only (segmentation tasks).
DENSE_BASELINES: tuple[str, ...] = ("unet", "two_stream_unet")
# Each design with its published head (`patch`: average pool + MLP) and with a `centre` head
# (the labelled pixel's features + the same MLP), so a searched network with a centre head is
# compared with a baseline of the same head, for accuracy and for prediction speed.
BASELINES: tuple[str, ...] = (_DESIGNS + tuple(d + CENTRE_SUFFIX for d in _DESIGNS)
                              + DENSE_BASELINES)
UNET_DEPTH = 4  # four poolings: output stride 16, as the original U-Net


def baselines_for(dense: bool) -> tuple[str, ...]:
    """The distinct baselines that fit a task: for per-pixel maps the designs and the
    encoder-decoders (a `_centre` variant builds the same dense network as its design), for
    patch classification the designs with both heads."""
    if dense:
        return tuple(b for b in BASELINES if not b.endswith(CENTRE_SUFFIX))
    return tuple(b for b in BASELINES if b not in DENSE_BASELINES)


def _head(dense: bool, centre: bool) -> HeadSpec:
    if dense:
        return HeadSpec("segmentation", hidden=32, dropout=0.1)
    return HeadSpec("centre" if centre else "patch", hidden=64, dropout=0.1)


def baseline_arch(name: str, in_channels: Mapping[str, int], dense: bool = False) -> Arch:
    """The Arch of baseline `name` for sensors `{name: band count}`.

    - early_cnn: every sensor's bands stacked, one 3-layer CNN (width 64).
    - late_cnn: one 3-layer CNN classifier per sensor (width 32), logits summed.
    - two_branch: the classic two-stream HSI+LiDAR network: a spectral-spatial branch for the
      sensor with the most bands (the first one on a tie), a CNN branch for each other sensor,
      concatenated at the middle, MLP head. With one sensor it is that single spectral branch.
    - `<name>_centre`: the same network with a `centre` head instead of `patch` (patch tasks).
    - unet (segmentation only): every sensor's bands stacked, a U-Net encoder of four 2x2
      poolings (width 64 at every scale: a compact U-Net, not the original's doubling
      widths), skips from every scale, bilinear upsampling.
    - two_stream_unet (segmentation only): one U-Net encoder per sensor (width 32), their maps
      concatenated at every scale, one decoder with every skip.
    """
    if name not in BASELINES:
        raise ArchError(f"unknown baseline {name!r}: valid baselines are {list(BASELINES)}")
    if name in DENSE_BASELINES:
        if not in_channels:
            raise ArchError("a baseline needs at least one sensor")
        if not dense:
            raise ArchError(f"baseline {name!r} is an encoder-decoder: it predicts per-pixel "
                            "maps (task: segmentation); for patch classification use one of "
                            f"{list(baselines_for(False))}")
        return _unet(name, in_channels)
    centre = name.endswith(CENTRE_SUFFIX)
    name = name.removesuffix(CENTRE_SUFFIX)
    if not in_channels:
        raise ArchError("a baseline needs at least one sensor")
    conv = BranchSpec("conv", width=32, depth=2, kernel=3)
    if name == "early_cnn":
        return Arch(
            branches={s: conv for s in in_channels},
            fusion=FusionSpec("concat", "early", width=64,
                              trunk=BranchSpec("conv", width=64, depth=2, kernel=3)),
            head=_head(dense, centre),
        )
    if name == "late_cnn":
        return Arch(
            branches={s: conv for s in in_channels},
            fusion=FusionSpec("sum", "late", trunk=BranchSpec(OFF)),
            head=_head(dense, centre),
        )
    richest = max(in_channels, key=lambda s: in_channels[s])  # max() keeps the first on a tie
    spectral = BranchSpec("spectral", width=64, depth=2, kernel=3)
    return Arch(
        branches={s: (spectral if s == richest else conv) for s in in_channels},
        fusion=FusionSpec("concat", "middle", width=64, trunk=BranchSpec(OFF)),
        head=_head(dense, centre),
    )


def _unet(name: str, in_channels: Mapping[str, int]) -> Arch:
    skips = tuple(range(UNET_DEPTH))
    head = HeadSpec("segmentation", hidden=0, dropout=0.1)
    if name == "unet":
        return Arch(
            branches={s: BranchSpec("conv") for s in in_channels},
            fusion=FusionSpec("concat", "early", width=64,
                              trunk=BranchSpec("conv", width=64, depth=UNET_DEPTH, kernel=3)),
            head=head, decoder=DecoderSpec(width=64, skips=skips),
        )
    return Arch(
        branches={s: BranchSpec("conv", width=32, depth=UNET_DEPTH, kernel=3)
                  for s in in_channels},
        fusion=FusionSpec("concat", "multi", width=64, trunk=BranchSpec(OFF)),
        head=head, decoder=DecoderSpec(width=64, skips=skips),
    )
