"""`generate_scene`: lay out the world, simulate each sensor, write GeoTIFFs and the task file.

With `SynthConfig.cloud_nodata` the optical sensor's clouds and shadows also go to a mask raster
(`CLOUD_MASK_FILE`, on the optical grid) and with `cloud_qa` to a last optical band "SCL"; the
task then declares them as the optical sensor's validity rules (`optical_cloud_rules`). The
hyperspectral sensor flies below the clouds (see `hsi`): it sees neither clouds nor their
shadows, so it gets no mask.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.crs import CRS
from rasterio.transform import Affine, from_origin

import autors.config
from autors.synth import hsi, lidar, optical, sar, slc
from autors.synth.bands import OPTICAL, hyperspectral
from autors.synth.catalogue import CLASS_IDS, ClassDef, active_classes
from autors.synth.config import SynthConfig
from autors.synth.illumination import Sun, canopy_direct, cast_shadow
from autors.synth.layout import Layout, make_layout
from autors.synth.spectra import SpectralLibrary, build_library, find_asd_dir
from autors.synth.split import make_split
from autors.synth.surface import Surface, variability
from autors.synth.writer import write_geotiff, write_json, write_task

CRS_EPSG = 32632  # UTM zone 32N
ORIGIN = (690_000.0, 5_336_000.0)  # upper-left corner, metres (an urban fringe in Bavaria)
# Independent random streams, so a sensor subset leaves the other sensors' pixels unchanged.
_STREAMS = ("layout", "surface", "optical", "hsi", "sar", "lidar", "split", "slc")
SAR_UNITS = "linear"
CLOUD_MASK_FILE = "optical_cloudmask.tif"
QA_BAND = "SCL"


@dataclass(frozen=True)
class SceneInfo:
    """What `generate_scene` wrote."""

    out_dir: Path
    # role (sensor name, labels, train, val, test, task, record; cloudmask with
    # cloud_nodata) -> path
    files: dict[str, Path]
    spectra: str  # "MUUFL ASD field spectra from <path>" or "built-in spectra"
    class_names: tuple[str, ...]  # label value i+1 -> class_names[i]
    sensors: tuple[str, ...]
    n_train: int
    n_val: int  # pixels of val.tif (0: validation is carved from the training labels)
    n_test: int
    train_counts: dict[str, int]  # labelled training pixels per class (0: scene too small)
    split: str  # how train and test were separated
    seconds: float

    @property
    def task_path(self) -> Path:
        return self.files["task"]


def task_schema_has(field: str, model: str = "SensorSpec") -> bool:
    """Whether `autors.config`'s task model `model` reads `field` (the cloud mask and QA rules
    arrived with issue 14): the written task names a rule only where it loads."""
    spec = getattr(autors.config, model, None)
    return spec is not None and field in spec.model_fields


def optical_cloud_rules(cloud_nodata: bool, cloud_qa: bool, mask_path: str | None) -> dict:
    """The optical sensor's task entries for its cloud mask raster (`mask_path`; None in a
    dataset, where the scenes give it) and its SCL band: thick cloud and shadow are invalid,
    thin cloud is kept. `bands` leaves the SCL band out of the model inputs."""
    out: dict = {}
    if cloud_qa:
        out["bands"] = list(OPTICAL.names)
    if cloud_nodata and task_schema_has("mask"):
        out["mask"] = ({} if mask_path is None else {"path": mask_path}) | {
            "invalid_values": list(optical.MASK_INVALID)}
    if cloud_qa and task_schema_has("qa"):
        out["qa"] = {"band": QA_BAND, "invalid_values": list(optical.SCL_INVALID)}
    return out


def cloud_mask_tags(cover: float) -> dict[str, str]:
    """GeoTIFF tags of a cloud mask raster."""
    return {"classes": ",".join(f"{v}={n}" for v, n in optical.MASK_CLASSES.items()),
            "invalid": ",".join(str(v) for v in optical.MASK_INVALID),
            "clouds": f"{cover:.2f} of the scene"}


def scl_tags() -> dict[str, str]:
    """GeoTIFF tags naming the SCL band's codes."""
    return {QA_BAND: "Sentinel-2 scene classification: "
            + ", ".join(f"{v}={n}" for v, n in sorted(optical.SCL_CLASSES.items()))}


