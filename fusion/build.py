"""`build_model`: an Arch (or its dict, or a baseline name) -> a plain `nn.Module`."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from fusion.arch import Arch
from fusion.baselines import baseline_arch
from fusion.errors import ArchError
from fusion.registry import POSITIONS


def build_model(
    arch: Arch | dict | str,
    in_channels: Mapping[str, int],
    num_classes: int | Mapping[str, int],
    dense: bool | None = None,
    dates: Mapping[str, int] | None = None,
) -> nn.Module:
    """Build the network described by `arch` for sensors `{name: band count}`.

    `arch` is an `Arch`, its dict (arch.json) or a baseline name (`fusion.BASELINES`).
    `dense` is what the task needs: True for `[B, K, H, W]` maps, False for `[B, K]` patch
    logits, None to take the arch's head as it is; a baseline gets the head that fits.
    The arch must have exactly one branch per sensor of `in_channels` (kind "off" allowed).
    Seed torch before calling for reproducible weights. `num_classes` may instead map each
    target to its output channels (several targets, one head each; `arch.heads` when given
    must name them in order): the model's one output is their channels concatenated, and
    `model.output_slices()` says which are whose.

    `dates` names the time-series sensors and the date count T each has (padded): such a
    sensor arrives as `[B, T, C, H, W]` (C = `in_channels[sensor]`, the bands of one date)
    with `<sensor>__mask` `[B, T, H, W]` and `<sensor>__doy` `[B, T]`; a temporal branch
    (`fusion.temporal`) reads it along time (any T), any other branch and early fusion read
    its T dates stacked as channels (exactly T).

    The model is called `model({sensor: [B, C, H, W], ...})`; each sensor's validity mask may
    ride along as `{mask_key(sensor): [B, H, W]}` (1 = valid, see `fusion.positions`).
    """
    if isinstance(arch, str):
        arch = baseline_arch(arch, in_channels, dense=bool(dense))
    elif isinstance(arch, Mapping):
        arch = Arch.from_dict(arch)
    elif not isinstance(arch, Arch):
        raise ArchError(
            f"arch must be an Arch, a dict or a baseline name, got {type(arch).__name__}"
        )
    for name, c in in_channels.items():
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise ValueError(f"in_channels['{name}'] must be a band count >= 1, got {c!r}")
    if isinstance(num_classes, Mapping):  # several targets: {target: output channels}
        num_classes = dict(num_classes)
        bad = {n: c for n, c in num_classes.items()
               if isinstance(c, bool) or not isinstance(c, int) or c < 1}
        if not num_classes or bad:
            raise ValueError(f"outputs must map target -> channels >= 1, got {num_classes!r}")
        if arch.heads is not None and set(arch.heads) != set(num_classes):
            raise ArchError(f"heads: the arch has heads for {sorted(arch.heads)} but the "
                            f"task's targets are {sorted(num_classes)}")
    elif isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    elif arch.heads is not None:
        raise ArchError(f"heads: the arch has a head per target ({list(arch.heads)}) but the "
                        "task has one class target: remove 'heads'")
    dates = dict(dates or {})
    for name, t in dates.items():
        if name not in in_channels or isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise ValueError(f"dates['{name}'] must be the date count >= 1 of a sensor of "
                             f"in_channels {sorted(in_channels)}, got {t!r}")
    arch.validate(sensors=list(in_channels), dense=dense)
    return POSITIONS.get(arch.fusion.position)(arch, dict(in_channels), num_classes, dates)


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
