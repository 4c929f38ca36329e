"""Does a scene look like what the model was trained on (`autors predict`), or like what its task
declares (`autors validate`)? One set of checks for both, run before any pixel is predicted.

    report = check_scene(card, inputs, options)         # predict: a model card's training profile
    report.raise_for_errors()                           # InputMismatchError naming the fix
    reports = check_task(task, index)                   # validate: each scene against the task

What is compared. A few windows of each given raster (`CheckOptions.windows` windows of
`side` px spread over the raster, on its own pixel grid, read by the training reader: nodata,
scale/offset, mask raster and QA rule) give, per band, the 1st, 50th and 99th percentiles of
the values, before and after the SAR dB conversion, the share of invalid pixels, and the
raster's ground pixel size in metres (`autors.data.profile.pixel_size`: geometric mean of x and
y). The reference is the model card's `input_profile` (what the training inputs looked like:
the same figures over a seeded sample of the training pixels) and read spec (scale, offset,
`sar_units`), or, for `autors validate`, the task's sensor entries and the dataset's typical
scene (per band, the median over its scenes' sampled percentiles: a scene 10^k off the others
stands out). A card written before input profiles has no reference: the checks are skipped
with one line saying so.

The rules (`RULES`, in order) each state their name, level and what they check; an error
stops the prediction (a scene of `predict --template` is skipped with it) and names the
sensor, band, file, both values and the fix (`--scale` / `--sar-units` for predict,
`scale:` / `sar_units:` in the task file for validate, `--allow-resolution-change` or
`--ignore-check NAME` to go on anyway, which turns it into a warning). Warnings are printed
and written, with the figures, as tags of the output GeoTIFFs (`check_tags`).

The thresholds are factors chosen from what separates a mix-up from ordinary differences
between scenes, not from one data set; each says why next to its value.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from rasterio.windows import Window

from autors.config import SarUnits, SensorKind, SensorSpec, TaskSpec
from autors.data.grid import Grid
from autors.data.index import DatasetIndex
from autors.data.masks import rule_validity
from autors.data.profile import (
    BandStats,
    GsdRange,
    PixelSize,
    SensorProfile,
    band_stats,
    pixel_size,
)
from autors.data.raster import RasterInfo
from autors.data.scene import linear_to_db, load_sensor
from autors.errors import DataError, InputMismatchError
from autors.export.card import CARD_FILE, ModelCard
from autors.export.inputs import ReadOverride, SceneInputs
from autors.files import file_sha256

Level = Literal["error", "warning"]
Context = Literal["model", "task"]  # a model card's training inputs, or a task's declarations

SAMPLE_WINDOWS = 9  # windows per raster, a 3 x 3 lattice over it
SAMPLE_SIDE = 128  # px: 9 windows hold ~150k pixels, plenty for 1-99 % percentiles

# Pixel size: allowed from training / F to training x F. A CNN's filters and patches are
# counted in pixels; at 1.5x the ground per pixel, objects shrink by a third in the model's
# view, past what ordinary resampling differences (10 vs 12 m) produce.
RESOLUTION_FACTOR = 1.5
# Scale / unit mix-up: |log10(sample magnitude / training magnitude)| (median over the
# sensor's bands, as scale and offset are per sensor) at least this. Mix-ups are factors of
# 100 or more (percent, reflectance x 10000, cm vs m, digital numbers); the values of one
# sensor differ between scenes (dark water against bright desert) by well under 10x; 10^1.5
# (~32x) sits halfway between in log.
SCALE_LOG10 = 1.5
# SAR expected in dB: backscatter above 0 dB (sigma0 > 1) is rare (bright urban corners,
# slopes facing the sensor) while linear power and amplitude are never negative, so a scene
# whose non-zero values are this much positive is not dB.
DB_POSITIVE_SHARE = 0.9
# SAR expected in linear power: it is never negative (noise-corrected products clip a few
# values at 0), while dB backscatter is mostly negative: a majority of negative values is dB.
LINEAR_NEGATIVE_SHARE = 0.5
# Invalid pixels: a warning when the sample's invalid share exceeds training's by this much
# (absolute): more than half of the scene rests on the other sensors or is nodata.
INVALID_EXCESS = 0.5
# Band order: a swap of two bands is reported when it brings them at least this much closer
# to their training percentiles (swapped distance <= SWAP_GAIN x as given) ...
SWAP_GAIN = 0.5
# ... and they are, as given, off by at least this share of their training 1-99 % range on
# average (similar bands, e.g. two visible ones, swapped or not, do not count).
SWAP_MIN_OFF = 0.25
# Reflectance (validate, optical / hyperspectral with a declared scale): a declared scale
# says how stored values become reflectance, whose 99th percentile over a scene is typically
# 0.1-0.6 (dark water to bright soil); the same factor 10^1.5 either side of 0.3 as SCALE_LOG10.
REFLECTANCE_MAGNITUDE = 0.3
# Common encodings of reflectance, named in the scale message: log10 factor -> meaning.
_REFLECTANCE_CODES = {4: "reflectance x 10000", 2: "percent"}


@dataclass(frozen=True)
class CheckOptions:
    """How predict checks its inputs. `allow`: checks whose errors are only warnings
    (`--allow-resolution-change` is 'resolution', `--ignore-check NAME` any)."""

    allow: frozenset[str] = frozenset()
    resolution_factor: float = RESOLUTION_FACTOR
    windows: int = SAMPLE_WINDOWS
    side: int = SAMPLE_SIDE

    def __post_init__(self) -> None:
        unknown = sorted(set(self.allow) - set(RULE_NAMES))
        if unknown:
            raise DataError(f"--ignore-check {unknown[0]}: no such input check; the checks "
                            f"are {', '.join(RULE_NAMES)}")
        if not (self.resolution_factor > 1.0 and math.isfinite(self.resolution_factor)):
            raise DataError(f"--resolution-tolerance {self.resolution_factor:g}: give a factor "
                            "> 1 (1.5 allows pixels from training / 1.5 to training x 1.5)")
        if self.windows < 1 or self.side < 8:
            raise DataError(f"input check windows {self.windows} of {self.side} px: give at "
                            "least 1 window of 8 px")


# ---- what is compared ---------------------------------------------------------------------
@dataclass(frozen=True)
class SensorReference:
    """What a sensor's values should look like: its read spec and training profile."""

    name: str
    kind: SensorKind
    bands: list[str]
    scale: float
    offset: float
    sar_units: SarUnits | None
    profile: SensorProfile | None  # None: no training figures (validate's declared rules)


