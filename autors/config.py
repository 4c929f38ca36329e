"""The task file: a YAML document parsed once into a typed, validated `TaskSpec`.

Everything downstream (data, training, search, export) reads this object, never the raw YAML.
Relative paths resolve against the task file's folder. Unknown keys are errors.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import itertools
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from autors.errors import TaskFileError

SensorKind = Literal["optical", "sar", "lidar", "hyperspectral", "other"]
SarUnits = Literal["db", "linear", "complex"]
TaskKind = Literal["patch_classification", "segmentation"]
ObjectiveName = Literal["val_oa", "val_aa", "val_kappa", "val_miou", "val_oa_robust", "val_score"]
TargetKind = Literal["classes", "continuous"]
TargetLoss = Literal["cross_entropy", "l1", "huber", "gaussian_nll"]
CONTINUOUS_LOSSES = ("l1", "huber", "gaussian_nll")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MaskSpec(_Strict):
    """A mask raster (clouds, shadows, gaps) for one sensor: pixels holding one of
    `invalid_values` are invalid for that sensor only. Aligned like any raster (nearest)."""

    path: Path | None = Field(
        default=None, description="the mask GeoTIFF (one-scene task); in a dataset, each "
        "scene's mask comes from scenes.template.masks / the scene's 'masks'"
    )
    invalid_values: list[float] = Field(min_length=1)


class QASpec(_Strict):
    """A quality band of the sensor's own raster (Sentinel-2 SCL, Landsat QA_PIXEL): invalid
    where the value is one of `invalid_values`, or where any of `invalid_bits` is set. The QA
    band is not a model input."""

    band: int | str = Field(description="band name or 1-based index in the sensor's raster")
    invalid_values: list[int] | None = None
    invalid_bits: list[int] | None = None

    @model_validator(mode="after")
    def _one_rule(self) -> QASpec:
        if (self.invalid_values is None) == (self.invalid_bits is None):
            raise ValueError("give either 'invalid_values' or 'invalid_bits'")
        for bit in self.invalid_bits or []:
            if not 0 <= bit < 32:
                raise ValueError(f"bit {bit} is out of range: bits are 0..31")
        if isinstance(self.band, int) and self.band < 1:
            raise ValueError(f"band index {self.band} is invalid: indices are 1-based")
        return self


DATE_PLACEHOLDER = "{date}"  # in a time-series sensor's path: each date, as YYYY-MM-DD


class DateSpec(_Strict):
    """One acquisition of a time-series sensor: its date and, for a list of rasters, its file
    (may hold {scene} in a dataset)."""

    date: datetime.date
    path: Path | None = None

    @property
    def doy(self) -> int:
        """Day of year, 1..366."""
        return self.date.timetuple().tm_yday


class SensorSpec(_Strict):
    """One sensor: a GeoTIFF and how to read its values (a time series: one per date)."""

    kind: SensorKind
    path: Path | None = Field(
        default=None,
        description="the sensor's GeoTIFF (one-scene task); omitted when `scenes` gives each "
        "scene's files",
    )
    bands: list[int | str] | None = Field(
        default=None, description="band names or 1-based indices; all bands when omitted"
    )
    nodata: float | None = Field(
        default=None, description="overrides the file's nodata value; NaN is always invalid"
    )
    scale: float = 1.0
    offset: float = 0.0
    sar_units: SarUnits | None = Field(
        default=None,
        description="SAR only: 'linear' power is converted to dB on load; 'db' is used as is; "
        "'complex': complex values (SLC rasters of complex64 / complex int16, or real "
        "rasters declaring `complex_pairs`) become real/imaginary channel pairs, never "
        "converted",
    )
    complex_pairs: list[list[int | str]] | None = Field(
        default=None,
        description="sar_units complex on a real raster (polarimetric covariance/coherency "
        "elements): the (real, imaginary) band pairs, each a band name or 1-based index, e.g. "
        "C2 as [[C11], [C12_real, C12_imag], [C22]]; a pair of one band is a real element "
        "(imaginary part 0). Replaces `bands`",
    )
    mask: MaskSpec | None = Field(default=None, description="a cloud / gap mask raster")
    qa: QASpec | None = Field(default=None, description="a quality band of this raster")
    dates: list[DateSpec] | Literal["per_scene"] | None = Field(
        default=None,
        description="a time series, dates in increasing order: a list of {date, path} (one "
        "raster per date), or plain dates with `path` holding {date} (YYYY-MM-DD), or plain "
        "dates with `bands_per_date` (band groups of one file, date by date). Each date has "
        "its own validity (nodata, QA band, a mask raster per date); a date whose file a "
        "scene lacks is invalid everywhere there. `per_scene`: every scene has its own dates "
        "(count and days), listed in `scenes.items[].dates` or found from the files its "
        "{date} path matches; scenes with fewer dates than the most any scene has are padded "
        "with invalid dates",
    )
    bands_per_date: int | None = Field(
        default=None, ge=1, description="band groups of one file: the bands of each date "
        "(`bands` then index inside a group)")

    @field_validator("dates", mode="before")
    @classmethod
    def _plain_dates(cls, v: object) -> object:
        if isinstance(v, str) and v != "per_scene":
            raise ValueError(f"{v!r}: give a list of dates, or 'per_scene' (each scene its "
                             "own dates)")
        if isinstance(v, list):
            return [{"date": d} if isinstance(d, (str, datetime.date)) else d for d in v]
        return v

    @field_validator("bands")
    @classmethod
    def _bands_not_empty(cls, v: list | None) -> list | None:
        if v is not None:
            if len(v) == 0:
                raise ValueError("is empty: omit 'bands' to use every band, or list some")
            for b in v:
                if isinstance(b, int) and b < 1:
                    raise ValueError(f"band index {b} is invalid: indices are 1-based")
        return v

    @property
    def input_kind(self) -> str:
        """'temporal' (a time series), 'complex' (real/imaginary channel pairs) or 'real':
        which branch kinds fit."""
        if self.dates is not None:
            return "temporal"
        return "complex" if self.sar_units == "complex" else "real"

    @property
    def listed_dates(self) -> list[DateSpec] | None:
        """The task-wide dates of a time series; None for a single-date sensor and for one
        whose scenes have their own dates (`per_scene`)."""
        return None if self.dates is None or self.dates == "per_scene" else self.dates

    @property
    def per_scene_dates(self) -> bool:
        """A time series whose dates are each scene's own."""
        return self.dates == "per_scene"

    @property
    def doys(self) -> list[int]:
        """A time series' day of year per task-wide date (empty otherwise)."""
        return [d.doy for d in self.listed_dates or []]

    @model_validator(mode="after")
    def _time_series(self) -> SensorSpec:
        if self.dates is None:
            if self.bands_per_date is not None:
                raise ValueError("'bands_per_date' needs 'dates' (the date of each band group)")
            if self.path is not None and DATE_PLACEHOLDER in str(self.path):
                raise ValueError(f"'path' holds {DATE_PLACEHOLDER} but no 'dates' are listed")
            return self
        if self.per_scene_dates:
            if self.path is not None and DATE_PLACEHOLDER not in str(self.path):
                raise ValueError(f"dates: per_scene needs 'path' holding {DATE_PLACEHOLDER} "
                                 "(the scene's dates are the files it matches)")
            return self._date_rules()
        if not self.dates:
            raise ValueError("'dates' is empty: list the acquisitions, or remove it")
        days = [d.date for d in self.dates]
        if any(b <= a for a, b in itertools.pairwise(days)):
            raise ValueError(f"dates must be distinct and in increasing order, got "
                             f"{[d.isoformat() for d in days]}")
        with_path = [d for d in self.dates if d.path is not None]
        templated = self.path is not None and DATE_PLACEHOLDER in str(self.path)
        if with_path:
            if len(with_path) != len(self.dates) or self.path is not None \
                    or self.bands_per_date is not None:
                raise ValueError("a list of rasters gives every date its 'path' (and no "
                                 "sensor 'path' or 'bands_per_date')")
        elif (self.path is not None or self.bands_per_date is not None) \
                and templated == (self.bands_per_date is not None):
            # (no path and no groups: a dataset's scenes give the {date} path, checked there)
            raise ValueError(f"plain dates need either 'path' holding {DATE_PLACEHOLDER} (one "
                             "raster per date) or 'bands_per_date' (band groups of one file)")
        return self._date_rules()

    def _date_rules(self) -> SensorSpec:
        """A time series' mask raster is one per date: its path holds {date}, or (band
        groups) one mask band per date."""
        path = None if self.mask is None else self.mask.path
        if path is not None and DATE_PLACEHOLDER not in str(path) \
                and self.bands_per_date is None:
            raise ValueError(f"mask.path of a time series is one raster per date: it must "
                             f"hold {DATE_PLACEHOLDER} (or, with bands_per_date, be one file "
                             "with a band per date)")
        return self

    @model_validator(mode="after")
    def _sar_units_only_for_sar(self) -> SensorSpec:
        if self.sar_units is not None and self.kind != "sar":
            raise ValueError(f"'sar_units' is only meaningful for kind 'sar', not '{self.kind}'")
        if self.complex_pairs is not None:
            if self.sar_units != "complex":
                raise ValueError("'complex_pairs' declares real/imaginary band pairs: set "
                                 "sar_units: complex, or remove complex_pairs")
            if self.bands is not None:
                raise ValueError("give either 'bands' or 'complex_pairs' (the pairs name the "
                                 "bands read)")
            for pair in self.complex_pairs:
                if len(pair) not in (1, 2):
                    raise ValueError(f"complex_pairs: {pair} is not a (real, imaginary) pair: "
                                     "give [re, im], or [re] for a real element")
        if self.sar_units == "complex" and self.offset != 0.0:
            raise ValueError("'offset' with sar_units complex would move the complex origin and "
                             "change every phase: remove it (a 'scale' is allowed)")
        if self.qa is not None and self.bands is not None and self.qa.band in self.bands:
            raise ValueError(f"the QA band {self.qa.band!r} is also listed in 'bands': a QA "
                             "band is a rule, not a model input; remove it from 'bands'")
        return self


