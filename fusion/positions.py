"""Fusion positions: the four ways of wiring branches, fusion op, trunk and head into a model.

Every model takes `{sensor: [B, C_s, H, W]}` (the full task dict: sensors whose branch is
"off" are accepted and ignored, other keys too) and returns logits `[B, K]` or, with a dense
head, `[B, K, H, W]`.

Validity masks: the optional key `<sensor>__mask` (`mask_key`) holds `[B, H, W]` in {0, 1}
(1 = valid; float32, other dtypes are converted). Without it the sensor is valid everywhere,
exactly as an all-ones mask. A sensor absent for a whole sample has an all-zero mask. The model
zeroes a sensor's values where its mask is 0 (so they never matter, whatever they hold) and
hands the masks to every fusion op at the resolution of the fused maps; late fusion weights
each sensor's logits by its presence as its head sees it (`Head.presence()`).

Time series (`build_model(dates={sensor: T})`): such a sensor is `[B, T, C, H, W]` with
`<sensor>__mask` `[B, T, H, W]` and `<sensor>__doy` `[B, T]`; a temporal branch
(`fusion.temporal`) gets it packed, any other branch and early fusion get its dates stacked as
channels (`FusionModel.series`); its validity for fusion is "any valid date".

Time after fusion (`fusion.time` an operator of `TIME_OPS`, positions with
`time_after_fusion`: early and middle): the time-series sensors without a temporal kind are
read per date (`[B*T, C, H, W]`, their branches run on every date), every other sensor's
branch output (or raw input, early fusion) is broadcast over the dates, the fusion op fuses
each date with each date's masks, and the operator collapses the fused dates per pixel
(`FusionModel._collapse`). The time axis is the per-date sensors' (they must share T; the
first one's `__doy` is read). A date is valid where one of those sensors acquired it (any
valid pixel in the sample; padded or missing dates are out) and, at a pixel, where some fused
sensor is valid there. In training, the per-date layers and the fusion op run on the valid
dates only, so no BatchNorm pools over invalid dates.

Encoder-decoders (an arch with a `decoder`): every branch and trunk block halves the
resolution, and the position says which fused map exists at which scale (`encoder_depth`,
`skip_scales`); the decoder (`fusion.decoder`) climbs back to full resolution. `reduction`
(2**depth) is the model's output stride: windows aligned to it give the same map whatever
their size.
"""

# No `from __future__ import annotations`: TorchScript reads the class-level attribute
# annotations below and cannot resolve them from strings.

import torch
from torch import Tensor, nn

from fusion.arch import DOY_SUFFIX, MASK_SUFFIX, TIME_IN_BRANCH, Arch, BranchSpec
from fusion.decoder import Decoder
from fusion.errors import ArchError
from fusion.heads import MultiHead
from fusion.ops import MaskFilled
from fusion.registry import BRANCHES, FUSION_OPS, HEADS, POSITIONS, TIME_OPS
from fusion.temporal import from_pixels, spread


def mask_key(sensor: str) -> str:
    """The input key (and exported input name) of `sensor`'s validity mask."""
    return sensor + MASK_SUFFIX


def doy_key(sensor: str) -> str:
    """The input key (and exported input name) of a time-series sensor's days of year."""
    return sensor + DOY_SUFFIX


# How a sensor's tensor reaches its branch (`FusionModel.series`): one date as it is; a time
# series with its dates stacked as channels `[B, T*C, H, W]` (a branch for real inputs, or
# early fusion); a time series packed `[B, T, C + 2, H, W]` for a temporal branch
# (`fusion.temporal`: values, date mask, day of year); a time series read date by date
# `[B*T, C, H, W]` when time collapses after the fusion (`fusion.time`).
SINGLE, STACKED, PACKED, DATED = 0, 1, 2, 3


def pool_mask(m: Tensor, reduction: int) -> Tensor:
    """A mask `[B, 1, H, W]` at a stage `reduction` times coarser: the fraction of valid
    pixels in each cell. Built-in branches keep H, W (reduction 1: the mask as it is)."""
    if reduction == 1:
        return m
    return nn.functional.avg_pool2d(m, reduction, reduction, ceil_mode=True)


def pool_features(x: Tensor, factor: int) -> Tensor:
    """Feature maps `factor` times coarser (average over each cell; ceil mode like the
    branches' pooling, so sizes agree)."""
    if factor == 1:
        return x
    return nn.functional.avg_pool2d(x, factor, factor, ceil_mode=True)


def build_branch(spec: BranchSpec, in_channels: int, downsample: bool = False) -> nn.Module:
    """The registered branch for `spec` (which must be on); `downsample`: its blocks halve the
    resolution (an encoder-decoder's encoder)."""
    branch = BRANCHES.get(spec.kind)(in_channels, spec.width, spec.depth, spec.kernel)
    branch.with_dropout(spec.dropout)
    return branch.downsample(spec.scale) if downsample else branch