@dataclass(frozen=True)
class Reference:
    """Everything the rules compare a scene with."""

    context: Context
    where: str  # the card or task file, for messages
    sensors: dict[str, SensorReference]
    grid: GsdRange | None  # the training grids' pixel size (None: not checked)
    scenes: int = 1  # scenes of the task (validate: fixes differ for one scene of many)
    basis: str = "the training data"  # what the profiles describe, for messages

    # -- fixes, as the context offers them --------------------------------------------------
    def fix_scale(self, sensor: str, value: float) -> str:
        if self.context == "model":
            return (f"give --scale {sensor}={value:g} (the factor from the raster's values to "
                    "the training's units), or convert the raster")
        if self.scenes > 1:
            return (f"convert this scene's raster to the other scenes' units (sensors.{sensor}"
                    f".scale applies to every scene), or fix sensors.{sensor}.scale in the task "
                    "file if it is wrong for all of them")
        return f"set sensors.{sensor}.scale: {value:g} in the task file"

    def fix_units(self, sensor: str, units: str) -> str:
        if self.context == "model":
            convert = "10 * log10 of the power" if units == "linear" else "power"
            return (f"give --sar-units {sensor}={units} to read it as {_UNITS[units]}, or "
                    f"convert the raster to {_UNITS[_OTHER[units]]} ({convert})")
        if self.scenes > 1:
            return (f"set sensors.{sensor}.sar_units: {units} in the task file if every scene "
                    f"holds {_UNITS[units]}, else convert this scene's raster")
        return f"set sensors.{sensor}.sar_units: {units} in the task file"

    def declared(self, sensor: str, key: str, value: object) -> str:
        """Where a read setting comes from, for messages."""
        if self.context == "model":
            return f"the model reads it with {key} '{value}' (model.json sensors '{sensor}' read)"
        return f"the task declares sensors.{sensor}.{key}: {value}"

    def fix_allow(self, check: str) -> str:
        flag = "--allow-resolution-change" if check == "resolution" else \
            f"--ignore-check {check}"
        return f"give {flag} to predict anyway"


_UNITS = {"db": "dB", "linear": "linear power"}
_OTHER = {"db": "linear", "linear": "db"}


def card_reference(card: ModelCard, where: str = "model.json") -> Reference | None:
    """The reference of a model card; None for a card written before input profiles."""
    profile = card.input_profile
    if profile is None:
        return None
    sensors = {s.name: SensorReference(name=s.name, kind=s.kind, bands=list(s.bands),
                                       scale=s.read.scale, offset=s.read.offset,
                                       sar_units=s.read.sar_units,
                                       profile=profile.sensors.get(s.name))
               for s in card.sensors}
    return Reference(context="model", where=where, sensors=sensors, grid=profile.grid)


