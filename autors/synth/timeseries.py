"""A synthetic optical + SAR time series where some classes differ only in timing.

`generate_time_series(out_dir, TimeSeriesConfig())` writes, for each of T dates of one year,
`s2_<date>.tif` (blue, green, red, NIR reflectance; nodata under that date's clouds) and
`s1_<date>.tif` (VV, VH in dB, speckled, never clouded), `labels.tif` (every pixel labelled,
fields of one class), `task.yaml` (both sensors as `{date}` templates, a spatial-blocks split)
and `scene.json`. With `scenes` > 1: a dataset, scenes/<id>/ holding each scene's own dates
(fewer and shifted from scene to scene) and `task.yaml` with `dates: per_scene`.

Each field's state on a date is a greenness v in [0, 1] or water; reflectances mix a soil and
a vegetation spectrum by v, SAR backscatter rises with v. The classes:
- forest, grass, urban, bare_soil: the same on every date (grass with a mild season);
- crop_short / crop_long (time-only): the same crop, the same peak, a green-up day drawn per
  field from one range; they differ only in how long the season lasts (60 vs 120 days), so
  on any one date each looks like the other at another phase;
- water_permanent / water_seasonal / bare_soil (time-only): seasonal water is open water
  during one window per field (60-100 days, anywhere in the year) and bare soil otherwise;
  on any one date it is drawn exactly as permanent water or as bare soil.
A single date sees a snapshot (often under a cloud, for optical); the series sees timing.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from rasterio.crs import CRS
from rasterio.transform import from_origin

from autors.errors import SynthConfigError
from autors.synth.writer import write_geotiff, write_json, write_task

CLASSES = ("forest", "grass", "urban", "bare_soil", "crop_short", "crop_long",
           "water_permanent", "water_seasonal")
TIME_ONLY = ("crop_short", "crop_long", "water_permanent", "water_seasonal", "bare_soil")
BANDS = ("blue", "green", "red", "nir")
SOIL = np.array([0.08, 0.11, 0.15, 0.22], np.float32)
VEG = np.array([0.03, 0.07, 0.04, 0.45], np.float32)
WATER = np.array([0.06, 0.05, 0.03, 0.01], np.float32)
URBAN = np.array([0.15, 0.16, 0.18, 0.22], np.float32)
NODATA = -9999.0
YEAR = 2021


@dataclass(frozen=True)
class TimeSeriesConfig:
    """Scene side (pixels), dates (evenly spread over the year), cloud cover per date (each
    drawn in [0, max_cloud]), field size range, seed."""

    size: int = 96
    dates: int = 10
    max_cloud: float = 0.5
    field_min: int = 6
    field_max: int = 14
    seed: int = 0
    looks: float = 4.0
    patch_size: int = 5
    scenes: int = 1  # > 1: a dataset of scenes, each with its own dates (`dates: per_scene`)

    def __post_init__(self) -> None:
        if self.size < 32:
            raise SynthConfigError(f"--size {self.size} is too small for a time series: >= 32")
        if not 2 <= self.dates <= 36:
            raise SynthConfigError(f"--dates {self.dates} must be 2..36")
        if not 1 <= self.scenes <= 16:
            raise SynthConfigError(f"--scenes {self.scenes} must be 1..16 for a time series")
        if not 0.0 <= self.max_cloud < 1.0:
            raise SynthConfigError(f"max_cloud {self.max_cloud} must be in [0, 1)")

    def days(self, scene: int = 0) -> list[datetime.date]:
        """The acquisition dates: evenly spread over the year (doy 30 .. 330); scene `i` of a
        dataset has its own: i dates fewer (at least 2), from doy 30 + 9 i to 330 - 7 i."""
        n = max(2, self.dates - scene)
        doys = np.linspace(30 + 9 * scene, 330 - 7 * scene, n).round().astype(int)
        return [datetime.date(YEAR, 1, 1) + datetime.timedelta(days=int(d) - 1) for d in doys]


@dataclass
class TimeSeriesInfo:
    out_dir: Path
    task_path: Path
    class_names: tuple[str, ...]
    time_only_classes: tuple[str, ...]
    dates: list[str]
    cloud_cover: list[float]
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)


def _fields(cfg: TimeSeriesConfig, rng: np.random.Generator) -> np.ndarray:
    """Int [H, W]: a field id per pixel (rectangles cut row by row, random sizes)."""
    ids = np.zeros((cfg.size, cfg.size), np.int32)
    n, r = 0, 0
    while r < cfg.size:
        h = int(rng.integers(cfg.field_min, cfg.field_max + 1))
        c = 0
        while c < cfg.size:
            w = int(rng.integers(cfg.field_min, cfg.field_max + 1))
            ids[r:r + h, c:c + w] = n
            n, c = n + 1, c + w
        r += h
    return ids


def _season(doy: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Greenness of a crop: logistic green-up at `start`, senescence at start + length."""
    up = 1.0 / (1.0 + np.exp(-(doy - start) / 6.0))
    down = 1.0 / (1.0 + np.exp((doy - start - length) / 6.0))
    return 0.1 + 0.8 * up * down


