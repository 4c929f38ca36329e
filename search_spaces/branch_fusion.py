"""Branch-and-fuse spaces: a branch per sensor (or none), a fusion point and operator, a shared
trunk and a head. `fusion` is the full space; `compact` keeps small, low-latency choices.

Labels (sensor names are the task's):

    branch.<sensor>.kind / .width / .depth / .kernel
    fusion.position, fusion.op, fusion.width, trunk.layers, head.kind, head.hidden
    features.dropout   (spaces with FEATURE_DROPOUT: `fusion`, `robust`)
    train.modality_dropout, train.cloud_blobs   (the `robust` space only)
    decoder.width, decoder.skips, decoder.up, decoder.context   (segmentation tasks only)

`branch.<sensor>.kind` includes "off" when the task has more than one sensor (a sample with
every sensor off is invalid). Branch kinds made for one sensor kind are only offered to it:
"spectral" to hyperspectral sensors, "sar" to SAR sensors. Branches that read complex channel
pairs (`Branch.input_kind == "complex"`, `fusion.complex`) are offered to complex sensors
only (`set_input_kinds`), before the real-input kinds, which complex sensors also get; those
that read a time series (`input_kind == "temporal"`, `fusion.temporal`: the temporal operator
and where time collapses are the kind) to time-series sensors only, likewise (a real-input
kind reads the dates stacked as channels).

Time series (sensors declared "temporal" by `set_input_kinds`) also get `fusion.time`: where
their time axis collapses - "branch" (inside each branch, as above) or an operator of
`fusion.TIME_OPS` (`TIME_COLLAPSE`): after the fusion, the time-series sensors' real-input
branches running on every date (`FusionSpec.time`; positions stating `time_after_fusion`).
Unused (it canonicalises to "branch") where the position cannot or no time-series sensor is
read per date. Weights (`weights`): for a time-series sensor's kind and for `fusion.time`, the
options that read when the dates are (`Branch.sees_timing`, `TemporalOp.sees_timing`) share
`TIMING_SHARE` of the prior probability, the others (real-input kinds, time-blind ones, off,
"branch") the rest, so a sampling strategy spends most draws on networks that can use the
time axis without excluding the others. `trunk.layers` = n > 0 is a conv
trunk of n layers at the fusion width after the fusion point (unused by late fusion).
`features.dropout` is one channel-dropout rate for every used branch and the trunk
(`BranchSpec.dropout`: `nn.Dropout2d` after each stage), so MC dropout samples the features;
it is unused (and not counted) by early fusion without a trunk.

Segmentation tasks also choose an encoder-decoder: `decoder.width` 0 keeps every map at full
resolution (the networks of patch tasks with a per-pixel head); w > 0 makes the branches' and
the trunk's blocks downsample and adds a decoder of width w. `decoder.skips` is a pattern over
the scales the position fuses (`FusionModel.skip_scales`): "none", "finest" (the finest fused
scale) or "all". Branch depths there come from `ENCODER_DEPTHS`: deep coarse stages are cheap.
An encoder that never downsamples (every depth 0) gets no decoder. A sensor whose own pixels
are 2^k times the grid's (`set_native_scales`) also gets `branch.<sensor>.scale` in (0, k):
enter the encoder at the grid's scale or at its own (unused without a decoder, or with
early fusion).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

from fusion import (
    BRANCHES,
    CLOUDED_KINDS,
    FUSION_OPS,
    HEAD_STAGES,
    OFF,
    POSITIONS,
    TIME_IN_BRANCH,
    TIME_OPS,
    Arch,
    ArchError,
    BranchSpec,
    DecoderSpec,
    FusionSpec,
    HeadSpec,
    TargetHeadSpec,
    TrainingSpec,
)
from search_spaces.base import SPACES, Sample, SearchSpace

TRAINING_CHOICES = ("modality_dropout", "cloud_blobs")  # train.<choice> labels, when offered
# Branch kind -> the sensor kinds it is designed for (others are offered to every sensor).
SPECIALISED: dict[str, tuple[str, ...]] = {"spectral": ("hyperspectral",), "sar": ("sar",)}


class BranchFusionSpace(SearchSpace):
    """The shared mechanics; subclasses set the option lists (None = every registered name)."""

    BRANCH_KINDS: ClassVar[tuple[str, ...] | None] = None
    WIDTHS: ClassVar[tuple[int, ...]] = ()
    DEPTHS: ClassVar[tuple[int, ...]] = ()
    KERNELS: ClassVar[tuple[int, ...]] = ()
    POSITIONS: ClassVar[tuple[str, ...] | None] = None
    OPS: ClassVar[tuple[str, ...] | None] = None
    FUSION_WIDTHS: ClassVar[tuple[int, ...]] = ()
    TRUNK_LAYERS: ClassVar[tuple[int, ...]] = ()
    PATCH_HEADS: ClassVar[tuple[str, ...]] = ("patch", "centre")
    HEAD_HIDDEN: ClassVar[tuple[int, ...]] = ()
    # Robustness training chosen with the network (empty: the task's train settings)
    MODALITY_DROPOUT: ClassVar[tuple[float, ...]] = ()
    CLOUD_BLOBS: ClassVar[tuple[float, ...]] = ()
    DROPOUT: ClassVar[float] = 0.1
    # Channel dropout of the branches and the trunk (empty: none, no label)
    FEATURE_DROPOUT: ClassVar[tuple[float, ...]] = ()
    TRUNK_KERNEL: ClassVar[int] = 3
    # Encoder-decoders (segmentation tasks): width 0 = no decoder, full resolution
    DECODER_WIDTHS: ClassVar[tuple[int, ...]] = (0,)
    ENCODER_DEPTHS: ClassVar[tuple[int, ...]] = ()  # branch depths of dense tasks (empty: DEPTHS)
    DECODER_SKIPS: ClassVar[tuple[str, ...]] = ("none", "finest", "all")
    DECODER_UPS: ClassVar[tuple[str, ...]] = ("bilinear",)
    DECODER_CONTEXTS: ClassVar[tuple[str, ...]] = ("none",)
    # Where a time series' time axis collapses (`fusion.time`; None = "branch" and every
    # registered operator) and the prior share of the options that read timing (see above)
    TIME_COLLAPSE: ClassVar[tuple[str, ...] | None] = None
    TIMING_SHARE: ClassVar[float] = 0.5

    # -- options --------------------------------------------------------------------------------
    def branch_kinds(self, sensor: str) -> list[str]:
        """Kinds offered to `sensor` ("off" excluded), specialised kinds first."""
        candidates = self.BRANCH_KINDS if self.BRANCH_KINDS is not None else BRANCHES.names()
        sensor_kind = self.sensors[sensor]
        kinds = [k for k in candidates if k in BRANCHES and k != OFF]
        # Each branch states what it reads (`Branch.input_kind`): kinds for complex channel
        # pairs or a time series go to sensors of that input only (first), real-input kinds
        # to every sensor.
        reads = self.input_kinds.get(sensor, "real")
        typed = [k for k in kinds if BRANCHES.get(k).input_kind != "real"]
        typed_own = [k for k in typed if BRANCHES.get(k).input_kind == reads]
        kinds = [k for k in kinds if k not in typed]
        own = [k for k in kinds if sensor_kind in SPECIALISED.get(k, ())]
        general = [k for k in kinds if k not in SPECIALISED]
        return typed_own + own + general

    @property
    def series(self) -> list[str]:
        """The time-series sensors (input kind "temporal")."""
        return [s for s in self.sensors if self.input_kinds.get(s) == "temporal"]

    def _times(self) -> list[str]:
        names = (self.TIME_COLLAPSE if self.TIME_COLLAPSE is not None
                 else [TIME_IN_BRANCH] + TIME_OPS.names())
        return [t for t in names if t == TIME_IN_BRANCH or t in TIME_OPS]

    def weights(self, label: str, values: list[Any]) -> list[float] | None:
        """A time-series sensor's kinds and `fusion.time`: the options that read timing share
        `TIMING_SHARE`, the others the rest (uniform within each group); else uniform."""
        if label == "fusion.time":
            timed = [v != TIME_IN_BRANCH and TIME_OPS.get(v).sees_timing for v in values]
        elif label in {f"branch.{s}.kind" for s in self.series}:
            timed = [v != OFF and BRANCHES.get(v).sees_timing for v in values]
        else:
            return None
        n = sum(timed)
        if n in (0, len(values)):
            return None
        share = self.TIMING_SHARE
        return [share / n if t else (1.0 - share) / (len(values) - n) for t in timed]

    def _reads_dates(self, branches: dict[str, BranchSpec], position: str) -> bool:
        """Whether a time-series sensor would be read per date with time collapsed after the
        fusion (`fusion.time` used): the position can, and a used time-series sensor has no
        temporal kind (early fusion: any used one)."""
        pos = POSITIONS.get(position)
        return pos.time_after_fusion and any(
            branches[s].on and (pos.stacks_inputs
                                or BRANCHES.get(branches[s].kind).input_kind != "temporal")
            for s in self.series)

    def _positions(self) -> list[str]:
        names = self.POSITIONS if self.POSITIONS is not None else POSITIONS.names()
        return [p for p in names if p in POSITIONS]

    def _ops(self) -> list[str]:
        names = self.OPS if self.OPS is not None else FUSION_OPS.names()
        return [o for o in names if o in FUSION_OPS]

    @property
    def allows_off(self) -> bool:
        return len(self.sensors) > 1

    @property
    def depths(self) -> tuple[int, ...]:
        return self.ENCODER_DEPTHS if self.dense and self.ENCODER_DEPTHS else self.DEPTHS

    @property
    def decodes(self) -> bool:
        """Whether the space offers encoder-decoders (dense tasks, a decoder width > 0)."""
        return self.dense and any(w > 0 for w in self.DECODER_WIDTHS)

    def options(self) -> dict[str, list[Any]]:
        opts: dict[str, list[Any]] = {}
        for s in self.sensors:
            opts[f"branch.{s}.kind"] = self.branch_kinds(s) + ([OFF] if self.allows_off else [])
            opts[f"branch.{s}.width"] = list(self.WIDTHS)
            opts[f"branch.{s}.depth"] = list(self.depths)
            opts[f"branch.{s}.kernel"] = list(self.KERNELS)
            if self.decodes and self.native_scales.get(s, 0) > 0:
                opts[f"branch.{s}.scale"] = [0, self.native_scales[s]]
        opts["fusion.position"] = self._positions()
        opts["fusion.op"] = self._ops()
        if self.series:
            opts["fusion.time"] = self._times()
        opts["fusion.width"] = list(self.FUSION_WIDTHS)
        opts["trunk.layers"] = list(self.TRUNK_LAYERS)
        opts["head.kind"] = ["segmentation"] if self.dense else list(self.PATCH_HEADS)
        if self.targets:  # several targets: one head each, its width and the stage it reads
            for t in self.targets:
                opts[f"head.{t}.hidden"] = list(self.HEAD_HIDDEN)
                opts[f"head.{t}.stage"] = ["last"] if self.dense else list(HEAD_STAGES)
        else:
            opts["head.hidden"] = list(self.HEAD_HIDDEN)
        if self.FEATURE_DROPOUT:
            opts["features.dropout"] = list(self.FEATURE_DROPOUT)
        if self.decodes:
            opts["decoder.width"] = list(self.DECODER_WIDTHS)
            opts["decoder.skips"] = list(self.DECODER_SKIPS)
            opts["decoder.up"] = list(self.DECODER_UPS)
            opts["decoder.context"] = list(self.DECODER_CONTEXTS)
        if self.MODALITY_DROPOUT and len(self.sensors) > 1:
            opts["train.modality_dropout"] = list(self.MODALITY_DROPOUT)
        if self.CLOUD_BLOBS and any(k in CLOUDED_KINDS for k in self.sensors.values()):
            opts["train.cloud_blobs"] = list(self.CLOUD_BLOBS)
        return opts

    # -- sample <-> arch ------------------------------------------------------------------------
    def to_arch(self, sample: Sample) -> Arch:
        drop = (self._value(sample, "features.dropout") if "features.dropout" in self.options()
                else 0.0)
        branches = {}
        for s in self.sensors:
            kind = self._value(sample, f"branch.{s}.kind")
            if kind == OFF:
                branches[s] = BranchSpec(OFF)
            else:
                branches[s] = BranchSpec(
                    kind,
                    width=self._value(sample, f"branch.{s}.width"),
                    depth=self._value(sample, f"branch.{s}.depth"),
                    kernel=self._value(sample, f"branch.{s}.kernel"),
                    dropout=drop,
                )
                label = f"branch.{s}.scale"
                if label in self.options():
                    scale = self._value(sample, label)
                    branches[s] = dataclasses.replace(branches[s], scale=scale)
        position = self._value(sample, "fusion.position")
        width = self._value(sample, "fusion.width")
        layers = self._value(sample, "trunk.layers")
        trunk = BranchSpec(OFF)
        if layers > 0 and POSITIONS.get(position).uses_trunk:
            trunk = BranchSpec("conv", width=width, depth=layers - 1, kernel=self.TRUNK_KERNEL,
                               dropout=drop)
        time = TIME_IN_BRANCH
        if "fusion.time" in self.options() and self._reads_dates(branches, position):
            time = self._value(sample, "fusion.time")
        arch = Arch(
            branches=branches,
            fusion=FusionSpec(self._value(sample, "fusion.op"), position, width, trunk, time),
            head=HeadSpec(
                self._value(sample, "head.kind"),
                hidden=HeadSpec.hidden if self.targets else self._value(sample, "head.hidden"),
                dropout=self.DROPOUT,
            ),
            training=TrainingSpec(**{
                key: self._value(sample, f"train.{key}") for key in TRAINING_CHOICES
                if f"train.{key}" in self.options()}),
        )
        if self.decodes:
            arch = self._with_decoder(arch, sample)
        if self.targets:
            arch = self._with_heads(arch, sample)
        if arch.decoder is None or position == "early":  # a sensor's scale is unused there
            arch = dataclasses.replace(arch, branches={
                n: dataclasses.replace(b, scale=0) if b.on else b
                for n, b in arch.branches.items()})
        arch.validate(sensors=list(self.sensors), dense=self.dense)
        return arch.canonical()

    def _with_heads(self, arch: Arch, sample: Sample) -> Arch:
        """One head per target; "fused" falls back to "last" where no trunk follows one
        fusion (the two stages are then one map)."""
        fused_ok = (arch.fusion.trunk.on and arch.decoder is None
                    and POSITIONS.get(arch.fusion.position).shared_head)
        heads = {}
        for t in self.targets:
            stage = self._value(sample, f"head.{t}.stage")
            heads[t] = TargetHeadSpec(hidden=self._value(sample, f"head.{t}.hidden"),
                                      stage=stage if fused_ok else "last")
        return dataclasses.replace(arch, heads=heads)

    def _with_decoder(self, arch: Arch, sample: Sample) -> Arch:
        """`arch` with the sample's decoder: skips resolved against the scales its position
        fuses; none when the width is 0 or the encoder would never downsample."""
        width = self._value(sample, "decoder.width")
        if width == 0:
            return arch
        trial = dataclasses.replace(arch, decoder=DecoderSpec(width=width))
        position = POSITIONS.get(arch.fusion.position)
        if position.encoder_depth(trial) < 1:
            return arch
        usable = position.skip_scales(trial)
        skips = {"none": (), "finest": tuple(usable[:1]), "all": tuple(usable)}[
            self._value(sample, "decoder.skips")]
        return dataclasses.replace(arch, decoder=DecoderSpec(
            width=width, skips=skips, up=self._value(sample, "decoder.up"),
            context=self._value(sample, "decoder.context")))

    def to_sample(self, arch: Arch) -> Sample:
        if list(arch.branches) != list(self.sensors):
            raise ArchError(
                f"branches: the arch has sensors {list(arch.branches)}, the space "
                f"{list(self.sensors)}"
            )
        opts = self.options()
        f = arch.fusion
        position = POSITIONS.get(f.position)
        early = f.position == "early"
        sample: Sample = {}
        for s, b in arch.branches.items():
            if not b.on:
                sample[f"branch.{s}.kind"] = OFF
            elif early:  # early fusion reads raw inputs: the branch fields are unused
                sample[f"branch.{s}.kind"] = opts[f"branch.{s}.kind"][0]
            else:
                sample[f"branch.{s}.kind"] = b.kind
            for field in ("width", "depth", "kernel", "scale"):
                if f"branch.{s}.{field}" not in opts:
                    continue
                used = b.on and not early
                sample[f"branch.{s}.{field}"] = (
                    getattr(b, field) if used else opts[f"branch.{s}.{field}"][0]
                )
        sample["fusion.position"] = f.position
        sample["fusion.op"] = f.op
        if "fusion.time" in opts or f.time != TIME_IN_BRANCH:
            sample["fusion.time"] = f.time
        sample["fusion.width"] = f.width if position.uses_width else opts["fusion.width"][0]
        sample["trunk.layers"] = f.trunk.depth + 1 if f.trunk.on else 0
        sample["head.kind"] = arch.head.kind
        if self.targets:
            if arch.heads is None or set(arch.heads) != set(self.targets):
                raise ArchError(f"heads: the space has a head per target {self.targets}; the "
                                f"arch has {None if arch.heads is None else list(arch.heads)}")
            for t in self.targets:
                sample[f"head.{t}.hidden"] = arch.heads[t].hidden
                sample[f"head.{t}.stage"] = arch.heads[t].stage
        else:
            sample["head.hidden"] = arch.head.hidden
        drops = {b.dropout for b in arch.branches.values() if b.on and not early}
        drops |= {f.trunk.dropout} if f.trunk.on else set()
        if len(drops) > 1:
            raise ArchError(f"features.dropout: the {self.name} space gives every branch and "
                            f"the trunk one channel-dropout rate; the arch has "
                            f"{sorted(drops)}")
        if "features.dropout" in opts:
            sample["features.dropout"] = drops.pop() if drops else opts["features.dropout"][0]
        elif drops and drops.pop():
            raise ArchError(f"features.dropout: the {self.name} space has no branch or trunk "
                            "dropout; use a space that chooses it (e.g. fusion) or remove "
                            "the branches' and the trunk's 'dropout'")
        for key, value in arch.training.to_dict().items():
            sample[f"train.{key}"] = value
        if self.decodes:
            sample.update(self._decoder_sample(arch, opts))
        for label, value in sample.items():
            if label not in opts:
                raise ArchError(f"{label.replace('train.', 'training.')}: the {self.name} space "
                                "does not choose it for this task; use a space that does "
                                "(e.g. robust) or remove it from the arch")
            if value not in opts[label]:
                raise ArchError(f"{label}: {value!r} is not in the {self.name} space ({opts[label]})")
        sample = {k: v for k, v in sample.items() if len(opts[k]) > 1}
        if self.to_arch(sample) != arch.canonical():
            raise ArchError(
                f"the arch is not in the {self.name} space (trunk must be conv at the fusion "
                f"width with kernel {self.TRUNK_KERNEL}, head dropout {self.DROPOUT}, one "
                "feature dropout rate)"
            )
        return sample

    def _decoder_sample(self, arch: Arch, opts: dict[str, list[Any]]) -> Sample:
        d = arch.decoder
        if d is None:
            return {label: opts[label][0] for label in
                    ("decoder.skips", "decoder.up", "decoder.context")} | {"decoder.width": 0}
        usable = POSITIONS.get(arch.fusion.position).skip_scales(arch)
        patterns = {"none": (), "finest": tuple(usable[:1]), "all": tuple(usable)}
        skips = next((name for name in self.DECODER_SKIPS if patterns[name] == d.skips),
                     None)
        if skips is None:
            raise ArchError(f"decoder.skips: {list(d.skips)} is not one of the {self.name} "
                            f"space's patterns {list(self.DECODER_SKIPS)} over {usable}")
        return {"decoder.width": d.width, "decoder.skips": skips, "decoder.up": d.up,
                "decoder.context": d.context}

    def size(self) -> int:
        """Distinct architectures; for segmentation tasks with encoder-decoders an upper
        bound (some skip patterns coincide for some archs)."""
        opts = self.options()
        heads = len(opts["head.kind"]) * math.prod(
            len(v) for k, v in opts.items() if k.startswith("head.") and k != "head.kind")
        drops = len(opts.get("features.dropout", [0.0]))
        total = 0
        times = len(opts.get("fusion.time", [TIME_IN_BRANCH]))
        for p in opts["fusion.position"]:
            pos = POSITIONS.get(p)
            off = 1 if self.allows_off else 0
            if p == "early":  # only on/off of each branch matters
                branches = 2 ** len(self.sensors) - 1 if self.allows_off else 1
                # on/off patterns with no time-series sensor on (fusion.time unused there)
                plain = (2 ** (len(self.sensors) - len(self.series)) - 1 if self.allows_off
                         else int(not self.series))
            else:
                fields = {s: len(self.WIDTHS) * len(self.depths) * len(self.KERNELS)
                          * len(opts.get(f"branch.{s}.scale", [0])) for s in self.sensors}
                per = {s: len(self.branch_kinds(s)) * fields[s] for s in self.sensors}
                branches = math.prod(n + off for n in per.values()) - off  # minus "all off"
                # no time-series sensor read per date: each is off or has a temporal kind
                temporal = {s: sum(BRANCHES.get(k).input_kind == "temporal"
                                   for k in self.branch_kinds(s)) * fields[s]
                            for s in self.series}
                plain = math.prod((temporal[s] if s in temporal else per[s]) + off
                                  for s in self.sensors) - off
            if pos.time_after_fusion:  # fusion.time matters where a sensor is read per date
                branches = plain + (branches - plain) * times
            widths = len(opts["fusion.width"]) if pos.uses_width else 1
            trunks = len(opts["trunk.layers"]) if pos.uses_trunk else 1
            if p == "early":  # the rate applies to the trunk only: unused without one
                trunks = sum(drops if n > 0 else 1 for n in opts["trunk.layers"])
            else:  # every used branch has it
                trunks *= drops
            total += branches * len(opts["fusion.op"]) * widths * trunks * heads
        if self.decodes:
            decoded = [w for w in self.DECODER_WIDTHS if w > 0]
            total *= 1 + len(decoded) * math.prod(
                len(opts[f"decoder.{k}"]) for k in ("skips", "up", "context"))
        return total * math.prod(len(opts[f"train.{k}"]) for k in TRAINING_CHOICES
                                 if f"train.{k}" in opts)


@SPACES.register("fusion")
class FusionSpace(BranchFusionSpace):
    name = "fusion"
    description = (
        "full space: per-sensor branch kind (incl. off), width, depth, kernel; every fusion "
        "position and operator; fusion width; trunk depth; feature dropout; head"
    )
    WIDTHS = (8, 16, 32, 64)
    DEPTHS = (0, 1, 2, 3)
    KERNELS = (1, 3, 5)
    FUSION_WIDTHS = (16, 32, 64)
    TRUNK_LAYERS = (0, 1, 2)
    HEAD_HIDDEN = (0, 32, 64)
    FEATURE_DROPOUT = (0.0, 0.1, 0.2)
    DECODER_WIDTHS = (0, 16, 32)
    ENCODER_DEPTHS = (0, 1, 2, 3, 4)
    DECODER_UPS = ("bilinear", "transposed")
    DECODER_CONTEXTS = ("none", "aspp")


@SPACES.register("compact")
class CompactSpace(BranchFusionSpace):
    name = "compact"
    description = (
        "small, low-latency space: narrow shallow branches, cheap fusion operators, "
        "small heads"
    )
    BRANCH_KINDS = ("spectral", "sar", "separable", "conv", "complex_modrelu",
                    "complex_features", "time_ltae_first", "time_gru_first",
                    "time_mean_first", "time_ltae")
    WIDTHS = (8, 16)
    DEPTHS = (0, 1)
    KERNELS = (3,)
    POSITIONS = ("early", "middle", "late")
    TIME_COLLAPSE = (TIME_IN_BRANCH, "ltae", "gru")
    OPS = ("sum", "concat", "gate")
    FUSION_WIDTHS = (8, 16)
    TRUNK_LAYERS = (0, 1)
    # both patch heads: a task labels each patch's centre pixel, and averaging the whole
    # patch ("patch") blurs small fields (results/benchmarks/temporal_search.md)
    PATCH_HEADS = ("patch", "centre")
    HEAD_HIDDEN = (0, 16)
    DECODER_WIDTHS = (0, 8, 16)
    ENCODER_DEPTHS = (0, 1, 2, 3)


@SPACES.register("robust")
class RobustSpace(FusionSpace):
    name = "robust"
    description = (
        "the fusion space plus robustness training chosen with each network: modality "
        "dropout (several sensors) and simulated cloud blobs (optical sensors)"
    )
    MODALITY_DROPOUT = (0.0, 0.2, 0.4)
    CLOUD_BLOBS = (0.0, 0.3)