def _class_list_to_mapping(v: object) -> object:
    """A plain list of class names means values 1..K in order."""
    if isinstance(v, list):
        return {i + 1: name for i, name in enumerate(v)}
    return v


# class value -> name, also written as a list (labels' and targets' `classes`)
ClassNames = Annotated[dict[int, str], BeforeValidator(_class_list_to_mapping)]


class LabelSpec(_Strict):
    """The label raster and the class names. Pixels equal to `ignore` are unlabelled."""

    path: Path | None = Field(
        default=None,
        description="full label raster; required for a spatial_blocks split",
    )
    classes: ClassNames = Field(
        description="class value -> name; a plain list means values 1..K in order"
    )
    ignore: int = 0

    @model_validator(mode="after")
    def _check_classes(self) -> LabelSpec:
        if len(self.classes) < 2:
            raise ValueError("'classes' needs at least two classes")
        if self.ignore in self.classes:
            raise ValueError(
                f"class value {self.ignore} is also the 'ignore' value: change one of them"
            )
        names = list(self.classes.values())
        if len(set(names)) != len(names):
            raise ValueError(f"class names must be unique, got {names}")
        return self

    @property
    def class_values(self) -> list[int]:
        """Raster values of the classes, in training index order (index i <-> value)."""
        return sorted(self.classes)

    @property
    def class_names(self) -> list[str]:
        return [self.classes[v] for v in self.class_values]


class TargetSpec(_Strict):
    """One target of a task (`targets: {name: ...}`): a class map or a continuous quantity.

    `kind` may be left out when it is plain: `classes` given -> classes; otherwise a
    continuous target, which the data layer refuses for an integer raster (class-like values:
    it asks which kind is meant). A pixel is a sample where at least one target is valid."""

    kind: TargetKind | None = Field(
        default=None, description="classes | continuous; omitted: classes when 'classes' is "
        "given, else continuous (an integer raster then asks which)"
    )
    path: Path | None = Field(default=None, description="the target raster (one-scene task)")
    classes: ClassNames | None = Field(
        default=None, description="classes: value -> name; a plain list means values 1..K"
    )
    ignore: int = Field(default=0, description="classes: the unlabelled value")
    nodata: float | None = Field(
        default=None, description="continuous: the no-value value (default: the raster's "
        "nodata; NaN is always no value)"
    )
    units: str = Field(default="", description="continuous: physical units, e.g. m")
    range: tuple[float, float] | None = Field(
        default=None, description="continuous: [low, high]; values outside are not samples"
    )
    loss: TargetLoss | None = Field(
        default=None, description="cross_entropy (classes); l1, huber or gaussian_nll "
        "(continuous; default gaussian_nll: a value and its predictive std)"
    )
    weight: float | Literal["learned"] = Field(
        default=1.0, description="loss weight, or 'learned': uncertainty weighting (Kendall "
        "et al. 2018), a learned log-variance per target"
    )
    score_weight: float = Field(
        default=1.0, ge=0, description="weight of this target in the objective val_score"
    )

    @field_validator("weight")
    @classmethod
    def _positive(cls, v: float | str) -> float | str:
        if not isinstance(v, str) and v <= 0:
            raise ValueError(f"must be > 0 or 'learned', got {v}")
        return v

    @model_validator(mode="after")
    def _fits_kind(self) -> TargetSpec:
        kind = self.resolved_kind
        if kind == "classes":
            if self.classes is None:
                raise ValueError("kind 'classes' needs 'classes' (value -> name)")
            if self.loss not in (None, "cross_entropy"):
                raise ValueError(f"loss '{self.loss}' does not fit a class target: use "
                                 "cross_entropy (or kind: continuous)")
            LabelSpec(classes=self.classes, ignore=self.ignore)  # the same class checks
            wrong = [k for k in ("nodata", "range") if getattr(self, k) is not None]
            if wrong or self.units:
                raise ValueError(f"{', '.join(wrong or ['units'])}: only for a continuous target")
        else:
            if self.classes is not None:
                raise ValueError("'classes' given for a continuous target: use kind: classes")
            if self.loss == "cross_entropy":
                raise ValueError("loss 'cross_entropy' does not fit a continuous target: use "
                                 f"one of {', '.join(CONTINUOUS_LOSSES)}")
            if self.range is not None and not self.range[0] < self.range[1]:
                raise ValueError(f"range {list(self.range)}: low must be below high")
        return self

    @property
    def resolved_kind(self) -> str:
        if self.kind is not None:
            return self.kind
        return "classes" if self.classes is not None else "continuous"

    @property
    def resolved_loss(self) -> str:
        if self.loss is not None:
            return self.loss
        return "cross_entropy" if self.resolved_kind == "classes" else "gaussian_nll"

    def as_labels(self) -> LabelSpec:
        """A class target as the `labels` section it is equivalent to."""
        return LabelSpec(path=self.path, classes=self.classes, ignore=self.ignore)


