"""`generate_scene`: lay out the world, simulate each sensor, write GeoTIFFs and the task file."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rasterio.crs import CRS
from rasterio.transform import from_origin

from autors.synth import hsi, lidar, optical, sar
from autors.synth.bands import OPTICAL, hyperspectral
from autors.synth.catalogue import CLASS_IDS, active_classes
from autors.synth.config import SynthConfig
from autors.synth.illumination import Sun, canopy_direct, cast_shadow
from autors.synth.layout import make_layout
from autors.synth.spectra import build_library, find_asd_dir
from autors.synth.split import make_split
from autors.synth.surface import Surface, variability
from autors.synth.writer import write_geotiff, write_json, write_task

CRS_EPSG = 32632  # UTM zone 32N
ORIGIN = (690_000.0, 5_336_000.0)  # upper-left corner, metres (an urban fringe in Bavaria)
# Independent random streams, so a sensor subset leaves the other sensors' pixels unchanged.
_STREAMS = ("layout", "surface", "optical", "hsi", "sar", "lidar", "split")
SAR_UNITS = "linear"


@dataclass(frozen=True)
class SceneInfo:
    """What `generate_scene` wrote."""

    out_dir: Path
    files: dict[str, Path]  # role (sensor name, labels, train, val, test, task, record) -> path
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


def _task_dict(cfg: SynthConfig, names: tuple[str, ...], files: dict[str, Path]) -> dict:
    sensor_specs = {
        "optical": {"kind": "optical", "nodata": 0, "scale": 1.0 / optical.SCALE},
        "sar": {"kind": "sar", "nodata": sar.NODATA, "sar_units": SAR_UNITS},
        "lidar": {"kind": "lidar", "nodata": lidar.NODATA},
        "hsi": {"kind": "hyperspectral", "nodata": hsi.NODATA, "scale": 1.0 / hsi.SCALE},
    }
    sensors = {
        s: {"kind": sensor_specs[s]["kind"], "path": files[s].name}
        | {k: v for k, v in sensor_specs[s].items() if k != "kind"}
        for s in cfg.sensors
    }
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


def generate_scene(out_dir: Path, config: SynthConfig) -> SceneInfo:
    """Generate the scene described by `config` into `out_dir` (created; files overwritten)."""
    t0 = time.perf_counter()
    cfg = config
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rngs = dict(zip(_STREAMS, (np.random.default_rng(s) for s in
                               np.random.SeedSequence(cfg.seed).spawn(len(_STREAMS)))))
    classes = active_classes(cfg.classes)
    names = tuple(c.name for c in classes)
    k = len(classes)
    crs = CRS.from_epsg(CRS_EPSG)
    transform = from_origin(ORIGIN[0], ORIGIN[1], cfg.pixel_size_m, cfg.pixel_size_m)

    world = make_layout(cfg.size, cfg.pixel_size_m, k, rngs["layout"])
    hsi_bands = hyperspectral(cfg.hsi_bands)
    library = build_library(
        classes, find_asd_dir(cfg.spectra_dir), cfg.redge_shift_nm, OPTICAL.srf
    )
    canopy = np.isin(world.labels, [CLASS_IDS[n] for n in ("oak", "maple", "shrub") if n in names])
    sun = Sun()
    direct = np.where(
        cast_shadow(world.height, cfg.pixel_size_m, sun),
        0.0,
        canopy_direct(world.height, canopy, cfg.pixel_size_m, sun),
    ).astype(np.float32)
    surface = Surface(
        labels=world.labels,
        coefs=variability(world.objects, rngs["surface"], 20.0 / cfg.pixel_size_m),
        direct=direct,
        library=library,
    )

    files: dict[str, Path] = {}
    if "optical" in cfg.sensors:
        img = optical.simulate(surface, cfg.cloud_cover, cfg.pixel_size_m, sun, rngs["optical"])
        files["optical"] = write_geotiff(
            out_dir / "optical.tif", img, transform, crs, OPTICAL.names, 0,
            {"units": "reflectance x 10000", "clouds": f"{cfg.cloud_cover:.2f} of the scene"},
        )
    if "sar" in cfg.sensors:
        img, grid = sar.simulate(
            world.labels, world.objects, world.height, classes, transform, crs,
            cfg.sar_pixel_factor, cfg.looks, rngs["sar"],
        )
        files["sar"] = write_geotiff(
            out_dir / "sar.tif", img, grid.transform, crs, ("VV", "VH"), sar.NODATA,
            {"units": "linear power (sigma0)", "looks": str(cfg.looks)},
        )
    if "lidar" in cfg.sensors:
        water = world.labels == CLASS_IDS["water"]
        img = lidar.simulate(surface, world.height, canopy, water, cfg.pixel_size_m, rngs["lidar"])
        files["lidar"] = write_geotiff(
            out_dir / "lidar.tif", img, transform, crs, ("height", "intensity"), lidar.NODATA,
            {"units": "height: metres above ground (nDSM); intensity: relative"},
        )
    if "hsi" in cfg.sensors:
        img = hsi.simulate(surface, hsi_bands, rngs["hsi"])
        files["hsi"] = write_geotiff(
            out_dir / "hsi.tif", img, transform, crs, hsi_bands.names, hsi.NODATA,
            {"units": "reflectance x 10000"},
        )

    split = make_split(
        world.labels, world.objects, k, cfg.split_block, cfg.patch_size // 2,
        cfg.n_train_per_class, rngs["split"], cfg.n_val_per_class,
    )
    roles = {"labels": world.labels, "train": split.train, "test": split.test}
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
        "config": {key: (str(v) if isinstance(v, Path) else v) for key, v in asdict(cfg).items()},
        "spectra": library.source,
        "classes": list(names),
        "split": split.description,
        "pixel_counts": counts,
        "land_uses": list(world.uses),
        "crs": f"EPSG:{CRS_EPSG}",
        "sar_units": SAR_UNITS,
    }
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