def task_reference(task: TaskSpec, band_names: dict[str, list[str]],
                   samples: list[dict[str, Sample]]) -> Reference:
    """The reference of a task: its sensor entries (declared units and scale) and the
    dataset's typical scene, the median over the scenes' `samples` of each band's percentiles
    and of the invalid share (a few odd scenes, fewer than half, do not move it). Pixel sizes
    are not checked: a dataset may mix them, `validate` lists them."""
    sensors = {}
    for name, spec in task.sensors.items():
        found = [s[name] for s in samples if name in s and s[name].bands is not None]
        profile = None
        if found:
            bands = [BandStats(**{q: float(np.median([getattr(s.bands[i], q) for s in found]))
                                  for q in ("p1", "p50", "p99")})
                     for i in range(len(found[0].bands))]
            profile = SensorProfile(
                bands=bands, gsd=None, sampled_pixels=sum(s.valid for s in found),
                invalid_fraction=float(np.median([s.invalid_fraction for s in found])))
        sensors[name] = SensorReference(name=name, kind=spec.kind, bands=list(band_names[name]),
                                        scale=spec.scale, offset=spec.offset,
                                        sar_units=spec.sar_units, profile=profile)
    return Reference(context="task", where=f"task file {task.source}", sensors=sensors,
                     grid=None, scenes=len(samples),
                     basis="the dataset's typical scene")


@dataclass(frozen=True)
class Sample:
    """What a few windows of one raster hold (see the module docstring)."""

    sensor: str
    path: Path
    pixels: int  # sampled pixels
    valid: int  # of which valid
    bands: list[BandStats] | None  # physical values (as the model reads them); None: no valid
    raw: list[BandStats] | None  # before the SAR dB conversion (= bands for other sensors)
    positive: float | None  # share of the non-zero raw values that are > 0 (None: none)
    size: PixelSize  # the raster's own pixel size

    @property
    def invalid_fraction(self) -> float:
        return 1.0 - self.valid / max(self.pixels, 1)

    def where(self) -> str:
        return f"sensor '{self.sensor}' ({self.path})"


def sample_windows(height: int, width: int, windows: int, side: int) -> list[Window]:
    """`windows` windows of `side` px on a lattice spread over the raster (the whole raster
    when they would hold most of it)."""
    if height * width <= windows * side * side:
        return [Window(0, 0, width, height)]
    k = max(1, round(math.sqrt(windows)))
    h, w = min(side, height), min(side, width)
    out = []
    for i in range(k):
        for j in range(k):
            r = min(max(round((i + 0.5) * height / k - h / 2), 0), height - h)
            c = min(max(round((j + 0.5) * width / k - w / 2), 0), width - w)
            out.append(Window(c, r, w, h))
    return out


def sample_raster(sensor: str, spec: SensorSpec, info: RasterInfo, indexes: list[int],
                  mask: RasterInfo | None, qa: int | None, options: CheckOptions,
                  mask_band: int = 1) -> Sample:
    """Read a few windows of one sensor's raster with the training reader (see the module
    docstring); `mask_band`: the mask raster's band (a time series' band groups: its date's)."""
    grid = Grid.of(info)
    # The raw values of linear SAR (before the dB conversion) tell linear from dB.
    raw_spec = spec.model_copy(update={"sar_units": None}) if spec.sar_units == "linear" \
        else spec
    parts, pixels = [], 0
    for window in sample_windows(grid.height, grid.width, options.windows, options.side):
        sub = grid.sub(window)
        stack, ok = load_sensor(raw_spec, sub, info, indexes)
        rule = rule_validity(spec, sub, info, mask, qa, mask_band)
        if rule is not None:
            ok &= rule
        pixels += ok.size
        parts.append(stack[:, ok])
    raw = np.concatenate(parts, axis=1)  # [C, N] valid pixels
    if raw.shape[1] == 0:
        return Sample(sensor, Path(info.path), pixels, 0, None, None, None, pixel_size(grid))
    physical = linear_to_db(raw.copy()) if spec.sar_units == "linear" else raw
    nonzero = raw[raw != 0]
    positive = float((nonzero > 0).mean()) if nonzero.size else None
    raw_stats = band_stats(raw)
    return Sample(sensor, Path(info.path), pixels, int(raw.shape[1]),
                  band_stats(physical) if physical is not raw else raw_stats, raw_stats,
                  positive, pixel_size(grid))


# ---- the rules ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Evidence:
    """A scene's samples and the reference they are compared with."""

    reference: Reference
    samples: dict[str, Sample]
    grid: PixelSize | None  # the map's grid (predict); None: not checked
    grid_sensor: str | None
    options: CheckOptions


Found = Iterator[tuple[str, str]]  # (sensor or 'grid', message)


@dataclass(frozen=True)
class Rule:
    """One check: its name (for --ignore-check and the tags), level, the contexts it runs in
    and what it checks; `run` yields (sensor, message) for each problem it finds."""

    name: str
    level: Level
    contexts: tuple[Context, ...]
    what: str
    run: Callable[[Evidence], Found]


