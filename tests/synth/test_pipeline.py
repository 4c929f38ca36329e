"""The written scene loads through the data pipeline unchanged (issue: builds on autors.data)."""

from __future__ import annotations

import numpy as np

from autors.config import load_task
from autors.data import load_scene, prepare
from autors.synth import SceneInfo

from .conftest import SIZE


def test_scene_loads_through_the_data_pipeline(scene: SceneInfo) -> None:
    task = load_task(scene.task_path)
    data = prepare(task)
    assert data.in_channels == {"optical": 10, "sar": 2, "lidar": 2, "hsi": 60}
    assert data.class_names == list(scene.class_names)
    assert (data.grid.height, data.grid.width) == (SIZE, SIZE)  # the label grid, SAR resampled
    assert data.band_names["sar"] == ["VV", "VH"]
    assert 0.85 < load_scene(task).sensor_valid["lidar"].mean() < 1.0  # LiDAR gaps are invalid
    kept = sum(sum(data.index.counts()[s]) for s in ("train", "val"))
    assert kept >= 0.85 * scene.n_train  # few training pixels fall into sensor gaps
    sample = data.dataset("train")[0]
    assert tuple(sample["hsi"].shape) == (60, 11, 11)
    assert np.isfinite(sample["sar"].numpy()).all()
