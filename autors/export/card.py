"""The model card (`model.json`) of an exported model folder: what the model needs and what it
achieved, parsed into typed objects.

    {"format": 5,
     "task": {"name", "kind", "patch_size", "tile_size", "input_size", "dense", "grid"},
     "inputs": ["optical", "lidar"],          # model inputs, in the model's fusion order
     "sensors": [{"name", "kind", "used", "in_channels", "bands": [names],
                  "read": {"bands", "nodata", "scale", "offset", "sar_units",
                           "complex_pairs",      # complex SAR: bands "<b>.re", "<b>.im"
                           "mask": {"invalid_values"} | null,       # the raster: at predict
                           "qa": {"band", "invalid_values" | "invalid_bits"} | null},
                  "mean": [...], "std": [...],
                  "dates": [{"date", "doy"}, ...] | null},  # time series: T dates (below)
                 ...],                                     # every task sensor, arch order
     "require_sensors": "any" | "all" | [names],  # which labelled pixels training used
     "classes": [{"index": 0, "value": 1, "name": "water"}, ...], "ignore_value": 0,
     "metrics": {"val": {"oa": {"mean", "std", "n", "values"}, ...},
                 "test": {... same, "ece" included ...} | null, "seeds": [0, 1, 2]},
     "cost": {params, flops, latency_ms_b1, latency_ms_per_sample_b256, throughput_batch,
              threads},
     "provenance": {"task_digest", "task_sha256", "split": {"sha256", "seed", "buffer",
                    "dropped_buffer", "dropped_invalid", "counts", "footprint", "leakage":
                    {"val"|"test": {"pixels", "touching_train"}}}, "seed", "source_run",
                    "source_kind", "rank", "trained_with": {versions}, "exported_with":
                    {versions}, "exported_at"},
     "robustness": {"accepted_subsets": [{"condition": "clean" | "without_<s>", "sensors",
                                          "test": {oa, aa, kappa, miou, ece: summary},
                                          "num_samples", "no_input"}, ...],
                    "clouds": [{"condition": "cloud_30", "cover": 0.3, "clouded": [...],
                                "test": {...}, "num_samples", "no_input"}, ...]} | null,
     "export": {"formats", "onnx_opset", "output": "logits", "parity": {format: max |diff|},
                "inputs": [{"name", "sensor", "kind": "values" | "mask" | "doy", "shape", "dtype"}],
                "reduction", "receptive_radius",    # dense models: how far a pixel looks
                "features": [{"stage", "file", "channels", "reduction", "parity"}]},
     "plugins": [{"module", "version", "file", "source"}, ...],  # imported before the arch
     "ensemble": {"combine": "mean_probability", "members": [{"arch_file", "weights_file",
                  "rank", "seed", "source", "arch", "temperature", "val", "test", "cost"}],
                  "val", "test", "val_pixels", "test_pixels",
                  "single": {"rank", "seed", "temperature", "val", "test", "cost"}} | null,
     "input_profile": {"sensors": {name: {"bands": [{"p1", "p50", "p99"}, ...],
                                          "invalid_fraction", "sampled_pixels",
                                          "gsd": {"min_m", "max_m", "x_m", "y_m", "scenes"}}},
                       "grid": {"min_m", "max_m", "x_m", "y_m", "scenes"},
                       "max_pixels"} | null,
     "calibration": {"method": "temperature", "temperature": T, "in_compiled": true,
                     "val": {"nll_before", "nll_after", "ece_before", "ece_after", "pixels"},
                     "test": {... the same, "entropy_auroc"} | null,
                     "conformal": {"score": "lac", "alphas": [0.01 .. 0.3],
                                   "quantiles": [q per alpha], "n",
                                   "test": [{"alpha", "quantile", "coverage",
                                             "mean_set_size", "empty"}] | null}} | null,
     "files": {"arch.json": sha256, "weights.pt": sha256, "model.ts": ..., "model.onnx": ...}}

A model's inputs are, per used sensor, `(raw - mean) / std` per band, 0 where the pixel is
invalid, `[B, C, S, S]` with S = `task.input_size`, and its validity mask `<sensor>__mask`
`[B, S, S]` float32 (1 valid, 0 invalid). A pixel of a sensor is invalid where any of its bands
is nodata or NaN, where its mask raster holds one of `read.mask.invalid_values`, where its QA
band matches `read.qa`, and everywhere when the sensor is not given (values 0, mask 0). The
output is logits `[B, K]` (patch classification) or `[B, K, S, S]` (dense). Class index i is
raster value `classes[i].value`. `export.inputs` lists the compiled files' input tensors.

`ensemble` (`autors export --ensemble`, `autors.export.ensemble`): the folder holds members
(`member<i>_arch.json` + `member<i>_weights.pt`, no top-level arch.json / weights.pt) whose
temperature-scaled probabilities are averaged; model.ts / model.onnx compute every member and
output the log of the mean probability. `metrics` are then the ensemble's own (measured once on
the members' validation and test pixels: n = 1), `cost` is the sum over members, and
`ensemble.single` is the single model of the same run for comparison.

`export.features` lists feature-extractor graphs (`autors export --features STAGE`:
`features_<stage>.onnx`, output "features" `[B, C, H / r, W / r]`, the model's inputs, dynamic
batch, height and width; `autors.export.features`).

`calibration` (format 5; None for a model trained before it): the temperature T fitted on the
validation split (`autors.training.calibration`). model.ts and model.onnx output logits / T
(`in_compiled`), so their softmax is the calibrated probabilities; arch.json + weights.pt rebuild
the raw network (divide its logits by T). `conformal` holds the split-conformal quantiles of
the LAC score 1 - p (calibrated p) on validation: the prediction set at error rate alpha is
every class k with 1 - p_k <= q(alpha). Its `test` rows and `calibration.test` are the exported
model's own test figures (measured, nothing fitted on test); `metrics` ECE is of the raw
softmax, over the seeds.

`input_profile` is what the training inputs looked like (`autors.data.profile`): per sensor
and band the 1st, 50th and 99th percentiles of the physical values (after nodata, scale/offset
and dB conversion, before normalisation) of a bounded seeded sample of valid training pixels,
the share of training pixels where the sensor was invalid, and the ground pixel size in metres
of the training grids and of each sensor's rasters. `autors predict` compares the given
rasters with it before predicting (`autors.export.input_check`).

Format 6 added `targets` (a task with several or continuous targets; None for a one-class-
target task, whose card is as before); format-5 cards load unchanged.
Format 5 added `calibration`; format-4 cards load without it (predict then writes the raw
confidence, with a note). Format 4 added `input_profile`. Format-3 cards still load, without
it (predict then says its input checks were skipped). Format 3 added the validity rules, masks as model inputs,
`require_sensors` and `robustness`. Format-2 cards (written before) still load
(`upgrade_card`): they had no mask or QA rule, their compiled files take no masks, and predict
labelled a pixel only where every given input was valid (`require_sensors: all`).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from autors.config import MaskSpec, QASpec, SarUnits, SensorKind, SensorSpec, TaskKind
from autors.data.profile import InputProfile
from autors.errors import ModelFolderError
from fusion import DOY_SUFFIX, MASK_SUFFIX

CARD_FORMAT = 6
OLD_FORMATS = (2, 3, 4, 5)  # read through `upgrade_card`
CARD_FILE = "model.json"


class _Card(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskCard(_Card):
    name: str
    kind: TaskKind
    patch_size: int
    tile_size: int
    input_size: int = Field(description="side of one model input: patch_size or tile_size")
    dense: bool = Field(description="True: logits [B, K, S, S]; False: logits [B, K]")
    grid: str = Field(description="the task's reference grid: 'labels' or a sensor name")


class MaskRule(_Card):
    """The sensor's mask-raster rule: pixels holding one of `invalid_values` are invalid. The
    raster itself belongs to a scene, so `autors predict` takes it (`--mask NAME=PATH`)."""

    invalid_values: list[float] = Field(min_length=1)


class ReadSpec(_Card):
    """How the sensor's raster values were read in training (the task's sensor entry minus
    its paths): predict applies the same band selection, nodata, scale/offset, dB conversion,
    mask-raster rule and QA rule (`qa.band` by name or 1-based index, as the task gave it)."""

    bands: list[int | str] | None
    nodata: float | None
    scale: float
    offset: float
    sar_units: SarUnits | None = Field(description="'complex': each complex band (or declared "
                                       "real/imaginary band pair) is two input channels, "
                                       "real then imaginary; mean 0, one std per pair")
    complex_pairs: list[list[int | str]] | None = None
    mask: MaskRule | None = None
    qa: QASpec | None = None
    bands_per_date: int | None = Field(default=None, description=(
        "a time series given as band groups of one file: the bands of each date (`bands` "
        "and `qa.band` index inside a group; a mask raster holds a band per date)"))


class DateCard(_Card):
    """One date of a time-series sensor, in training order. At predict each date's raster is
    read with the sensor's `read` rules; a date whose raster is not given is invalid
    everywhere (its date mask 0), as a date a training scene did not acquire."""

    date: datetime.date
    doy: int = Field(ge=1, le=366, description="day of year, the model's `<sensor>__doy`")


class SensorCard(_Card):
    name: str
    kind: SensorKind
    used: bool = Field(description="False when the arch's branch is 'off': no input needed")
    in_channels: int
    bands: list[str]
    read: ReadSpec
    mean: list[float]
    std: list[float]
    dates: list[DateCard] | None = Field(default=None, description=(
        "a time series: its T dates (in_channels, bands, mean, std are those of one date)"))
    dates_per_scene: int | None = Field(default=None, ge=1, description=(
        "a time series whose dates were each scene's own (task `dates: per_scene`): the "
        "model's T. A scene gives up to T dated rasters, their day of year taken from each "
        "file's date; the dates after them are padding (date mask 0, day of year 0)"))
    missing_dates: str | None = Field(default=None, description=(
        "a time series: how a date without a raster is handled at predict"))

    @model_validator(mode="after")
    def _lengths(self) -> SensorCard:
        n = self.in_channels
        if not (len(self.bands) == len(self.mean) == len(self.std) == n):
            raise ValueError(
                f"sensor '{self.name}': in_channels {n} but {len(self.bands)} band names, "
                f"{len(self.mean)} means and {len(self.std)} stds"
            )
        try:
            self.sensor_spec(Path("check"))
        except ValidationError as err:
            raise ValueError(f"sensor '{self.name}': read: {err.errors()[0]['msg']}") from None
        if self.dates is not None and (not self.dates or any(
                a.date >= b.date for a, b in zip(self.dates, self.dates[1:]))):
            raise ValueError(f"sensor '{self.name}': dates must be increasing and non-empty")
        if self.dates is not None and self.dates_per_scene is not None:
            raise ValueError(f"sensor '{self.name}': give either dates or dates_per_scene")
        return self

    @property
    def steps(self) -> int | None:
        """A time series' date count T; None for a single-date sensor."""
        return len(self.dates) if self.dates is not None else self.dates_per_scene

    def sensor_spec(self, path: Path, mask: Path | None = None) -> SensorSpec:
        """The task-file sensor entry for a raster at `path` and its mask raster `mask` (read
        exactly as in training)."""
        read = self.read.model_dump(exclude={"mask", "qa", "bands_per_date"})
        rule = self.read.mask
        return SensorSpec(
            kind=self.kind, path=path, **read, qa=self.read.qa,
            mask=None if rule is None else MaskSpec(path=mask,
                                                    invalid_values=rule.invalid_values))


