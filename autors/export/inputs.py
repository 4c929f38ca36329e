"""The rasters given to `autors predict`: checked against the model card, aligned on one grid,
and read window by window with the training pipeline's reader (autors.data).

Any non-empty subset of the model's inputs may be given; a sensor not given is absent, as a
sensor missing from a training scene is: values 0 and validity mask 0 everywhere. Each given
sensor's validity is what training computed: nodata / NaN, its mask raster (`--mask
NAME=PATH`, read with the card's `invalid_values`) and its QA rule (a band of its own raster,
named in the card), so the model sees exactly the masks it was trained and tested with.

The reference grid is a given sensor's own pixel grid (`grid=` names it; default: the task's
grid sensor when given, else the given sensor with the finest pixels), cropped to the area
every given sensor covers. Other sensors are read onto it exactly as in training (window read
on the same pixel lattice, else bilinear warp; masks and QA bands nearest). Pixels outside the
grid are zero and invalid, as the training datasets zero-pad at the scene border.

A time-series input (the card's sensor has `dates`) is given as one path holding `{date}`
(YYYY-MM-DD), expanded with the card's dates; each date's raster is checked as a sensor's
raster is and read with the training's series reader (`autors.data.timeseries.read_series`:
each date its own nodata / QA rule). A date whose file does not exist is invalid everywhere
(a note says so), as a date a training scene did not acquire; at least one must exist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from rasterio.windows import Window

from autors.config import SensorSpec
from autors.data import Grid, NormStats
from autors.data.complex_sar import check_units
from autors.data.grid import crop_to_overlap, footprint_in
from autors.data.masks import mask_header, rule_validity, sensor_bands
from autors.data.raster import RasterInfo, inspect, is_complex, resolve_bands
from autors.data.scene import load_sensor
from autors.data.timeseries import DateRaster, any_date, read_series
from autors.errors import DataError, RasterError
from autors.export.card import ModelCard, SensorCard


@dataclass(frozen=True)
class SensorSource:
    """One given raster, resolved against the sensor it feeds."""

    card: SensorCard
    spec: SensorSpec  # the training sensor entry, with this raster's (and mask's) path
    info: RasterInfo
    indexes: list[int]  # 1-based bands read, in model channel order
    mask: RasterInfo | None  # the mask raster's header (sensors with a mask rule)
    qa: int | None  # 1-based index of the QA band (sensors with a QA rule)
    note: str  # why the raster's band names differ from training's ('' when they match)
    # a time series: each card date's raster (None: not given, invalid everywhere); the
    # fields above are those of its first given date
    dates: list[DateRaster | None] | None = None
    missing: str = ""  # a time series' dates without a raster, said as a note


@dataclass
class SceneInputs:
    """The model's inputs on one reference grid, readable by window."""

    grid: Grid
    grid_sensor: str
    sources: dict[str, SensorSource]  # the given used sensors, model input order
    channels: dict[str, int]  # bands of every used sensor, model input order (x T dates)
    stats: NormStats
    ignored: list[str]  # given sensors the model does not use
    required: list[str]  # given sensors `require_sensors` needs valid for a labelled pixel
    steps: dict[str, int] | None = None  # time-series sensors: their date count T

    @property
    def given(self) -> list[str]:
        """The used sensors given, input order."""
        return list(self.sources)

    @property
    def absent(self) -> list[str]:
        """The used sensors not given (values and masks 0 everywhere), input order."""
        return [n for n in self.channels if n not in self.sources]

    @property
    def notes(self) -> list[str]:
        """Things the user should check (band names differing from training), not errors."""
        return [n for s in self.sources.values() for n in (s.note, s.missing) if n]

    def read(self, row: int, col: int, height: int, width: int
             ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Normalised inputs {sensor: float32 [C, height, width]} of the grid window starting
        at (row, col), which may reach past the grid, and validity {sensor: bool [height,
        width]}, both for every used sensor. Invalid, absent or outside pixels are 0 in the
        inputs and False in the validity. A time series: values [T * C, height, width] date
        by date and validity [T, height, width] per date."""
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + height, self.grid.height), min(col + width, self.grid.width)
        steps = self.steps or {}
        arrays = {n: np.zeros((c, height, width), np.float32) for n, c in self.channels.items()}
        valid = {n: np.zeros(((steps[n],) if n in steps else ()) + (height, width), bool)
                 for n in self.channels}
        if r1 <= r0 or c1 <= c0:
            return arrays, valid
        sub = self.grid.sub(Window(c0, r0, c1 - c0, r1 - r0))
        inside = (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))
        for name, src in self.sources.items():
            if src.dates is not None:  # the training's series reader: [T * C, h, w], [T, h, w]
                stack, ok = read_series(src.spec, sub, src.dates, src.card.in_channels)
            else:  # the training reader on the window's grid: [C, h, w], valid [h, w]
                stack, ok = load_sensor(src.spec, sub, src.info, src.indexes)
                rule = rule_validity(src.spec, sub, src.info, src.mask, src.qa)
                if rule is not None:
                    ok &= rule
            arrays[name][(slice(None), *inside)] = self.stats.apply({name: stack},
                                                                    {name: ok})[name]
            valid[name][(slice(None),) * (ok.ndim - 2) + inside] = ok
        return arrays, valid

    def labelled(self, valid: dict[str, np.ndarray]) -> np.ndarray:
        """Bool [h, w]: pixels the map labels (see `ModelCard.require_sensors`): a given
        sensor is valid there, and so is every given sensor the rule requires."""
        out = np.logical_or.reduce([any_date(valid[n]) for n in self.sources])
        for name in self.required:
            out &= any_date(valid[name])
        return out

    def valid_count(self, valid: dict[str, np.ndarray]) -> np.ndarray:
        """Int [h, w]: how many of the given sensors are valid at each pixel."""
        return np.sum([any_date(valid[n]) for n in self.sources], axis=0, dtype=np.int64)


@dataclass(frozen=True)
class ReadOverride:
    """How one scene's raster of `sensor` stores its values when it differs from training
    (`--scale NAME=FACTOR`, `--sar-units NAME=db|linear`): replaces the card's read scale or
    SAR units for it, so the model still gets the training's units."""

    sensor: str
    scale: float | None = None
    sar_units: Literal["db", "linear"] | None = None

    def describe(self) -> str:
        parts = ([f"scale={self.scale:g}"] if self.scale is not None else []) + \
            ([f"sar_units={self.sar_units}"] if self.sar_units is not None else [])
        return f"{self.sensor} {' '.join(parts)}"


def apply_reads(card: ModelCard, reads: tuple[ReadOverride, ...] | list[ReadOverride]
                ) -> ModelCard:
    """The card with `reads` applied to its sensors' read specs (the file on disk is
    unchanged). Raises DataError for an unknown or unused sensor, SAR units on another kind,
    or a scale that is zero or not finite."""
    if not reads:
        return card
    by_name = {s.name: s for s in card.sensors}
    updates: dict[str, dict] = {}
    for r in reads:
        flag = "--scale" if r.scale is not None else "--sar-units"
        sensor = by_name.get(r.sensor)
        if sensor is None or not sensor.used:
            raise DataError(f"{flag} {r.sensor}: the model has no input '{r.sensor}'; its "
                            f"inputs are {_describe(card.used_sensors)}")
        if r.sar_units is not None and sensor.read.sar_units == "complex":
            raise DataError(f"--sar-units {r.sensor}: '{r.sensor}' is a complex SAR input "
                            "(real/imaginary pairs, never converted); give its complex raster")
        if r.sar_units is not None and sensor.kind != "sar":
            raise DataError(f"--sar-units {r.sensor}: '{r.sensor}' is a {sensor.kind} sensor; "
                            "SAR units apply to kind sar only")
        if r.scale is not None and not (math.isfinite(r.scale) and r.scale != 0):
            raise DataError(f"--scale {r.sensor}={r.scale:g}: give a finite, non-zero factor "
                            "(physical value = raster value x FACTOR)")
        update = updates.setdefault(r.sensor, {})
        for key in ("scale", "sar_units"):
            value = getattr(r, key)
            if value is None:
                continue
            if key in update:
                raise DataError(f"{flag} {r.sensor} is given twice")
            update[key] = value
    sensors = [s.model_copy(update={"read": s.read.model_copy(update=updates[s.name])})
               if s.name in updates else s for s in card.sensors]
    return card.model_copy(update={"sensors": sensors})


def check_given(card: ModelCard, sensors: list[str], masks: list[str],
                sensor_flag: str = "--sensor", mask_flag: str = "--mask") -> None:
    """The sensor and mask names given (`sensor_flag` / `mask_flag`) fit the model: known
    sensors, at least one model input, a mask exactly for each given input whose card has a
    mask rule. Raises DataError naming the flag and the fix."""
    known = [s.name for s in card.sensors]
    for flag, names in ((sensor_flag, sensors), (mask_flag, masks)):
        unknown = [n for n in names if n not in known]
        if unknown:
            raise DataError(
                f"{flag} {unknown[0]}: the model has no sensor '{unknown[0]}'; its sensors are "
                f"{_describe(card.used_sensors)}: remove {flag} {unknown[0]}=... or name one "
                "of these"
            )
    used = [s for s in card.used_sensors if s.name in sensors]
    if not used:
        given = (f"only {', '.join(sensors)}, which the model does not use (branch 'off'); "
                 if sensors else "no sensor; ")
        raise DataError(
            f"{sensor_flag}: {given}give at least one of the model's inputs: "
            + "; ".join(f"{sensor_flag} {s.name}=PATH ({s.kind}, {s.in_channels} band(s): "
                        f"{_bands(s)})" for s in card.used_sensors)
        )
    for name in masks:
        if name not in sensors:
            raise DataError(f"{mask_flag} {name}: no {sensor_flag} {name} is given, so there is "
                            f"nothing to mask; give {sensor_flag} {name}=PATH too, or remove "
                            f"{mask_flag} {name}")
        rule = card.sensor(name).read.mask
        if card.sensor(name).used and rule is None:
            raise DataError(
                f"{mask_flag} {name}: the model's '{name}' input was trained without a mask "
                f"raster (model.json: sensors '{name}' read.mask is null), so it has no rule "
                f"to apply one with; remove {mask_flag} {name}"
            )
    for s in used:
        if s.read.mask is not None and s.name not in masks:
            raise DataError(
                f"{mask_flag} {s.name}=PATH is missing: the model's '{s.name}' input was "
                f"trained with a mask raster (values {_values(s.read.mask.invalid_values)} "
                f"invalid); give this scene's mask with {mask_flag} {s.name}=PATH (a raster "
                "without those values masks nothing)"
            )


def open_inputs(card: ModelCard, paths: dict[str, Path], grid: str | None = None,
                masks: dict[str, Path] | None = None) -> SceneInputs:
    """Check `paths` ({sensor: raster}, any non-empty subset of the model's inputs) and
    `masks` ({sensor: mask raster}) against the card and build the reference grid.

    Raises DataError for unknown sensors, no model input, masks that do not fit the card's
    rules and rasters that do not overlap; RasterError for an unreadable raster or one without
    the model's bands or QA band.
    """
    masks = dict(masks or {})
    check_given(card, list(paths), list(masks))
    sources = {s.name: (_series(s, Path(paths[s.name])) if s.dates is not None else
                        _source(s, Path(paths[s.name]), masks.get(s.name)))
               for s in card.used_sensors if s.name in paths}
    ref = grid if grid is not None else default_grid_sensor(card, sources)
    if ref not in sources:
        raise DataError(f"--grid {ref}: not a sensor given and used by the model; choose one "
                        f"of {list(sources)}")
    scene_grid = crop_to_overlap(
        Grid.of(sources[ref].info),
        {f"sensor '{n}'" + ("" if d is None else f" date {d}"): info
         for n, s in sources.items() for d, info in _headers(s)},
    )
    stats = NormStats(mean={s.name: s.mean for s in card.used_sensors},
                      std={s.name: s.std for s in card.used_sensors})
    return SceneInputs(grid=scene_grid, grid_sensor=ref, sources=sources,
                       channels={s.name: s.in_channels * (s.steps or 1)
                                 for s in card.used_sensors},
                       steps={s.name: s.steps for s in card.used_sensors
                              if s.steps is not None},
                       stats=stats, ignored=[n for n in paths if not card.sensor(n).used],
                       required=card.required(list(sources)))


def default_grid_sensor(card: ModelCard, sources: dict[str, SensorSource]) -> str:
    """The task's grid sensor when given, else the given sensor with the smallest pixels
    (compared in the first sensor's CRS; the first one wins a tie)."""
    if card.task.grid in sources:
        return card.task.grid
    crs = next(iter(sources.values())).info.crs

    def pixel_area(src: SensorSource) -> float:
        left, bottom, right, top = footprint_in(src.info, crs)
        return (right - left) * (top - bottom) / (src.info.width * src.info.height)

    return min(sources, key=lambda n: pixel_area(sources[n]))


def _source(card: SensorCard, path: Path, mask: Path | None) -> SensorSource:
    where = f"--sensor {card.name}={path}"
    try:
        info = inspect(path)  # RasterError naming the file when unreadable or not georeferenced
    except RasterError as err:
        raise RasterError(f"{where}: {err}") from None
    spec = card.sensor_spec(path, mask)
    try:  # a complex raster for a real input, or a real one for a complex input: never cast
        check_units(card.name, spec, info)
    except RasterError as err:
        raise RasterError(f"{where}: the model's '{card.name}' input was trained with "
                          f"sar_units {spec.sar_units or 'not set'}: {err}") from None
    qa = None if spec.qa is None else _qa_band(card, info, where)
    # a complex raster's band is two input channels (real, imaginary)
    expected = (card.in_channels // (2 if is_complex(info.dtype) else 1)) + (qa is not None)
    if spec.bands is None and spec.complex_pairs is None and info.count != expected:
        raise RasterError(
            f"{where}: the raster has {info.count} band(s) but the model's '{card.name}' input "
            f"takes {expected - (qa is not None)} ({_bands(card)})"
            + (f" plus its QA band {spec.qa.band!r}" if qa is not None else "")
            + "; give a raster with exactly these bands"
        )
    try:
        indexes, names = sensor_bands(card.name, spec, info)
    except RasterError as err:
        raise RasterError(
            f"{where}: the model reads bands {spec.bands} of this sensor, which the raster "
            f"does not have ({err})"
        ) from None
    note = ""
    if names != card.bands:
        # Not an error: names are descriptions, which tools write differently; the count fits.
        note = (f"{where}: band names {_short(names)} differ from the training raster's "
                f"{_short(card.bands)}; check that the bands are the same and in this order")
    return SensorSource(card=card, spec=spec, info=info, indexes=indexes,
                        mask=None if mask is None else _mask(card, mask, info), qa=qa,
                        note=note)


DATE_FIELD = "{date}"  # in a time series' path: each card date as YYYY-MM-DD


def _series(card: SensorCard, template: Path) -> SensorSource:
    """A time-series input: `template` (holding {date}) expanded with the card's dates, each
    date's raster checked as `_source` checks a sensor's; dates without a file are missing."""
    assert card.dates is not None
    where = f"--sensor {card.name}={template}"
    if DATE_FIELD not in str(template):
        raise DataError(f"{where}: the model's '{card.name}' input is a time series of "
                        f"{len(card.dates)} dates ({card.dates[0].date} .. "
                        f"{card.dates[-1].date}); give one path holding {DATE_FIELD} "
                        f"(YYYY-MM-DD), e.g. {card.name}_{DATE_FIELD}.tif")
    if card.read.mask is not None:
        raise DataError(f"{where}: the model's '{card.name}' time series was trained with a "
                        "mask raster; mask rasters per date are not supported yet")
    files = [Path(str(template).replace(DATE_FIELD, d.date.isoformat())) for d in card.dates]
    given = [(d, _source(card, f, None)) for d, f in zip(card.dates, files) if f.exists()]
    if not given:
        raise DataError(f"{where}: none of the {len(files)} dates' rasters exists (e.g. "
                        f"{files[0]}); give the folder holding them")
    by_date = {d.date: src for d, src in given}
    first = given[0][1]
    dates = [None if d.date not in by_date else
             DateRaster(by_date[d.date].info, by_date[d.date].indexes, by_date[d.date].qa)
             for d in card.dates]
    lacking = [d.date.isoformat() for d in card.dates if d.date not in by_date]
    missing = "" if not lacking else (
        f"{where}: no raster for date(s) {', '.join(lacking)} (of {len(files)}): those dates "
        "are invalid everywhere, as a date a training scene did not acquire")
    notes = sorted({src.note for _, src in given if src.note})
    return SensorSource(card=card, spec=first.spec, info=first.info, indexes=first.indexes,
                        mask=None, qa=first.qa, note="; ".join(notes), dates=dates,
                        missing=missing)


def _headers(src: SensorSource) -> list[tuple[str | None, RasterInfo]]:
    """The rasters a source reads, by date (None: a single-date sensor)."""
    if src.dates is None or src.card.dates is None:
        return [(None, src.info)]
    return [(c.date.isoformat(), d.info) for c, d in zip(src.card.dates, src.dates)
            if d is not None]


def _qa_band(card: SensorCard, info: RasterInfo, where: str) -> int:
    """1-based index of the sensor's QA band in the given raster (by the card's name or
    index, as training found it)."""
    rule = card.read.qa
    try:
        return resolve_bands(info, [rule.band])[0][0]
    except RasterError:
        what = (f"values {_values(rule.invalid_values)}" if rule.invalid_values is not None
                else f"bits {_values(rule.invalid_bits)}")
        raise RasterError(
            f"{where}: the model's '{card.name}' input was trained with the QA rule of band "
            f"{rule.band!r} ({what} invalid), which this raster lacks (its bands: "
            f"{info.available_bands()}); give the raster with its QA band, as in training"
        ) from None


def _mask(card: SensorCard, path: Path, info: RasterInfo) -> RasterInfo:
    """The mask raster's header, checked to overlap its sensor's raster."""
    where = f"--mask {card.name}={path}"
    try:
        return mask_header(card.name, path, Grid.of(info))
    except (DataError, RasterError) as err:
        raise type(err)(f"{where}: {err}") from None


def _bands(card: SensorCard) -> str:
    return _short(card.bands)


def _short(names: list[str]) -> str:
    return ", ".join(names if len(names) <= 6 else names[:5] + ["..."])


def _values(values: list) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _describe(sensors: list[SensorCard]) -> str:
    return ", ".join(f"{s.name} ({s.kind}, {s.in_channels} bands)" for s in sensors)
