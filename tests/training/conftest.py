"""Fixtures of the training tests: a tiny learnable two-sensor scene written as real GeoTIFFs.

48 x 48 pixels on a 10 m UTM grid, 3 classes in 8 x 8 px cells (seeded), a quarter of the
pixels unlabelled. optical (4 bands) carries a class spectrum plus noise, lidar (1 band) a
class height plus noise; each sensor alone is ambiguous between two classes (optical confuses
classes 2 and 3, lidar classes 1 and 2), together they separate all three.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from affine import Affine
from rasterio.crs import CRS

from autors.config import TaskSpec, load_task
from autors.data import PreparedData, prepare

SIZE, CELL = 48, 8
TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0)
CRS_UTM = CRS.from_epsg(32632)
SPECTRA = np.array([[0.1, 0.2, 0.1, 0.5], [0.3, 0.3, 0.2, 0.2], [0.3, 0.3, 0.2, 0.2]])  # [K, 4]
HEIGHTS = np.array([0.0, 0.0, 8.0])  # [K]


def _write(path: Path, data: np.ndarray, nodata: float | None = None) -> Path:
    data = data[None] if data.ndim == 2 else data
    with rasterio.open(
        path, "w", driver="GTiff", count=data.shape[0], height=SIZE, width=SIZE,
        dtype=data.dtype, crs=CRS_UTM, transform=TRANSFORM, nodata=nodata,
    ) as ds:
        ds.write(data)
    return path


def make_scene(folder: Path, seed: int = 0) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    n = SIZE // CELL
    cells = rng.integers(0, 3, (n, n))  # class index per cell
    cls = np.kron(cells, np.ones((CELL, CELL), dtype=np.int64))  # [H, W] 0..2
    optical = SPECTRA[cls].transpose(2, 0, 1) + rng.normal(0, 0.05, (4, SIZE, SIZE))
    lidar = HEIGHTS[cls] + rng.normal(0, 1.5, (SIZE, SIZE))
    labels = (cls + 1).astype(np.uint8)
    labels[rng.random((SIZE, SIZE)) < 0.25] = 0  # unlabelled
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "optical": _write(folder / "optical.tif", (1000 * optical).astype(np.float32)),
        "lidar": _write(folder / "lidar.tif", lidar.astype(np.float32)),
        "labels": _write(folder / "labels.tif", labels, nodata=0),
    }


def task_dict(files: dict[str, Path], kind: str = "patch_classification") -> dict:
    return {
        "name": "tiny",
        "task": kind,
        "sensors": {
            "optical": {"kind": "optical", "path": str(files["optical"])},
            "lidar": {"kind": "lidar", "path": str(files["lidar"])},
        },
        "labels": {"path": str(files["labels"]), "classes": ["water", "grass", "trees"]},
        # buffer 0 for segmentation: the 8-px blocks are smaller than the 16-px tiles (the
        # buffer itself is tested in tests/data/test_splits.py)
        "split": {"kind": "spatial_blocks", "block_size": 8, "test_fraction": 0.25,
                  "val_fraction": 0.25, **({"buffer": 0} if kind == "segmentation" else {})},
        "patch_size": 5,
        "tile_size": 16,
        "seed": 0,
        "train": {"epochs": 4, "batch_size": 32, "lr": 0.01, "early_stopping_patience": 3,
                  "device": "cpu"},
        "search": {"objective": "val_miou" if kind == "segmentation" else "val_oa"},
    }


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> object:
    """Tiny models on a shared 2-core CI box: two intra-op threads contend with the other
    processes and made epochs ~10x slower than one thread (measured 6.5 s vs 0.4 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def scene_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_scene(tmp_path_factory.mktemp("tiny_scene"))


@pytest.fixture
def write_task(tmp_path: Path, scene_files: dict[str, Path]) -> Callable[..., Path]:
    """write_task(kind=..., edit=fn(dict)) -> path of a task YAML in tmp_path."""

    def write(kind: str = "patch_classification", edit: Callable[[dict], None] | None = None,
              name: str = "task.yaml") -> Path:
        d = task_dict(scene_files, kind)
        if edit is not None:
            edit(d)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(d, sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def patch_task(scene_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
               ) -> TaskSpec:
    path = tmp_path_factory.mktemp("patch_task") / "task.yaml"
    path.write_text(yaml.safe_dump(task_dict(scene_files)))
    return load_task(path)


@pytest.fixture(scope="session")
def patch_data(patch_task: TaskSpec) -> PreparedData:
    return prepare(patch_task)


@pytest.fixture(scope="session")
def seg_task(scene_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
             ) -> TaskSpec:
    path = tmp_path_factory.mktemp("seg_task") / "task.yaml"
    path.write_text(yaml.safe_dump(task_dict(scene_files, "segmentation")))
    return load_task(path)


@pytest.fixture(scope="session")
def seg_data(seg_task: TaskSpec) -> PreparedData:
    return prepare(seg_task)


@pytest.fixture(scope="session")
def synth_task(tmp_path_factory: pytest.TempPathFactory) -> TaskSpec:
    """The small synthetic scene of autors.synth (128 x 128, 4 sensors, 10 classes)."""
    from autors.synth import SynthConfig, generate_scene

    info = generate_scene(tmp_path_factory.mktemp("synth_small"), SynthConfig.small())
    return load_task(info.task_path)