class NoTrunk(nn.Module):
    """The trunk when `fusion.trunk` is off: the fused map as it is (one stage)."""

    def forward(self, x: Tensor) -> Tensor:
        return x

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        return [x]


def _depth(arch: Arch) -> int:
    """The deepest branch's last-stage scale in an encoder-decoder (entry scale + depth)."""
    return max((arch.branches[s].scale + arch.branches[s].depth for s in arch.sensors),
               default=0)


def _covered(arch: Arch) -> set[int]:
    """The scales some branch has a stage at (in an encoder-decoder)."""
    return {s for n in arch.sensors
            for s in range(arch.branches[n].scale,
                           arch.branches[n].scale + arch.branches[n].depth + 1)}


def _size_refs(mask: Tensor, n: int) -> list[Tensor]:
    """Tensors of the sizes of scales 0..n-1 (a mask pooled), for scales without a fused map:
    the decoder reads their size only."""
    refs: list[Tensor] = []
    r = 1
    for _ in range(n):
        refs.append(pool_mask(mask, r))
        r = r * 2
    return refs


def broadcast_dates(x: Tensor, dates: Tensor) -> Tensor:
    """`[B, C, H, W]` -> `[B*T, C, H, W]`: the same map on each date of `dates` `[B, T]`
    (date-major within each sample, like a flattened `[B, T, ...]`). By broadcasting, not a
    computed shape: an ONNX graph keeps every dimension it knows."""
    ones = torch.ones_like(dates).to(x.dtype)[:, :, None, None, None]
    return (x.unsqueeze(1) * ones).flatten(0, 1)


def _trunk_depth(arch: Arch) -> int:
    return arch.fusion.trunk.depth if arch.fusion.trunk.on else 0


