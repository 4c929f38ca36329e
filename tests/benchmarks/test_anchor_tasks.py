"""The shipped task files of the published HSI + LiDAR benchmarks (issue 8): each parses with
`shipped_task`, resolves its rasters under the data root, and carries the official class list.
Loading needs the datasets' rasters, which cannot be on this machine: not tested here."""

from __future__ import annotations

from pathlib import Path

import pytest

from autors.config import shipped_task, shipped_task_names
from autors.errors import TaskFileError

EXPECTED = {
    "trento": ["Apple trees", "Buildings", "Ground", "Woods", "Vineyard", "Roads"],
    "muufl": ["Trees", "Mostly grass", "Mixed ground surface", "Dirt and sand", "Road", "Water",
              "Building shadow", "Building", "Sidewalk", "Yellow curb", "Cloth panels"],
    "houston2013": ["Healthy grass", "Stressed grass", "Synthetic grass", "Trees", "Soil",
                    "Water", "Residential", "Commercial", "Road", "Highway", "Railway",
                    "Parking lot 1", "Parking lot 2", "Tennis court", "Running track"],
    "augsburg": ["Forest", "Residential area", "Industrial area", "Low plants", "Allotment",
                 "Commercial area", "Water"],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_anchor_task_parses(name: str, tmp_path: Path) -> None:
    assert name in shipped_task_names()
    task = shipped_task(name, tmp_path)
    assert task.class_names == EXPECTED[name]
    assert task.labels.class_values == list(range(1, len(EXPECTED[name]) + 1))
    assert task.labels.ignore == 0
    assert {s.kind for s in task.sensors.values()} == {"hyperspectral", "lidar"}
    assert task.split.kind == "given"
    root = tmp_path.resolve()
    for path in [s.path for s in task.sensors.values()] + [task.split.train, task.split.test]:
        assert path.parent == root / name  # resolved against the data root, not the package
    assert task.split.train.name == "train.tif" and task.split.test.name == "test.tif"


def test_anchor_task_needs_a_data_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTORS_DATA", raising=False)
    with pytest.raises(TaskFileError, match="needs a data root"):
        shipped_task("trento")
