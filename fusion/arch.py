"""The Arch format: a small, versioned, JSON-able description of one fusion network.

    {"version": 1,
     "branches": {"hsi":   {"kind": "spectral", "width": 32, "depth": 2, "kernel": 3},
                  "lidar": {"kind": "conv", "width": 16, "depth": 1, "kernel": 3},
                  "sar":   {"kind": "off"}},
     "fusion": {"op": "gate", "position": "middle", "width": 32,
                "trunk": {"kind": "conv", "width": 32, "depth": 1, "kernel": 3}},
     "head": {"kind": "patch", "hidden": 64, "dropout": 0.1}}

- branches: one entry per task sensor. A branch is a stem (stage 0) and `depth` blocks
  (stages 1..depth), each with `width` channels at full resolution; `kernel` is the spatial
  kernel (odd). Kind "off" leaves the sensor out (the model still accepts its input).
- fusion.position: "early" fuses the raw inputs of the used sensors (branch fields other than
  "off" are not used there) and runs the trunk on them; "middle" fuses each branch's last stage,
  so a branch's depth is where its sensor meets the others, and the trunk holds the shared
  stages after fusion; "multi" fuses every stage (stage s over the branches that reach it) and
  averages the fused maps; "late" gives every branch its own head and fuses their logits.
- fusion.op fuses the sensors' maps into `width` channels (late: into the logits).
- fusion.trunk: a branch spec shared after fusion; kind "off" means none. Late has none.
- a branch's (or the trunk's) optional `dropout`: channel dropout (`nn.Dropout2d`) on every
  stage's output, so MC dropout samples the features too, not only the head; absent = 0 (archs
  without it keep their dict and hash).
- head: "patch" (average pool + MLP), "centre" (centre pixel + MLP) or "segmentation" (per
  pixel); `hidden` = 0 means a linear classifier; `dropout` before the classifier.
- decoder (optional, dense heads only): an encoder-decoder. Every block of the branches and of
  the trunk then halves the resolution (2x2 max pooling before it), so stage s of a branch is
  at scale s (1/2^s of the input); the decoder climbs from the deepest scale back to the input's
  resolution, concatenating the fused maps of the scales in `skips` on the way
  (`{"width": 32, "skips": [0, 1], "up": "bilinear", "context": "none"}`; see
  `fusion.decoder`). Which scales have fused maps depends on the position (`skip_scales`).

`Arch.from_dict` checks structure and types and then `validate()`; every problem raises
`ArchError` naming the dotted key and the valid values.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fusion.errors import ArchError
from fusion.registry import BRANCHES, FUSION_OPS, HEADS, POSITIONS, TIME_OPS, Registry

VERSION = 1
OFF = "off"
MASK_SUFFIX = "__mask"  # `<sensor>__mask`: a sensor's validity mask, next to it in the inputs
DOY_SUFFIX = "__doy"  # `<sensor>__doy`: a time-series sensor's day of year per date [B, T]
TIME_IN_BRANCH = "branch"  # `fusion.time` default: time collapses inside each sensor's branch


@dataclass(frozen=True)
class BranchSpec:
    """One sensor branch (or the shared trunk): kind, channels, blocks, spatial kernel, and in
    an encoder-decoder the `scale` at which its sensor enters (its input average-pooled 2^scale
    times: a sensor coarser than the grid, e.g. 20 m bands on a 10 m grid, enters at the stage
    whose resolution matches its own instead of being processed at the grid's)."""

    kind: str
    width: int = 32
    depth: int = 2
    kernel: int = 3
    scale: int = 0
    dropout: float = 0.0

    @property
    def on(self) -> bool:
        return self.kind != OFF

    def to_dict(self) -> dict[str, Any]:
        if not self.on:
            return {"kind": OFF}
        out: dict[str, Any] = {"kind": self.kind, "width": self.width, "depth": self.depth,
                               "kernel": self.kernel}
        if self.scale:  # optional: branches entering at the grid's scale keep their dict
            out["scale"] = self.scale
        if self.dropout:  # optional too: branches without dropout keep their dict and hash
            out["dropout"] = self.dropout
        return out

    def describe(self) -> str:
        """Short text such as `conv(w32,d2,k3)` (`conv(w32,d2,k3,@1)` entering at scale 1,
        `conv(w32,d2,k3,p0.1)` with channel dropout 0.1)."""
        if not self.on:
            return OFF
        at = f",@{self.scale}" if self.scale else ""
        drop = f",p{self.dropout:g}" if self.dropout else ""
        return f"{self.kind}(w{self.width},d{self.depth},k{self.kernel}{at}{drop})"


@dataclass(frozen=True)
class FusionSpec:
    """Where and how the sensors meet, and the shared trunk after that point.

    `time`: where a time series' time axis collapses. "branch" (default): inside each
    sensor's branch (a temporal kind collapses it, any other kind reads the dates stacked as
    channels). An operator of `TIME_OPS` (e.g. "ltae"): after the fusion - the time-series
    sensors' non-temporal branches run on every date, single-date sensors (and temporal
    kinds, already collapsed) are broadcast over the dates, the fusion op fuses each date and
    the operator collapses the fused dates (positions stating `time_after_fusion`)."""

    op: str
    position: str
    width: int = 32
    trunk: BranchSpec = BranchSpec(OFF)
    time: str = TIME_IN_BRANCH

    def to_dict(self) -> dict[str, Any]:
        out = {
            "op": self.op,
            "position": self.position,
            "width": self.width,
            "trunk": self.trunk.to_dict(),
        }
        if self.time != TIME_IN_BRANCH:  # optional: archs without it keep their dict and hash
            out["time"] = self.time
        return out


@dataclass(frozen=True)
class DecoderSpec:
    """The decoder of an encoder-decoder: `width` channels at every scale, the scales whose
    fused maps it concatenates (`skips`), how it upsamples (`up`) and the context module on
    the deepest map (`context`); valid values in `fusion.decoder`."""

    width: int = 32
    skips: tuple[int, ...] = ()
    up: str = "bilinear"
    context: str = "none"

    def to_dict(self) -> dict[str, Any]:
        return {"width": self.width, "skips": list(self.skips), "up": self.up,
                "context": self.context}

    def describe(self) -> str:
        """Short text such as `unet(w32,skips=0.1,bilinear,aspp)`."""
        skips = ".".join(str(s) for s in self.skips) or "none"
        ctx = "" if self.context == "none" else f",{self.context}"
        return f"decoder(w{self.width},skips={skips},{self.up}{ctx})"


@dataclass(frozen=True)
class HeadSpec:
    """The classifier: kind, hidden units (0 = linear), dropout before the last layer."""

    kind: str = "patch"
    hidden: int = 64
    dropout: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "hidden": self.hidden, "dropout": self.dropout}