def _pairs(ev: Evidence) -> Iterator[tuple[Sample, SensorReference, SensorProfile]]:
    """(sample, reference, training profile) of each sampled sensor with both figures."""
    for name, s in ev.samples.items():
        ref = ev.reference.sensors[name]
        if ref.profile is not None and s.bands is not None:
            yield s, ref, ref.profile


def _band(ref: SensorReference, i: int) -> str:
    name = ref.bands[i] if i < len(ref.bands) else ""
    return f"band {i + 1}" + (f" '{name}'" if name else "")


def _range(b: BandStats) -> str:
    return f"{b.p1:.3g} to {b.p99:.3g}"


def _resolution(ev: Evidence) -> Found:
    f = ev.options.resolution_factor
    items = []  # (sensor, what, size, training)
    if ev.grid is not None and ev.reference.grid is not None:
        items.append(("grid", f"the map grid (the pixels of sensor '{ev.grid_sensor}')",
                      ev.grid, ev.reference.grid))
    for name, s in ev.samples.items():
        train = ev.reference.sensors[name].profile
        if train is None or train.gsd is None:
            continue
        if name == ev.grid_sensor and items and _same(train.gsd, items[0][3]):
            continue  # the grid sensor's own pixels: the map grid's line says it
        items.append((name, s.where(), s.size, train.gsd))
    for sensor, what, size, train in items:
        low, high = train.min_m / f, train.max_m * f
        if low <= size.mean_m <= high:
            continue
        ratio = size.mean_m / (train.max_m if size.mean_m > high else train.min_m)
        yield sensor, (
            f"{what}: pixel size {size.describe()} is {ratio:.2g}x the training's "
            f"{train.describe()} (allowed {low:.3g} to {high:.3g} m, training / {f:g} to "
            f"training x {f:g}): the model's patches would cover {ratio:.2g}x the ground they "
            f"were trained on; resample the raster to about {train.x_m:.3g} x {train.y_m:.3g} "
            f"m, or {ev.reference.fix_allow('resolution')}")


def _same(a: GsdRange, b: GsdRange) -> bool:
    return math.isclose(a.min_m, b.min_m, rel_tol=1e-6) and \
        math.isclose(a.max_m, b.max_m, rel_tol=1e-6)


def _expected_sar(ref: SensorReference) -> Literal["db", "linear"] | None:
    """The units the sensor's files hold: declared, else what training's values say (mostly
    negative: dB; never negative: linear); None when neither tells, or for complex SAR (real
    and imaginary parts are signed by nature; a complex raster on a real input, or the
    reverse, is refused when the raster is opened: `autors.data.complex_sar.check_units`)."""
    if ref.sar_units == "complex":
        return None
    if ref.sar_units is not None:
        return ref.sar_units
    if ref.profile is None:
        return None
    if np.median([b.p50 for b in ref.profile.bands]) < 0:
        return "db"
    if all(b.p1 >= 0 for b in ref.profile.bands):
        return "linear"
    return None


def _sar_units(ev: Evidence) -> Found:
    for name, s in ev.samples.items():
        ref = ev.reference.sensors[name]
        expected = _expected_sar(ref) if ref.kind == "sar" else None
        if expected is None or s.positive is None or s.raw is None:
            continue
        medians = ", ".join(f"{_band(ref, i)} {b.p50:.3g}" for i, b in enumerate(s.raw))
        if ref.sar_units is not None:
            declared = ev.reference.declared(name, "sar_units", ref.sar_units)
        else:
            declared = "its training values were " + (
                "mostly negative (dB)" if expected == "db" else "never negative (linear power)")
        if expected == "db" and s.positive >= DB_POSITIVE_SHARE:
            looks = "linear power" if max(b.p50 for b in s.raw) < 1 else \
                "linear power, amplitude or digital numbers"
            yield name, (
                f"{s.where()}: values look like {looks}, not dB: {s.positive:.0%} of them are "
                f"positive (medians {medians}), while {declared}"
                f"{_training_medians(ref) if ev.reference.context == 'model' else ''}; "
                + ev.reference.fix_units(name, "linear"))
        elif expected == "linear" and 1 - s.positive >= LINEAR_NEGATIVE_SHARE:
            yield name, (
                f"{s.where()}: values look like dB, not linear power: {1 - s.positive:.0%} of "
                f"them are negative (medians {medians}), while {declared}; "
                + ev.reference.fix_units(name, "db"))


def _training_medians(ref: SensorReference) -> str:
    if ref.profile is None:
        return ""
    return ", and its training values had medians " + ", ".join(
        f"{b.p50:.3g}" for b in ref.profile.bands) + " dB"


def _log_ratios(sample: list[BandStats], train: list[BandStats]
                ) -> list[tuple[int, float]]:
    """(band, log10 of sample magnitude / training magnitude) for bands where both are > 0."""
    return [(i, math.log10(s.magnitude / t.magnitude))
            for i, (s, t) in enumerate(zip(sample, train)) if s.magnitude > 0 and t.magnitude > 0]


