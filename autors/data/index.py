"""The dataset index: what every scene holds, built once by reading each scene by blocks.

    index = build_index(task)      # headers, grids, labels, validity, splits, statistics

Per scene it keeps the reference grid, the raster headers, and one compressed int16 map of
split and class per pixel (`code = split * K + class`, -1 = not used). That is a few kB to a
few MB for hundreds of scenes: the index is what travels to loader workers and through Ray's
object store, never the pixels. Samples are addressed by a global id per split: scenes in
order, labelled pixels (or tiles) of a scene in row-major order.

Pixels are read by `read_block` (one window of one scene, every sensor, physical values):
the index pass, the normalisation sample, the streamed reader and the in-memory arrays all
read through it, so the streamed and in-memory paths see bit-identical inputs.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field

import numpy as np
from rasterio.windows import Window

from autors.config import SensorSpec, TaskSpec
from autors.data.grid import Grid, crop_to_overlap
from autors.data.labels import TargetInfo, read_labels, read_target
from autors.data.masks import mask_header, qa_band, rule_validity, sensor_bands
from autors.data.normalize import NormStats, pair_scales
from autors.data.profile import InputProfile, ProfileSampler, gsd_range, pixel_size
from autors.data.raster import RasterInfo, inspect
from autors.data.scene import Scene, check_disjoint, load_sensor
from autors.data.scenes import SPLIT_NAMES, SceneFiles, list_scenes, scene_splits, scenes_digest
from autors.data.splits import box_any, split_scene
from autors.data.timeseries import DateRaster, any_date, date_rasters, read_series, series_bands
from autors.errors import DataError, RasterError


@dataclass
class SceneEntry:
    """One scene in the index: files, grid, headers and the compressed split/class map."""

    files: SceneFiles
    grid: Grid
    rasters: dict[str, RasterInfo]  # sensor -> header (a sensor absent from the scene: none)
    bands: dict[str, list[int]]  # sensor -> 1-based band indexes read
    codes_z: bytes  # zlib of int16 [H, W]: split * K + class, -1 = not used
    counts: dict[str, list[int]]  # split -> labelled pixels per class
    tiles: dict[str, np.ndarray] = field(default_factory=dict)  # split -> int32 [N, 2] origins
    dropped_invalid: int = 0  # labelled pixels where a sensor is invalid
    dropped_buffer: int = 0  # training pixels within the split buffer of a held-out pixel
    leakage: dict[str, list[int]] = field(default_factory=dict)  # split -> [pixels, touching]
    masks: dict[str, RasterInfo] = field(default_factory=dict)  # sensor -> mask raster header
    qa: dict[str, int] = field(default_factory=dict)  # sensor -> its QA band's index
    sensor_valid: dict[str, float] = field(default_factory=dict)  # fraction of valid pixels
    # a task with `targets`: zlib of float32 [T, H, W], every target's value (class index or
    # physical value) at the scene's used pixels, NaN where it has none
    targets_z: bytes = b""
    # a time-series sensor -> each date's raster (None: not acquired in this scene, or a
    # padded date), T of them
    dates: dict[str, list[DateRaster | None]] = field(default_factory=dict)
    # every time-series sensor of the task -> T (also where the scene lacks the sensor)
    steps: dict[str, int] = field(default_factory=dict)
    # a time-series sensor -> the day of year of each of its T dates here (padded: 0)
    doys: dict[str, list[int]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.files.id

    def codes(self) -> np.ndarray:
        return np.frombuffer(zlib.decompress(self.codes_z), np.int16).reshape(self.grid.shape)

    def labels(self, split: str, k: int) -> np.ndarray:
        """Class index per pixel of `split` (int16 [H, W], -1 elsewhere)."""
        codes = self.codes()
        s = SPLIT_NAMES.index(split)
        inside = (codes >= s * k) & (codes < (s + 1) * k)
        return np.where(inside, codes - s * k, -1).astype(np.int16)

    def n(self, split: str) -> int:
        return int(sum(self.counts[split]))

    def target_values(self, n_targets: int) -> np.ndarray:
        """Every target's value per pixel (float32 [T, H, W], NaN: none); a task with
        `targets` only."""
        return np.frombuffer(zlib.decompress(self.targets_z), np.float32).reshape(
            (n_targets, *self.grid.shape))


@dataclass
class DatasetIndex:
    """Every scene of a task, its splits and the normalisation statistics."""

    scenes: list[SceneEntry]
    # K of the codes (split * K + k): the classes; in a task with `targets` the class target's
    # classes plus one stratum "no class here, another target" (index K - 1)
    num_classes: int
    stats: NormStats
    band_names: dict[str, list[str]]
    tile_size: int
    dense: bool
    seed: int  # split.seed
    buffer: int
    footprint: int
    scenes_digest: str
    skipped: list[str] = field(default_factory=list)  # scenes without a usable labelled pixel
    unused: list[str] = field(default_factory=list)  # scenes in no split (kind scenes)
    # what the training inputs looked like (autors.data.profile), from the statistics pass
    profile: InputProfile | None = None
    # a task with `targets`: each target, its output channels and normalisation (None: a
    # `labels` task, whose one target is the class map of the codes)
    targets: list[TargetInfo] | None = None
    # time-series sensors with task-wide dates: the day of year of each date (a scene's own
    # `<sensor>__doy` is `SceneEntry.doys`)
    dates: dict[str, list[int]] = field(default_factory=dict)
    # every time-series sensor: its date count T (scenes with fewer dates are padded)
    series: dict[str, int] = field(default_factory=dict)

    # ---- sizes -----------------------------------------------------------------------------
    def sizes(self, split: str) -> np.ndarray:
        """Samples of `split` per scene: labelled pixels, or tiles for segmentation."""
        if self.dense:
            return np.array([len(s.tiles.get(split, ())) for s in self.scenes], np.int64)
        return np.array([s.n(split) for s in self.scenes], np.int64)

    def counts(self) -> dict[str, list[int]]:
        """Labelled pixels per split and class, over all scenes."""
        return {name: np.sum([s.counts[name] for s in self.scenes], axis=0).astype(int).tolist()
                for name in SPLIT_NAMES}

    def nbytes(self) -> int:
        """Bytes of the normalised sensors of every scene held in memory (float32)."""
        channels = sum(c * self.series.get(n, 1) for n, c in self.in_channels.items())
        return sum(4 * channels * s.grid.height * s.grid.width for s in self.scenes)

    @property
    def in_channels(self) -> dict[str, int]:
        """Bands per sensor (a time series: of one date)."""
        return {name: len(b) for name, b in self.band_names.items()}

    @property
    def steps(self) -> dict[str, int]:
        """Time-series sensors: their date count T (`fusion.build_model(dates=)`)."""
        return dict(self.series)

    # ---- provenance --------------------------------------------------------------------------
    def sha256(self) -> str:
        """Hash of every scene's split/class map (and id): equal hashes mean the same pixels in
        every split."""
        h = hashlib.sha256()
        for s in self.scenes:
            h.update(s.id.encode() + str(s.grid.shape).encode() + s.codes().tobytes())
        return h.hexdigest()

    def split_record(self) -> dict:
        """The split's provenance as plain data (run.json, summary.json, model card, reports)."""
        leak = {name: [sum(s.leakage[name][i] for s in self.scenes) for i in (0, 1)]
                for name in ("val", "test")}
        per_split = {name: [s.id for s in self.scenes if s.n(name)] for name in SPLIT_NAMES}
        return {
            "sha256": self.sha256(),
            "seed": self.seed,
            "buffer": self.buffer,
            "dropped_buffer": sum(s.dropped_buffer for s in self.scenes),
            "dropped_invalid": sum(s.dropped_invalid for s in self.scenes),
            "counts": {name: int(sum(c)) for name, c in self.counts().items()},
            "footprint": self.footprint,
            "leakage": {name: {"pixels": p, "touching_train": t}
                        for name, (p, t) in leak.items()},
            "scenes": {"n": len(self.scenes), "digest": self.scenes_digest,
                       "per_split": {k: len(v) for k, v in per_split.items()},
                       "skipped": self.skipped, "unused": len(self.unused)},
        }


