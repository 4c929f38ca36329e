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

A time-series input (the card's sensor has `dates`, or `dates_per_scene`) is given as one
path holding `{date}` (YYYY-MM-DD), expanded with the card's dates (dates per scene: the files
it matches), or as a CSV listing the dated rasters (columns date, path, and mask for a model
trained with mask rasters); each date's raster is checked as a sensor's raster is and read
with the training's series reader (`autors.data.timeseries.read_series`: each date its own
nodata / QA rule / mask raster). A date whose file does not exist is invalid everywhere (a
note says so), as a date a training scene did not acquire; at least one must exist. A model
trained on dates per scene takes up to T dates, their day of year from each date, padded.
"""

from __future__ import annotations

import csv
import datetime
import itertools
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
from autors.data.scenes import found_dates
from autors.data.timeseries import DateRaster, any_date, group_qa, read_series, series_bands
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
    doys: list[int] | None = None  # a time series: day of year of each of its T dates
    labels: list[str] | None = None  # a time series: YYYY-MM-DD of each given date


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
    def doys(self) -> dict[str, list[int]]:
        """Every used time series' day of year per date (the model's `<s>__doy`): the given
        dates' (padded with 0), or the card's dates for one not given."""
        out = {}
        for name, t in (self.steps or {}).items():
            src = self.sources.get(name)
            out[name] = src.doys if src is not None and src.doys is not None else [0] * t
        return out

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
    for s in used:  # (a time series' masks may come from its CSV: checked by `_series`)
        if s.read.mask is not None and s.name not in masks and s.steps is None:
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
    sources = {s.name: (_series(s, Path(paths[s.name]), masks.get(s.name))
                        if s.steps is not None else
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


DATE_FIELD = "{date}"  # in a time series' path: each date as YYYY-MM-DD
CSV_COLUMNS = ("date", "path", "mask")  # a CSV listing a time series' rasters (mask optional)


def dated_files(card: SensorCard, given: Path, mask: Path | None
                ) -> list[tuple[datetime.date, Path, Path | None]]:
    """(date, raster, mask raster) of each date given for the time series `card`: a CSV
    (columns date, path and, with a mask rule, mask; relative paths from the CSV's folder),
    or a path holding {date} expanded with the card's dates (dates per scene: the files it
    matches), the mask path likewise. Increasing dates; a file may not exist (checked by the
    caller)."""
    where = f"--sensor {card.name}={given}"
    if given.suffix.lower() == ".csv":
        rows = _csv_rows(given, where)
    elif DATE_FIELD in str(given):
        days = [d.date for d in card.dates] if card.dates is not None else found_dates(given)
        rows = [(d, Path(str(given).replace(DATE_FIELD, d.isoformat())), None) for d in days]
    else:
        what = (f"{len(card.dates)} dates ({card.dates[0].date} .. {card.dates[-1].date})"
                if card.dates is not None else f"up to {card.steps} dates of its own per scene")
        raise DataError(f"{where}: the model's '{card.name}' input is a time series of {what}; "
                        f"give one path holding {DATE_FIELD} (YYYY-MM-DD), e.g. "
                        f"{card.name}_{DATE_FIELD}.tif, or a CSV with columns date,path")
    if mask is not None:
        if DATE_FIELD not in str(mask):
            raise DataError(f"--mask {card.name}={mask}: a time series' mask is one raster per "
                            f"date: give a path holding {DATE_FIELD}, or a CSV column 'mask'")
        rows = [(d, p, Path(str(mask).replace(DATE_FIELD, d.isoformat()))) for d, p, _ in rows]
    return rows


def _csv_rows(path: Path, where: str) -> list[tuple[datetime.date, Path, Path | None]]:
    """The rows of a CSV listing dated rasters (see `dated_files`)."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in reader]
    except OSError as err:
        raise DataError(f"{where}: cannot read the CSV ({err.strerror})") from None
    if "date" not in header or "path" not in header or set(header) - set(CSV_COLUMNS):
        raise DataError(f"{where}: the CSV's header is {header}; it needs the columns date, "
                        "path (and mask, for a model trained with mask rasters), no others")
    out = []
    for i, r in enumerate(rows, start=2):
        try:
            day = datetime.date.fromisoformat(r["date"])
        except ValueError:
            raise DataError(f"{path}, line {i}: date {r['date']!r} is not YYYY-MM-DD") from None
        if not r["path"]:
            raise DataError(f"{path}, line {i}: no path for date {day}")
        mask = r.get("mask") or None
        out.append((day, path.parent / r["path"], None if mask is None else
                    path.parent / mask))
    days = [d for d, _, _ in out]
    if not out or any(b <= a for a, b in itertools.pairwise(days)):
        raise DataError(f"{path}: the dates must be listed once each, in increasing order "
                        f"(got {[d.isoformat() for d in days]})")
    return out