def _scale(ev: Evidence) -> Found:
    for s, ref, train in _pairs(ev):
        if ref.kind == "sar" and ref.sar_units != "complex":
            continue  # dB is a logarithm: a factor is an offset there (the drift check's)
        # complex SAR: a factor (e.g. a complex int16 SLC's calibration) scales |re| and |im|
        ratios = _log_ratios(s.bands, train.bands)
        if not ratios:
            continue
        k = float(np.median([r for _, r in ratios]))
        if abs(k) < SCALE_LOG10:
            continue
        power = round(k)
        i = min(ratios, key=lambda r: abs(r[1] - k))[0]  # the band closest to the median
        yield ref.name, (
            f"{s.where()}: values are about 10^{power} times those of {ev.reference.basis} "
            f"(median over {len(ratios)} band(s) of log10 of the 1-99 % magnitude ratio = "
            f"{k:+.2f}; {_band(ref, i)}: 1-99 % {_range(s.bands[i])} against "
            f"{_range(train.bands[i])}, read with scale {ref.scale:g}{_offset(ref)})"
            + _scale_hint(ev.reference, ref, power) + "; "
            + _scale_fix(ev.reference, ref, power))


def _offset(ref: SensorReference) -> str:
    return f" and offset {ref.offset:g}" if ref.offset else ""


def _scale_hint(reference: Reference, ref: SensorReference, power: int) -> str:
    if ref.kind not in ("optical", "hyperspectral") or abs(power) not in _REFLECTANCE_CODES:
        return ": a unit or scale mix-up"
    code = _REFLECTANCE_CODES[abs(power)]
    expects = "the model expects" if reference.context == "model" else \
        "the dataset's other scenes hold"
    return (f": the raster looks like reflectance 0-1 where {expects} {code}"
            if power < 0 else f": the raster looks like {code} where {expects} reflectance 0-1")


def _scale_fix(reference: Reference, ref: SensorReference, power: int) -> str:
    if ref.offset:
        return (f"check the raster's units against scale {ref.scale:g} and offset "
                f"{ref.offset:g}, or convert the raster")
    return reference.fix_scale(ref.name, ref.scale * 10.0 ** -power)


def _declared_scale(ev: Evidence) -> Found:
    for name, s in ev.samples.items():
        ref = ev.reference.sensors[name]
        if ref.kind not in ("optical", "hyperspectral") or ref.scale == 1.0 or \
                s.bands is None:
            continue
        mags = [b.magnitude for b in s.bands if b.magnitude > 0]
        if not mags:
            continue
        k = math.log10(float(np.median(mags)) / REFLECTANCE_MAGNITUDE)
        if abs(k) < SCALE_LOG10:
            continue
        power = round(k)
        yield name, (
            f"{s.where()}: read with scale {ref.scale:g}, its values reach "
            f"{float(np.median(mags)):.3g} (median over {len(mags)} band(s) of the 1-99 % "
            f"magnitude), about 10^{power} times reflectance's (~{REFLECTANCE_MAGNITUDE:g}), "
            "while a declared scale turns stored values into reflectance (0-1)"
            + (": the raster looks like reflectance already" if power <= -2 else "")
            + "; if so, " + ev.reference.fix_scale(name, ref.scale * 10.0 ** -power))


def _invalid(ev: Evidence) -> Found:
    for name, s in ev.samples.items():
        train = ev.reference.sensors[name].profile
        if train is None:
            continue
        if s.invalid_fraction - train.invalid_fraction >= INVALID_EXCESS:
            yield name, (
                f"{s.where()}: {s.invalid_fraction:.0%} of the sampled pixels are invalid "
                f"(nodata, NaN, mask or QA) against {train.invalid_fraction:.0%} in "
                f"{ev.reference.basis}: that part rests on the other sensors or is nodata; "
                "check the raster's nodata value and mask")


def _drift(ev: Evidence) -> Found:
    for s, ref, train in _pairs(ev):
        out = [(i, b, t) for i, (b, t) in enumerate(zip(s.bands, train.bands))
               if not t.p1 <= b.p50 <= t.p99]
        if out:
            listed = "; ".join(f"{_band(ref, i)} {b.p50:.3g} (1-99 %: {_range(t)})"
                               for i, b, t in out[:6])
            more = f"; and {len(out) - 6} more" if len(out) > 6 else ""
            yield ref.name, (
                f"{s.where()}: {len(out)} of {len(s.bands)} band median(s) outside the 1-99 % "
                f"range of {ev.reference.basis}: {listed}{more}; the scene differs from it "
                "(place, season, processing): expect lower accuracy")