class ClassCard(_Card):
    index: int
    value: int = Field(description="the class's value in label rasters and output maps")
    name: str


class IntervalCard(_Card):
    """A continuous target's calibrated central intervals, value +- z * std (std the head's
    predictive std): z68 and z95 are split-conformal quantiles of |y - value| / std over the
    validation pixels (`autors.training.targets.fit_intervals`), so that the intervals cover
    68.27 % and 95 % of pixels like the validation ones (the card's test metrics
    `coverage68_calibrated__<target>` measure it)."""

    z68: float
    z95: float
    n: int = Field(description="validation pixels the factors were fitted on")


class TargetCard(_Card):
    """One target of a model with several (or continuous) targets: which channels of the one
    output tensor are its own, and how to read them. A class target: its K logits (the card's
    `classes`). A continuous target: channel `start` is the value and, with `has_std`,
    `start + 1` the log-variance, both normalised: value = out * std + mean (in `units`),
    predictive std = exp(out / 2) * std."""

    name: str
    kind: Literal["classes", "continuous"]
    start: int = Field(description="first output channel")
    stop: int = Field(description="one past the last output channel")
    units: str = ""
    loss: str
    has_std: bool = Field(description="a heteroscedastic head: channel start + 1 = log-variance")
    mean: float = Field(description="training mean of the values (continuous; 0 for classes)")
    std: float = Field(description="training std of the values (continuous; 1 for classes)")
    intervals: IntervalCard | None = Field(
        default=None, description="calibrated intervals of a continuous target with a std "
        "head (None: no std head, or a model trained before them)")