def _states(cls: np.ndarray, rng: np.random.Generator, doys: list[int]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per field and date: greenness [F, T], open water [F, T] (bool), urban / mud [F, T]
    as a code (0 vegetation / soil mix, 1 urban)."""
    n, t = cls.size, len(doys)
    day = np.asarray(doys, np.float32)[None]
    v = np.zeros((n, t), np.float32)
    water = np.zeros((n, t), bool)
    code = np.zeros((n, t), np.int8)
    name = np.asarray(CLASSES)[cls]
    start = rng.uniform(60, 200, n)[:, None]  # one green-up range for both crops
    v[name == "forest"] = 0.85
    season = 0.45 + 0.15 * np.sin((day - 100) / 365 * 2 * np.pi)
    v[name == "grass"] = np.broadcast_to(season, (int((name == "grass").sum()), t))
    v[name == "bare_soil"] = 0.05
    code[name == "urban"] = 1
    for crop, length in (("crop_short", 60.0), ("crop_long", 120.0)):
        m = name == crop
        v[m] = _season(day, start[m], np.float32(length))
    water[name == "water_permanent"] = True
    m = name == "water_seasonal"
    w0 = rng.uniform(30, 300, n)[:, None]
    wl = rng.uniform(60, 100, n)[:, None]
    wet = (day >= w0) & (day < w0 + wl)
    water[m] = wet[m]
    v[m] = 0.05  # bare soil outside its window, exactly as the bare_soil class
    return v, water, code


def _clouds(shape: tuple[int, int], cover: float, rng: np.random.Generator) -> np.ndarray:
    """Bool [H, W]: smooth blobs over `cover` of the scene."""
    if cover <= 0:
        return np.zeros(shape, bool)
    cell = 12
    coarse = rng.standard_normal((shape[0] // cell + 2, shape[1] // cell + 2)).astype(np.float32)
    smooth = torch.nn.functional.interpolate(torch.from_numpy(coarse)[None, None],
                                             scale_factor=cell, mode="bicubic",
                                             align_corners=False)[0, 0].numpy()
    smooth = smooth[:shape[0], :shape[1]]
    return smooth > np.quantile(smooth, 1.0 - cover)


def generate_time_series(out_dir: Path, cfg: TimeSeriesConfig) -> TimeSeriesInfo:
    """Write the scene (see the module docstring); the same config writes the same bytes."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.scenes > 1:
        return _dataset(out_dir, cfg, t0)
    days = cfg.days()
    files, covers = _write_scene(out_dir, cfg, np.random.default_rng([cfg.seed, 15]), days)
    stamps = [d.isoformat() for d in days]
    task = _task(cfg, {"s2": {"kind": "optical", "path": "s2_{date}.tif", "dates": stamps,
                              "nodata": NODATA},
                       "s1": {"kind": "sar", "path": "s1_{date}.tif", "dates": stamps,
                              "sar_units": "db"}})
    task["labels"]["path"] = "labels.tif"
    header = (f"Synthetic optical + SAR time series ({len(days)} dates of {YEAR}), written by "
              "`autors synth --time-series`.\nTime-only classes (they differ only in timing): "
              + ", ".join(TIME_ONLY))
    return _finish(out_dir, cfg, task, header, stamps, stamps, covers, files, t0)


def _finish(out_dir: Path, cfg: TimeSeriesConfig, task: dict, header: str, stamps: list[str],
            dates: list[str] | dict[str, list[str]], covers: list, files: list[str],
            t0: float) -> TimeSeriesInfo:
    """Write task.yaml and scene.json (`dates`: the task's list, or each scene's) and return
    the generator's info."""
    task_path = write_task(out_dir / "task.yaml", task, header)
    info = TimeSeriesInfo(out_dir=out_dir, task_path=task_path, class_names=CLASSES,
                          time_only_classes=TIME_ONLY, dates=stamps, cloud_cover=covers,
                          files=files)
    info.seconds = time.perf_counter() - t0
    write_json(out_dir / "scene.json", {
        "generator": "autors.synth.timeseries", "config": asdict(cfg), "classes": list(CLASSES),
        "time_only_classes": list(TIME_ONLY), "dates": dates, "cloud_cover": covers})
    return info


def _task(cfg: TimeSeriesConfig, sensors: dict) -> dict:
    return {
        "name": "synth_time_series", "task": "patch_classification",
        "patch_size": cfg.patch_size, "seed": cfg.seed, "sensors": sensors,
        "labels": {"classes": list(CLASSES), "ignore": 0},
        "split": {"kind": "spatial_blocks", "block_size": 16, "val_fraction": 0.2,
                  "test_fraction": 0.3, "seed": cfg.seed},
        "train": {"epochs": 10, "batch_size": 64, "max_train_samples": 4000,
                  "val_max_samples": 2000},
    }


def _dataset(out_dir: Path, cfg: TimeSeriesConfig, t0: float) -> TimeSeriesInfo:
    """`cfg.scenes` scenes under scenes/<id>/, each with its own dates (`TimeSeriesConfig.
    days`), and a task with `dates: per_scene` found from the files' names."""
    files, covers, per_scene = [], [], {}
    for i in range(cfg.scenes):
        scene = f"scene_{i}"
        days = cfg.days(i)
        f, c = _write_scene(out_dir / "scenes" / scene, cfg,
                            np.random.default_rng([cfg.seed, 15, i]), days)
        files += [f"scenes/{scene}/{name}" for name in f]
        covers += c
        per_scene[scene] = [d.isoformat() for d in days]
    task = _task(cfg, {"s2": {"kind": "optical", "dates": "per_scene", "nodata": NODATA},
                       "s1": {"kind": "sar", "dates": "per_scene", "sar_units": "db"}})
    task["scenes"] = {"template": {"sensors": {"s2": "scenes/{scene}/s2_{date}.tif",
                                               "s1": "scenes/{scene}/s1_{date}.tif"},
                                   "labels": "scenes/{scene}/labels.tif"}}
    header = (f"Synthetic optical + SAR time series, {cfg.scenes} scenes each with its own "
              "dates (dates: per_scene), written by `autors synth --time-series --scenes N`."
              "\nTime-only classes (they differ only in timing): " + ", ".join(TIME_ONLY))
    stamps = sorted({d for days in per_scene.values() for d in days})
    return _finish(out_dir, cfg, task, header, stamps, per_scene, covers, files, t0)


def _write_scene(out_dir: Path, cfg: TimeSeriesConfig, rng: np.random.Generator,
                 days: list[datetime.date]) -> tuple[list[str], list[float]]:
    """One scene's dated rasters and labels into `out_dir`: (file names, cloud cover per
    date)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = _fields(cfg, rng)
    n_fields = int(ids.max()) + 1
    cls = rng.integers(0, len(CLASSES), n_fields)
    doys = [d.timetuple().tm_yday for d in days]
    v, water, code = _states(cls, rng, doys)
    crs = CRS.from_epsg(32633)
    transform = from_origin(400_000.0, 5_200_000.0, 10.0, 10.0)
    files, covers = [], []
    for t, day in enumerate(days):
        vt = np.clip(v[ids, t] + rng.normal(0, 0.04, ids.shape), 0, 1).astype(np.float32)
        refl = (1 - vt)[None] * SOIL[:, None, None] + vt[None] * VEG[:, None, None]
        for mask, spec in ((water[ids, t], WATER), (code[ids, t] == 1, URBAN)):
            refl[:, mask] = spec[:, None]
        refl = refl + rng.normal(0, 0.01, refl.shape).astype(np.float32)
        cover = float(rng.uniform(0, cfg.max_cloud))
        covers.append(round(cover, 3))
        cloud = _clouds(ids.shape, cover, rng)
        refl[:, cloud] = NODATA
        stamp = day.isoformat()
        files.append(write_geotiff(out_dir / f"s2_{stamp}.tif", refl.astype(np.float32),
                                   transform, crs, BANDS, NODATA).name)
        vv = -11.0 + 4.0 * vt
        vh = -18.0 + 7.0 * vt
        for mask, (a, b) in ((water[ids, t], (-22.0, -28.0)), (code[ids, t] == 1, (-4.0, -10.0))):
            vv[mask], vh[mask] = a, b
        speckle = rng.gamma(cfg.looks, 1.0 / cfg.looks, (2,) + ids.shape)
        sar = np.stack([vv, vh]) + 10 * np.log10(speckle)
        files.append(write_geotiff(out_dir / f"s1_{stamp}.tif", sar.astype(np.float32),
                                   transform, crs, ("VV", "VH"), None).name)
    labels = (cls[ids] + 1).astype(np.uint8)[None]
    files.append(write_geotiff(out_dir / "labels.tif", labels, transform, crs, ("class",),
                               0).name)
    return files, covers