class FusionModel(nn.Module):
    """Base class. `uses_trunk` / `uses_width` tell `Arch.validate` which fusion fields apply;
    `shared_head`: one head after the fusion, at `self.head` (False: a head per sensor)."""

    uses_trunk: bool = True
    uses_width: bool = True
    shared_head: bool = True
    # the position can collapse time after its fusion op (`fusion.time`, `_collapse`)
    time_after_fusion: bool = False
    reduction: int  # output stride: 2**depth with a decoder, else 1
    in_channels: dict[str, int]
    sensors: list[str]  # fused sensors, in arch order
    mask_keys: list[str]  # their masks' input keys
    bands: list[int]  # their band counts

    stacks_inputs: bool = False  # the op reads the raw inputs (no branch): series stacked
    series: list[int]  # per fused sensor: SINGLE, STACKED or PACKED
    steps: list[int]  # per fused sensor: its date count T (0 for a single date)
    doy_keys: list[str]
    time_after: bool  # fusion.time is an operator: the fusion runs per date (DATED sensors)
    time_ref: int  # the first DATED sensor: its days of year are the time axis
    time_width: int  # the channels of the fused map that time collapses (fusion.time)

    # constants for TorchScript, so `forward` compiles only the branch its heads take (and
    # only the per-date fusion path when time collapses after the fusion)
    __constants__ = ("head_reads_fused", "time_after")

    def __init__(self, arch: Arch, in_channels: dict[str, int],
                 num_classes: int | dict[str, int], dates: dict[str, int] | None = None
                 ) -> None:
        super().__init__()
        self.arch = arch
        self.in_channels = dict(in_channels)
        # several targets: {target: channels}, the one output is their channels concatenated
        self.outputs = dict(num_classes) if isinstance(num_classes, dict) else None
        self.num_classes = sum(self.outputs.values()) if self.outputs else num_classes
        self.head_reads_fused = any(h.stage == "fused" for h in (arch.heads or {}).values())
        self.dense = arch.dense
        self.reduction = 2**arch.depth
        self.decoder: Decoder | None = None
        self.sensors = arch.sensors
        self.mask_keys = [mask_key(s) for s in self.sensors]
        self.bands = [in_channels[s] for s in self.sensors]
        self.dates = dict(dates or {})
        self._series(arch)

    def _series(self, arch: Arch) -> None:
        """How each time-series sensor (`dates`: {sensor: T}) reaches its branch, and the
        channels every branch (or early fusion's op) reads (`branch_channels`)."""
        self.series, self.steps, self.branch_channels = [], [], {}
        self.doy_keys = [doy_key(s) for s in self.sensors]
        self.time_after = arch.fusion.time != TIME_IN_BRANCH
        for s, c in zip(self.sensors, self.bands):
            temporal = (not self.stacks_inputs
                        and BRANCHES.get(arch.branches[s].kind).input_kind == "temporal")
            t = self.dates.get(s, 0)
            if temporal and not t:
                raise ArchError(
                    f"branches.{s}.kind: '{arch.branches[s].kind}' reads a time series, but "
                    f"sensor '{s}' has one date: use a kind for single-date inputs")
            mode = PACKED if temporal else (STACKED if t else SINGLE)
            if mode == STACKED and self.time_after:
                mode = DATED
            self.series.append(mode)
            self.steps.append(t)
            self.branch_channels[s] = c * t if mode == STACKED else c
        dated = [i for i, mode in enumerate(self.series) if mode == DATED]
        self.time_ref = dated[0] if dated else 0
        if self.time_after and not dated:
            raise ArchError(
                f"fusion.time: '{arch.fusion.time}' collapses the dates after the fusion, but "
                "no used sensor is a time series read per date (each is single-date or has a "
                f"temporal branch kind): set fusion.time to '{TIME_IN_BRANCH}'")
        if len({self.steps[i] for i in dated}) > 1:
            raise ArchError(
                "fusion.time: the time-series sensors fused per date need one time axis, but "
                f"they have {({self.sensors[i]: self.steps[i] for i in dated})} dates: give "
                "them the same dates or collapse time in their branches")

    def _inputs(self, inputs: dict[str, Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """The used sensors' tensors in fusion order, checked against the expected bands and
        zeroed where invalid, and their masks `[B, 1, H, W]` (ones where none is given; a
        time series: valid where any date is). Time series are stacked or packed (`series`)."""
        xs: list[Tensor] = []
        masks: list[Tensor] = []
        for i in range(len(self.sensors)):
            name = self.sensors[i]
            if name not in inputs:
                raise ValueError("missing input for sensor '" + name + "'")
            if self.series[i] != 0:  # not SINGLE (TorchScript reads no global ints)
                x, m = self._series_input(inputs, i)
                xs.append(x)
                masks.append(m)
                continue
            x = inputs[name]
            # Skipped while tracing (ONNX export): the trace would freeze the check's outcome.
            tracing = torch.jit.is_tracing()
            if not tracing and (x.dim() != 4 or x.shape[1] != self.bands[i]):
                raise ValueError(
                    "sensor '" + name + "' needs [B, " + str(self.bands[i])
                    + ", H, W], got shape " + str(x.shape)
                )
            key = self.mask_keys[i]
            if key in inputs:
                m = inputs[key]
                if not tracing and (m.dim() != 3 or m.shape[0] != x.shape[0]
                                    or m.shape[1] != x.shape[2] or m.shape[2] != x.shape[3]):
                    raise ValueError(
                        "mask '" + key + "' needs [B, H, W] = " + str([x.shape[0], x.shape[2],
                                                                      x.shape[3]])
                        + " (the shape of sensor '" + name + "' without bands), got shape "
                        + str(m.shape)
                    )
                m = m.unsqueeze(1).to(x.dtype)  # [B, 1, H, W]
                x = x.masked_fill(m <= 0, 0.0)
            else:
                m = torch.ones_like(x[:, :1])
            xs.append(x)
            masks.append(m)
        return xs, masks

    def _series_input(self, inputs: dict[str, Tensor], i: int) -> tuple[Tensor, Tensor]:
        """Time-series sensor i: `<s>` `[B, T, C, H, W]`, `<s>__mask` `[B, T, H, W]` (absent:
        every date valid), `<s>__doy` `[B, T]` -> its branch's input (dates stacked, or packed
        with mask and doy) and its validity `[B, 1, H, W]` (any valid date)."""
        name = self.sensors[i]
        x = inputs[name]
        tracing = torch.jit.is_tracing()
        if not tracing and (x.dim() != 5 or x.shape[2] != self.bands[i]):
            raise ValueError("time-series sensor '" + name + "' needs [B, T, "
                             + str(self.bands[i]) + ", H, W], got shape " + str(x.shape))
        if not tracing and self.series[i] == 1 and x.shape[1] != self.steps[i]:
            raise ValueError("sensor '" + name + "': this model stacks " + str(self.steps[i])
                             + " dates as channels, got " + str(x.shape[1])
                             + " (pad missing dates and mask them)")
        key = self.mask_keys[i]
        if key in inputs:
            m = inputs[key].to(x.dtype)
            if not tracing and (m.dim() != 4 or m.shape[0] != x.shape[0]
                                or m.shape[1] != x.shape[1] or m.shape[2] != x.shape[3]
                                or m.shape[3] != x.shape[4]):
                raise ValueError("mask '" + key + "' needs [B, T, H, W] = "
                                 + str([x.shape[0], x.shape[1], x.shape[3], x.shape[4]])
                                 + ", got shape " + str(m.shape))
        else:
            m = torch.ones_like(x[:, :, 0])
        x = x.masked_fill(m.unsqueeze(2) <= 0, 0.0)
        valid = m.amax(dim=1, keepdim=True)  # [B, 1, H, W]
        if self.series[i] == 1:  # STACKED
            return x.flatten(1, 2), valid
        if self.series[i] == 3:  # DATED: every date a sample, its own mask [B*T, 1, H, W]
            return x.flatten(0, 1), m.flatten(0, 1).unsqueeze(1)
        dkey = self.doy_keys[i]
        if dkey not in inputs:
            raise ValueError("missing input '" + dkey + "' (day of year [B, T] of sensor '"
                             + name + "')")
        doy = inputs[dkey].to(x.dtype)
        if not tracing and (doy.dim() != 2 or doy.shape[0] != x.shape[0]
                            or doy.shape[1] != x.shape[1]):
            raise ValueError("input '" + dkey + "' needs [B, T] = "
                             + str([x.shape[0], x.shape[1]]) + ", got shape "
                             + str(doy.shape))
        b, t, h, w = x.shape[0], x.shape[1], x.shape[3], x.shape[4]
        days = doy.reshape(b, t, 1, 1, 1).expand(b, t, 1, h, w)
        return torch.cat([x, m.unsqueeze(2), days], dim=2), valid

    def _time_axis(self, inputs: dict[str, Tensor], masks: list[Tensor]
                   ) -> tuple[Tensor, Tensor, bool, Tensor]:
        """Time after fusion: the days of year `[B, T]` (the first per-date sensor's), each
        date's validity `[B*T]` (a per-date sensor has a valid pixel there), whether only the
        valid dates run (training, some invalid) and their indices into `B*T`."""
        name = self.sensors[self.time_ref]
        dkey = self.doy_keys[self.time_ref]
        if dkey not in inputs:
            raise ValueError("missing input '" + dkey + "' (day of year [B, T] of sensor '"
                             + name + "')")
        x = inputs[name]
        doy = inputs[dkey].to(x.dtype)
        if not torch.jit.is_tracing() and (doy.dim() != 2 or doy.shape[0] != x.shape[0]
                                           or doy.shape[1] != x.shape[1]):
            raise ValueError("input '" + dkey + "' needs [B, T] = "
                             + str([x.shape[0], x.shape[1]]) + ", got shape "
                             + str(doy.shape))
        n = doy.shape[0] * doy.shape[1]
        # from a mask, not a new tensor of size n: ONNX keeps its shape (the recurrent cells
        # need it)
        valid = masks[self.time_ref].amax(dim=(1, 2, 3))
        for i in range(len(self.sensors)):
            if self.series[i] == 3:  # DATED
                if masks[i].shape[0] != n:
                    raise ValueError("sensor '" + self.sensors[i] + "' has "
                                     + str(inputs[self.sensors[i]].shape[1]) + " dates, '"
                                     + name + "' " + str(doy.shape[1])
                                     + ": sensors fused per date need the same dates")
                valid = torch.maximum(valid, masks[i].amax(dim=(1, 2, 3)))
        keep = torch.zeros([0], dtype=torch.long, device=x.device)
        if self.training:
            keep = torch.nonzero(valid > 0).flatten()
        return doy, valid, self.training and 0 < keep.shape[0] < n, keep

    def _per_date(self, x: Tensor, i: int, doy: Tensor, sub: bool, keep: Tensor) -> Tensor:
        """Sensor i's map `[B*T, ...]` (DATED) or `[B, ...]` (broadcast over the dates) ->
        the map of every date that runs."""
        if self.series[i] != 3:
            x = broadcast_dates(x, doy)
        return x.index_select(0, keep) if sub else x

    def _collapse(self, fused: Tensor, fmasks: list[Tensor], doy: Tensor, valid: Tensor,
                  sub: bool, keep: Tensor) -> Tensor:
        """The fused dates `[B*T or K, F, h, w]` -> `[B, F, h, w]` by the `fusion.time`
        operator; a date counts at a pixel where it is valid (`_time_axis`) and some fused
        sensor is valid there (`fmasks`, the fusion op's masks)."""
        b, t = doy.shape[0], doy.shape[1]
        there = fmasks[0]
        for m in fmasks[1:]:
            there = torch.maximum(there, m)
        there = (there > 0).to(fused.dtype)  # [B*T or K, 1, h, w]
        if sub:  # the kept dates are the valid ones; the others stay 0
            fused = spread(fused, keep, b * t)
            there = spread(there, keep, b * t)
        else:
            there = there * valid.reshape(b * t, 1, 1, 1)
        f, h, w = self.time_width, fused.shape[2], fused.shape[3]
        seq = fused.reshape(b, t, f, h, w)
        m = there.reshape(b, t, h, w)
        # one sequence per pixel; the feature size a constant (ONNX: the recurrent cells'
        # gates split a known size)
        xs = seq.permute(0, 3, 4, 1, 2).reshape(-1, t, f)
        mm = m.permute(0, 2, 3, 1).reshape(-1, t)
        dd = doy.unsqueeze(1).unsqueeze(1).expand(b, h, w, t).reshape(-1, t)
        return from_pixels(self.time_op(xs, mm, dd), seq)

    @classmethod
    def encoder_depth(cls, arch: Arch) -> int:
        """With a decoder: the deepest scale this position's encoder reaches (0: it never
        downsamples). Positions that cannot be decoded keep 0."""
        return 0

    @classmethod
    def skip_scales(cls, arch: Arch) -> list[int]:
        """With a decoder: the scales below the deepest with a fused map the decoder may
        concatenate (`decoder.skips` must be among them)."""
        return []

    def feature_stages(self) -> list[str]:
        """The named feature maps this model has (`forward_stage`), in network order:
        "fused" (what the fusion op outputs, the map the trunk reads), "trunk" (after the
        shared trunk, when it has one), "decoder" (the decoder's output, what a dense head
        reads, in an encoder-decoder). Late fusion fuses logits: it has none."""
        stages = ["fused"]
        if self.arch.fusion.trunk.on:
            stages.append("trunk")
        if self.decoder is not None:
            stages.append("decoder")
        return stages

    def _fused(self, inputs: dict[str, Tensor]) -> tuple[Tensor, list[Tensor]]:
        """What a position with one shared head computes up to the trunk: the fused map the
        trunk reads, and in an encoder-decoder the decoder's maps of the scales above it
        (fused maps, or tensors of their size where nothing is fused); see `forward`."""
        raise NotImplementedError

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        fused, refs = self._fused(inputs)
        if self.decoder is not None:
            return self.head(self.decoder(refs + self.trunk.forward_stages(fused)))
        if self.head_reads_fused:  # a constant: TorchScript compiles one branch
            return self.head.forward_two(fused, self.trunk(fused))
        return self.head(self.trunk(fused))

    def output_slices(self) -> dict[str, tuple[int, int]]:
        """Each target's channels [start, stop) of the output (one target: all of them)."""
        if self.outputs is None:
            return {"class": (0, self.num_classes)}
        out, start = {}, 0
        for name, c in self.outputs.items():
            out[name] = (start, start + c)
            start += c
        return out

    def _make_head(self, features: int, fused: int) -> nn.Module:
        """The arch's head for `features` input channels; with several targets a
        `MultiHead` (each target's hidden units and stage from `arch.heads`, else `head`'s;
        a head on the fused map gets `fused` input channels)."""
        head = self.arch.head
        kind = HEADS.get(head.kind)
        if self.outputs is None:
            return kind(features, self.num_classes, head.hidden, head.dropout)
        specs = self.arch.heads or {}
        heads, reads_fused = [], []
        for name, channels in self.outputs.items():
            spec = specs.get(name)
            hidden = spec.hidden if spec is not None else head.hidden
            on_fused = spec is not None and spec.stage == "fused"
            heads.append(kind(fused if on_fused else features, channels, hidden, head.dropout))
            reads_fused.append(on_fused)
        return MultiHead(heads, reads_fused)

    def forward_stage(self, inputs: dict[str, Tensor], stage: str) -> Tensor:
        """The feature map `stage` (one of `feature_stages()`) for `inputs`:
        `[B, C, H / r, W / r]`, r the stage's reduction (1 without a decoder)."""
        if stage not in self.feature_stages():
            raise ValueError(self._unknown_stage(stage))
        fused, refs = self._fused(inputs)
        return self._after_fusion(fused, refs, stage)

    def _unknown_stage(self, stage: str) -> str:
        stages = self.feature_stages()
        if not stages:
            return (f"{self.arch.fusion.position} fusion fuses the sensors' logits: it has no "
                    "fused feature map (no feature stage)")
        return f"unknown feature stage {stage!r}: this model has {stages}"

    def _after_fusion(self, fused: Tensor, refs: list[Tensor], stage: str) -> Tensor:
        """Stages "fused", "trunk" and "decoder" from the fused map (`refs`: the decoder's
        maps of the scales above the trunk, as `forward` builds them)."""
        if stage == "fused" and "fused" in self.feature_stages():
            return fused
        if stage == "trunk" and "trunk" in self.feature_stages():
            if self.decoder is not None:
                return self.trunk.forward_stages(fused)[-1]
            return self.trunk(fused)
        if stage == "decoder" and self.decoder is not None:
            return self.decoder(refs + self.trunk.forward_stages(fused))
        raise ValueError(self._unknown_stage(stage))

    def _trunk_and_head(self, width: int, num_classes: int, shallow: list[int]) -> None:
        """Shared trunk after fusion (`NoTrunk` when off), the decoder when the arch has one
        (`shallow`: channels of the fused maps of the scales below the fusion, 0 where there
        is none) and the head."""
        trunk = self.arch.fusion.trunk
        decoder = self.arch.decoder
        if trunk.on:
            self.trunk = build_branch(trunk, width, downsample=decoder is not None)
            channels = list(self.trunk.out_channels)
        else:
            self.trunk = NoTrunk()
            channels = [width]
        features = channels[-1]
        if decoder is not None:
            self.decoder = Decoder(shallow + channels, list(decoder.skips), decoder.width,
                                   decoder.up, decoder.context)
            features = decoder.width
        self.head = self._make_head(features, width)

    def _op(self, in_channels: list[int], out_channels: int) -> nn.Module:
        """The arch's fusion op, called `op(xs, masks)`; one that does not handle masks itself
        (`FusionOp.handles_masks`) runs on the filled maps."""
        op = FUSION_OPS.get(self.arch.fusion.op)(in_channels, out_channels)
        return op if op.handles_masks else MaskFilled(op)


@POSITIONS.register("early")
class EarlyFusion(FusionModel):
    """Raw inputs of the used sensors -> op -> trunk (the one branch) -> head. A time series
    enters with its dates stacked as channels (a fixed T)."""

    stacks_inputs = True
    time_after_fusion = True

    def __init__(self, arch: Arch, in_channels: dict[str, int], num_classes: int,
                 dates: dict[str, int] | None = None) -> None:
        super().__init__(arch, in_channels, num_classes, dates)
        width = arch.fusion.width
        self.fuse = self._op([self.branch_channels[s] for s in self.sensors], width)
        if self.time_after:
            self.time_op = TIME_OPS.get(arch.fusion.time)(width)
            self.time_width = width
        self._trunk_and_head(width, num_classes, [])

    @classmethod
    def encoder_depth(cls, arch: Arch) -> int:
        return _trunk_depth(arch)  # the trunk is the encoder

    @classmethod
    def skip_scales(cls, arch: Arch) -> list[int]:
        return list(range(_trunk_depth(arch)))

    def _fused(self, inputs: dict[str, Tensor]) -> tuple[Tensor, list[Tensor]]:
        xs, masks = self._inputs(inputs)
        if self.time_after:  # the raw inputs fused date by date, then time collapsed
            doy, valid, sub, keep = self._time_axis(inputs, masks)
            dxs: list[Tensor] = []
            dms: list[Tensor] = []
            for i in range(len(xs)):
                dxs.append(self._per_date(xs[i], i, doy, sub, keep))
                dms.append(self._per_date(masks[i], i, doy, sub, keep))
            return self._collapse(self.fuse(dxs, dms), dms, doy, valid, sub, keep), []
        return self.fuse(xs, masks), []


def _branches(arch: Arch, in_channels: dict[str, int]) -> nn.ModuleList:
    decoded = arch.decoder is not None
    return nn.ModuleList(build_branch(arch.branches[s], in_channels[s], decoded)
                         for s in arch.sensors)


@POSITIONS.register("middle")
class MiddleFusion(FusionModel):
    """Branches -> op on each branch's last stage -> trunk -> head. A branch's depth is the
    stage at which its sensor joins the others. In an encoder-decoder the sensors meet at the
    deepest branch's scale D (a shallower branch's last stage is average-pooled down to it);
    the decoder's skips are the trunk's stages (scales D and below the deepest)."""

    fused_reduction: int  # 2**D: the sensors meet at scale D
    fused_scale: int  # D
    pools: list[int]  # per branch: the pooling from its last stage down to that scale
    time_after_fusion = True

    def __init__(self, arch: Arch, in_channels: dict[str, int], num_classes: int,
                 dates: dict[str, int] | None = None) -> None:
        super().__init__(arch, in_channels, num_classes, dates)
        width = arch.fusion.width
        self.branches = _branches(arch, self.branch_channels)
        self.fused_reduction = max(b.reductions[-1] for b in self.branches)
        self.pools = [self.fused_reduction // b.reductions[-1] for b in self.branches]
        self.fuse = self._op([b.out_channels[-1] for b in self.branches], width)
        if self.time_after:
            self.time_op = TIME_OPS.get(arch.fusion.time)(width)
            self.time_width = width
        self.fused_scale = self.fused_reduction.bit_length() - 1
        self._trunk_and_head(width, num_classes, [0] * self.fused_scale)

    @classmethod
    def encoder_depth(cls, arch: Arch) -> int:
        return _depth(arch) + _trunk_depth(arch)

    @classmethod
    def skip_scales(cls, arch: Arch) -> list[int]:
        return list(range(_depth(arch), cls.encoder_depth(arch)))

    def _fused(self, inputs: dict[str, Tensor]) -> tuple[Tensor, list[Tensor]]:
        xs, masks = self._inputs(inputs)
        # scales above the fusion have no fused map: the decoder reads their size only
        refs = _size_refs(masks[0], self.fused_scale) if self.decoder is not None else []
        if self.time_after:
            return self._fused_dates(inputs, xs, masks), refs
        feats: list[Tensor] = []
        fmasks: list[Tensor] = []
        for i, branch in enumerate(self.branches):
            feats.append(pool_features(branch(xs[i]), self.pools[i]))
            fmasks.append(pool_mask(masks[i], self.fused_reduction))
        return self.fuse(feats, fmasks), refs

    def _fused_dates(self, inputs: dict[str, Tensor], xs: list[Tensor], masks: list[Tensor]
                     ) -> Tensor:
        """Time after fusion: per-date branches (valid dates only in training), the others
        broadcast over the dates, the op per date, the dates collapsed."""
        doy, valid, sub, keep = self._time_axis(inputs, masks)
        feats: list[Tensor] = []
        fmasks: list[Tensor] = []
        for i, branch in enumerate(self.branches):
            if self.series[i] == 3:  # DATED: the branch runs on every date that runs
                f = branch(xs[i].index_select(0, keep) if sub else xs[i])
            else:  # computed once, broadcast over the dates
                f = self._per_date(branch(xs[i]), i, doy, sub, keep)
            feats.append(pool_features(f, self.pools[i]))
            fmasks.append(pool_mask(self._per_date(masks[i], i, doy, sub, keep),
                                    self.fused_reduction))
        return self._collapse(self.fuse(feats, fmasks), fmasks, doy, valid, sub, keep)


@POSITIONS.register("multi")
class MultiFusion(FusionModel):
    """Branches -> one op per stage s over the branches that reach s -> mean over stages ->
    trunk -> head. Shallow and deep features of every sensor meet. In an encoder-decoder the
    stages are grouped by scale (a branch entering at scale e has stage j at scale e + j) and
    the fused map of each scale is kept (per-scale fusion) instead of averaged: the trunk runs
    on the deepest, and the decoder may take a skip from every scale some branch reaches."""

    members: list[list[int]]  # members[k]: the branches fused by op k
    stages: list[list[int]]  # stages[k]: which stage of each of them
    reductions: list[list[int]]  # reductions[k]: their reductions
    fused_at: list[int]  # per scale (decoder) or stage: the op fusing it, -1 for none

    def __init__(self, arch: Arch, in_channels: dict[str, int], num_classes: int,
                 dates: dict[str, int] | None = None) -> None:
        super().__init__(arch, in_channels, num_classes, dates)
        width = arch.fusion.width
        self.branches = _branches(arch, self.branch_channels)
        groups: dict[int, list[tuple[int, int]]] = {}
        for i, b in enumerate(self.branches):
            for j, r in enumerate(b.reductions):
                key = (r.bit_length() - 1) if arch.decoder is not None else j
                groups.setdefault(key, []).append((i, j))
        keys = sorted(groups)
        self.members = [[i for i, _ in groups[k]] for k in keys]
        self.stages = [[j for _, j in groups[k]] for k in keys]
        self.reductions = [[self.branches[i].reductions[j] for i, j in groups[k]] for k in keys]
        self.fused_at = [keys.index(k) if k in groups else -1 for k in range(keys[-1] + 1)]
        self.fuse = nn.ModuleList(
            self._op([self.branches[i].out_channels[j] for i, j in groups[k]], width)
            for k in keys
        )
        shallow = [width if k in groups else 0 for k in range(keys[-1])]
        self._trunk_and_head(width, num_classes, shallow)

    @classmethod
    def encoder_depth(cls, arch: Arch) -> int:
        return _depth(arch) + _trunk_depth(arch)

    @classmethod
    def skip_scales(cls, arch: Arch) -> list[int]:
        deepest = cls.encoder_depth(arch)
        return sorted(s for s in _covered(arch) | set(range(_depth(arch), deepest))
                      if s < deepest)

    def _fused(self, inputs: dict[str, Tensor]) -> tuple[Tensor, list[Tensor]]:
        """The map the trunk reads (stage "fused"): the mean of the stages' fused maps, or in
        an encoder-decoder the deepest scale's fused map."""
        xs, masks = self._inputs(inputs)
        fused = self._fuse_stages(xs, masks)
        if self.decoder is not None:
            return fused[len(fused) - 1], self._decoder_maps(fused, masks)
        return torch.stack(fused, dim=0).mean(dim=0), []

    def _decoder_maps(self, fused: list[Tensor], masks: list[Tensor]) -> list[Tensor]:
        """The decoder's maps of the scales above the deepest: fused maps, or size refs."""
        n = len(self.fused_at)
        refs = _size_refs(masks[0], n - 1)
        maps: list[Tensor] = []
        for s in range(n - 1):
            k = self.fused_at[s]
            maps.append(fused[k] if k >= 0 else refs[s])
        return maps

    def _fuse_stages(self, xs: list[Tensor], masks: list[Tensor]) -> list[Tensor]:
        """The fused map of every stage (scale with a decoder), op order."""
        stages: list[list[Tensor]] = []
        for i, branch in enumerate(self.branches):
            stages.append(branch.forward_stages(xs[i]))
        fused: list[Tensor] = []
        for k, op in enumerate(self.fuse):
            members = self.members[k]
            feats: list[Tensor] = []
            fmasks: list[Tensor] = []
            for m in range(len(members)):
                feats.append(stages[members[m]][self.stages[k][m]])
                fmasks.append(pool_mask(masks[members[m]], self.reductions[k][m]))
            fused.append(op(feats, fmasks))  # [B, width, H / 2^s, W / 2^s] with a decoder
        return fused


@POSITIONS.register("late")
class LateFusion(FusionModel):
    """Decision level: every branch has its own head; the op fuses the per-sensor logits,
    weighted by each sensor's presence as its head sees it (`Head.presence()`: the fraction of
    valid pixels for a `patch` head, the centre pixel's validity for `centre`, per pixel for a
    dense head)."""

    uses_trunk = False
    uses_width = False
    shared_head = False

    def __init__(self, arch: Arch, in_channels: dict[str, int], num_classes: int,
                 dates: dict[str, int] | None = None) -> None:
        super().__init__(arch, in_channels, num_classes, dates)
        paths = []
        decoder = arch.decoder
        for branch in _branches(arch, self.branch_channels):
            if decoder is None:
                own_head = self._make_head(branch.out_channels[-1], branch.out_channels[-1])
                paths.append(nn.Sequential(branch, own_head))  # a single-sensor classifier
            else:  # a single-sensor encoder-decoder, skips from its own stages
                entry = branch.reductions[0].bit_length() - 1
                last = branch.reductions[-1].bit_length() - 1
                own = Decoder([0] * entry + branch.out_channels,
                              [s for s in decoder.skips if entry <= s < last],
                              decoder.width, decoder.up, decoder.context)
                own_head = self._make_head(own.out_channels, own.out_channels)
                paths.append(_DecodedPath(branch, own, own_head, entry))
        self.paths = nn.ModuleList(paths)
        # mask [B, 1, H, W] -> the weight of a sensor's logits (the heads are all one kind)
        self.presence = own_head.presence()
        self.fuse = self._op([self.num_classes] * len(paths), self.num_classes)

    @classmethod
    def encoder_depth(cls, arch: Arch) -> int:
        return _depth(arch)

    def feature_stages(self) -> list[str]:
        return []

    @classmethod
    def skip_scales(cls, arch: Arch) -> list[int]:
        # each branch uses those between its entry and its last stage
        return sorted(s for s in _covered(arch) if s < _depth(arch))

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        xs, masks = self._inputs(inputs)
        logits: list[Tensor] = []
        weights: list[Tensor] = []
        for i, path in enumerate(self.paths):
            y = path(xs[i])  # [B, K] or [B, K, H, W]
            logits.append(y if self.dense else y[:, :, None, None])
            weights.append(self.presence(masks[i]))  # [B, 1, H, W] or [B, 1, 1, 1]
        fused = self.fuse(logits, weights)  # [B, K, H, W] or [B, K, 1, 1]
        return fused if self.dense else fused.flatten(1)


class _DecodedPath(nn.Module):
    """Late fusion's path of one sensor in an encoder-decoder: branch stages -> its own
    decoder -> its own head (full resolution even when the sensor enters at scale `entry`)."""

    def __init__(self, branch: nn.Module, decoder: Decoder, head: nn.Module, entry: int
                 ) -> None:
        super().__init__()
        self.branch = branch
        self.decoder = decoder
        self.head = head
        self.entry = entry

    def forward(self, x: Tensor) -> Tensor:
        refs = _size_refs(x[:, :1], self.entry)
        return self.head(self.decoder(refs + self.branch.forward_stages(x)))


class FeatureExtractor(nn.Module):
    """`model`'s feature map `stage` (`FusionModel.feature_stages()`) as a model of its own:
    the same inputs, `[B, C, H / r, W / r]` out (what a feature-extractor ONNX graph holds).
    It shares the model's weights; call it in eval mode for deterministic features."""

    def __init__(self, model: FusionModel, stage: str) -> None:
        super().__init__()
        if stage not in model.feature_stages():
            raise ValueError(model._unknown_stage(stage))
        self.model = model
        self.stage = stage
        self.sensors = model.sensors

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        return self.model.forward_stage(inputs, self.stage)