class MetricSummary(_Card):
    """One metric over the exported architecture's seeds (std is None for a single seed)."""

    mean: float
    std: float | None
    n: int
    values: list[float]


class Metrics(_Card):
    val: dict[str, MetricSummary]
    test: dict[str, MetricSummary] | None = Field(
        description="None when the source run was not evaluated on its test split"
    )
    seeds: list[int]
    # a dataset of several scenes: test OA and kappa per group (e.g. flood event) and per scene,
    # over the seeds (pooled metrics stay `test`); None for one scene or cards before them
    test_per_group: dict[str, dict[str, MetricSummary]] | None = None
    test_per_scene: dict[str, dict[str, MetricSummary]] | None = None


class CostCard(_Card):
    params: int
    flops: int
    latency_ms_b1: float
    latency_ms_per_sample_b256: float
    throughput_batch: int
    threads: int


class LeakageCard(_Card):
    pixels: int
    touching_train: int = Field(description="held-out pixels whose footprint holds a training pixel")


class SceneSplitCard(_Card):
    """The dataset's scenes behind the split (`DatasetIndex.split_record()['scenes']`)."""

    n: int
    digest: str = Field(description="hash of the scene list (ids, groups, file names)")
    per_split: dict[str, int] = Field(description="scenes holding pixels of each split")
    skipped: list[str] = Field(description="scenes without a usable labelled pixel")
    unused: int = Field(description="scenes in no split list")