def read_block(
    entry: SceneEntry, sensors: dict[str, SensorSpec], window: Window, channels: dict[str, int]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Physical values float32 [C, h, w] and validity bool [h, w] of every sensor in `window`
    of the scene's grid (invalid values 0): nodata, the sensor's mask raster or QA rule, and
    a sensor absent from the scene (`channels[name]` zero bands, invalid everywhere). A time
    series (`autors.data.timeseries`): [T * C, h, w] and validity per date [T, h, w]."""
    grid = entry.grid.sub(window)
    values, valid = {}, {}
    for name, spec in sensors.items():
        steps = entry.steps.get(name, 0)
        if name not in entry.rasters:
            values[name] = np.zeros((channels[name] * max(steps, 1),) + grid.shape, np.float32)
            valid[name] = np.zeros(((steps,) if steps else ()) + grid.shape, bool)
            continue
        if steps:
            values[name], valid[name] = read_series(spec, grid, entry.dates[name],
                                                    channels[name])
            continue
        values[name], valid[name] = load_sensor(spec, grid, entry.rasters[name],
                                                entry.bands[name])
        rule = rule_validity(spec, grid, entry.rasters[name], entry.masks.get(name),
                             entry.qa.get(name))
        if rule is not None:
            valid[name] &= rule
            np.copyto(values[name], np.float32(0.0), where=~rule[None])
    return values, valid


def usable(task: TaskSpec, valid: dict[str, np.ndarray]) -> np.ndarray:
    """Bool [H, W]: pixels where enough sensors are valid for a label to be used
    (`require_sensors`: any, all, or every listed sensor; a time series: any valid date)."""
    valid = {n: any_date(v) for n, v in valid.items()}
    rule = task.require_sensors
    if rule == "any":
        return np.logical_or.reduce(list(valid.values()))
    names = list(valid) if rule == "all" else rule
    return np.logical_and.reduce([valid[n] for n in names])


def block_windows(shape: tuple[int, int], block: int) -> list[Window]:
    """The block lattice of a grid, row-major (edge blocks are smaller)."""
    h, w = shape
    return [Window(c, r, min(block, w - c), min(block, h - r))
            for r in range(0, h, block) for c in range(0, w, block)]


def build_index(task: TaskSpec, keep_raw: bool | None = None):
    """Read every scene by blocks once: grid, labels, validity, splits; then the normalisation
    statistics and the training inputs' profile (`index.profile`) from training pixels. Returns (index, raw) where raw is, when the dataset is
    held in memory (`keep_raw`, default: it fits in `data.in_memory_max_mb`), each scene's
    (physical sensor values float32 [C, H, W], validity bool [H, W]) by sensor, else None.

    Raises DataError / RasterError naming the scene and file for unreadable or inconsistent
    data, before any training."""
    files = list_scenes(task)
    assignment = scene_splits(task, files) if task.split.kind == "scenes" else None
    unused = [] if assignment is None else [f.id for f in files if f.id not in assignment]
    if assignment is not None:
        files = [f for f in files if f.id in assignment]
    headers = [_headers(task, f) for f in files]
    band_names = _check_bands(task, files, headers)
    grids = [_grid(task, f, h) for f, h in zip(files, headers)]
    channels = sum(len(b) for b in band_names.values())
    counts = {name: len(b) for name, b in band_names.items()}
    size_mb = sum(4 * channels * g.height * g.width for g in grids) / 2**20
    if keep_raw is None:
        keep_raw = size_mb <= task.data.in_memory_max_mb
    k = strata(task)
    steps = series_steps(task, files)
    entries, raws, skipped = [], [], []
    for f, (rasters, bands), grid in zip(files, headers, grids):
        entry, raw = _index_scene(task, f, rasters, bands, grid,
                                  None if assignment is None else assignment[f.id], keep_raw,
                                  counts, steps)
        if entry is None:
            skipped.append(f.id)
            continue
        entries.append(entry)
        raws.append(raw)
    if not entries:
        raise DataError(f"none of the {len(files)} scene(s) has a labelled pixel where every "
                        "sensor is valid; check the label rasters and the sensors' nodata")
    _require_training(task, entries)
    if task.train.val_max_samples is not None:
        _subsample_val(entries, task.train.val_max_samples, k, task.split.seed)
    if task.dense:
        for e in entries:
            e.tiles = _tiles(e, k, task.tile_size)
    index = DatasetIndex(
        scenes=entries, num_classes=k, stats=NormStats(mean={}, std={}),
        band_names=band_names, tile_size=task.tile_size, dense=task.dense,
        seed=task.split.seed, buffer=task.split_buffer, footprint=task.sample_size,
        scenes_digest=scenes_digest(files), skipped=skipped, unused=unused,
        dates={n: s.doys for n, s in task.sensors.items() if s.listed_dates is not None},
        series=steps,
    )
    index.stats, index.profile = _training_stats(task, index, raws if keep_raw else None)
    if task.multi_target:
        index.targets = _target_infos(task, index)
    return index, (raws if keep_raw else None)


def series_steps(task: TaskSpec, files: list[SceneFiles]) -> dict[str, int]:
    """Every time-series sensor's T: its task-wide date count, or (`per_scene`) the most
    dates any scene has. DataError when no scene has a date of a per-scene series."""
    out = {}
    for name, spec in task.sensors.items():
        if spec.dates is None:
            continue
        if spec.listed_dates is not None:
            out[name] = len(spec.listed_dates)
            continue
        out[name] = max((len(f.days[name]) for f in files if name in f.days), default=0)
        if not out[name]:
            raise DataError(f"sensor '{name}' (dates per_scene): no scene has a dated file; "
                            "check the scenes' {date} paths or scenes.items[].dates")
    return out


def strata(task: TaskSpec) -> int:
    """K of the index's codes: the classes of a `labels` task; with `targets`, the class
    target's classes (none: 0) plus the stratum of pixels holding only other targets."""
    return task.num_classes + 1 if task.multi_target else task.num_classes


def _target_infos(task: TaskSpec, index: DatasetIndex) -> list[TargetInfo]:
    """Each target of a task with `targets`, continuous ones with the mean and std of their
    values at training pixels (float64); a target without a training value is a DataError."""
    names = list(task.target_specs)
    sums = np.zeros((len(names), 3))  # n, sum, sum of squares
    for e in index.scenes:
        train = e.labels("train", index.num_classes) >= 0
        values = e.target_values(len(names))[:, train].astype(np.float64)  # [T, n]
        ok = ~np.isnan(values)
        v = np.where(ok, values, 0.0)
        sums += np.stack([ok.sum(1), v.sum(1), (v * v).sum(1)], axis=1)
    out = []
    for (name, spec), (n, s1, s2) in zip(task.target_specs.items(), sums):
        if n == 0:
            raise DataError(f"targets.{name} has no value at any training pixel (where a "
                            "sensor is valid, outside split.buffer); check its raster, nodata "
                            "and range")
        labels = spec.as_labels() if spec.resolved_kind == "classes" else None
        mean = s1 / n
        std = float(np.sqrt(max(s2 / n - mean * mean, 0.0)))
        out.append(TargetInfo(
            name=name, kind=spec.resolved_kind, loss=spec.resolved_loss, weight=spec.weight,
            score_weight=spec.score_weight, units=spec.units,
            classes=tuple(labels.class_names) if labels else (),
            class_values=tuple(labels.class_values) if labels else (),
            mean=0.0 if labels else float(mean),
            std=1.0 if labels or not std > 0 else std))
    return out


def load_scene(task: TaskSpec, files: SceneFiles | None = None) -> Scene:
    """One scene (`files`; default: a one-scene task's only scene) read whole through the same
    headers, grid and block reads as the index: for inspecting a scene (validate, tests,
    benchmarks). `valid` follows `require_sensors`."""
    if files is None:
        scenes = list_scenes(task)
        if len(scenes) != 1:
            raise DataError(f"task '{task.name}' has {len(scenes)} scenes: name the one to load")
        files = scenes[0]
    rasters, bands = _headers(task, files)
    grid = _grid(task, files, (rasters, bands))
    label_infos = {key: _inspect(files, key, p) for key, p in files.labels.items()}
    entry = _entry(task, files, rasters, bands, grid, series_steps(task, [files]))
    channels = {n: len(b[1]) for n, b in bands.items()}  # names: 2 per complex band
    sensors, sensor_valid = read_block(entry, task.sensors, Window(0, 0, grid.width, grid.height),
                                       channels)
    for name, ok in sensor_valid.items():
        if name in rasters and not ok.any():
            spec, info = task.sensors[name], rasters[name]
            nodata = spec.nodata if spec.nodata is not None else info.nodata[entry.bands[name][0] - 1]
            raise DataError(
                f"sensor '{name}' ({files.sensors[name]}) has no valid pixel on the reference "
                f"grid: every pixel is nodata ({nodata}), NaN or masked in at least one band; "
                "check the file and the sensor's 'nodata' / mask in the task file")
    labels = {} if task.multi_target else \
        {key: read_labels(info, task.labels, grid) for key, info in label_infos.items()}
    if task.split.kind == "given":
        check_disjoint(task, labels)
    infos = dict(rasters)
    infos.update({f"labels:{key}": info for key, info in label_infos.items()})
    return Scene(grid=grid, sensors=sensors, sensor_valid=sensor_valid,
                 valid=usable(task, sensor_valid),
                 band_names={name: bands[name][1] for name in rasters}, labels=labels,
                 rasters=infos)


# ---- per scene --------------------------------------------------------------------------------
def _entry(task: TaskSpec, f: SceneFiles, rasters: dict[str, RasterInfo], bands: dict,
           grid: Grid, steps: dict[str, int]) -> SceneEntry:
    """A scene's entry before its pixels are read: headers, bands, masks' headers, QA bands;
    a time series' dates padded to its T (`steps`) with dates not acquired (day of year 0)."""
    return SceneEntry(
        files=f, grid=grid, rasters=rasters, bands={n: b[0] for n, b in bands.items()},
        codes_z=b"", counts={},
        masks={n: mask_header(n, p, grid) for n, p in f.masks.items() if n not in steps},
        qa={n: qa_band(n, task.sensors[n], rasters[n]) for n in rasters
            if task.sensors[n].qa is not None},
        dates={n: date_rasters(n, task.sensors[n], f.dates[n], f.date_masks.get(n),
                               [d.isoformat() for d in f.days[n]], len(bands[n][0]), f.id,
                               steps[n])
               for n in rasters if n in steps},
        steps=dict(steps),
        doys={n: _padded_doys(f.days.get(n, []), t) for n, t in steps.items()})


def _padded_doys(days: list, steps: int) -> list[int]:
    """Day of year of each date, 0 for the padded dates up to `steps`."""
    if len(days) > steps:
        raise DataError(f"{len(days)} dates where the series has {steps}")
    return [d.timetuple().tm_yday for d in days] + [0] * (steps - len(days))


def _headers(task: TaskSpec, f: SceneFiles) -> tuple[dict[str, RasterInfo], dict]:
    """Headers and bands of the sensors present in the scene."""
    rasters, bands = {}, {}
    for name, spec in task.sensors.items():
        if name not in f.sensors:
            continue  # absent from this scene: invalid at every pixel
        try:
            rasters[name] = inspect(f.sensors[name])
            bands[name] = (series_bands(name, spec, rasters[name], 0, len(f.days[name]))
                           if spec.dates is not None
                           else sensor_bands(name, spec, rasters[name]))
        except RasterError as err:
            raise RasterError(f"scene '{f.id}', sensor '{name}': {err}") from None
    if not rasters:
        raise DataError(f"scene '{f.id}' has no sensor file: give at least one")
    return rasters, bands


def _check_bands(task: TaskSpec, files: list[SceneFiles], headers: list) -> dict[str, list[str]]:
    """Every scene must give each sensor the same number of bands (the model's input); names
    come from the first scene holding the sensor."""
    first: dict[str, tuple[str, list, list]] = {}  # sensor -> (scene, indexes, names)
    for f, (_, bands) in zip(files, headers):
        for name, (indexes, names) in bands.items():
            if name not in first:
                first[name] = (f.id, indexes, names)
            elif len(indexes) != len(first[name][1]):
                raise DataError(
                    f"sensor '{name}' has {len(indexes)} band(s) in scene '{f.id}' "
                    f"({f.sensors[name]}) but {len(first[name][1])} in scene "
                    f"'{first[name][0]}'; every scene must give the same bands (set "
                    f"sensors.{name}.bands)"
                )
    return {name: list(first[name][2]) for name in task.sensors}


def _grid(task: TaskSpec, f: SceneFiles, headers: tuple) -> Grid:
    rasters, _ = headers
    label_infos = {key: _inspect(f, key, path) for key, path in f.labels.items()}
    if task.grid == "labels":
        ref = label_infos["full"] if "full" in label_infos else label_infos["train"]
    else:
        if task.grid not in rasters:
            raise DataError(f"scene '{f.id}' has no '{task.grid}' file, whose grid the task "
                            "uses (grid: ...): give the file, or use grid: labels")
        ref = rasters[task.grid]
    try:
        grid = crop_to_overlap(Grid.of(ref), {f"sensor '{n}'": i for n, i in rasters.items()})
        for key, info in label_infos.items():
            crop_to_overlap(grid, {f"label raster '{key}'": info})
        for name, path in f.targets.items():  # each must meet the grid (not cropped to it)
            crop_to_overlap(grid, {f"targets.{name} raster": _inspect(f, name, path)})
    except DataError as err:
        raise DataError(f"scene '{f.id}': {err}") from None
    return grid


def _inspect(f: SceneFiles, key: str, path) -> RasterInfo:
    try:
        return inspect(path)
    except RasterError as err:
        raise RasterError(f"scene '{f.id}', labels ({key}): {err}") from None


def _index_scene(task, f: SceneFiles, rasters, bands, grid: Grid, split_of_scene: str | None,
                 keep_raw: bool, channels: dict[str, int], steps: dict[str, int]):
    """(SceneEntry, raw sensors or None); (None, None) when no pixel can be used."""
    k = strata(task)
    target_values = None
    if task.multi_target:
        target_values, labels = _read_targets(task, f, grid)
    else:
        labels = {key: read_labels(_inspect(f, key, p), task.labels, grid)
                  for key, p in f.labels.items()}
    if task.split.kind == "given":
        check_disjoint(task, labels)
    entry = _entry(task, f, rasters, bands, grid, steps)
    valid = np.ones(grid.shape, dtype=bool)
    n_valid = dict.fromkeys(task.sensors, 0)
    raw = ({name: np.zeros((channels[name] * steps.get(name, 1),) + grid.shape, np.float32)
            for name in task.sensors},
           {name: np.zeros(((steps[name],) if name in steps else ()) + grid.shape, bool)
            for name in task.sensors}) if keep_raw else None
    for window in block_windows(grid.shape, task.data.block_size):
        values, ok = read_block(entry, task.sensors, window, channels)
        rows = slice(window.row_off, window.row_off + window.height)
        cols = slice(window.col_off, window.col_off + window.width)
        valid[rows, cols] = usable(task, ok)
        for name, m in ok.items():
            n_valid[name] += int(any_date(m).sum())
        if raw is not None:
            for name, arr in values.items():
                raw[0][name][:, rows, cols] = arr
                raw[1][name][..., rows, cols] = ok[name]
    entry.sensor_valid = {n: c / (grid.height * grid.width) for n, c in n_valid.items()}
    splits = split_scene(task, labels, valid, split_of_scene, f.id, strata=k)
    if splits is None:
        return None, None
    if target_values is not None:
        entry.targets_z = zlib.compress(target_values.tobytes(), 1)
    codes = np.full(grid.shape, -1, np.int16)
    for s, name in enumerate(SPLIT_NAMES):
        m = splits[name] >= 0
        codes[m] = splits[name][m] + s * k
    entry.codes_z = zlib.compress(codes.tobytes(), 1)
    entry.counts = {name: np.bincount(splits[name][splits[name] >= 0], minlength=k)
                    .astype(int).tolist() for name in SPLIT_NAMES}
    entry.dropped_invalid = splits["dropped_invalid"]
    entry.dropped_buffer = splits["dropped_buffer"]
    touching = box_any(splits["train"] >= 0, task.sample_size // 2)
    for name in ("val", "test"):
        held = splits[name] >= 0
        entry.leakage[name] = [int(held.sum()), int((held & touching).sum())]
    return entry, raw


def _read_targets(task: TaskSpec, f: SceneFiles, grid: Grid
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A task with `targets`: every target's values on the grid (float32 [T, H, W], NaN:
    none; a target without a raster in this scene has none) and the map the split is drawn
    on, {"full": int16 [H, W]}: the class index where the class target has one, else K (the
    stratum "another target only") where some target has a value, else -1. So the split
    stays stratified on the class target and a pixel is a sample where any target is."""
    specs = task.target_specs
    values = np.full((len(specs), *grid.shape), np.nan, np.float32)
    for i, (name, spec) in enumerate(specs.items()):
        if name in f.targets:
            try:
                values[i] = read_target(_inspect(f, name, f.targets[name]), name, spec, grid)
            except (DataError, RasterError) as err:
                raise type(err)(f"scene '{f.id}': {err}") from None
    k = task.num_classes
    strata = np.where(np.isnan(values).all(axis=0), np.int16(-1), np.int16(k))
    if task.class_target is not None:
        cls = values[list(specs).index(task.class_target)]
        has = ~np.isnan(cls)
        strata[has] = cls[has].astype(np.int16)
    return values, {"full": strata}


def _require_training(task: TaskSpec, entries: list[SceneEntry]) -> None:
    counts = np.sum([e.counts["train"] for e in entries], axis=0)
    values = task.class_labels.class_values if task.class_labels is not None else []
    empty = [f"'{n}' (value {v})" for n, v, c in
             zip(task.class_names, values, counts) if c == 0]
    if empty:
        raise DataError(f"class {', '.join(empty)} has no training pixel in the "
                        f"{len(entries)} scene(s) (pixels where a sensor is invalid, or within "
                        "split.buffer of a held-out pixel, do not count); label some, move a "
                        "scene to training, or remove the class from 'labels.classes'")
    for name in ("val", "test"):
        if not any(e.n(name) for e in entries):
            raise DataError(f"the {name} split has no labelled pixel: check the split")


def _subsample_val(entries: list[SceneEntry], keep: int, k: int, seed: int) -> None:
    """Keep a fixed seeded subset of `keep` validation pixels over all scenes."""
    sizes = np.array([e.n("val") for e in entries])
    total = int(sizes.sum())
    if total <= keep:
        return
    chosen = np.sort(np.random.default_rng([seed, 3]).choice(total, keep, replace=False))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    s_val = SPLIT_NAMES.index("val")
    for i, e in enumerate(entries):
        if not sizes[i]:
            continue
        codes = e.codes().copy()
        flat = codes.reshape(-1)
        pos = np.flatnonzero((flat >= s_val * k) & (flat < (s_val + 1) * k))
        mine = chosen[(chosen >= starts[i]) & (chosen < starts[i + 1])] - starts[i]
        drop = np.setdiff1d(np.arange(pos.size), mine)
        flat[pos[drop]] = -1
        e.codes_z = zlib.compress(codes.tobytes(), 1)
        classes = flat[pos[mine]] - s_val * k
        e.counts["val"] = np.bincount(classes, minlength=k).astype(int).tolist()


def _tiles(entry: SceneEntry, k: int, tile: int) -> dict[str, np.ndarray]:
    """Origins of the non-overlapping tiles holding a labelled pixel, per split."""
    codes = entry.codes()
    n_c = -(-codes.shape[1] // tile)
    out = {}
    for s, name in enumerate(SPLIT_NAMES):
        rows, cols = np.nonzero((codes >= s * k) & (codes < (s + 1) * k))
        ids = np.unique((rows // tile) * n_c + cols // tile)
        out[name] = (np.stack([ids // n_c, ids % n_c], axis=1) * tile).astype(np.int32)
    return out


# ---- normalisation ----------------------------------------------------------------------------
def _training_stats(task: TaskSpec, index: DatasetIndex, raws: list | None
                    ) -> tuple[NormStats, InputProfile]:
    """Mean and std per band over training pixels where the sensor is valid: all of them, or
    the pixels of a seeded sample of whole training blocks holding about
    `data.norm_max_pixels` (IO stays block-wise); and, from the same blocks in the same
    pass, the training inputs' profile (`autors.data.profile`: percentiles of a bounded seeded
    sample of those valid training pixels, invalid shares, pixel sizes)."""
    k, block = index.num_classes, task.data.block_size
    units = []  # (scene, window, training pixels in it)
    for i, e in enumerate(index.scenes):
        train = e.labels("train", k) >= 0
        for w in block_windows(e.grid.shape, block):
            n = int(train[w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width].sum())
            if n:
                units.append((i, w, n))
    total = sum(n for *_, n in units)
    if total > task.data.norm_max_pixels:
        order = np.random.default_rng([task.split.seed, 4]).permutation(len(units))
        picked, n_picked = [], 0
        for j in order:
            picked.append(units[j])
            n_picked += units[j][2]
            if n_picked >= task.data.norm_max_pixels:
                break
        units = sorted(picked, key=lambda u: (u[0], u[1].row_off, u[1].col_off))
    acc = {name: _Moments(len(b)) for name, b in index.band_names.items()}
    sampler = ProfileSampler(index.in_channels, sum(n for *_, n in units), task.split.seed)
    current, train = -1, None
    for i, w, _ in units:
        e = index.scenes[i]
        if i != current:
            current, train = i, e.labels("train", k) >= 0
        rows = slice(w.row_off, w.row_off + w.height)
        cols = slice(w.col_off, w.col_off + w.width)
        if raws is not None:
            values = {n: a[:, rows, cols] for n, a in raws[i][0].items()}
            ok = {n: a[..., rows, cols] for n, a in raws[i][1].items()}
        else:
            values, ok = read_block(e, task.sensors, w, index.in_channels)
        use_train = train[rows, cols]
        for name, stack in values.items():
            use = use_train
            if ok[name].ndim == 3:  # a time series: per band over every valid date
                steps = ok[name].shape[0]
                stack = stack.reshape(steps, -1, *stack.shape[1:]).swapaxes(0, 1)
                use = np.broadcast_to(use_train, ok[name].shape)
            acc[name].add(stack[:, use & ok[name]])
            sampler.add(name, stack, use, ok[name])
    mean, std = {}, {}
    for name, m in acc.items():
        if m.n == 0:
            raise DataError(f"sensor '{name}' has no valid pixel among the training pixels, "
                            "so it cannot be normalised; check its nodata value and coverage")
        mean[name], std[name] = m.result()
        if task.sensors[name].sar_units == "complex":  # one scale per pair, no offset: phases kept
            mean[name], std[name] = [0.0] * len(mean[name]), m.pair_scales()
    return NormStats(mean=mean, std=std), _profile(index, sampler)


def _profile(index: DatasetIndex, sampler: ProfileSampler) -> InputProfile:
    """The sampled values with the pixel sizes of the scenes holding training pixels (their
    reference grids, and each sensor's own raster; headers only)."""
    scenes = [e for e in index.scenes if e.n("train")] or index.scenes
    grid = gsd_range([pixel_size(e.grid) for e in scenes])
    assert grid is not None  # build_index refuses a dataset without training pixels
    sensors = {name: gsd_range([pixel_size(Grid.of(e.rasters[name])) for e in scenes
                                if name in e.rasters])
               for name in index.band_names}
    return sampler.result(grid, sensors)


class _Moments:
    """Per-band count, mean and sum of squared deviations, merged block by block (Chan et
    al.), in float64."""

    def __init__(self, bands: int) -> None:
        self.n = 0
        self.mean = np.zeros(bands)
        self.m2 = np.zeros(bands)

    def add(self, values: np.ndarray) -> None:  # [C, N]
        nb = values.shape[1]
        if nb == 0:
            return
        v = values.astype(np.float64)
        mb = v.mean(axis=1)
        m2b = ((v - mb[:, None]) ** 2).sum(axis=1)
        n = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * nb / n
        self.m2 = self.m2 + m2b + delta**2 * self.n * nb / n
        self.n = n

    def pair_scales(self) -> list[float]:
        """Complex channel pairs: one scale per pair from the raw moments
        (`autors.data.normalize.pair_scales`)."""
        return pair_scales(self.mean.tolist(), np.sqrt(self.m2 / self.n).tolist())

    def result(self) -> tuple[list[float], list[float]]:
        std = np.sqrt(self.m2 / self.n)
        # A constant band carries no information; std 1 keeps it finite (it becomes 0).
        return self.mean.tolist(), [float(s) if np.isfinite(s) and s > 0 else 1.0 for s in std]
