"""`generate_dataset`: many synthetic scenes ("chips") laid out like the Sen1Floods11 v1.1 release.

    OUT/v1.1/data/flood_events/HandLabeled/S1Hand/<Event>_<id>_S1Hand.tif     SAR VV, VH in dB
    OUT/v1.1/data/flood_events/HandLabeled/S2Hand/<Event>_<id>_S2Hand.tif     optical
    OUT/v1.1/data/flood_events/HandLabeled/LabelHand/<Event>_<id>_LabelHand.tif
    (and LidarHand/, HSIHand/ when those sensors are asked for; CloudMaskHand/ with cloud_nodata)
    OUT/v1.1/splits/flood_handlabeled/flood_{train,valid,test,bolivia}_data.csv
    OUT/task.yaml                 the dataset as a task (split kind: scenes)
    OUT/synth_dataset.json        provenance: every chip's settings and label counts

Each chip is one scene of `scene.generate_scene`'s world and sensor models with its own seed
(from the dataset seed and the chip's index), sun, land-use mix, SAR looks, optical noise and
cloud cover; about one chip in four lies in the neighbouring UTM zone (EPSG:32631 instead of
32632, its origin in that zone), at least one and never all. Chips are spread over six events
with real Sen1Floods11 names: "Bolivia" is held out (flood_bolivia_data.csv only, as in the
release); the other events' chips are split by chip, seeded, about 60/20/20 into
train/valid/test. The split CSVs have no header and two cells a row, like the release:
`Ghana_103272_S1Hand.tif,Ghana_103272_LabelHand.tif`.

Files as in the release: S1Hand float32 dB with NaN = nodata (past the edge of the SAR swath in
about 30 % of the chips), S2Hand uint16 reflectance x 10000 with 0 = nodata (cloud cores are
masked to 0 in about half the cloudy chips; B1..B9, the bands inside the simulated spectral
range: no B10-B12), LabelHand int16 with -1 = no data and 0..K-1 = class index. A label is -1
past the swath edge, under cloud cores (the hand labeller could not see the ground) and in a
few random holes. SAR keeps its own coarser, shifted grid; optical, labels, LiDAR and
hyperspectral share the label grid, as in `generate_scene`.

With `cloud_nodata` or `cloud_qa` the clouds are marked instead of cut out: no chip's S2 cloud
cores are set to 0 and labels stay labelled under clouds (the ground truth is known there: a
model must use the SAR); `cloud_nodata` writes each chip's cloud mask to
CloudMaskHand/<chip>_CloudMaskHand.tif (uint8 on the S2 grid: 0 clear, 1 thick cloud, 2 thin
cloud, 3 cloud shadow) and `cloud_qa` a last S2 band "SCL" (Sentinel-2 scene classification
codes); the task declares them as the optical sensor's validity rules (thick cloud and shadow
invalid, thin cloud kept; see `scene.optical_cloud_rules`).

Deterministic: the same settings give the same bytes, whatever `jobs`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, replace
from functools import lru_cache, partial
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from rasterio.crs import CRS
from rasterio.transform import Affine, from_origin

from autors.errors import SynthConfigError
from autors.synth import optical
from autors.synth.catalogue import active_classes
from autors.synth.config import CLOUD_FLAGS, SynthConfig
from autors.synth.illumination import Sun
from autors.synth.layout import USES
from autors.synth.scene import (
    QA_BAND,
    cloud_mask_tags,
    load_library,
    make_world,
    optical_cloud_rules,
    scene_rngs,
    scl_tags,
    simulate_sensor,
    task_schema_has,
)
from autors.synth.spectra import SpectralLibrary
from autors.synth.writer import write_geotiff, write_json, write_task

RELEASE = Path("v1.1")
HAND_DIR = RELEASE / "data" / "flood_events" / "HandLabeled"
SPLIT_DIR = RELEASE / "splits" / "flood_handlabeled"
# role -> the release's folder / file suffix (LiDAR and hyperspectral are this generator's own)
SUFFIX = {"sar": "S1Hand", "optical": "S2Hand", "labels": "LabelHand", "lidar": "LidarHand",
          "hsi": "HSIHand", "cloudmask": "CloudMaskHand"}
SPLIT_FILES = {"train": "flood_train_data.csv", "val": "flood_valid_data.csv",
               "test": "flood_test_data.csv", "bolivia": "flood_bolivia_data.csv"}
HELD_OUT_EVENT = "Bolivia"
EVENTS = ("Ghana", "India", "Mekong", "Paraguay", "Spain")  # the others, Sen1Floods11 names
DEFAULT_SENSORS = ("optical", "sar")
COMPRESS = ("deflate", "none")
LABEL_NODATA = -1
SAR_NODATA = float("nan")
HOME_EPSG, NEIGHBOUR_EPSG = 32632, 32631  # UTM 32N, 31N: chips lie near their boundary (6 E)
# Upper-left corners are drawn from these boxes (metres, the zone's own coordinates): both
# boxes lie within 60 km of 6 E, around 47-48 N (Jura / Vosges), so a chip is in its zone.
ORIGIN_BOX = {HOME_EPSG: ((280_000.0, 330_000.0), (5_200_000.0, 5_330_000.0)),
              NEIGHBOUR_EPSG: ((670_000.0, 720_000.0), (5_200_000.0, 5_330_000.0))}
NEIGHBOUR_SHARE = 0.25  # of the chips in the neighbouring zone (at least one, never all)
SWATH_SHARE = 0.3  # of the chips cut by the SAR swath edge (at least one)
CLOUD_CORE = 0.9  # cloud opacity above which S2 may be masked and labels are -1
BOLIVIA_SHARE = 0.1
VAL_SHARE = TEST_SHARE = 0.2
# Entropy tags: every random stream of the dataset is seeded from (tag, dataset seed, ...).
_TAG_PLAN, _TAG_CHIP, _TAG_PARAMS = 0x5E1F, 0xC41B, 0x9A7A


@dataclass(frozen=True)
class DatasetConfig:
    """Settings of a synthetic multi-scene dataset (validated on construction)."""

    scenes: int  # number of chips, >= 2
    size: int = 128  # each chip is size x size label pixels (2 m)
    classes: int = 10
    sensors: tuple[str, ...] = DEFAULT_SENSORS
    seed: int = 0
    hsi_bands: int = 60
    compress: str = "deflate"  # or "none": uncompressed GeoTIFFs
    patch_size: int = 9  # written to the task
    task_epochs: int = 20
    task_trials: int = 8
    spectra_dir: Path | None = None
    name: str | None = None  # task name; None: synth_scenes_<N>_s<seed>
    cloud_nodata: bool = False  # clouds marked, not cut: CloudMaskHand/ (see the module doc)
    cloud_qa: bool = False  # clouds marked, not cut: a last S2 band "SCL"

    def __post_init__(self) -> None:
        if not 2 <= self.scenes <= 100_000:
            raise SynthConfigError(f"synthetic dataset setting scenes={self.scenes} is out of "
                                   "range: use 2..100000 (one scene: omit --scenes)")
        if self.seed < 0:
            raise SynthConfigError(f"synthetic dataset setting seed={self.seed} must be >= 0")
        if self.compress not in COMPRESS:
            raise SynthConfigError(f"synthetic dataset setting compress={self.compress!r}: use "
                                   f"{' or '.join(COMPRESS)}")
        if "slc" in self.sensors:  # no Sen1Floods11 layer for it
            raise SynthConfigError("synthetic dataset setting sensors: the complex SAR sensor "
                                   "'slc' is written in single scenes only (omit --scenes)")
        # the scene settings are checked (and the sensors put in canonical order) by SynthConfig
        object.__setattr__(self, "sensors", self.base.sensors)

    @property
    def base(self) -> SynthConfig:
        """The scene settings every chip starts from (each then gets its own seed, looks,
        cloud cover)."""
        return SynthConfig(size=self.size, classes=self.classes, sensors=self.sensors,
                           seed=self.seed, hsi_bands=self.hsi_bands, patch_size=self.patch_size,
                           task_epochs=self.task_epochs, task_trials=self.task_trials,
                           spectra_dir=self.spectra_dir, cloud_nodata=self.cloud_nodata,
                           cloud_qa=self.cloud_qa)

    @property
    def clouds_marked(self) -> bool:
        """Clouds go to a mask raster and / or an SCL band instead of S2 nodata and -1 labels."""
        return self.cloud_nodata or self.cloud_qa

    @property
    def record(self) -> dict:
        """The settings for a provenance record (the cloud flags only when set, as
        `SynthConfig.record`)."""
        out = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
        return {k: v for k, v in out.items() if k not in CLOUD_FLAGS or v}

    @property
    def task_name(self) -> str:
        return self.name or f"synth_scenes_{self.scenes}_s{self.seed}"


@dataclass(frozen=True)
class ChipPlan:
    """Everything that makes one chip differ from the others (drawn by `plan_dataset`)."""

    index: int  # position in the dataset (events in order, ids ascending within an event)
    event: str
    chip_id: int  # 6 digits, unique in the dataset
    split: str  # train, val, test or bolivia
    seed: int  # the scene's seed: from the dataset seed and `index`
    epsg: int
    origin: tuple[float, float]  # upper-left corner (x, y), metres in `epsg`
    sun_azimuth_deg: float
    sun_elevation_deg: float
    cloud_cover: float
    cloud_masked: bool  # cloud cores written as S2 nodata (0); never when clouds are marked
    looks: float  # SAR equivalent number of looks
    optical_noise: float  # reflectance units
    use_weights: tuple[tuple[str, float], ...]  # land use -> relative share (layout.make_layout)
    swath: tuple[float, int, float] | None  # SAR swath edge: (tilt deg, side +-1, cut fraction)
    holes: int  # random unlabelled holes

    @property
    def name(self) -> str:
        return f"{self.event}_{self.chip_id}"

    @property
    def sun(self) -> Sun:
        return Sun(self.sun_azimuth_deg, self.sun_elevation_deg)

    def file_name(self, role: str) -> str:
        return f"{self.name}_{SUFFIX[role]}.tif"


@dataclass(frozen=True)
class ChipResult:
    """What `write_chip` wrote for one chip."""

    plan: ChipPlan
    files: dict[str, Path]  # role (sensor name or "labels") -> path
    label_counts: tuple[int, ...]  # pixels per class index 0..K-1
    nodata_labels: int  # pixels labelled -1
    seconds: float
    nbytes: int


@dataclass(frozen=True)
class DatasetInfo:
    """What `generate_dataset` wrote."""

    out_dir: Path
    task_path: Path
    chips: tuple[ChipResult, ...]
    splits: dict[str, tuple[str, ...]]  # train / val / test / bolivia -> chip names
    class_names: tuple[str, ...]  # class index i -> class_names[i]
    spectra: str
    seconds: float

    @property
    def nbytes(self) -> int:
        """GeoTIFF bytes on disk, all chips."""
        return sum(c.nbytes for c in self.chips)


def _counts(n: int) -> dict[str, int]:
    """Chips per event: about 10 % held out (Bolivia), the rest spread evenly."""
    n_held = max(1, round(BOLIVIA_SHARE * n))
    rest = n - n_held
    n_events = min(len(EVENTS), rest)
    out = {HELD_OUT_EVENT: n_held}
    for i, event in enumerate(EVENTS[:n_events]):
        out[event] = rest // n_events + (i < rest % n_events)
    return out


def _draw_chip(cfg: DatasetConfig, index: int, event: str, chip_id: int, split: str,
               neighbour: bool, swath: bool) -> ChipPlan:
    seed = int(np.random.SeedSequence([_TAG_CHIP, cfg.seed, index]).generate_state(1)[0])
    rng = np.random.default_rng([_TAG_PARAMS, cfg.seed, index])
    epsg = NEIGHBOUR_EPSG if neighbour else HOME_EPSG
    (x0, x1), (y0, y1) = ORIGIN_BOX[epsg]
    origin = (float(np.round(rng.uniform(x0, x1), -1)), float(np.round(rng.uniform(y0, y1), -1)))
    azimuth = float(rng.uniform(120.0, 200.0))  # morning overpass, northern hemisphere
    elevation = float(rng.uniform(25.0, 65.0))  # winter to summer
    cloudy = rng.random() >= 0.3
    cover = float(rng.uniform(0.05, 0.4)) if cloudy else 0.0
    masked = bool(rng.random() < 0.5) and cloudy and not cfg.clouds_marked
    looks = float(rng.uniform(1.5, 8.0))
    noise = float(optical.NOISE * rng.uniform(0.5, 3.0))
    # land-use mix: log-normal weights, water (ponds) weighted up: these are flood events
    weights = tuple((use, float(np.exp(rng.normal(0.5 if use == "pond" else 0.0, 0.8))))
                    for use in USES)
    edge = (float(rng.uniform(-15.0, 15.0)), int(rng.choice((-1, 1))),
            float(rng.uniform(0.1, 0.3)))
    holes = int(rng.integers(0, 6))
    return ChipPlan(
        index=index, event=event, chip_id=chip_id, split=split, seed=seed, epsg=epsg,
        origin=origin, sun_azimuth_deg=azimuth, sun_elevation_deg=elevation, cloud_cover=cover,
        cloud_masked=masked, looks=looks, optical_noise=noise, use_weights=weights,
        swath=edge if swath else None, holes=holes,
    )


def plan_dataset(cfg: DatasetConfig) -> tuple[ChipPlan, ...]:
    """Every chip's event, id, split and scene settings; no file is written.

    A chip's scene settings depend only on the dataset seed and its index; events, ids,
    splits, zones and swath edges are drawn for the dataset as a whole."""
    n = cfg.scenes
    rng = np.random.default_rng([_TAG_PLAN, cfg.seed])
    ids = (rng.choice(900_000, size=n, replace=False) + 100_000).tolist()
    counts = _counts(n)
    events: list[tuple[str, int]] = []
    start = 0
    for event, count in counts.items():
        events += [(event, i) for i in sorted(ids[start : start + count])]
        start += count
    # by chip, over the events that are not held out: ~60/20/20
    m = n - counts[HELD_OUT_EVENT]
    n_val = max(1, round(VAL_SHARE * m)) if m >= 2 else 0
    n_test = max(1, round(TEST_SHARE * m)) if m >= 3 else 0
    order = rng.permutation(m)
    other_split = ["train"] * m
    for rank, j in enumerate(order):
        if rank < n_val:
            other_split[j] = "val"
        elif rank < n_val + n_test:
            other_split[j] = "test"
    n_neighbour = min(n - 1, max(1, round(NEIGHBOUR_SHARE * n)))
    neighbour = set(rng.choice(n, size=n_neighbour, replace=False).tolist())
    swath = set(rng.choice(n, size=max(1, round(SWATH_SHARE * n)), replace=False).tolist())
    plans = []
    n_held = counts[HELD_OUT_EVENT]
    for index, (event, chip_id) in enumerate(events):
        split = "bolivia" if event == HELD_OUT_EVENT else other_split[index - n_held]
        plans.append(_draw_chip(cfg, index, event, chip_id, split, index in neighbour,
                                index in swath))
    return tuple(plans)


@lru_cache(maxsize=4)
def _library(cfg: SynthConfig) -> SpectralLibrary:
    return load_library(cfg)


def _grid_coords(grid: Affine, shape: tuple[int, int], label_grid: Affine) -> tuple[np.ndarray, ...]:
    """(col, row) of the centres of `grid`'s pixels, in label-grid pixel units."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    x = grid.a * cols + grid.b * rows + grid.c  # map coordinates (written out: affine's `*`
    y = grid.d * cols + grid.e * rows + grid.f  # on arrays is deprecated, `@` too new)
    inv = ~label_grid
    return inv.a * x + inv.b * y + inv.c, inv.d * x + inv.e * y + inv.f