class SplitCard(_Card):
    """The split the model was trained, selected and tested on (autors.data.split_record)."""

    sha256: str
    seed: int
    buffer: int = Field(description="pixels kept between training and held-out pixels")
    dropped_buffer: int
    dropped_invalid: int
    counts: dict[str, int]
    footprint: int = Field(description="side of the patch or tile the leakage is counted for")
    leakage: dict[str, LeakageCard]
    # None: a card written before datasets of scenes (it still loads)
    scenes: SceneSplitCard | None = None


class Provenance(_Card):
    task_digest: str
    task_sha256: str
    split: SplitCard
    seed: int = Field(description="training seed of the exported weights")
    source_run: str
    source_kind: Literal["train", "search"]
    rank: int
    trained_with: dict[str, str]
    exported_with: dict[str, str]
    exported_at: str


class TensorCard(_Card):
    """One input tensor of the compiled model (model.ts takes them as a dict, model.onnx as
    named inputs). `shape` holds "batch" for the dynamic axis."""

    name: str
    sensor: str
    kind: Literal["values", "mask", "doy"]
    shape: list[int | str]
    dtype: Literal["float32"] = "float32"
    description: str


def input_tensors(sensors: list[SensorCard], size: int, masks: bool = True
                  ) -> list[TensorCard]:
    """The compiled model's inputs: each used sensor's values, then (with `masks`) each one's
    validity mask, then each time series' days of year, in input order. A time series'
    values are `[batch, T, C, size, size]` and its mask `[batch, T, size, size]` (per date)."""
    def lead(s: SensorCard) -> list[int | str]:
        return ["batch"] + ([] if s.steps is None else [s.steps])

    out = [TensorCard(name=s.name, sensor=s.name, kind="values",
                      shape=[*lead(s), s.in_channels, size, size],
                      description="(raw - mean) / std per band, 0 where invalid"
                      + ("; complex SAR: real/imaginary channel pairs (re, im per complex "
                         "band), mean 0 and one std per pair" if s.read.sar_units == "complex"
                         else "")
                      + ("; a time series: date by date, the card's dates in order"
                         if s.steps is not None else ""))
           for s in sensors]
    if masks:
        out += [TensorCard(name=s.name + MASK_SUFFIX, sensor=s.name, kind="mask",
                           shape=[*lead(s), size, size],
                           description=f"validity of '{s.name}': 1 valid, 0 invalid or "
                           "absent (model.ts: may be left out, meaning valid everywhere)"
                           + ("; per date, a date without a raster 0 everywhere"
                              if s.steps is not None else ""))
                for s in sensors]
    out += [TensorCard(name=s.name + DOY_SUFFIX, sensor=s.name, kind="doy",
                       shape=["batch", s.steps],
                       description=f"day of year of each date of '{s.name}' (the card's "
                       "dates' doy; model.ts requires it; model.onnx takes it only where the "
                       "branch reads dates, not for dates stacked as channels)")
            for s in sensors if s.steps is not None]
    return out