HEAD_STAGES = ("last", "fused")  # what a target's head reads: the trunk's output, or the fused map


@dataclass(frozen=True)
class TargetHeadSpec:
    """One target's head in a multi-target network (`heads: {target: ...}`): its hidden
    units (0 = linear) and the stage it reads: "last" (what the one head of a single-target
    network reads: the trunk's, or the decoder's, output) or "fused" (the fused map before the
    trunk: a target that needs less depth than the others). Kind and dropout are `head`'s."""

    hidden: int = 64
    stage: str = "last"

    def to_dict(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "stage": self.stage}


# Sensor kinds that clouds hide the ground from (passive optical): simulated clouds in training
# (`cloud_blobs`) and in robustness evaluation apply to sensors of these kinds.
CLOUDED_KINDS: tuple[str, ...] = ("optical", "hyperspectral")


@dataclass(frozen=True)
class TrainingSpec:
    """Robustness training chosen with the network (None: the task's `train` setting):
    `modality_dropout` (a sample's sensor dropped) and `cloud_blobs` (a simulated cloud over
    its optical sensors). Not part of the network: it says how the weights were trained."""

    modality_dropout: float | None = None
    cloud_blobs: float | None = None

    @property
    def empty(self) -> bool:
        return self.modality_dropout is None and self.cloud_blobs is None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in (("modality_dropout", self.modality_dropout),
                                  ("cloud_blobs", self.cloud_blobs)) if v is not None}


