"""Same seed, same bytes; another seed, another scene; a sensor subset writes only those."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from autors.config import load_task
from autors.synth import SynthConfig, generate_scene

RASTERS = ("optical.tif", "sar.tif", "lidar.tif", "hsi.tif", "labels.tif", "train.tif", "test.tif")


def _cfg(seed: int, sensors: tuple[str, ...] = ("optical", "sar", "lidar", "hsi")) -> SynthConfig:
    return SynthConfig(size=48, seed=seed, n_train_per_class=5, sensors=sensors, block_size=24)


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    a, b, c = (tmp_path_factory.mktemp(n) for n in "abc")
    generate_scene(a, _cfg(7))
    generate_scene(b, _cfg(7))
    generate_scene(c, _cfg(8))
    return a, b, c


@pytest.mark.parametrize("name", RASTERS + ("task.yaml",))
def test_same_seed_gives_identical_bytes(three: tuple[Path, Path, Path], name: str) -> None:
    a, b, _ = three
    assert (a / name).read_bytes() == (b / name).read_bytes()


@pytest.mark.parametrize("name", ("labels.tif", "optical.tif", "sar.tif", "hsi.tif"))
def test_another_seed_gives_another_scene(three: tuple[Path, Path, Path], name: str) -> None:
    a, _, c = three
    with rasterio.open(a / name) as x, rasterio.open(c / name) as y:
        assert not np.array_equal(x.read(), y.read())


def test_sensor_subset_writes_and_lists_only_those(
    three: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    info = generate_scene(tmp_path, _cfg(7, ("sar", "lidar")))
    assert info.sensors == ("sar", "lidar")
    assert not (tmp_path / "optical.tif").exists() and not (tmp_path / "hsi.tif").exists()
    task = load_task(info.task_path)
    assert set(task.sensors) == {"sar", "lidar"}
    # independent random streams: the subset's rasters equal the full scene's
    full = three[0]
    for name in ("sar.tif", "lidar.tif", "labels.tif", "train.tif", "test.tif"):
        assert (tmp_path / name).read_bytes() == (full / name).read_bytes(), name