class FeatureCard(_Card):
    """A feature-extractor ONNX graph: the model's feature map `stage`
    (`fusion.FusionModel.feature_stages`) for the model's inputs."""

    stage: str
    file: str
    output: str = "features"
    channels: int
    reduction: int = Field(ge=1, description="the map is this many times coarser than the "
                           "input (1: one feature vector per pixel)")
    parity: float = Field(description="max |difference| to the PyTorch feature map")


class ExportInfo(_Card):
    formats: list[Literal["torchscript", "onnx"]]
    onnx_opset: int | None
    output: str = "logits"
    parity: dict[str, float] = Field(description="max |logit difference| to PyTorch per format")
    inputs: list[TensorCard] = Field(description="the compiled model's input tensors")
    # Dense models (None for patch classifiers and cards written before them): what
    # overlap-tile prediction needs (`autors.export.windows`).
    reduction: int | None = Field(default=None, ge=1, description=(
        "output stride: windows aligned to it (and read with the receptive radius around "
        "them) give the whole-scene map"))
    receptive_radius: int | None = Field(default=None, ge=0, description=(
        "pixels (Chebyshev) around an output pixel whose inputs can change it, measured, a "
        "multiple of reduction; None with a reduction: beyond what export measures"))
    features: list[FeatureCard] = Field(default=[], description=(
        "feature-extractor graphs written with --features (none by default)"))

    @property
    def takes_masks(self) -> bool:
        """Whether the model takes validity masks (False for a format-2 model)."""
        return any(t.kind == "mask" for t in self.inputs)