def _task_dict(cfg: SynthConfig, names: tuple[str, ...], files: dict[str, Path]) -> dict:
    sensor_specs = {
        "optical": {"kind": "optical", "nodata": 0, "scale": 1.0 / optical.SCALE},
        "sar": {"kind": "sar", "nodata": sar.NODATA, "sar_units": SAR_UNITS},
        "lidar": {"kind": "lidar", "nodata": lidar.NODATA},
        "hsi": {"kind": "hyperspectral", "nodata": hsi.NODATA, "scale": 1.0 / hsi.SCALE},
        "slc": {"kind": "sar", "nodata": slc.NODATA, "sar_units": "complex"},
    }
    sensors = {
        s: {"kind": sensor_specs[s]["kind"], "path": files[s].name}
        | {k: v for k, v in sensor_specs[s].items() if k != "kind"}
        for s in cfg.sensors
    }
    if "optical" in sensors:
        sensors["optical"] |= optical_cloud_rules(
            cfg.cloud_nodata, cfg.cloud_qa,
            files["cloudmask"].name if "cloudmask" in files else None)
    return {
        "name": cfg.task_name,
        "task": "patch_classification",
        "sensors": sensors,
        "labels": {"path": files["labels"].name, "classes": list(names), "ignore": 0},
        "split": {"kind": "given", "train": files["train"].name, "test": files["test"].name}
        | ({"val": files["val"].name} if "val" in files
           else {"val_fraction": 0.2, "val_block_size": 16}),
        "patch_size": cfg.patch_size,
        "seed": cfg.seed,
        "train": {"epochs": cfg.task_epochs, "batch_size": 32, "lr": 0.005,
                  "early_stopping_patience": 5},
        "search": {
            "space": "fusion",
            "strategy": "evolution",
            "max_trials": cfg.task_trials,
            "concurrency": 2,
            "cpus_per_trial": 1.0,
            "objective": "val_oa",
            "top_k": 1,
            "final_seeds": 1,
        },
    }


def scene_rngs(seed: int) -> dict[str, np.random.Generator]:
    """One independent generator per random stream of a scene (`_STREAMS`), from its seed."""
    return dict(zip(_STREAMS, (np.random.default_rng(s) for s in
                               np.random.SeedSequence(seed).spawn(len(_STREAMS)))))


def load_library(cfg: SynthConfig) -> SpectralLibrary:
    """The class spectra of `cfg` (its classes, spectra folder and red-edge shift)."""
    return build_library(
        active_classes(cfg.classes), find_asd_dir(cfg.spectra_dir), cfg.redge_shift_nm,
        OPTICAL.srf,
    )


@dataclass(frozen=True)
class World:
    """A scene's ground truth and what every passive sensor sees of it (before the sensors)."""

    classes: tuple[ClassDef, ...]
    layout: Layout  # labels 1..K, objects, true heights
    canopy: np.ndarray  # [H, W] bool: tree and shrub crowns
    surface: Surface
    sun: Sun


def make_world(
    cfg: SynthConfig,
    rngs: dict[str, np.random.Generator],
    library: SpectralLibrary,
    sun: Sun | None = None,
    use_weights: dict[str, float] | None = None,
) -> World:
    """Lay out the world (stream "layout") and its surface variability (stream "surface"),
    lit by `sun` (default: `Sun()`); `use_weights`: see `layout.make_layout`."""
    sun = Sun() if sun is None else sun
    classes = active_classes(cfg.classes)
    names = tuple(c.name for c in classes)
    layout = make_layout(cfg.size, cfg.pixel_size_m, len(classes), rngs["layout"], use_weights)
    canopy = np.isin(layout.labels,
                     [CLASS_IDS[n] for n in ("oak", "maple", "shrub") if n in names])
    direct = np.where(
        cast_shadow(layout.height, cfg.pixel_size_m, sun),
        0.0,
        canopy_direct(layout.height, canopy, cfg.pixel_size_m, sun),
    ).astype(np.float32)
    surface = Surface(
        labels=layout.labels,
        coefs=variability(layout.objects, rngs["surface"], 20.0 / cfg.pixel_size_m),
        direct=direct,
        library=library,
    )
    return World(classes=classes, layout=layout, canopy=canopy, surface=surface, sun=sun)


@dataclass(frozen=True)
class SensorImage:
    """One simulated sensor image and the grid it lies on."""

    data: np.ndarray  # [C, H, W]
    transform: Affine
    bands: tuple[str, ...]
    nodata: float


def simulate_sensor(
    name: str,
    world: World,
    cfg: SynthConfig,
    rngs: dict[str, np.random.Generator],
    transform: Affine,
    crs: CRS,
    optical_noise: float = optical.NOISE,
    clouds: tuple[np.ndarray, np.ndarray] | None = None,
) -> SensorImage:
    """Simulate sensor `name` (its own random stream) over `world`, whose label grid is
    `transform` in `crs`. `clouds`: the optical cloud fields, already drawn from the optical
    stream by `optical.cloud_fields` (for a caller that needs them, e.g. to mask labels)."""
    surface, layout = world.surface, world.layout
    if name == "optical":
        img = optical.simulate(surface, cfg.cloud_cover, cfg.pixel_size_m, world.sun,
                               rngs["optical"], noise=optical_noise, clouds=clouds)
        return SensorImage(img, transform, OPTICAL.names, 0)
    if name == "sar":
        img, grid = sar.simulate(
            layout.labels, layout.objects, layout.height, world.classes, transform, crs,
            cfg.sar_pixel_factor, cfg.looks, rngs["sar"],
        )
        return SensorImage(img, grid.transform, ("VV", "VH"), sar.NODATA)
    if name == "lidar":
        water = layout.labels == CLASS_IDS["water"]
        img = lidar.simulate(surface, layout.height, world.canopy, water, cfg.pixel_size_m,
                             rngs["lidar"])
        return SensorImage(img, transform, ("height", "intensity"), lidar.NODATA)
    if name == "hsi":
        bands = hyperspectral(cfg.hsi_bands)
        return SensorImage(hsi.simulate(surface, bands, rngs["hsi"]), transform, bands.names,
                           hsi.NODATA)
    if name == "slc":
        img = slc.simulate(layout.labels, layout.objects, world.classes, rngs["slc"])
        return SensorImage(img, transform, slc.BANDS, slc.NODATA)
    raise ValueError(f"unknown sensor {name!r}")