class _SplitCommon(_Strict):
    """What every split kind shares: its own seed and the buffer around held-out pixels."""

    seed: int = Field(
        default=0,
        description="seed of the split alone (block choice, validation subset): independent of "
        "the task's training and search seeds, so every trial, search seed and benchmark row "
        "sees the same validation and test pixels",
    )
    buffer: int | None = Field(
        default=None,
        ge=0,
        description="pixels: training pixels within this distance (a square, as patches are) "
        "of a validation or test pixel are left out of training, so no held-out patch or tile "
        "footprint touches a training pixel. Default: the patch radius (patch_size // 2), or "
        "half the tile for segmentation. 0 keeps every training pixel (leakage is reported)",
    )


class GivenSplit(_SplitCommon):
    """Train and test label rasters are given (the HSI+LiDAR benchmark protocol); validation
    is given too, or carved from the training labels by spatial blocks."""

    kind: Literal["given"]
    train: Path
    test: Path
    val: Path | None = Field(
        default=None,
        description="validation label raster; when omitted, validation is carved from the "
        "training labels (val_fraction, val_block_size)",
    )
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    val_block_size: int = Field(default=16, ge=2, description="pixels")


class SpatialBlockSplit(_SplitCommon):
    """Labels are split into spatially disjoint square blocks for train / val / test."""

    kind: Literal["spatial_blocks"]
    block_size: int = Field(default=64, ge=2, description="pixels, on the reference grid")
    test_fraction: float = Field(default=0.3, gt=0.0, lt=1.0)
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _fractions(self) -> SpatialBlockSplit:
        if self.test_fraction + self.val_fraction >= 1.0:
            raise ValueError("test_fraction + val_fraction must leave some blocks for training")
        return self