class ConditionCard(_Card):
    """The exported architecture's test metrics under one robustness condition
    (`autors.training.robustness`), over its seeds; every condition scores the same pixels."""

    condition: str = Field(description="the row of the source run's test robustness table")
    test: dict[str, MetricSummary] = Field(description="oa, aa, kappa, miou, ece over seeds")
    num_samples: int
    no_input: int = Field(description="scored pixels where no sensor given was valid")


class SubsetCard(ConditionCard):
    """A measured sensor subset: `clean` (every input) or `without_<s>` (the others)."""

    sensors: list[str] = Field(description="the inputs given, input order")


class CloudCard(ConditionCard):
    """Seeded cloud cover over the optical sensors (values and masks 0 under the clouds)."""

    cover: float
    clouded: list[str]


class RobustnessCard(_Card):
    """What the source run measured: predict accepts any non-empty subset of the inputs;
    `accepted_subsets` lists those whose accuracy was measured."""

    accepted_subsets: list[SubsetCard]
    clouds: list[CloudCard]

    def subset(self, sensors: list[str]) -> SubsetCard | None:
        """The measured row of exactly `sensors` (any order), None when not measured."""
        return next((s for s in self.accepted_subsets if set(s.sensors) == set(sensors)),
                    None)


class PluginCard(_Card):
    """A plugin module the model's parts may come from (`autors.plugins.PluginInfo`); `autors
    predict` imports it by `module` before rebuilding the model."""

    module: str
    version: str | None
    file: str | None
    source: str = Field(description="'task' (the task's plugins) or 'entry point <name>'")


class CalibrationFigures(_Card):
    """Negative log-likelihood and ECE (15 bins) of the raw and the temperature-scaled
    probabilities on one split's pixels."""

    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    pixels: int
    entropy_auroc: float | None = Field(default=None, description=(
        "test: how well the predictive entropy ranks wrong pixels first (0.5: not at all)"))


class CoverageCard(_Card):
    """The test coverage of the conformal sets at one error rate."""

    alpha: float
    quantile: float
    coverage: float = Field(description="share of test pixels whose class is in their set")
    mean_set_size: float
    empty: float = Field(description="share of test pixels with an empty set")


class ConformalCard(_Card):
    """Split-conformal quantiles of the LAC score 1 - p_k on validation (calibrated p)."""

    score: Literal["lac"]
    alphas: list[float]
    quantiles: list[float]
    n: int = Field(description="validation pixels the quantiles come from")
    test: list[CoverageCard] | None = None

    @model_validator(mode="after")
    def _grid(self) -> ConformalCard:
        if len(self.alphas) != len(self.quantiles) or not self.alphas:
            raise ValueError(f"{len(self.alphas)} alphas but {len(self.quantiles)} quantiles")
        return self

    def quantile(self, alpha: float) -> float | None:
        """q(alpha) when `alpha` is on the recorded grid (to 1e-9), else None."""
        return next((q for a, q in zip(self.alphas, self.quantiles) if abs(a - alpha) <= 1e-9),
                    None)


class CalibrationCard(_Card):
    """Temperature scaling fitted on validation (`autors.training.calibration`)."""

    method: Literal["temperature"] = "temperature"
    temperature: float = Field(gt=0)
    fitted: bool = Field(default=True, description=(
        "False: the validation NLL had no minimum inside the search bounds (e.g. not one "
        "validation pixel wrong), so no temperature is supported: T = 1, the raw softmax"))
    in_compiled: bool = Field(description="model.ts / model.onnx output logits / temperature")
    val: CalibrationFigures
    test: CalibrationFigures | None = Field(
        description="the exported model's test figures; None without a test evaluation")
    conformal: ConformalCard


class _Scores(_Card):
    """Scalar metrics of one split (oa, aa, kappa, miou, ece)."""

    oa: float
    aa: float
    kappa: float
    miou: float
    ece: float