def swath_mask(plan: ChipPlan, size: int, grid: Affine, shape: tuple[int, int],
               label_grid: Affine) -> np.ndarray:
    """[H, W] bool on `grid`: pixels past the SAR swath edge (all False without an edge).

    The edge is a line tilted `tilt` degrees from north; the side `side` of it (+1: east)
    beyond `cut` of the chip's width is outside the swath."""
    if plan.swath is None:
        return np.zeros(shape, bool)
    tilt, side, cut = plan.swath
    u, v = _grid_coords(grid, shape, label_grid)
    t = np.radians(tilt)
    across = (u - size / 2) * np.cos(t) + (v - size / 2) * np.sin(t)
    return side * across > (0.5 - cut) * size


def _holes(size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """[H, W] bool: `n` round unlabelled patches."""
    out = np.zeros((size, size), bool)
    rows, cols = np.ogrid[0:size, 0:size]
    for _ in range(n):
        r = rng.uniform(2.0, max(3.0, size / 16))
        cy, cx = rng.uniform(0, size, 2)
        out |= (rows + 0.5 - cy) ** 2 + (cols + 0.5 - cx) ** 2 <= r * r
    return out


def _one_blas_thread() -> AbstractContextManager:
    """BLAS limited to one thread: a float32 matrix product's last bits depend on how many
    threads share it, so chips are simulated single-threaded (the same bytes on any machine's
    core count and for any `jobs`; `jobs` processes share the cores instead). threadpoolctl
    comes with scikit-learn (an NNI dependency); without it, BLAS keeps its own setting."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def write_chip(out_dir: Path, cfg: DatasetConfig, plan: ChipPlan) -> ChipResult:
    """Simulate and write one chip's GeoTIFFs under `out_dir` (the release layout)."""
    with _one_blas_thread():
        return _write_chip(Path(out_dir), cfg, plan)


def _write_chip(out_dir: Path, cfg: DatasetConfig, plan: ChipPlan) -> ChipResult:
    t0 = time.perf_counter()
    scfg = replace(cfg.base, seed=plan.seed, looks=plan.looks, cloud_cover=plan.cloud_cover)
    rngs = scene_rngs(plan.seed)
    world = make_world(scfg, rngs, _library(cfg.base), plan.sun, dict(plan.use_weights))
    crs = CRS.from_epsg(plan.epsg)
    px = scfg.pixel_size_m
    transform = from_origin(plan.origin[0], plan.origin[1], px, px)
    size = scfg.size
    # cloud fields first from the optical stream, as optical.simulate would draw them: the
    # labels use them even when the optical sensor is not written
    clouds = optical.cloud_fields((size, size), scfg.cloud_cover, px, plan.sun, rngs["optical"])
    # cloud cores: S2 nodata in a `cloud_masked` chip; unlabelled unless clouds are marked
    core = clouds[0] > CLOUD_CORE if not cfg.clouds_marked else np.zeros((size, size), bool)
    compress = None if cfg.compress == "none" else cfg.compress
    folder = out_dir / HAND_DIR
    files: dict[str, Path] = {}

    def write(role: str, data: np.ndarray, grid: Affine, bands: tuple[str, ...],
              nodata: float | None, tags: dict[str, str]) -> None:
        path = folder / SUFFIX[role] / plan.file_name(role)
        path.parent.mkdir(parents=True, exist_ok=True)
        files[role] = write_geotiff(path, data, grid, crs, bands, nodata,
                                    {"chip": plan.name} | tags, compress)

    for name in scfg.sensors:
        img = simulate_sensor(name, world, scfg, rngs, transform, crs,
                              optical_noise=plan.optical_noise, clouds=clouds)
        data = img.data
        if name == "sar":
            with np.errstate(divide="ignore"):
                data = (10.0 * np.log10(data)).astype(np.float32)
            outside = swath_mask(plan, size, img.transform, data.shape[1:], transform)
            data[:, outside] = SAR_NODATA
            write(name, data, img.transform, img.bands, SAR_NODATA,
                  {"units": "sigma0 dB", "looks": f"{plan.looks:.2f}"})
        elif name == "optical":
            if plan.cloud_masked:
                data[:, core] = 0
            bands = img.bands
            tags = {"units": "reflectance x 10000",
                    "clouds": f"{plan.cloud_cover:.2f} of the scene"
                    + (", cores masked (0)" if plan.cloud_masked else "")}
            if cfg.cloud_qa:
                data = np.concatenate([data, optical.scl_band(data, *clouds)[None]])
                bands, tags = bands + (QA_BAND,), tags | scl_tags()
            write(name, data, img.transform, bands, img.nodata, tags)
            if cfg.cloud_nodata:
                write("cloudmask", optical.cloud_mask(*clouds)[None], img.transform, ("cloud",),
                      None, cloud_mask_tags(plan.cloud_cover))
        else:
            units = {"lidar": "height: metres above ground (nDSM); intensity: relative",
                     "hsi": "reflectance x 10000"}[name]
            write(name, data, img.transform, img.bands, img.nodata, {"units": units})

    k = len(world.classes)
    labels = world.layout.labels.astype(np.int16) - 1  # class index 0..K-1
    # the hand labeller's gaps; the split stream is free (no train/test rasters per chip)
    unlabelled = core | _holes(size, plan.holes, rngs["split"])
    unlabelled |= swath_mask(plan, size, transform, (size, size), transform)
    labels[unlabelled] = LABEL_NODATA
    names = tuple(c.name for c in world.classes)
    write("labels", labels[None], transform, ("class",), LABEL_NODATA,
          {"classes": ",".join(f"{i}={n}" for i, n in enumerate(names)), "ignore": "-1"})
    counts = np.bincount(labels[labels >= 0].ravel(), minlength=k)
    return ChipResult(
        plan=plan,
        files=files,
        label_counts=tuple(int(c) for c in counts),
        nodata_labels=int(unlabelled.sum()),
        seconds=time.perf_counter() - t0,
        nbytes=sum(p.stat().st_size for p in files.values()),
    )


def _task_dict(cfg: DatasetConfig, names: tuple[str, ...]) -> dict:
    specs = {
        "sar": {"kind": "sar", "sar_units": "db"},
        "optical": {"kind": "optical", "nodata": 0, "scale": 1.0 / optical.SCALE},
        "lidar": {"kind": "lidar", "nodata": -9999.0},
        "hsi": {"kind": "hyperspectral", "nodata": -32768, "scale": 1.0 / optical.SCALE},
    }
    order = [s for s in ("sar", "optical", "lidar", "hsi") if s in cfg.sensors]
    template = {s: f"{(HAND_DIR / SUFFIX[s]).as_posix()}/{{scene}}_{SUFFIX[s]}.tif"
                for s in order}
    rules = optical_cloud_rules(cfg.cloud_nodata, cfg.cloud_qa, None)
    if not task_schema_has("masks", "SceneTemplateSpec"):
        rules.pop("mask", None)  # a mask rule without a way to give each scene its raster
    specs["optical"] |= rules
    masks = {"optical": f"{(HAND_DIR / SUFFIX['cloudmask']).as_posix()}/{{scene}}_"
                        f"{SUFFIX['cloudmask']}.tif"} if "mask" in rules else {}
    split_csv = {k: (SPLIT_DIR / v).as_posix() for k, v in SPLIT_FILES.items()}
    return {
        "name": cfg.task_name,
        "task": "patch_classification",
        "sensors": {s: specs[s] for s in order},
        "labels": {"classes": dict(enumerate(names)), "ignore": LABEL_NODATA},
        "scenes": {
            "template": {
                "sensors": template,
                "labels": f"{(HAND_DIR / SUFFIX['labels']).as_posix()}/{{scene}}_LabelHand.tif",
            } | ({"masks": masks} if masks else {}),
            "group": "^(.+)_[0-9]+$",
        },
        "split": {"kind": "scenes", "train": split_csv["train"], "val": split_csv["val"],
                  "test": [split_csv["test"], split_csv["bolivia"]]},
        "patch_size": cfg.patch_size,
        "seed": cfg.seed,
        "train": {"epochs": cfg.task_epochs, "batch_size": 64, "max_train_samples": 20000},
        "search": {"space": "fusion", "strategy": "evolution", "max_trials": cfg.task_trials,
                   "concurrency": 2, "objective": "val_oa"},
    }


def _check_folder(out_dir: Path, plans: tuple[ChipPlan, ...]) -> None:
    """Refuse to mix two datasets: chip files of another dataset would be listed by a glob."""
    planned = {p.file_name(role) for p in plans for role in SUFFIX}
    stale = sorted(
        f.name for suffix in SUFFIX.values() if (out_dir / HAND_DIR / suffix).is_dir()
        for f in (out_dir / HAND_DIR / suffix).glob(f"*_{suffix}.tif") if f.name not in planned
    )
    if stale:
        raise SynthConfigError(
            f"{out_dir / HAND_DIR} holds {len(stale)} chip file(s) of another dataset (e.g. "
            f"{stale[0]}): write to a new folder, or remove {out_dir / RELEASE} first"
        )


Progress = Callable[[int, int, ChipResult, float], None]


def generate_dataset(
    out_dir: Path, config: DatasetConfig, jobs: int = 1, progress: Progress | None = None
) -> DatasetInfo:
    """Write the dataset of `config` under `out_dir` (created; its own files overwritten).

    `jobs` > 1 simulates chips in that many processes (same bytes as one). `progress(done,
    total, chip, elapsed_s)` is called after each chip, in chip order."""
    t0 = time.perf_counter()
    cfg = config
    out_dir = Path(out_dir)
    if jobs < 1:
        raise SynthConfigError(f"jobs={jobs} must be >= 1")
    plans = plan_dataset(cfg)
    _check_folder(out_dir, plans)
    library = _library(cfg.base)  # fails early on a bad spectra folder
    names = tuple(c.name for c in active_classes(cfg.classes))
    out_dir.mkdir(parents=True, exist_ok=True)
    work = partial(write_chip, out_dir, cfg)
    chips: list[ChipResult] = []

    def collect(results: object) -> None:
        for chip in results:  # type: ignore[attr-defined]
            chips.append(chip)
            if progress is not None:
                progress(len(chips), len(plans), chip, time.perf_counter() - t0)

    if jobs == 1 or len(plans) == 1:
        collect(map(work, plans))
    else:
        with ProcessPoolExecutor(max_workers=min(jobs, len(plans), os.cpu_count() or jobs),
                                 mp_context=get_context("spawn")) as pool:
            collect(pool.map(work, plans))

    splits = {key: tuple(c.plan.name for c in chips if c.plan.split == key) for key in SPLIT_FILES}
    (out_dir / SPLIT_DIR).mkdir(parents=True, exist_ok=True)
    for key, file in SPLIT_FILES.items():
        rows = "".join(f"{n}_{SUFFIX['sar']}.tif,{n}_{SUFFIX['labels']}.tif\n"
                       for n in splits[key])
        (out_dir / SPLIT_DIR / file).write_text(rows)

    per_event = {e: sum(c.plan.event == e for c in chips) for e in _counts(cfg.scenes)}
    header = (
        f"Synthetic multi-scene dataset in the Sen1Floods11 v1.1 layout, written by `autors "
        f"synth --scenes {cfg.scenes}` (seed {cfg.seed}).\n"
        f"{cfg.scenes} chips of {cfg.size} x {cfg.size} px: "
        + ", ".join(f"{e} {n}" for e, n in per_event.items())
        + f"; {HELD_OUT_EVENT} is held out (test only).\n"
        f"Split by chip: {len(splits['train'])} train, {len(splits['val'])} val, "
        f"{len(splits['test'])} test + {len(splits['bolivia'])} {HELD_OUT_EVENT}.\n"
        f"Spectra: {library.source}."
    )
    task_path = write_task(out_dir / "task.yaml", _task_dict(cfg, names), header)
    record = {
        "generator": "autors.synth.dataset",
        "config": cfg.record,
        "spectra": library.source,
        "classes": dict(enumerate(names)),
        "chips": [
            asdict(c.plan) | {"name": c.plan.name, "label_counts": list(c.label_counts),
                              "nodata_labels": c.nodata_labels}
            for c in chips
        ],
    }
    write_json(out_dir / "synth_dataset.json", record)
    return DatasetInfo(
        out_dir=out_dir,
        task_path=task_path,
        chips=tuple(chips),
        splits=splits,
        class_names=names,
        spectra=library.source,
        seconds=time.perf_counter() - t0,
    )