class ScenesSplit(_SplitCommon):
    """Whole scenes per split: given scene lists (ids or CSV files, as datasets ship their
    splits), or seeded fractions of the scenes, by group when `scenes.group` is set (a group,
    e.g. one flood event, never straddles two splits)."""

    kind: Literal["scenes"]
    train: list[str] | None = Field(
        default=None, description="scene ids and/or CSV files (a path ending in .csv) listing "
        "scenes by id or by file name; with test (and val), the split is given"
    )
    val: list[str] | None = Field(
        default=None, description="as train; when omitted, val_fraction of the training scenes "
        "(by group) is carved out"
    )
    test: list[str] | None = None
    val_fraction: float = Field(default=0.15, gt=0.0, lt=1.0)
    test_fraction: float = Field(default=0.25, gt=0.0, lt=1.0)

    @field_validator("train", "val", "test", mode="before")
    @classmethod
    def _one_to_list(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _given_or_fractions(self) -> ScenesSplit:
        if (self.train is None) != (self.test is None):
            raise ValueError("give both 'train' and 'test' scene lists, or neither (fractions)")
        if self.train is None and self.val is not None:
            raise ValueError("'val' scenes need 'train' and 'test' scenes too")
        if self.train is None and self.test_fraction + self.val_fraction >= 1.0:
            raise ValueError("test_fraction + val_fraction must leave scenes for training")
        if self.buffer is not None:
            raise ValueError("'buffer' has no effect with kind: scenes (a patch never crosses "
                             "scenes): remove it")
        return self


SplitSpec = Annotated[GivenSplit | SpatialBlockSplit | ScenesSplit, Field(discriminator="kind")]

SCENE_PLACEHOLDER = "{scene}"


class SceneFilesSpec(_Strict):
    """One scene listed inline: its id, group and files."""

    id: str = Field(pattern=r"^[^/\\]+$")
    group: str | None = None
    sensors: dict[str, Path] = Field(
        description="sensor -> GeoTIFF; a task sensor missing here is absent from this scene"
    )
    labels: Path | None = Field(default=None, description="the scene's full label raster")
    targets: dict[str, Path] = Field(
        default={}, description="target -> this scene's raster (a task with 'targets')"
    )
    masks: dict[str, Path] = Field(
        default={}, description="sensor -> this scene's mask raster (see sensors.<name>.mask)"
    )
    dates: dict[str, list[datetime.date]] = Field(
        default={}, description="sensor -> this scene's own dates (a sensor with `dates: "
        "per_scene`), increasing; omitted: the dates of the files its {date} path matches"
    )

    @field_validator("dates")
    @classmethod
    def _increasing(cls, v: dict[str, list[datetime.date]]) -> dict:
        for name, days in v.items():
            if not days or any(b <= a for a, b in itertools.pairwise(days)):
                raise ValueError(f"{name}: dates must be non-empty, distinct and increasing, "
                                 f"got {[d.isoformat() for d in days]}")
        return v


class SceneTemplateSpec(_Strict):
    """Paths with a {scene} placeholder, the same for every scene."""

    sensors: dict[str, str]
    labels: str | None = Field(
        default=None, description="full label raster; its glob lists the scenes when no csv"
    )
    masks: dict[str, str] = Field(
        default={}, description="sensor -> mask raster template (see sensors.<name>.mask)"
    )
    targets: dict[str, str] = Field(
        default={}, description="target -> raster template (a task with 'targets'); the "
        "first one's glob lists the scenes when no csv"
    )

    @model_validator(mode="after")
    def _placeholder(self) -> SceneTemplateSpec:
        paths = {f"sensors.{k}": v for k, v in self.sensors.items()}
        paths.update({f"masks.{k}": v for k, v in self.masks.items()})
        paths.update({f"targets.{k}": v for k, v in self.targets.items()})
        if self.labels is not None:
            paths["labels"] = self.labels
        for key, path in paths.items():
            if SCENE_PLACEHOLDER not in path:
                raise ValueError(f"{key} = {path!r} has no {SCENE_PLACEHOLDER} placeholder")
        return self


class ScenesSpec(_Strict):
    """A dataset of scenes. Sensors (kind, bands, scale...) are declared once in `sensors`;
    each scene has its own files, grid, CRS and size."""

    items: list[SceneFilesSpec] | None = Field(
        default=None, description="the scenes listed inline (instead of a template)"
    )
    template: SceneTemplateSpec | None = None
    csv: list[Path] | None = Field(
        default=None, description="CSV file(s) listing the scenes (ids, or file names matching "
        "the template); default: the glob of template.labels, or the split's lists"
    )
    group: str | None = Field(
        default=None, description="regular expression on the scene id whose first group is "
        "the scene's group (e.g. '^(.+)_[0-9]+$' -> the flood event)"
    )

    @field_validator("csv", mode="before")
    @classmethod
    def _one_to_list(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @field_validator("group")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                compiled = re.compile(v)
            except re.error as err:
                raise ValueError(f"is not a valid regular expression ({err})") from None
            if compiled.groups < 1:
                raise ValueError("needs a capturing group, e.g. '^(.+)_[0-9]+$'")
        return v

    @model_validator(mode="after")
    def _one_way(self) -> ScenesSpec:
        if (self.items is None) == (self.template is None):
            raise ValueError("give the scenes either inline ('items') or by 'template'")
        if self.items is not None and self.csv is not None:
            raise ValueError("'csv' lists scenes of a template; inline 'items' need none")
        if self.items is not None:
            ids = [s.id for s in self.items]
            dup = sorted({i for i in ids if ids.count(i) > 1})
            if dup:
                raise ValueError(f"duplicate scene id(s) {dup}: every scene needs its own id")
        return self


class DataSpec(_Strict):
    """How training reads the data: all in memory when it fits, else streamed by windows."""

    in_memory_max_mb: float = Field(
        default=2048.0, ge=0, description="hold the normalised dataset in memory (and ship it "
        "through Ray's object store) when it is at most this size; larger datasets are read by "
        "windows from the GeoTIFFs in every trial. 0 always streams"
    )
    cache_mb: float = Field(
        default=256.0, gt=0, description="per reading process: decoded blocks kept (streaming)"
    )
    block_size: int = Field(default=256, ge=16, description="pixels: the unit of a streamed read")
    norm_max_pixels: int = Field(
        default=1_000_000, ge=1000, description="normalisation statistics come from all "
        "training pixels, or a seeded sample of whole training blocks holding about this many"
    )


class TrainSpec(_Strict):
    """How one architecture is trained (one trial, or a final retraining)."""

    epochs: int = Field(default=30, ge=1)
    batch_size: int = Field(default=64, ge=1)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    early_stopping_patience: int = Field(default=6, ge=1, description="epochs without val gain")
    class_weighting: bool = False
    modality_dropout: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="probability of dropping a whole sensor of a "
        "training sample (values and mask 0, as a sensor absent from a scene)"
    )
    cloud_blobs: float = Field(
        default=0.0, ge=0.0, le=1.0, description="probability that a training sample gets a "
        "simulated cloud (a random blob) over its optical / hyperspectral sensors, invalid there"
    )
    augment: bool = Field(default=True, description="random flips and 90-degree rotations")
    max_train_samples: int | None = Field(
        default=None, ge=1, description="train on a fixed seeded subset of this many samples"
    )
    val_max_samples: int | None = Field(
        default=None,
        ge=1,
        description="validate on at most this many labelled pixels: a fixed seeded subset of "
        "the validation split, to bound per-epoch validation time on densely labelled scenes",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: int = Field(
        default=0, ge=0, description="DataLoader worker processes reading samples (streamed "
        "data benefits; batches are the same for any number)"
    )


class ConstraintSpec(_Strict):
    max_params: int | None = Field(default=None, ge=1)
    max_flops: int | None = Field(default=None, ge=1)
    max_latency_ms: float | None = Field(default=None, gt=0)
    min_oa_when_missing: float | None = Field(
        default=None, gt=0, le=1, description="validation OA with any one used sensor removed "
        "must reach this (the worst case over the sensors)"
    )

    @property
    def needs_robustness(self) -> bool:
        return self.min_oa_when_missing is not None


# What a search trial records that `search.objectives` may name: its validation metrics (the
# robustness ones are measured when an objective or constraint asks for them) and its costs.
TRIAL_METRICS = (*get_args(ObjectiveName), "val_oa_worst_missing", "val_loss", "val_ece")
TRIAL_COSTS = ("params", "flops", "latency_ms")
# a task with `targets` also records each target's validation metrics (e.g. val_rmse__height;
# autors.training.targets): a Pareto front across targets names them
TARGET_METRIC = re.compile(r"^val_(oa|aa|kappa|miou|ece|rmse|mae|r2|bias|coverage68|"
                           r"coverage95|mean_std)__[A-Za-z_][A-Za-z0-9_]*$")


class ObjectiveSpec(_Strict):
    """One objective of a multi-objective search: a value every trial records, and whether
    the search wants it high (max) or low (min)."""

    name: str = Field(description="a validation metric (" + ", ".join(TRIAL_METRICS) + ") or a "
                      "cost (" + ", ".join(TRIAL_COSTS) + ")")
    goal: Literal["max", "min"]

    @field_validator("name")
    @classmethod
    def _recorded(cls, v: str) -> str:
        if v not in (*TRIAL_METRICS, *TRIAL_COSTS) and not TARGET_METRIC.match(v):
            raise ValueError(f"{v!r} is not a value a trial records; use a validation metric "
                             f"({', '.join(TRIAL_METRICS)}) or a cost ({', '.join(TRIAL_COSTS)})")
        return v


class SchedulerSpec(_Strict):
    """Multi-fidelity trials (`autors.search.schedulers`): train to rungs of min_resource x
    reduction_factor^k epochs up to max_resource, promote the top 1/reduction_factor of each
    rung asynchronously (ASHA), continuing from a checkpoint."""

    kind: Literal["none", "asha", "hyperband"] = Field(
        default="none", description="none: every trial trains to train.epochs; asha: one "
        "bracket of asynchronous successive halving; hyperband: `brackets` ASHA brackets, "
        "bracket s starting at min_resource x reduction_factor^s")
    reduction_factor: int = Field(default=3, ge=2, description="eta: rungs grow by this factor "
                                  "and the top 1/eta of a rung is promoted")
    min_resource: int = Field(default=1, ge=1, description="epochs of the first rung")
    max_resource: int | None = Field(default=None, ge=2, description="epochs of the top rung "
                                     "(a complete trial); default train.epochs")
    brackets: int | None = Field(default=None, ge=1, description="hyperband only: number of "
                                 "brackets; default every bracket the resources allow")

    @model_validator(mode="after")
    def _brackets_for_hyperband(self) -> SchedulerSpec:
        if self.brackets is not None and self.kind != "hyperband" and self.brackets != 1:
            raise ValueError(f"brackets: {self.brackets} brackets need kind 'hyperband' (kind "
                             f"is '{self.kind}')")
        return self


class SearchSpec(_Strict):
    """The architecture search: which space, which strategy, what budget, what resources."""

    space: str = "fusion"
    strategy: str = "evolution"
    max_trials: int | None = Field(default=20, ge=1)
    max_minutes: float | None = Field(default=None, gt=0)
    concurrency: int = Field(default=2, ge=1)
    cpus_per_trial: float = Field(default=1.0, gt=0)
    gpus_per_trial: float = Field(default=0.0, ge=0)
    trial_timeout_s: float = Field(default=1800.0, gt=0)
    memory_per_trial_mb: int | None = Field(
        default=None,
        ge=1,
        description="memory (MiB) a trial may allocate beyond what its Ray worker holds when the "
        "trial starts; reserved from Ray's per-node 'memory' resource when placing the trial and "
        "enforced in the worker (Linux RLIMIT_DATA): a trial that needs more fails with that "
        "reason. Not for GPU memory. None: no limit",
    )
    objective: ObjectiveName = Field(
        default="val_oa", description="val_oa_robust: the mean validation OA over clean data "
        "and each used sensor removed"
    )
    objectives: list[ObjectiveSpec] = Field(
        default=[], description="a multi-objective search: two or more values, each with its "
        "goal, e.g. [{name: val_oa, goal: max}, {name: flops, goal: min}]. They define the "
        "Pareto front, its hypervolume and the final phase's picks (knee and extremes); "
        "multi-objective strategies (nsga2, motpe) optimise them directly, single-objective "
        "ones keep optimising `objective`. Empty: the front is `objective` (max) against "
        "params, flops and latency_ms (min)"
    )
    constraints: ConstraintSpec = ConstraintSpec()
    top_k: int = Field(default=3, ge=1, description="architectures retrained and tested (a "
                       "multi-objective search retrains a spread of the front, up to top_k)")
    final_seeds: int = Field(default=3, ge=1, description="seeds per retrained architecture")
    scheduler: SchedulerSpec = Field(default=SchedulerSpec(), description="multi-fidelity "
                                     "trials (ASHA / Hyperband); kind none by default")

    @property
    def needs_robustness(self) -> bool:
        """Trials must measure validation accuracy with sensors removed."""
        robust = {"val_oa_robust", "val_oa_worst_missing"}
        return (self.objective in robust or self.constraints.needs_robustness
                or any(o.name in robust for o in self.objectives))

    @property
    def front_objectives(self) -> list[ObjectiveSpec]:
        """The objectives of the Pareto front: `objectives`, or `objective` against the costs."""
        if self.objectives:
            return list(self.objectives)
        return [ObjectiveSpec(name=self.objective, goal="max"),
                *(ObjectiveSpec(name=c, goal="min") for c in TRIAL_COSTS)]

    @model_validator(mode="after")
    def _some_budget(self) -> SearchSpec:
        if self.max_trials is None and self.max_minutes is None:
            raise ValueError("set 'max_trials' or 'max_minutes' (or both) to bound the search")
        return self

    @model_validator(mode="after")
    def _objectives(self) -> SearchSpec:
        names = [o.name for o in self.objectives]
        if len(names) == 1:
            raise ValueError(f"objectives: one objective ({names[0]}) is not a trade-off; give "
                             "two or more, or set 'objective' alone for a single-objective search")
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"objectives: {', '.join(twice)} listed more than once")
        return self


class ExportSpec(_Strict):
    formats: list[Literal["torchscript", "onnx"]] = ["torchscript", "onnx"]
    onnx_opset: int = Field(default=17, ge=11)


class TaskSpec(_Strict):
    """A whole task file. Build with `load_task(path)`."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    task: TaskKind
    sensors: dict[str, SensorSpec]
    labels: LabelSpec | None = Field(
        default=None, description="the class labels (one class target); or give 'targets'"
    )
    targets: dict[str, TargetSpec] | None = Field(
        default=None, description="several targets, or a continuous one: name -> target "
        "(kind, path, units, loss, weight); one class target alone is 'labels'"
    )
    scenes: ScenesSpec | None = Field(
        default=None, description="a dataset of many scenes; omitted: one scene, given by the "
        "sensors' and labels' paths"
    )
    require_sensors: Literal["any", "all"] | list[str] = Field(
        default="any", description="a labelled pixel is used when its label is valid and "
        "'any' used sensor is valid there (default), 'all' are, or every listed sensor is; "
        "the model sees each sensor's validity mask"
    )
    split: SplitSpec
    grid: str = Field(
        default="labels", description="reference grid: 'labels' or the name of a sensor"
    )
    patch_size: int = Field(default=11, ge=1, description="odd; patch_classification window")
    tile_size: int = Field(default=64, ge=8, description="segmentation tile side, pixels")
    seed: int = 0
    plugins: list[str] = Field(
        default=[],
        description="modules imported first, everywhere the task runs (driver, Ray workers, "
        "export, predict): they register branches, fusion operators, heads, search spaces or "
        "strategies. Dotted module names, importable where autors runs (see README, Plugins)",
    )
    data: DataSpec = DataSpec()
    train: TrainSpec = TrainSpec()
    search: SearchSpec = SearchSpec()
    export: ExportSpec = ExportSpec()
    # Where the task was read from; set by load_task, not by the YAML.
    source: Path | None = Field(default=None, exclude=True)
    # The --set KEY.PATH=VALUE assignments applied on top of `source`; set by load_task.
    overrides: tuple[str, ...] = Field(default=(), exclude=True)

    @field_validator("patch_size")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"must be odd so the labelled pixel is the centre, got {v}: use {v + 1}")
        return v

    @field_validator("plugins")
    @classmethod
    def _module_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not all(part.isidentifier() for part in name.split(".")):
                raise ValueError(
                    f"'{name}' is not a Python module name: give the dotted name it is imported "
                    "by (e.g. lab.fusion_ops), not a file path; its folder must be on PYTHONPATH"
                )
        if len(set(v)) != len(v):
            raise ValueError(f"lists a module twice: {v}")
        return v

    @field_validator("sensors")
    @classmethod
    def _sensor_names(cls, v: dict[str, SensorSpec]) -> dict[str, SensorSpec]:
        if not v:
            raise ValueError("needs at least one sensor")
        for name in v:
            if not name.isidentifier() or name == "target":
                raise ValueError(
                    f"sensor name '{name}' must be a Python identifier other than 'target' "
                    "(it names a model input)"
                )
        return v

    @model_validator(mode="before")
    @classmethod
    def _one_class_target_is_labels(cls, data: object) -> object:
        """One class target alone is the `labels` task (one way: same arch, data, card)."""
        if isinstance(data, dict) and isinstance(data.get("targets"), dict) \
                and len(data["targets"]) == 1 and data.get("labels") is None:
            (spec,) = data["targets"].values()
            if isinstance(spec, dict) and spec.get("classes") is not None \
                    and spec.get("kind") in (None, "classes") \
                    and spec.get("loss") in (None, "cross_entropy") \
                    and spec.get("weight", 1.0) == 1.0 and spec.get("score_weight", 1.0) == 1.0:
                data = dict(data, labels={k: spec[k] for k in ("path", "classes", "ignore")
                                          if k in spec})
                del data["targets"]
        return data

    @model_validator(mode="after")
    def _scheduler_resources(self) -> TaskSpec:
        sched = self.search.scheduler
        if sched.kind == "none":
            return self
        top = sched.max_resource or self.train.epochs
        where = ("search.scheduler.max_resource" if sched.max_resource else
                 "train.epochs (search.scheduler.max_resource's default)")
        if sched.min_resource >= top:
            raise ValueError(f"search.scheduler.min_resource: {sched.min_resource} epochs must "
                             f"be below {where} = {top}: there would be one rung only")
        rungs, r = 1, sched.min_resource
        while r * sched.reduction_factor < top:
            r *= sched.reduction_factor
            rungs += 1
        if sched.brackets is not None and sched.brackets > rungs + 1:
            raise ValueError(f"search.scheduler.brackets: {sched.brackets} is more than the "
                             f"{rungs + 1} brackets that min_resource {sched.min_resource}, "
                             f"reduction_factor {sched.reduction_factor} and {where} = {top} "
                             "allow")
        return self

    @model_validator(mode="after")
    def _target_checks(self) -> TaskSpec:
        if (self.labels is None) == (self.targets is None):
            raise ValueError("give the task's targets either as 'labels' (one class target) "
                             "or as 'targets' (name -> target), not both and not neither")
        for o in self.search.objectives:  # val_<metric>__<target>: a target of this task
            name = o.name.partition("__")[2]
            if name and name not in (self.targets or {}):
                raise ValueError(f"search.objectives: {o.name!r} names target '{name}', which "
                                 f"this task does not have ({sorted(self.targets or {})})")
        if self.targets is None:
            return self
        if not self.targets:
            raise ValueError("targets: give at least one target")
        for name in self.targets:
            if not name.isidentifier() or name in self.sensors or "__" in name:
                raise ValueError(f"targets: name '{name}' must be a Python identifier without "
                                 "'__' that is not a sensor's name (it names a model output)")
        classes = [n for n, t in self.targets.items() if t.resolved_kind == "classes"]
        if len(classes) > 1:
            raise ValueError(f"targets: {classes} are all class targets; a task has at most one "
                             "(the split is stratified on it)")
        if self.split.kind == "given":
            raise ValueError("split.kind 'given' splits a 'labels' task; a task with 'targets' "
                             "uses spatial_blocks or scenes")
        class_objective = self.search.objective in ("val_oa", "val_aa", "val_kappa", "val_miou")
        if class_objective and not classes:
            raise ValueError(f"search.objective '{self.search.objective}' scores a class target "
                             "and this task has none: use val_score (the targets' weighted "
                             "score)")
        if self.search.needs_robustness:
            raise ValueError("search: the robustness objective and constraint score a 'labels' "
                             "task; a task with 'targets' does not measure them yet")
        if self.scenes is None:
            missing = [f"targets.{n}.path" for n, t in self.targets.items() if t.path is None]
            if missing:
                raise ValueError(f"{', '.join(missing)}: give each target's raster, or list the "
                                 "dataset's files under 'scenes'")
            return self
        with_path = [f"targets.{n}.path" for n, t in self.targets.items() if t.path is not None]
        if with_path:
            raise ValueError(f"{', '.join(with_path)}: with 'scenes', each scene gives its "
                             "files; remove these paths")
        given = [set(self.scenes.template.targets)] if self.scenes.template is not None \
            else [set(s.targets) for s in self.scenes.items]
        for names in given:
            if names - set(self.targets):
                raise ValueError(f"scenes give rasters for {sorted(names - set(self.targets))}, "
                                 f"which 'targets' does not declare ({sorted(self.targets)})")
        if self.scenes.template is not None and given[0] != set(self.targets):
            raise ValueError(f"scenes.template.targets must give a template for every target "
                             f"{sorted(self.targets)}")
        return self

    @model_validator(mode="after")
    def _cross_checks(self) -> TaskSpec:
        if self.grid != "labels" and self.grid not in self.sensors:
            raise ValueError(
                f"grid '{self.grid}' is neither 'labels' nor a sensor ({sorted(self.sensors)})"
            )
        if isinstance(self.require_sensors, list):
            unknown = sorted(set(self.require_sensors) - set(self.sensors))
            if unknown or not self.require_sensors:
                raise ValueError(f"require_sensors names {unknown or 'no sensor'}: list some of "
                                 f"{sorted(self.sensors)}, or use 'any' / 'all'")
        if self.scenes is None:
            no_path = [n for n, s in self.sensors.items() if s.mask and s.mask.path is None]
            if no_path:
                raise ValueError(f"sensors {no_path}: 'mask' needs its 'path'")
            missing = [name for name, spec in self.sensors.items() if spec.path is None
                       and not (spec.listed_dates and spec.listed_dates[0].path is not None)]
            if missing:
                raise ValueError(f"sensor(s) {missing} have no 'path': give each sensor's "
                                 "GeoTIFF, or list the dataset's files under 'scenes'")
            grouped = [n for n, s in self.sensors.items()
                       if s.per_scene_dates and s.bands_per_date is not None]
            if grouped:
                raise ValueError(f"sensors {grouped}: band groups with dates per_scene need a "
                                 "dataset whose scenes list their dates (scenes.items[].dates)")
            if self.split.kind == "spatial_blocks" and self.labels is not None \
                    and self.labels.path is None:
                raise ValueError("a spatial_blocks split needs 'labels.path' (the full label "
                                 "raster)")
            if self.split.kind == "scenes":
                raise ValueError("split kind 'scenes' needs a dataset of scenes ('scenes')")
            return self
        self._check_scenes(self.scenes)
        return self

    def _check_scenes(self, scenes: ScenesSpec) -> None:
        for item in scenes.items or []:
            for name in item.dates:
                if name not in self.sensors or not self.sensors[name].per_scene_dates:
                    raise ValueError(f"scenes.items[{item.id}].dates.{name}: only a sensor "
                                     "with 'dates: per_scene' takes a scene's own dates")
        grouped = [n for n, s in self.sensors.items()
                   if s.per_scene_dates and s.bands_per_date is not None]
        if grouped and scenes.items is None:
            raise ValueError(f"sensors {grouped}: band groups with dates per_scene need each "
                             "scene's dates listed (scenes.items[].dates); a template cannot "
                             "find them from file names")
        for item in scenes.items or []:
            lacking = [n for n in grouped if n in item.sensors and n not in item.dates]
            if lacking:
                raise ValueError(f"scenes.items[{item.id}].dates: give the dates of {lacking} "
                                 "(band groups, dates per_scene)")
        listed = [n for n, s in self.sensors.items() if s.listed_dates
                  and s.listed_dates[0].path is not None]
        if listed:
            raise ValueError(f"sensors {listed}: in a dataset of scenes a time series' files "
                             f"come from each scene's path holding {DATE_PLACEHOLDER} (or band "
                             "groups, 'bands_per_date'): list plain dates")
        paths = [scenes.template.sensors] if scenes.template is not None else []
        paths += [item.sensors for item in scenes.items or []]
        undated = sorted({n for p in paths for n, path in p.items() if n in self.sensors
                          and self.sensors[n].dates is not None
                          and self.sensors[n].bands_per_date is None
                          and DATE_PLACEHOLDER not in str(path)})
        if undated:
            raise ValueError(f"sensors {undated}: a time series without 'bands_per_date' needs "
                             f"its scenes' paths to hold {DATE_PLACEHOLDER}")
        masks = [scenes.template.masks] if scenes.template is not None else []
        masks += [item.masks for item in scenes.items or []]
        undated = sorted({n for p in masks for n, path in p.items() if n in self.sensors
                          and self.sensors[n].dates is not None
                          and self.sensors[n].bands_per_date is None
                          and DATE_PLACEHOLDER not in str(path)})
        if undated:
            raise ValueError(f"scenes' masks of {undated}: a time series' mask is one raster "
                             f"per date: the path must hold {DATE_PLACEHOLDER}")
        with_path = [name for name, spec in self.sensors.items() if spec.path is not None]
        label_path = self.labels is not None and self.labels.path is not None
        if with_path or label_path:
            where = [f"sensors.{n}.path" for n in with_path]
            where += ["labels.path"] if label_path else []
            raise ValueError(f"{', '.join(where)}: with 'scenes', each scene gives its files; "
                             "remove these paths")
        declared = set(self.sensors)
        named = [set(s.sensors) for s in scenes.items] if scenes.items is not None \
            else [set(scenes.template.sensors)]
        for names in named:
            unknown = sorted(names - declared)
            if unknown:
                raise ValueError(f"scenes name sensor(s) {unknown} that 'sensors' does not "
                                 f"declare ({sorted(declared)})")
        if scenes.template is not None and set(scenes.template.sensors) != declared:
            raise ValueError(f"scenes.template.sensors must give a path for every sensor "
                             f"{sorted(declared)}")
        masked = {n for n, s in self.sensors.items() if s.mask is not None}
        with_mask_path = [n for n in masked if self.sensors[n].mask.path is not None]
        if with_mask_path:
            raise ValueError(f"sensors {with_mask_path}: in a dataset each scene gives its mask "
                             "(scenes.template.masks or the scene's masks): remove mask.path")
        given = [set(s.masks) for s in scenes.items] if scenes.items is not None \
            else [set(scenes.template.masks)]
        for names in given:
            if names - masked:
                raise ValueError(f"scenes give mask rasters for {sorted(names - masked)}, whose "
                                 "sensors declare no 'mask' rule (sensors.<name>.mask."
                                 "invalid_values)")
        has_labels = scenes.template.labels is not None if scenes.template is not None \
            else all(s.labels is not None for s in scenes.items)
        if self.targets is not None:  # every scene gives some target raster
            has_labels = scenes.template is not None or all(s.targets for s in scenes.items)
        if self.split.kind == "given":
            for key in ("train", "val", "test"):
                path = getattr(self.split, key)
                if path is not None and SCENE_PLACEHOLDER not in str(path):
                    raise ValueError(f"split.{key} = {path}: in a dataset of scenes, a given "
                                     f"split raster is a template with {SCENE_PLACEHOLDER}")
        elif not has_labels:
            raise ValueError(f"split kind '{self.split.kind}' needs every scene's full label "
                             "raster (scenes' labels)")

    @property
    def dense(self) -> bool:
        """Segmentation: the model outputs a class per pixel of a tile."""
        return self.task == "segmentation"

    @property
    def sample_size(self) -> int:
        """Side in pixels of one model input: the patch, or the segmentation tile."""
        return self.tile_size if self.dense else self.patch_size

    @property
    def split_buffer(self) -> int:
        """`split.buffer`, or its default: half the model input's side."""
        if self.split.kind == "scenes":
            return 0  # held-out pixels lie in other scenes: no footprint reaches them
        return self.split.buffer if self.split.buffer is not None else self.sample_size // 2

    @property
    def multi_target(self) -> bool:
        """A task with `targets` (several, or a continuous one): its model outputs the
        targets' channels concatenated (`target_specs` order)."""
        return self.targets is not None

    @property
    def target_specs(self) -> dict[str, TargetSpec]:
        """Every target by name; a `labels` task is its one class target, 'class'."""
        if self.targets is not None:
            return dict(self.targets)
        return {"class": TargetSpec(kind="classes", path=self.labels.path,
                                    classes=self.labels.classes, ignore=self.labels.ignore)}

    @property
    def class_target(self) -> str | None:
        """The name of the class target (at most one), None when every target is continuous."""
        return next((n for n, t in self.target_specs.items()
                     if t.resolved_kind == "classes"), None)

    @property
    def class_labels(self) -> LabelSpec | None:
        """The class target as a `labels` section (None without one)."""
        if self.labels is not None:
            return self.labels
        name = self.class_target
        return None if name is None else self.targets[name].as_labels()

    @property
    def class_names(self) -> list[str]:
        labels = self.class_labels
        return [] if labels is None else labels.class_names

    @property
    def num_classes(self) -> int:
        labels = self.class_labels
        return 0 if labels is None else len(labels.classes)

    def to_dict(self) -> dict:
        """Plain JSON-able dict with absolute paths: what a Ray trial receives."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict) -> TaskSpec:
        """Inverse of `to_dict` (paths are already absolute)."""
        return cls.model_validate(data)

    def digest(self) -> str:
        """Short hash of the task content, recorded as provenance."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---- reading task files -----------------------------------------------------------------------
# Shipped task files (autors/tasks/*.yaml, package data) for public datasets: their raster paths
# are relative to a *data root*, the folder holding the dataset folders, because the package
# cannot know where a user keeps data.
SHIPPED_DIR = Path(__file__).resolve().parent / "tasks"
DATA_ROOT_ENV = "AUTORS_DATA"

# YAML 1.1 (PyYAML) reads 2e6 as text; a number field given such text gets this hint.
_EXPONENT_TEXT = re.compile(r"^[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+$")


def _format_validation_error(
    err: ValidationError, path: Path, overrides: Sequence[str] = ()
) -> str:
    where = f"{path} with --set {', '.join(overrides)}" if overrides else str(path)
    lines = [f"{where}: the task file has {err.error_count()} problem(s):"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-after"))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see the task-file reference in README.md)"
        elif e["type"] == "missing":
            msg = "required field is missing"
        elif e["type"] == "union_tag_invalid":
            msg = f"{msg} (use kind: given, spatial_blocks or scenes)"
        got = e.get("input")
        if e["type"] in ("int_parsing", "float_parsing") and isinstance(got, str) \
                and _EXPONENT_TEXT.match(got):
            number = float(got)
            shown = int(number) if number.is_integer() else number
            msg += f" (YAML reads {got} as text: write {shown})"
        got_text = "" if e["type"] in ("missing",) or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  - {loc or '<top>'}: {msg}{got_text}")
    return "\n".join(lines)


def _path_fields(data: dict) -> Iterator[tuple[str, dict, str]]:
    """Every path field of a raw task mapping: (dotted key, its mapping, its key)."""
    for name, spec in (data.get("sensors") or {}).items():
        if isinstance(spec, dict) and "path" in spec:
            yield f"sensors.{name}.path", spec, "path"
        for i, date in enumerate(spec.get("dates") or [] if isinstance(spec, dict) else []):
            if isinstance(date, dict) and "path" in date:
                yield f"sensors.{name}.dates.{i}.path", date, "path"
        mask = spec.get("mask") if isinstance(spec, dict) else None
        if isinstance(mask, dict) and "path" in mask:
            yield f"sensors.{name}.mask.path", mask, "path"
    labels = data.get("labels")
    if isinstance(labels, dict) and "path" in labels:
        yield "labels.path", labels, "path"
    for name, spec in (data.get("targets") or {}).items():
        if isinstance(spec, dict) and "path" in spec:
            yield f"targets.{name}.path", spec, "path"
    split = data.get("split")
    if isinstance(split, dict):
        for key in ("train", "val", "test"):
            value = split.get(key)
            if isinstance(value, list):  # kind scenes: ids and CSV files
                for i, item in enumerate(value):
                    if isinstance(item, str) and item.lower().endswith(".csv"):
                        yield f"split.{key}", value, i
            elif key in split:
                yield f"split.{key}", split, key
    scenes = data.get("scenes")
    if isinstance(scenes, dict):
        template = scenes.get("template")
        if isinstance(template, dict):
            for name in template.get("sensors") or {}:
                yield f"scenes.template.sensors.{name}", template["sensors"], name
            for name in template.get("masks") or {}:
                yield f"scenes.template.masks.{name}", template["masks"], name
            if "labels" in template:
                yield "scenes.template.labels", template, "labels"
            for name in template.get("targets") or {}:
                yield f"scenes.template.targets.{name}", template["targets"], name
        for i, item in enumerate(scenes.get("items") or []):
            if isinstance(item, dict):
                for name in item.get("sensors") or {}:
                    yield f"scenes.items.{i}.sensors.{name}", item["sensors"], name
                for name in item.get("masks") or {}:
                    yield f"scenes.items.{i}.masks.{name}", item["masks"], name
                if "labels" in item:
                    yield f"scenes.items.{i}.labels", item, "labels"
                for name in item.get("targets") or {}:
                    yield f"scenes.items.{i}.targets.{name}", item["targets"], name
        csv = scenes.get("csv")
        if isinstance(csv, str):
            yield "scenes.csv", scenes, "csv"
        elif isinstance(csv, list):
            for i in range(len(csv)):
                yield "scenes.csv", csv, i


def _resolve_paths(data: dict, base: Path, overridden: Sequence[str] = ()) -> None:
    """Make every path field absolute: relative to `base` (the task file's folder), or to the
    current directory for a field set (or inside a mapping set) by a --set in `overridden`."""
    for dotted, mapping, key in _path_fields(data):
        p = mapping[key]
        if isinstance(p, str) and p:
            set_here = any(dotted == o or dotted.startswith(f"{o}.") for o in overridden)
            q = Path(p).expanduser()
            if not q.is_absolute():
                q = ((Path.cwd() if set_here else base) / q).resolve()
            mapping[key] = str(q)


def parse_override(text: str) -> tuple[list[str], object]:
    """`KEY.PATH=VALUE` -> (key segments, value read as YAML: 3, 2.5, true, [1, 2], {a: 1},
    null for an empty value, text otherwise)."""
    key, sep, value = text.partition("=")
    segments = key.strip().split(".")
    if not sep or not all(segments):
        raise TaskFileError(
            f"--set {text}: expected KEY.PATH=VALUE with a dotted task-file key, e.g. "
            "--set train.epochs=3 or --set sensors.s1.bands=[1,2]"
        )
    try:
        return segments, yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise TaskFileError(f"--set {text}: the value is not valid YAML ({err})") from None


def apply_overrides(data: dict, overrides: Sequence[str]) -> list[str]:
    """Set each `KEY.PATH=VALUE` of `overrides` (in order; a later one wins) in the raw task
    mapping `data`, creating missing mappings on the way; returns the dotted keys set.

    Keys are not checked here: validation then reports an unknown key by its dotted path, as
    for the file. A key that walks into a value that is not a mapping is an error."""
    keys = []
    for text in overrides:
        segments, value = parse_override(text)
        node = data
        for i, seg in enumerate(segments[:-1]):
            child = node.get(_existing_key(node, seg), None)
            if child is None:
                child = node[seg] = {}
            elif not isinstance(child, dict):
                raise TaskFileError(
                    f"--set {text}: {'.'.join(segments[: i + 1])} is {child!r}, not a mapping, "
                    f"so it has no key '{segments[i + 1]}'"
                )
            node = child
        node[_existing_key(node, segments[-1])] = value
        keys.append(".".join(segments))
    return keys


def _existing_key(mapping: dict, segment: str) -> object:
    """The key of `mapping` that `segment` names: itself, or as YAML reads it (`3` is the
    integer key of a class value); `segment` when neither is there."""
    if segment not in mapping:
        try:
            as_yaml = yaml.safe_load(segment)
        except yaml.YAMLError:
            return segment
        if isinstance(as_yaml, (int, float, bool)) and as_yaml in mapping:
            return as_yaml
    return segment


def parse_task(data: object, source: Path, overrides: Sequence[str] = ()) -> TaskSpec:
    """Validate an already-loaded YAML mapping, after applying `overrides` (`KEY.PATH=VALUE`
    strings, see `apply_overrides`); `source` is used for paths and messages. Relative paths
    resolve against `source`'s folder, those given in `overrides` against the current
    directory."""
    if not isinstance(data, dict):
        raise TaskFileError(f"{source}: the task file must be a YAML mapping of fields")
    data = copy.deepcopy(data)
    overridden = apply_overrides(data, overrides)
    _resolve_paths(data, source.parent, overridden)
    data["source"] = str(source)
    data["overrides"] = tuple(overrides)
    try:
        return TaskSpec.model_validate(data)
    except ValidationError as err:
        raise TaskFileError(_format_validation_error(err, source, overrides)) from None


def load_task(path: str | Path, overrides: Sequence[str] = ()) -> TaskSpec:
    """Read and validate a YAML task file, with `overrides` applied (see `parse_task`)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise TaskFileError(f"task file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise TaskFileError(f"{path}: not valid YAML: {err}") from None
    return parse_task(data, path, overrides)


def shipped_task_names() -> list[str]:
    """Names of the shipped task files (without .yaml)."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


def shipped_task(
    name: str, data_root: str | Path | None = None, overrides: Sequence[str] = ()
) -> TaskSpec:
    """Load shipped task `name`, resolving its raster paths against `data_root` (default: the
    AUTORS_DATA environment variable), with `overrides` applied (see `parse_task`)."""
    path = SHIPPED_DIR / f"{name}.yaml"
    if not path.is_file():
        raise TaskFileError(
            f"no shipped task named '{name}'; shipped tasks: {shipped_task_names()}"
        )
    if data_root is None:
        data_root = os.environ.get(DATA_ROOT_ENV)
        if not data_root:
            raise TaskFileError(
                f"shipped task '{name}' needs a data root (the folder holding its dataset): "
                f"pass --data-root DIR or set {DATA_ROOT_ENV}=DIR"
            )
    root = Path(data_root).expanduser().resolve()
    if not root.is_dir():
        raise TaskFileError(f"data root {root} is not a folder (shipped task '{name}')")
    # parse_task resolves relative paths against the source's folder: here, the data root.
    task = parse_task(yaml.safe_load(path.read_text()), root / path.name, overrides)
    return task.model_copy(update={"source": path})


def resolve_task(
    spec: str | Path, data_root: str | Path | None = None, overrides: Sequence[str] = ()
) -> TaskSpec:
    """A task from a YAML file path, or from a shipped task name when no such file exists,
    with `overrides` applied (see `parse_task`)."""
    if not Path(spec).exists() and str(spec) in shipped_task_names():
        return shipped_task(str(spec), data_root, overrides)
    return load_task(spec, overrides)


def task_yaml(task: TaskSpec) -> str:
    """The task as YAML with absolute paths, headed by comments naming its file and the --set
    overrides applied: the task copy a run folder keeps. Reloads to the same `digest()`."""
    header = []
    if task.source is not None:
        header.append(f"# autors run copy of {task.source} (paths made absolute)")
    header += [f"# --set {o}".replace("\n", "\\n") for o in task.overrides]
    return "".join(f"{line}\n" for line in header) + yaml.safe_dump(task.to_dict(),
                                                                    sort_keys=False)