class EnsembleMember(_Card):
    """One member of an ensemble folder and what its own train folder measured."""

    arch_file: str
    weights_file: str
    rank: int = Field(description="its architecture's rank in the source search")
    seed: int
    source: str = Field(description="the train folder it was copied from")
    arch: str = Field(description="`Arch.summary()`")
    temperature: float | None = Field(description="its calibration temperature; None: its "
                                      "probabilities are used uncalibrated (T = 1)")
    val: _Scores
    test: _Scores | None
    cost: CostCard


class SingleModelCard(_Card):
    """The single model the same run exports without --ensemble (best seed of the first
    chosen rank), for comparison."""

    rank: int
    seed: int
    temperature: float | None
    val: _Scores
    test: _Scores | None
    cost: CostCard


class EnsembleCard(_Card):
    """An ensemble's members and its own metrics beside the single model's."""

    combine: Literal["mean_probability"]
    members: list[EnsembleMember]
    val: _Scores = Field(description="the averaged probabilities on the validation pixels")
    test: _Scores | None = Field(description="on the test pixels (evaluated, never chosen on)")
    val_pixels: int
    test_pixels: int | None
    single: SingleModelCard

    @property
    def files(self) -> list[str]:
        return [f for m in self.members for f in (m.arch_file, m.weights_file)]


class ModelCard(_Card):
    format: int
    task: TaskCard
    inputs: list[str]
    sensors: list[SensorCard]
    require_sensors: Literal["any", "all"] | list[str] = Field(
        description="which labelled pixels training used; predict labels a pixel where a "
        "given input is valid and, among the given inputs, those this rule requires are")
    classes: list[ClassCard]
    ignore_value: int
    metrics: Metrics
    robustness: RobustnessCard | None = Field(
        description="None when the source run was not evaluated on its test split")
    cost: CostCard
    provenance: Provenance
    export: ExportInfo
    files: dict[str, str] = Field(description="file name -> sha256 of its bytes")
    plugins: list[PluginCard] = Field(default=[], description="plugin modules, import order")
    input_profile: InputProfile | None = Field(
        default=None, description="what the training inputs looked like; None for a card "
        "written before it (format 3 and older): predict cannot check its inputs")
    ensemble: EnsembleCard | None = Field(
        default=None, description="the members of an ensemble folder; None for one model")
    calibration: CalibrationCard | None = Field(
        default=None, description="temperature and conformal quantiles fitted on validation; "
        "None for a model trained before calibration (format 4 and older)")
    targets: list[TargetCard] | None = Field(
        default=None, description="several or continuous targets: each target's output "
        "channels, units and normalisation (metrics: `<metric>__<target>`); None: one class "
        "target, the card's classes (format 5 and older)")

    @model_validator(mode="after")
    def _consistent(self) -> ModelCard:
        if self.format != CARD_FORMAT:
            raise ValueError(f"format {self.format} is not {CARD_FORMAT}")
        names = [s.name for s in self.sensors]
        used = [s.name for s in self.sensors if s.used]
        if self.inputs != used:
            raise ValueError(f"inputs {self.inputs} differ from the used sensors {used}")
        if len(set(names)) != len(names):
            raise ValueError(f"sensor names repeat: {names}")
        if [c.index for c in self.classes] != list(range(len(self.classes))):
            raise ValueError("classes must be listed by index 0..K-1")
        if self.ignore_value in self.class_values:
            raise ValueError(f"ignore_value {self.ignore_value} is also a class value")
        tensors = [t.sensor for t in self.export.inputs if t.kind == "values"]
        if tensors != used:
            raise ValueError(f"export.inputs has values of {tensors}, not the used sensors "
                             f"{used}")
        if isinstance(self.require_sensors, list) and \
                not set(self.require_sensors) <= set(names):
            raise ValueError(f"require_sensors {self.require_sensors} names sensors that are "
                             f"not among {names}")
        if self.input_profile is not None:
            for s in self.sensors:
                p = self.input_profile.sensors.get(s.name)
                if p is None or len(p.bands) != s.in_channels:
                    raise ValueError(f"input_profile has {'no' if p is None else len(p.bands)} "
                                     f"band(s) for sensor '{s.name}' ({s.in_channels} inputs)")
        return self

    # ---- views ---------------------------------------------------------------------------
    @property
    def in_channels(self) -> dict[str, int]:
        """Bands per task sensor, arch order (what `fusion.build_model` takes)."""
        return {s.name: s.in_channels for s in self.sensors}

    @property
    def steps(self) -> dict[str, int]:
        """Time-series sensors: their date count T (`fusion.build_model(dates=)`)."""
        return {s.name: s.steps for s in self.sensors if s.steps is not None}

    @property
    def used_sensors(self) -> list[SensorCard]:
        """Sensors the model reads, in input order."""
        return [s for s in self.sensors if s.used]

    def sensor(self, name: str) -> SensorCard:
        return next(s for s in self.sensors if s.name == name)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def model_outputs(self) -> int | dict[str, int]:
        """What `fusion.build_model` is asked for: the classes, or each target's channels."""
        if self.targets is None:
            return self.num_classes
        return {t.name: t.stop - t.start for t in self.targets}

    @property
    def class_values(self) -> list[int]:
        return [c.value for c in self.classes]

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    def required(self, given: list[str]) -> list[str]:
        """The given inputs that `require_sensors` requires valid for a pixel to be labelled
        (besides one given input being valid): all of them, the listed ones, or none."""
        if self.require_sensors == "all":
            return list(given)
        if self.require_sensors == "any":
            return []
        return [s for s in given if s in self.require_sensors]

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, allow_nan=False) + "\n"