def _distance(b: BandStats, t: BandStats) -> float:
    """How far a band's percentiles are from a training band's, in its 1-99 % ranges."""
    return (abs(b.p1 - t.p1) + abs(b.p50 - t.p50) + abs(b.p99 - t.p99)) / 3 / t.spread


def _band_order(ev: Evidence) -> Found:
    for s, ref, train in _pairs(ev):
        n = len(s.bands)
        if n < 2 or any(t.spread <= 0 for t in train.bands):
            continue
        swaps = []
        for i in range(n):
            for j in range(i + 1, n):
                given = _distance(s.bands[i], train.bands[i]) + \
                    _distance(s.bands[j], train.bands[j])
                swapped = _distance(s.bands[i], train.bands[j]) + \
                    _distance(s.bands[j], train.bands[i])
                if given / 2 >= SWAP_MIN_OFF and swapped <= SWAP_GAIN * given:
                    swaps.append((swapped / given, i, j, given, swapped))
        for _, i, j, given, swapped in sorted(swaps)[:3]:
            yield ref.name, (
                f"{s.where()}: bands {i + 1} and {j + 1} look swapped: swapped, they are "
                f"{swapped:.2f} from the percentiles of {_band(ref, i)} and {_band(ref, j)} "
                f"in {ev.reference.basis}, against {given:.2f} as given (summed distance in "
                f"their 1-99 % ranges; medians {s.bands[i].p50:.3g}, {s.bands[j].p50:.3g} "
                f"against {train.bands[i].p50:.3g}, {train.bands[j].p50:.3g}); check the "
                "raster's band order")


RULES: tuple[Rule, ...] = (
    Rule("resolution", "error", ("model",),
         "a raster's or the map grid's pixel size, in metres, within training / F to "
         "training x F (F: --resolution-tolerance, 1.5)", _resolution),
    Rule("sar_units", "error", ("model", "task"),
         "SAR values in the expected units: dB mostly negative, linear power positive",
         _sar_units),
    Rule("scale", "error", ("model", "task"),
         "values within a factor 10^1.5 of the training's, or the dataset's typical scene's "
         "(median over the sensor's bands): a unit or scale mix-up otherwise", _scale),
    Rule("declared_scale", "warning", ("task",),
         "optical values after a declared scale look like reflectance (0-1)", _declared_scale),
    Rule("invalid", "warning", ("model", "task"),
         "invalid share at most 50 points above the training's", _invalid),
    Rule("drift", "warning", ("model", "task"),
         "each band's median within the training 1-99 % range", _drift),
    Rule("band_order", "warning", ("model", "task"),
         "no swap of two bands matches the training percentiles much better", _band_order),
)
RULE_NAMES = tuple(r.name for r in RULES)


# ---- the report ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    check: str
    level: Level
    sensor: str  # a sensor name, or 'grid'
    message: str
    allowed: bool = False  # an error turned into a warning (CheckOptions.allow)

    def text(self) -> str:
        allowed = f" [an error, predicted anyway: {_allow_flag(self.check)}]" if self.allowed \
            else ""
        return f"[{self.check}] {self.message}{allowed}"


def _allow_flag(check: str) -> str:
    return "--allow-resolution-change" if check == "resolution" else f"--ignore-check {check}"


@dataclass(frozen=True)
class BandFigures:
    """One band's sampled percentiles and training's (None: no training figures)."""

    band: str
    p1: float
    p50: float
    p99: float
    training_p1: float | None = None
    training_p50: float | None = None
    training_p99: float | None = None

    @property
    def outside(self) -> bool:
        """Its median is outside the training 1-99 % range."""
        return self.training_p1 is not None and \
            not self.training_p1 <= self.p50 <= self.training_p99


@dataclass(frozen=True)
class SensorFigures:
    """One sampled raster's figures next to training's (printed, and a tag of the maps)."""

    sensor: str
    path: str
    pixel_m: float
    training_pixel_m: tuple[float, float] | None  # training min, max
    invalid: float
    training_invalid: float | None
    log10_scale: float | None  # median log10 magnitude ratio (not for SAR)
    bands: list[BandFigures]

    def line(self) -> str:
        parts = [f"pixel {self.pixel_m:.3g} m" + (
            "" if self.training_pixel_m is None else
            f" (training {_span(self.training_pixel_m)} m)")]
        parts.append(f"invalid {self.invalid:.1%}" + (
            "" if self.training_invalid is None else f" (training {self.training_invalid:.1%})"))
        if self.log10_scale is not None:
            parts.append(f"values {10 ** self.log10_scale:.3g}x the training's")
        with_train = [b for b in self.bands if b.training_p50 is not None]
        if with_train and len(self.bands) <= 4:
            parts.append("band medians " + ", ".join(f"{b.p50:.3g}" for b in with_train)
                         + " (training " + ", ".join(f"{b.training_p50:.3g}"
                                                     for b in with_train) + ")")
        elif with_train:
            out = sum(b.outside for b in with_train)
            parts.append(f"{out} of {len(with_train)} band medians outside the training 1-99 %")
        return f"{self.sensor}: " + "; ".join(parts)