def _series(card: SensorCard, given: Path, mask: Path | None) -> SensorSource:
    """A time-series input (see `dated_files`): each date's raster checked as `_source` checks
    a sensor's; dates without a file are missing (invalid everywhere, a note); with the
    card's own dates every given date must be one of them, with dates per scene at most T
    are given (their day of year from the date, the rest padded)."""
    assert card.steps is not None
    where = f"--sensor {card.name}={given}"
    if card.read.bands_per_date is not None and given.suffix.lower() != ".csv" \
            and DATE_FIELD not in str(given):
        return _grouped(card, given, mask)
    rows = dated_files(card, given, mask)
    if card.read.mask is not None and any(m is None for _, _, m in rows):
        raise DataError(f"{where}: the model's '{card.name}' time series was trained with a "
                        f"mask raster per date; give them with --mask {card.name}=PATH "
                        f"holding {DATE_FIELD}, or a CSV column 'mask'")
    if card.dates is not None:
        known = {d.date for d in card.dates}
        extra = [d.isoformat() for d, _, _ in rows if d not in known]
        if extra:
            raise DataError(f"{where}: date(s) {', '.join(extra[:5])} are not among the "
                            f"model's {len(card.dates)} dates ({card.dates[0].date} .. "
                            f"{card.dates[-1].date}); the model reads its own dates only")
        days = [d.date for d in card.dates]
    else:
        days = [d for d, _, _ in rows]
        if len(days) > card.steps:
            raise DataError(f"{where}: {len(days)} dates given ({days[0]} .. {days[-1]}), the "
                            f"model takes at most {card.steps} (dates per scene); give fewer")
    given_rows = {d: (p, m) for d, p, m in rows if p.exists()}
    if not given_rows:
        first = rows[0][1] if rows else given
        raise DataError(f"{where}: none of the {len(rows)} dates' rasters exists (e.g. "
                        f"{first}); give the folder holding them")
    by_date = {}
    for d, (p, m) in given_rows.items():
        try:
            by_date[d] = _source(card, p, m)
        except (DataError, RasterError) as err:
            raise type(err)(f"{where}, date {d.isoformat()}: {err}") from None
    first = next(iter(by_date.values()))
    dates = [None if d not in by_date else
             DateRaster(by_date[d].info, by_date[d].indexes, by_date[d].qa, by_date[d].mask)
             for d in days]
    lacking = [d.isoformat() for d in days if d not in by_date]
    missing = "" if not lacking else (
        f"{where}: no raster for date(s) {', '.join(lacking)} (of {len(days)}): those dates "
        "are invalid everywhere, as a date a training scene did not acquire")
    pad = card.steps - len(days)
    notes = sorted({src.note for src in by_date.values() if src.note})
    return SensorSource(card=card, spec=first.spec, info=first.info, indexes=first.indexes,
                        mask=None, qa=first.qa, note="; ".join(notes),
                        dates=dates + [None] * pad, missing=missing,
                        doys=[d.timetuple().tm_yday for d in days] + [0] * pad,
                        labels=[d.isoformat() for d in days])


def _grouped(card: SensorCard, path: Path, mask: Path | None) -> SensorSource:
    """A time series given as band groups of one file (`read.bands_per_date`), its dates the
    card's; the mask raster (a mask rule) holds a band per date."""
    where = f"--sensor {card.name}={path}"
    if card.dates is None:
        raise DataError(f"{where}: the model's '{card.name}' input had each scene's own dates "
                        "in band groups; one file does not say its dates: give a CSV with "
                        "columns date,path listing one raster per date")
    if card.read.mask is not None and mask is None:
        raise DataError(f"{where}: the model's '{card.name}' time series was trained with a "
                        f"mask raster; give it with --mask {card.name}=PATH (a band per date)")
    try:
        info = inspect(path)
    except RasterError as err:
        raise RasterError(f"{where}: {err}") from None
    spec = card.sensor_spec(path, mask)
    grouped = SensorSpec(kind=card.kind, path=path, dates=[d.date for d in card.dates],
                         bands_per_date=card.read.bands_per_date,
                         **card.read.model_dump(exclude={"mask", "qa", "bands_per_date"}),
                         qa=card.read.qa)
    n = len(card.dates)
    mask_info = None if mask is None else _mask(card, mask, info)
    if mask_info is not None and mask_info.count != n:
        raise DataError(f"--mask {card.name}={mask}: {mask_info.count} band(s); band groups "
                        f"take a mask band per date ({n})")
    dates = []
    try:
        for t, d in enumerate(card.dates):
            indexes, _ = series_bands(card.name, grouped, info, t, n)
            if len(indexes) != card.in_channels:
                raise RasterError(f"date {d.date}: {len(indexes)} band(s), the model's "
                                  f"'{card.name}' input takes {card.in_channels} per date")
            qa = None if card.read.qa is None else \
                t * card.read.bands_per_date + group_qa(card.name, grouped)
            dates.append(DateRaster(info, indexes, qa, mask_info, t + 1))
    except RasterError as err:
        raise RasterError(f"{where}: {err}") from None
    return SensorSource(card=card, spec=spec, info=info, indexes=dates[0].bands, mask=None,
                        qa=dates[0].qa, note="", dates=dates, doys=[d.doy for d in card.dates],
                        labels=[d.date.isoformat() for d in card.dates])


def _headers(src: SensorSource) -> list[tuple[str | None, RasterInfo]]:
    """The rasters a source reads, by date (None: a single-date sensor)."""
    if src.dates is None or src.labels is None:
        return [(None, src.info)]
    return [(label, d.info) for label, d in zip(src.labels, src.dates) if d is not None]


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