def upgrade_card(data: dict) -> dict:
    """An older card as the current format. Format 4 (before calibration): no `calibration`.
    Format 3 (before input profiles): no `input_profile` either. Format 2 (before validity
    masks), also: no mask or QA rule (format-2 export refused them), compiled inputs without
    masks (the files take none), no robustness table, and `require_sensors: all`, the rule
    predict applied to these models (a pixel labelled only where every input is valid), so
    their maps do not change."""
    if data.get("format") in (3, 4, 5):
        return dict(data, format=CARD_FORMAT)
    out = dict(data, format=CARD_FORMAT, require_sensors="all", robustness=None)
    try:
        size = int(data["task"]["input_size"])
        # constructed, not validated (validation reports what is missing); the read
        # spec too, as input_tensors asks it
        used = [SensorCard.model_construct(**dict(s, read=ReadSpec.model_construct(
            **s.get("read", {})))) for s in data["sensors"] if s["used"]]
        out["export"] = dict(data["export"], inputs=[
            t.model_dump() for t in input_tensors(used, size, masks=False)])
    except (KeyError, TypeError, ValueError):
        pass  # validation reports what is missing, by its field
    return out


def read_card(folder: Path) -> ModelCard:
    """Parse `folder/model.json`; a missing, unreadable or invalid card is a ModelFolderError."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        raise ModelFolderError(
            f"{path} is missing: {folder} is not an exported model folder (create one with "
            "`autors export RUN --out DIR`)"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFolderError(
            f"{path}: unreadable or not valid JSON ({err}); re-export the model"
        ) from None
    if isinstance(data, dict) and data.get("format") in OLD_FORMATS:
        data = upgrade_card(data)
    if isinstance(data, dict) and data.get("format") != CARD_FORMAT:
        readable = ", ".join(map(str, (*OLD_FORMATS, CARD_FORMAT)))
        raise ModelFolderError(
            f"{path}: model card format {data.get('format')!r} is not supported (this autors "
            f"reads formats {readable}); re-export the model with this version"
        )
    try:
        return ModelCard.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<top>"
        raise ModelFolderError(
            f"{path}: invalid model card at '{where}': {first['msg']} "
            f"({err.error_count()} problem(s)); the file was edited or is damaged: re-export "
            "the model"
        ) from None