@dataclass(frozen=True)
class Arch:
    """A whole fusion network. Build it with `fusion.build_model(arch, in_channels, K)`."""

    branches: dict[str, BranchSpec]
    fusion: FusionSpec
    head: HeadSpec = field(default_factory=HeadSpec)
    version: int = VERSION
    training: TrainingSpec = field(default_factory=TrainingSpec)
    decoder: DecoderSpec | None = None
    # several targets: one head each, in the model's output order (None: one head, `head`)
    heads: dict[str, TargetHeadSpec] | None = None

    # ---- views ---------------------------------------------------------------------------
    @property
    def sensors(self) -> list[str]:
        """Sensors whose branch is on, in the arch's order (the order the model fuses them)."""
        return [name for name, b in self.branches.items() if b.on]

    @property
    def dense(self) -> bool:
        """True when the head predicts every pixel (`[B, K, H, W]`), False for `[B, K]`."""
        return bool(HEADS.get(self.head.kind).dense)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; `Arch.from_dict(arch.to_dict()) == arch`."""
        out = {
            "version": self.version,
            "branches": {name: b.to_dict() for name, b in self.branches.items()},
            "fusion": self.fusion.to_dict(),
            "head": self.head.to_dict(),
        }
        if self.decoder is not None:  # optional, like training: older archs keep their hash
            out["decoder"] = self.decoder.to_dict()
        if not self.training.empty:  # optional: archs without it keep their dict and hash
            out["training"] = self.training.to_dict()
        if self.heads is not None:  # optional: single-target archs keep their dict and hash
            out["heads"] = {name: h.to_dict() for name, h in self.heads.items()}
        return out

    @property
    def depth(self) -> int:
        """The deepest scale of an encoder-decoder (its output stride is 2**depth); 0 without
        a decoder (every map at the input's resolution)."""
        if self.decoder is None:
            return 0
        return POSITIONS.get(self.fusion.position).encoder_depth(self)

    def __hash__(self) -> int:
        # Consistent with ==, which (like dict ==) ignores the order of the branches.
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def summary(self) -> str:
        """One line for progress displays, e.g.
        `hsi:spectral(w32,d2,k3) + lidar:conv(w16,d1,k3) -> middle gate(w32) -> conv(w32,d1,k3)
        -> patch(h64,p0.1)`."""
        f, h = self.fusion, self.head
        if f.position == "early":
            left = " + ".join(self.sensors)
        else:
            left = " + ".join(f"{s}:{self.branches[s].describe()}" for s in self.sensors)
        uses_width = POSITIONS.get(f.position).uses_width
        parts = [left, f"{f.position} {f.op}" + (f"(w{f.width})" if uses_width else "")]
        if f.time != TIME_IN_BRANCH:
            parts.append(f"time:{f.time}")
        if f.trunk.on:
            parts.append(f.trunk.describe())
        if self.decoder is not None:
            parts.append(self.decoder.describe())
        if self.heads is not None:
            each = ",".join(f"{n}:h{t.hidden}" + ("@fused" if t.stage == "fused" else "")
                            for n, t in self.heads.items())
            parts.append(f"{h.kind}[{each}]" + (f"(p{h.dropout:g})" if h.dropout else ""))
        else:
            parts.append(f"{h.kind}(h{h.hidden}" + (f",p{h.dropout:g})" if h.dropout else ")"))
        t = self.training
        train = [f"{k}={v:g}" for k, v in t.to_dict().items()]
        return " -> ".join(parts) + (f" [train {' '.join(train)}]" if train else "")

    def canonical(self) -> Arch:
        """The same network with the fields it does not use reset to defaults.

        Two archs that build the same network have equal canonical forms (a dedup key for the
        search): early fusion ignores the used branches' fields (kind, width, ..., dropout), late fusion
        ignores `fusion.width`.
        """
        branches = dict(self.branches)
        if self.fusion.position == "early":
            branches = {n: (BranchSpec("conv") if b.on else b) for n, b in branches.items()}
        fusion = self.fusion
        if not POSITIONS.get(fusion.position).uses_width:
            fusion = dataclasses.replace(fusion, width=FusionSpec.width)
        return dataclasses.replace(self, branches=branches, fusion=fusion)

    # ---- parsing and validation ----------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Arch:
        """Parse and validate a dict (e.g. a loaded arch.json)."""
        d = _fields(data, "arch", required=("version", "branches", "fusion", "head"),
                    optional=("training", "decoder", "heads"))
        version = _int(d["version"], "version")
        if version != VERSION:
            raise ArchError(f"version: unsupported arch version {version}; this fusion reads {VERSION}")
        branches_in = d["branches"]
        if not isinstance(branches_in, Mapping) or not branches_in:
            raise ArchError("branches: must be a non-empty mapping of sensor name -> branch")
        branches = {str(k): _branch(v, f"branches.{k}") for k, v in branches_in.items()}
        f = _fields(d["fusion"], "fusion", required=("op", "position"),
                    optional=("width", "trunk", "time"))
        fusion = FusionSpec(
            op=_str(f["op"], "fusion.op"),
            position=_str(f["position"], "fusion.position"),
            width=_int(f.get("width", FusionSpec.width), "fusion.width"),
            trunk=_branch(f.get("trunk", {"kind": OFF}), "fusion.trunk"),
            time=_str(f.get("time", TIME_IN_BRANCH), "fusion.time"),
        )
        h = _fields(d["head"], "head", required=("kind",), optional=("hidden", "dropout"))
        head = HeadSpec(
            kind=_str(h["kind"], "head.kind"),
            hidden=_int(h.get("hidden", HeadSpec.hidden), "head.hidden"),
            dropout=_float(h.get("dropout", HeadSpec.dropout), "head.dropout"),
        )
        t = _fields(d.get("training", {}), "training", required=(),
                    optional=("modality_dropout", "cloud_blobs"))
        training = TrainingSpec(**{k: _float(v, f"training.{k}") for k, v in t.items()})
        decoder = None
        if d.get("decoder") is not None:
            dd = _fields(d["decoder"], "decoder", required=(),
                         optional=("width", "skips", "up", "context"))
            skips = dd.get("skips", [])
            if not isinstance(skips, (list, tuple)):
                raise ArchError(f"decoder.skips: must be a list of scales, got {skips!r}")
            decoder = DecoderSpec(
                width=_int(dd.get("width", DecoderSpec.width), "decoder.width"),
                skips=tuple(sorted({_int(v, "decoder.skips[]") for v in skips})),
                up=_str(dd.get("up", DecoderSpec.up), "decoder.up"),
                context=_str(dd.get("context", DecoderSpec.context), "decoder.context"),
            )
        heads = None
        if d.get("heads") is not None:
            if not isinstance(d["heads"], Mapping) or not d["heads"]:
                raise ArchError("heads: must be a non-empty mapping of target name -> head")
            heads = {}
            for name, value in d["heads"].items():
                hh = _fields(value, f"heads.{name}", required=(), optional=("hidden", "stage"))
                heads[str(name)] = TargetHeadSpec(
                    hidden=_int(hh.get("hidden", TargetHeadSpec.hidden), f"heads.{name}.hidden"),
                    stage=_str(hh.get("stage", TargetHeadSpec.stage), f"heads.{name}.stage"))
        arch = cls(branches=branches, fusion=fusion, head=head, version=version,
                   training=training, decoder=decoder, heads=heads)
        arch.validate()
        return arch

    def validate(self, sensors: Iterable[str] | None = None, dense: bool | None = None) -> None:
        """Raise `ArchError` naming the bad key and the fix.

        `sensors`: the task's sensors; the arch must have exactly one branch for each.
        `dense`: the output the task needs (True: a per-pixel map, False: one label per patch).
        """
        if self.version != VERSION:
            raise ArchError(f"version: unsupported arch version {self.version}; use {VERSION}")
        if not self.branches:
            raise ArchError("branches: empty; give one branch per sensor")
        for name, b in self.branches.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ArchError(
                    f"branches: sensor name {name!r} must be a Python identifier "
                    "(it names a model input)"
                )
            if name.endswith(MASK_SUFFIX):
                raise ArchError(
                    f"branches: sensor name {name!r} ends with '{MASK_SUFFIX}', which names "
                    f"validity masks (the mask of sensor 's' is 's{MASK_SUFFIX}'): rename it"
                )
            _check_branch(b, f"branches.{name}")
        if not self.sensors:
            raise ArchError(
                f"branches: every branch is '{OFF}'; at least one sensor must be used: set "
                f"branches.<sensor>.kind to one of {BRANCHES.names()}"
            )
        f = self.fusion
        _check_name(f.op, FUSION_OPS, "fusion.op")
        position = _check_name(f.position, POSITIONS, "fusion.position")
        _positive(f.width, "fusion.width")
        _check_branch(f.trunk, "fusion.trunk")
        if f.trunk.on and BRANCHES.get(f.trunk.kind).input_kind != "real":
            raise ArchError(
                f"fusion.trunk.kind: '{f.trunk.kind}' reads {BRANCHES.get(f.trunk.kind).input_kind}"
                " inputs (a sensor's channel pairs), but the trunk reads the fused features: "
                "use a branch kind for real inputs, e.g. conv"
            )
        if f.time != TIME_IN_BRANCH:
            if f.time not in TIME_OPS:
                raise ArchError(f"fusion.time: unknown value {f.time!r}; valid values are "
                                f"{[TIME_IN_BRANCH] + TIME_OPS.names()}")
            if not position.time_after_fusion:
                fits = [p for p in POSITIONS.names() if POSITIONS.get(p).time_after_fusion]
                raise ArchError(f"fusion.time: '{f.position}' fusion cannot collapse time after "
                                f"the fusion; use a position of {fits} or "
                                f"'{TIME_IN_BRANCH}'")
        if f.trunk.on and not position.uses_trunk:
            raise ArchError(
                f"fusion.trunk: position '{f.position}' has no shared trunk (each sensor keeps "
                f"its own path to the logits): set fusion.trunk to {{\"kind\": \"{OFF}\"}} or "
                "use another position"
            )
        head = _check_name(self.head.kind, HEADS, "head.kind")
        if not isinstance(self.head.hidden, int) or self.head.hidden < 0:
            raise ArchError(f"head.hidden: must be an integer >= 0, got {self.head.hidden!r}")
        if not 0.0 <= self.head.dropout < 1.0:
            raise ArchError(f"head.dropout: must be in [0, 1), got {self.head.dropout!r}")
        for name, t in (self.heads or {}).items():
            if not isinstance(t.hidden, int) or t.hidden < 0:
                raise ArchError(f"heads.{name}.hidden: must be an integer >= 0, got {t.hidden!r}")
            if t.stage not in HEAD_STAGES:
                raise ArchError(f"heads.{name}.stage: unknown stage {t.stage!r}; valid values "
                                f"are {list(HEAD_STAGES)}")
            if t.stage == "fused" and not (f.trunk.on and self.decoder is None
                                           and position.shared_head):
                raise ArchError(f"heads.{name}.stage: 'fused' reads the fused map before the "
                                "trunk; this network has no trunk after one fusion (or a "
                                "decoder): use 'last'")
        for key, value in self.training.to_dict().items():
            if not 0.0 <= value < 1.0:
                raise ArchError(f"training.{key}: must be in [0, 1), got {value!r}")
        if f.trunk.scale:
            raise ArchError("fusion.trunk.scale: the trunk runs where the sensors meet; "
                            "remove its scale")
        entering = [s for s in self.sensors if self.branches[s].scale]
        if entering and (self.decoder is None or f.position == "early"):
            raise ArchError(
                f"branches.{entering[0]}.scale: a sensor enters at a coarser scale only in an "
                "encoder-decoder whose branches read the sensors (not early fusion): set it to "
                "0, or add a decoder"
            )
        if self.decoder is not None:
            self._validate_decoder(position, bool(head.dense))
        if dense is not None and bool(head.dense) != dense:
            need = "a per-pixel map (segmentation)" if dense else "one label per patch"
            fits = [k for k in HEADS.names() if bool(HEADS.get(k).dense) == dense]
            raise ArchError(
                f"head.kind: '{self.head.kind}' does not fit a task that needs {need}: "
                f"use one of {fits}"
            )
        if sensors is not None:
            wanted = list(sensors)
            extra = [s for s in self.branches if s not in wanted]
            if extra:
                raise ArchError(
                    f"branches.{extra[0]}: the task has no sensor '{extra[0]}' "
                    f"(task sensors: {wanted}); remove it from the arch"
                )
            missing = [s for s in wanted if s not in self.branches]
            if missing:
                raise ArchError(
                    f"branches: no branch for task sensor '{missing[0]}': add "
                    f"branches.{missing[0]} (kind '{OFF}' to leave it out)"
                )


    def _validate_decoder(self, position: Any, dense: bool) -> None:
        from fusion.decoder import CONTEXTS, UPSAMPLERS  # fusion.decoder imports this module

        d = self.decoder
        assert d is not None
        if not dense:
            raise ArchError(
                f"decoder: an encoder-decoder predicts every pixel; head '{self.head.kind}' "
                "labels a patch: use head.kind 'segmentation' or remove the decoder"
            )
        _positive(d.width, "decoder.width")
        if d.up not in UPSAMPLERS:
            raise ArchError(f"decoder.up: unknown upsampling {d.up!r}; valid values are "
                            f"{sorted(UPSAMPLERS)}")
        if d.context not in CONTEXTS:
            raise ArchError(f"decoder.context: unknown context module {d.context!r}; valid "
                            f"values are {sorted(CONTEXTS)}")
        depth = position.encoder_depth(self)
        if depth < 1:
            raise ArchError(
                "decoder: the encoder never downsamples (every branch and the trunk have "
                "depth 0, or early fusion has no trunk): give a branch or the trunk depth >= 1, "
                "or remove the decoder"
            )
        usable = position.skip_scales(self)
        bad = [s for s in d.skips if s not in usable]
        if bad:
            raise ArchError(
                f"decoder.skips: scale {bad[0]} has no fused map with '{self.fusion.position}' "
                f"fusion of these branches; usable scales are {usable}"
            )


# ---- helpers -------------------------------------------------------------------------------
def _fields(data: object, where: str, required: tuple[str, ...], optional: tuple[str, ...]
            ) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ArchError(f"{where}: must be a mapping, got {type(data).__name__}")
    allowed = required + optional
    for key in data:
        if key not in allowed:
            raise ArchError(f"{where}.{key}: unknown key; valid keys are {list(allowed)}")
    for key in required:
        if key not in data:
            raise ArchError(f"{where}.{key}: required key is missing")
    return data


def _branch(data: object, where: str) -> BranchSpec:
    d = _fields(data, where, required=("kind",),
                optional=("width", "depth", "kernel", "scale", "dropout"))
    kind = _str(d["kind"], f"{where}.kind")
    if kind == OFF:  # an unused branch has no parameters: drop them so equal archs compare equal
        return BranchSpec(OFF)
    return BranchSpec(
        kind=kind,
        width=_int(d.get("width", BranchSpec.width), f"{where}.width"),
        depth=_int(d.get("depth", BranchSpec.depth), f"{where}.depth"),
        kernel=_int(d.get("kernel", BranchSpec.kernel), f"{where}.kernel"),
        scale=_int(d.get("scale", BranchSpec.scale), f"{where}.scale"),
        dropout=_float(d.get("dropout", BranchSpec.dropout), f"{where}.dropout"),
    )


def _check_branch(b: BranchSpec, where: str) -> None:
    if b.kind != OFF:
        _check_name(b.kind, BRANCHES, f"{where}.kind", extra=(OFF,))
    if not b.on:
        return
    _positive(b.width, f"{where}.width")
    if not isinstance(b.depth, int) or isinstance(b.depth, bool) or b.depth < 0:
        raise ArchError(f"{where}.depth: must be an integer >= 0, got {b.depth!r}")
    if not isinstance(b.kernel, int) or isinstance(b.kernel, bool) or b.kernel < 1 \
            or b.kernel % 2 == 0:
        raise ArchError(
            f"{where}.kernel: must be an odd integer >= 1 (so maps keep their size), "
            f"got {b.kernel!r}"
        )
    if not isinstance(b.scale, int) or isinstance(b.scale, bool) or b.scale < 0:
        raise ArchError(f"{where}.scale: must be an integer >= 0, got {b.scale!r}")
    if isinstance(b.dropout, bool) or not isinstance(b.dropout, (int, float)) \
            or not 0.0 <= b.dropout < 1.0:
        raise ArchError(f"{where}.dropout: must be a number in [0, 1), got {b.dropout!r}")


def _check_name(name: str, registry: Registry, where: str, extra: tuple[str, ...] = ()) -> Any:
    if name in registry:
        return registry.get(name)
    raise ArchError(
        f"{where}: unknown {registry.what} {name!r}; valid values are "
        f"{sorted(registry.names() + list(extra))}"
    )


def _positive(v: object, where: str) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ArchError(f"{where}: must be an integer >= 1, got {v!r}")


def _str(v: object, where: str) -> str:
    if not isinstance(v, str):
        raise ArchError(f"{where}: must be a string, got {v!r}")
    return v


def _int(v: object, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ArchError(f"{where}: must be an integer, got {v!r}")
    return v


def _float(v: object, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ArchError(f"{where}: must be a number, got {v!r}")
    return float(v)
