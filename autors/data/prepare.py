"""`prepare(task)`: everything a trial needs, computed once and shared (e.g. via Ray's object
store). Holds numpy arrays and plain values only, so it pickles cheaply."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autors.config import TaskKind, TaskSpec
from autors.data.datasets import PatchDataset, TileDataset
from autors.data.grid import Grid
from autors.data.normalize import NormStats
from autors.data.scene import load_scene
from autors.data.splits import Splits, make_splits


@dataclass
class PreparedData:
    """Normalised sensors on the reference grid, the splits and the statistics used."""

    task_kind: TaskKind
    sensors: dict[str, np.ndarray]  # name -> float32 [C, H, W], normalised, invalid = 0
    valid: np.ndarray  # bool [H, W], every sensor valid
    splits: Splits
    stats: NormStats
    grid: Grid
    band_names: dict[str, list[str]]
    class_names: list[str]
    patch_size: int
    tile_size: int

    @property
    def in_channels(self) -> dict[str, int]:
        """Bands per sensor, in the task's sensor order."""
        return {name: int(arr.shape[0]) for name, arr in self.sensors.items()}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def dataset(
        self, split: str, augment: bool = False, seed: int = 0
    ) -> PatchDataset | TileDataset:
        """The torch dataset of one split ('train', 'val' or 'test') for the task kind."""
        labels = self.splits.get(split)
        if self.task_kind == "patch_classification":
            return PatchDataset(self.sensors, labels, self.patch_size, augment, seed)
        return TileDataset(self.sensors, labels, self.tile_size, augment, seed)


def prepare(task: TaskSpec) -> PreparedData:
    """Load the scene, split it, compute normalisation statistics on the training pixels and
    normalise every sensor."""
    scene = load_scene(task)
    splits = make_splits(task, scene)
    stats = NormStats.compute(scene, splits.train >= 0)
    sensors = {}
    for name in list(scene.sensors):
        # One sensor at a time, dropping the raw copy, so peak memory is one extra sensor.
        raw = {name: scene.sensors.pop(name)}
        sensors[name] = stats.apply(raw, {name: scene.sensor_valid[name]})[name]
        del raw
    return PreparedData(
        task_kind=task.task,
        sensors=sensors,
        valid=scene.valid,
        splits=splits,
        stats=stats,
        grid=scene.grid,
        band_names=scene.band_names,
        class_names=task.class_names,
        patch_size=task.patch_size,
        tile_size=task.tile_size,
    )