def _span(r: tuple[float, float]) -> str:
    return f"{r[0]:.3g}" if math.isclose(r[0], r[1], rel_tol=5e-3) else \
        f"{r[0]:.3g} to {r[1]:.3g}"


@dataclass(frozen=True)
class InputReport:
    """The outcome of the checks of one scene."""

    status: Literal["passed", "warnings", "failed", "skipped"]
    findings: tuple[Finding, ...] = ()
    figures: tuple[SensorFigures, ...] = ()
    skipped: str | None = None  # why the checks did not run
    reference: str = ""  # what the scene was compared with (the card, the task file)
    context: Context = "model"

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error" and not f.allowed]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning" or f.allowed]

    def summary(self) -> str:
        if self.status == "skipped":
            return f"skipped: {self.skipped}"
        if self.status == "failed":
            return f"failed: {len(self.errors)} error(s)"
        if self.warnings:
            return f"{len(self.warnings)} warning(s)"
        return "passed"

    def raise_for_errors(self) -> None:
        """InputMismatchError listing every error (with its fix), if any."""
        if self.errors:
            what = ("the scene's rasters do not look like what the model was trained on "
                    f"({self.reference}); the map would be silently wrong"
                    if self.context == "model" else
                    f"the rasters do not hold what the task declares ({self.reference}); fix "
                    "the task file or the rasters before training")
            raise InputMismatchError(
                what + ":\n"
                + "\n".join(f"  {f.text()}" for f in self.errors))


def skipped_report(why: str) -> InputReport:
    return InputReport(status="skipped", skipped=why)


CARD_PREDATES = ("the model card predates input profiles (no input_profile in model.json); "
                 "re-export the model with this autors to check its inputs")


def evaluate(ev: Evidence) -> InputReport:
    """Run every rule of the context on the evidence."""
    found: list[Finding] = []
    for rule in RULES:
        if ev.reference.context not in rule.contexts:
            continue
        for sensor, message in rule.run(ev):
            allowed = rule.level == "error" and rule.name in ev.options.allow
            found.append(Finding(rule.name, rule.level, sensor, message, allowed))
    failing = {f.sensor for f in found if f.level == "error" and not f.allowed}
    # A sensor with an error: its warnings are consequences of it (drift of 10^4-off values).
    found = [f for f in found if f.level == "error" or f.sensor not in failing]
    status = "failed" if failing else ("warnings" if any(
        f.level == "warning" or f.allowed for f in found) else "passed")
    return InputReport(status=status, findings=tuple(found), figures=tuple(_figures(ev)),
                       reference=ev.reference.where, context=ev.reference.context)


def _figures(ev: Evidence) -> Iterator[SensorFigures]:
    for name, s in ev.samples.items():
        ref = ev.reference.sensors[name]
        train = ref.profile
        bands = [BandFigures(band=ref.bands[i] if i < len(ref.bands) else str(i + 1),
                             p1=b.p1, p50=b.p50, p99=b.p99,
                             **({} if train is None else {
                                 "training_p1": train.bands[i].p1,
                                 "training_p50": train.bands[i].p50,
                                 "training_p99": train.bands[i].p99}))
                 for i, b in enumerate(s.bands or [])]
        ratios = _log_ratios(s.bands, train.bands) \
            if train is not None and s.bands is not None and ref.kind != "sar" else []
        yield SensorFigures(
            sensor=name, path=str(s.path), pixel_m=s.size.mean_m,
            training_pixel_m=None if train is None or train.gsd is None else
            (train.gsd.min_m, train.gsd.max_m),
            invalid=s.invalid_fraction,
            training_invalid=None if train is None else train.invalid_fraction,
            log10_scale=float(np.median([r for _, r in ratios])) if ratios else None,
            bands=bands)


# ---- the two callers ----------------------------------------------------------------------
def check_scene(card: ModelCard, inputs: SceneInputs, options: CheckOptions = CheckOptions(),
                where: str = "model.json input_profile") -> InputReport:
    """Predict: sample each given raster and compare it with the card (see the module
    docstring); the report of a card without a profile says the checks were skipped."""
    reference = card_reference(card, where)
    if reference is None:
        return skipped_report(CARD_PREDATES)
    samples = {name: sample_raster(name, src.spec, src.info, src.indexes, src.mask, src.qa,
                                   options)
               for name, src in inputs.sources.items() if src.dates is None}
    dated = [(name, label, d) for name, src in inputs.sources.items()
             if src.dates is not None and src.labels is not None
             for label, d in zip(src.labels, src.dates) if d is not None]
    parts = [evaluate(Evidence(reference, samples, pixel_size(inputs.grid),
                               inputs.grid_sensor, options))] if samples else []
    # A time series: each given date's raster on its own, against the sensor's profile (its
    # figures pool the training dates: a date's units, scale and bands must fit them too)
    for name, label, d in dated:
        sample = sample_raster(name, inputs.sources[name].spec, d.info, d.bands, d.mask, d.qa,
                               options, d.mask_band)
        grid = pixel_size(inputs.grid) if not parts else None
        report = evaluate(Evidence(reference, {name: sample}, grid, inputs.grid_sensor,
                                   options))
        parts.append(_dated(report, name, label))
    return merge_reports(parts)


