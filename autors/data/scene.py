"""A Scene: every sensor and label raster of a task, read once and aligned on one grid."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rasterio.warp import Resampling

from autors.config import SensorSpec, TaskSpec
from autors.data.grid import Grid, crop_to_overlap, read_onto
from autors.data.labels import read_labels
from autors.data.raster import RasterInfo, inspect, resolve_bands
from autors.data.scenes import SceneFiles, list_scenes
from autors.errors import DataError

# Floor of linear SAR power before the dB conversion (10*log10(1e-10) = -100 dB).
SAR_EPS = 1e-10


@dataclass
class Scene:
    """All rasters of a task on the reference grid.

    Sensor arrays hold physical values (after scale/offset and dB conversion); invalid pixels
    are 0 in the arrays and False in the masks, so no NaN travels downstream.
    """

    grid: Grid
    sensors: dict[str, np.ndarray]  # name -> float32 [C, H, W]
    sensor_valid: dict[str, np.ndarray]  # name -> bool [H, W]
    valid: np.ndarray  # bool [H, W]: every sensor valid
    band_names: dict[str, list[str]]
    labels: dict[str, np.ndarray]  # "full" / "train" / "val" / "test" -> int16 [H, W], -1 = none
    rasters: dict[str, RasterInfo]  # headers of the source files (sensor names, "labels:<key>")


def load_scene(task: TaskSpec, files: SceneFiles | None = None) -> Scene:
    """Read every raster of one scene (`files`; default: a one-scene task's only scene) at
    once, align it on the reference grid and build the masks: for inspecting a scene whole.
    Training reads datasets through `autors.data.index` instead.

    The reference grid is the label raster's (`labels.path`, else the given train raster) or a
    sensor's (`grid: <sensor>`), cropped to the area every sensor covers.
    """
    if files is None:
        scenes = list_scenes(task)
        if len(scenes) != 1:
            raise DataError(f"task '{task.name}' has {len(scenes)} scenes: name the one to load")
        files = scenes[0]
    # Headers first: bad paths, bands and georeferencing fail before any pixel is read.
    sensor_infos = {name: inspect(files.sensors[name]) for name in task.sensors}
    bands = {
        name: resolve_bands(sensor_infos[name], spec.bands) for name, spec in task.sensors.items()
    }
    label_infos = {key: inspect(path) for key, path in files.labels.items()}

    if task.grid == "labels":
        ref = label_infos["full"] if "full" in label_infos else label_infos["train"]
    else:
        ref = sensor_infos[task.grid]
    grid = crop_to_overlap(
        Grid.of(ref), {f"sensor '{name}'": info for name, info in sensor_infos.items()}
    )
    for key, info in label_infos.items():
        crop_to_overlap(grid, {f"label raster '{key}'": info})  # raises if it misses the grid

    sensors, sensor_valid = {}, {}
    for name, spec in task.sensors.items():
        sensors[name], sensor_valid[name] = _load_sensor(
            name, spec, sensor_infos[name], bands[name][0], grid
        )
    valid = np.logical_and.reduce(list(sensor_valid.values()))
    labels = {key: read_labels(info, task.labels, grid) for key, info in label_infos.items()}
    if task.split.kind == "given":
        check_disjoint(task, labels)
    rasters = dict(sensor_infos)
    rasters.update({f"labels:{key}": info for key, info in label_infos.items()})
    return Scene(
        grid=grid,
        sensors=sensors,
        sensor_valid=sensor_valid,
        valid=valid,
        band_names={name: bands[name][1] for name in task.sensors},
        labels=labels,
        rasters=rasters,
    )


def load_sensor(
    spec: SensorSpec,
    grid: Grid,
    info: RasterInfo | None = None,
    indexes: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One sensor on `grid` (a scene, or a window of one when predicting): values float32
    [C, H, W] after nodata, scale/offset and dB conversion, invalid pixels 0, and validity
    bool [H, W]. `info`/`indexes` skip re-reading the header when already known."""
    if info is None:
        info = inspect(spec.path)
    if indexes is None:
        indexes, _ = resolve_bands(info, spec.bands)
    stack = read_onto(
        info, indexes, grid, _to_physical(spec, info, indexes), np.nan, Resampling.bilinear
    )
    if spec.kind == "sar" and spec.sar_units == "linear":
        # Resampled in linear power (physically meaningful averages), then converted.
        np.maximum(stack, SAR_EPS, out=stack)  # NaN stays NaN
        np.log10(stack, out=stack)
        stack *= 10.0
    valid = np.isfinite(stack).all(axis=0)  # [H, W]
    np.copyto(stack, 0.0, where=~valid[None])
    return stack, valid


def _load_sensor(
    name: str, spec: SensorSpec, info: RasterInfo, indexes: list[int], grid: Grid
) -> tuple[np.ndarray, np.ndarray]:
    """`load_sensor`, refusing a sensor with no valid pixel on `grid` (a DataError naming it)."""
    stack, valid = load_sensor(spec, grid, info, indexes)
    if not valid.any():
        nodata = spec.nodata if spec.nodata is not None else info.nodata[indexes[0] - 1]
        raise DataError(
            f"sensor '{name}' ({info.path}) has no valid pixel on the reference grid: every "
            f"pixel is nodata ({nodata}) or NaN in at least one band; check the file and the "
            "sensor's 'nodata' in the task file"
        )
    return stack, valid


def _to_physical(
    spec: SensorSpec, info: RasterInfo, indexes: list[int]
) -> Callable[[np.ndarray], np.ndarray]:
    """Raw stack -> NaN at nodata, then scale/offset (in place on the freshly read array)."""
    if spec.nodata is not None:
        nodata = [spec.nodata] * len(indexes)
    else:
        nodata = [info.nodata[i - 1] for i in indexes]
    # NaN never compares equal, so bands without nodata mark nothing here.
    nd = np.array([np.nan if v is None else v for v in nodata], np.float32)[:, None, None]

    def convert(raw: np.ndarray) -> np.ndarray:  # [C, h, w] float32
        np.copyto(raw, np.float32(np.nan), where=raw == nd)
        if spec.scale != 1.0:
            raw *= np.float32(spec.scale)
        if spec.offset != 0.0:
            raw += np.float32(spec.offset)
        return raw

    return convert


def check_disjoint(task: TaskSpec, labels: dict[str, np.ndarray]) -> None:
    """The given split rasters must not label the same pixel twice."""
    given = [key for key in ("train", "val", "test") if key in labels]
    for i, a in enumerate(given):
        for b in given[i + 1:]:
            both = (labels[a] >= 0) & (labels[b] >= 0)
            if both.any():
                raise DataError(
                    f"{int(both.sum())} pixels are labelled in both the {a} raster "
                    f"({getattr(task.split, a)}) and the {b} raster ({getattr(task.split, b)}); "
                    "the given splits must be disjoint"
                )