def generate_scene(out_dir: Path, config: SynthConfig) -> SceneInfo:
    """Generate the scene described by `config` into `out_dir` (created; files overwritten)."""
    t0 = time.perf_counter()
    cfg = config
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rngs = scene_rngs(cfg.seed)
    crs = CRS.from_epsg(CRS_EPSG)
    transform = from_origin(ORIGIN[0], ORIGIN[1], cfg.pixel_size_m, cfg.pixel_size_m)
    library = load_library(cfg)
    world = make_world(cfg, rngs, library)
    layout = world.layout
    names = tuple(c.name for c in world.classes)
    k = len(names)

    tags = {
        "optical": {"units": "reflectance x 10000",
                    "clouds": f"{cfg.cloud_cover:.2f} of the scene"},
        "sar": {"units": "linear power (sigma0)", "looks": str(cfg.looks)},
        "lidar": {"units": "height: metres above ground (nDSM); intensity: relative"},
        "hsi": {"units": "reflectance x 10000"},
        "slc": {"units": "single-look complex amplitude (HH, VV)",
                "phase_only_classes": ",".join(slc.phase_only_classes(world.classes))},
    }
    files: dict[str, Path] = {}
    # the cloud fields first from the optical stream, as optical.simulate would draw them
    clouds = optical.cloud_fields((cfg.size, cfg.size), cfg.cloud_cover, cfg.pixel_size_m,
                                  world.sun, rngs["optical"]) if "optical" in cfg.sensors else None
    for name in cfg.sensors:
        img = simulate_sensor(name, world, cfg, rngs, transform, crs, clouds=clouds)
        data, bands, sensor_tags = img.data, img.bands, tags[name]
        if name == "optical" and clouds is not None:
            if cfg.cloud_qa:
                data = np.concatenate([data, optical.scl_band(data, *clouds)[None]])
                bands, sensor_tags = bands + (QA_BAND,), sensor_tags | scl_tags()
            if cfg.cloud_nodata:
                sensor_tags = sensor_tags | {"cloud mask": CLOUD_MASK_FILE}
        files[name] = write_geotiff(
            out_dir / f"{name}.tif", data, img.transform, crs, bands, img.nodata, sensor_tags,
        )
        if name == "optical" and clouds is not None and cfg.cloud_nodata:
            files["cloudmask"] = write_geotiff(
                out_dir / CLOUD_MASK_FILE, optical.cloud_mask(*clouds)[None], img.transform,
                crs, ("cloud",), None, cloud_mask_tags(cfg.cloud_cover))

    split = make_split(
        layout.labels, layout.objects, k, cfg.split_block, cfg.patch_size // 2,
        cfg.n_train_per_class, rngs["split"], cfg.n_val_per_class,
    )
    roles = {"labels": layout.labels, "train": split.train, "test": split.test}
    if split.val is not None:
        roles["val"] = split.val
    for role, arr in roles.items():
        files[role] = write_geotiff(
            out_dir / f"{role}.tif", arr[None].astype(np.uint8), transform, crs, ("class",), 0,
            {"classes": ",".join(names), "ignore": "0"},
        )
    task = _task_dict(cfg, names, files)
    header = (
        f"Synthetic multi-sensor scene written by `autors synth` (seed {cfg.seed}).\n"
        f"Spectra: {library.source}.\nSplit: {split.description}."
    )
    files["task"] = write_task(out_dir / "task.yaml", task, header)
    counts = {
        role: dict(zip(names, np.bincount(arr.ravel(), minlength=k + 1)[1:].tolist()))
        for role, arr in roles.items()
    }
    record = {
        "generator": "autors.synth",
        "config": cfg.record,
        "spectra": library.source,
        "classes": list(names),
        "split": split.description,
        "pixel_counts": counts,
        "land_uses": list(layout.uses),
        "crs": f"EPSG:{CRS_EPSG}",
        "sar_units": SAR_UNITS,
    }
    if "slc" in cfg.sensors:
        record["phase_only_classes"] = slc.phase_only_classes(world.classes)
    files["record"] = write_json(out_dir / "scene.json", record)
    return SceneInfo(
        out_dir=out_dir,
        files=files,
        spectra=library.source,
        class_names=names,
        sensors=cfg.sensors,
        n_train=int((split.train > 0).sum()),
        train_counts=counts["train"],
        n_val=0 if split.val is None else int((split.val > 0).sum()),
        n_test=int((split.test > 0).sum()),
        split=split.description,
        seconds=time.perf_counter() - t0,
    )