def _dated(report: InputReport, name: str, label: str) -> InputReport:
    """`report` of one date of time series `name`: its findings and figures say the date."""
    return dataclasses.replace(
        report,
        findings=tuple(dataclasses.replace(f, message=f"date {label}: {f.message}")
                       if f.sensor == name else f for f in report.findings),
        figures=tuple(dataclasses.replace(f, sensor=f"{f.sensor} {label}")
                      for f in report.figures))


def merge_reports(parts: list[InputReport]) -> InputReport:
    """One report of several passes over a scene (a time series' dates)."""
    found = tuple(f for r in parts for f in r.findings)
    status = "failed" if any(r.status == "failed" for r in parts) else (
        "warnings" if any(r.status == "warnings" for r in parts) else "passed")
    return InputReport(status=status, findings=found,
                       figures=tuple(f for r in parts for f in r.figures),
                       reference=parts[0].reference, context=parts[0].context)


def check_task(task: TaskSpec, index: DatasetIndex, options: CheckOptions = CheckOptions()
               ) -> list[tuple[str, InputReport]]:
    """Validate: every scene of the index against the task's declarations and, in a dataset
    of several scenes, against the dataset's typical scene (`task_reference`); (scene id,
    report) in scene order. Reads a few windows per scene and sensor, keeps only their
    percentiles."""
    samples = []
    for entry in index.scenes:
        samples.append({name: sample_raster(name, task.sensors[name], info, entry.bands[name],
                                            entry.masks.get(name), entry.qa.get(name), options)
                        for name, info in entry.rasters.items()})
    reference = task_reference(task, index.band_names, samples)
    return [(entry.id, evaluate(Evidence(reference, scene, None, None, options)))
            for entry, scene in zip(index.scenes, samples)]


# ---- tags of the output files -------------------------------------------------------------
@dataclass(frozen=True)
class MapProvenance:
    """What a map rests on: the model card's hash, the rasters given and how they were read."""

    card_sha256: str
    inputs: dict[str, Path]
    masks: dict[str, Path] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)  # read overrides, 's2 scale=1'


def check_tags(report: InputReport, provenance: MapProvenance) -> dict[str, str]:
    """GeoTIFF tags of a map: `model_card_sha256`, `input_<sensor>` and `mask_<sensor>` (the
    paths), `read_overrides`, `input_checks` (passed, N warning(s), skipped: why),
    `input_warning_<i>` (each warning), `input_check_figures` (JSON: per sensor, the sampled
    figures next to training's)."""
    tags = {"model_card_sha256": provenance.card_sha256,
            "input_checks": report.summary()}
    tags |= {f"input_{n}": str(Path(p).resolve()) for n, p in provenance.inputs.items()}
    tags |= {f"mask_{n}": str(Path(p).resolve()) for n, p in provenance.masks.items()}
    if provenance.reads:
        tags["read_overrides"] = "; ".join(provenance.reads)
    for i, f in enumerate(report.warnings, start=1):
        tags[f"input_warning_{i}"] = f.text()
    if report.figures:
        tags["input_check_figures"] = json.dumps(
            [_rounded(asdict(f)) for f in report.figures], separators=(",", ":"))
    return tags


def _rounded(value: object) -> object:
    """Figures to 4 significant digits (tags stay readable)."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def check_prediction(model_dir: Path, card: ModelCard, inputs: SceneInputs,
                     sensors: dict[str, Path], masks: dict[str, Path] | None,
                     reads: tuple[ReadOverride, ...], options: CheckOptions | None
                     ) -> tuple[InputReport, dict[str, str]]:
    """`predict_scene`'s hook, before any window is predicted: the checks of the scene
    (raising InputMismatchError on an error) and the tags of its maps."""
    card_file = Path(model_dir) / CARD_FILE
    report = check_scene(card, inputs, options or CheckOptions(),
                         where=f"{card_file} input_profile")
    report.raise_for_errors()
    provenance = MapProvenance(
        card_sha256=file_sha256(card_file),
        inputs={n: Path(sensors[n]) for n in inputs.given},
        masks={n: Path(p) for n, p in (masks or {}).items() if n in inputs.given},
        reads=[r.describe() for r in reads])
    return report, check_tags(report, provenance)
