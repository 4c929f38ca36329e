"""`prepare(task)`: everything a trial needs, computed once and shared (e.g. via Ray's object
store). Holds the dataset index and, when the dataset fits in `data.in_memory_max_mb`, the
normalised sensors of every scene; otherwise trials read their windows from the GeoTIFFs.
Numpy arrays and plain values only, so it pickles cheaply."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autors.config import SensorSpec, TaskKind, TaskSpec
from autors.data.conditions import Condition, ConditionedSource
from autors.data.datasets import PatchDataset, TileDataset
from autors.data.grid import Grid
from autors.data.index import DatasetIndex, build_index
from autors.data.normalize import NormStats
from autors.data.sources import ArraySource, BlockSource


@dataclass
class PreparedData:
    """The dataset index, the statistics used and, in memory, the normalised sensors."""

    task_kind: TaskKind
    index: DatasetIndex
    sensor_specs: dict[str, SensorSpec]  # how a streamed read converts each sensor
    arrays: list[dict[str, np.ndarray]] | None  # per scene, name -> float32 [C, H, W]; None: streamed
    masks: list[dict[str, np.ndarray]] | None  # per scene, name -> bool [H, W] validity
    class_names: list[str]
    patch_size: int
    tile_size: int
    block_size: int
    cache_mb: float
    _source: ArraySource | BlockSource | None = field(default=None, init=False, repr=False,
                                                      compare=False)

    @property
    def in_memory(self) -> bool:
        return self.arrays is not None

    @property
    def stats(self) -> NormStats:
        return self.index.stats

    @property
    def splits(self) -> DatasetIndex:
        """Split counts, hash and record (the index answers them)."""
        return self.index

    @property
    def band_names(self) -> dict[str, list[str]]:
        return self.index.band_names

    @property
    def grid(self) -> Grid:
        """The reference grid of the first scene (the only one in a one-scene task)."""
        return self.index.scenes[0].grid

    @property
    def in_channels(self) -> dict[str, int]:
        """Bands per sensor, in the task's sensor order."""
        return self.index.in_channels

    @property
    def steps(self) -> dict[str, int]:
        """Time-series sensors: their date count T (`fusion.build_model(dates=)`)."""
        return self.index.steps

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def targets(self):
        """A task with `targets`: each target (`autors.data.labels.TargetInfo`); else None."""
        return self.index.targets

    @property
    def model_outputs(self) -> int | dict[str, int]:
        """What `fusion.build_model` is asked for: the number of classes, or with `targets`
        each target's output channels ({name: channels}, concatenated in this order)."""
        if self.index.targets is None:
            return self.num_classes
        return {t.name: t.channels for t in self.index.targets}

    def shipped_bytes(self) -> int:
        """Bytes every trial receives (through Ray's object store): the index, plus the arrays
        when in memory."""
        arrays = sum(a.nbytes for part in (self.arrays, self.masks) for scene in part
                     for a in scene.values()) if self.arrays is not None else 0
        return len(pickle.dumps(self.index, protocol=pickle.HIGHEST_PROTOCOL)) + arrays

    def summary(self) -> dict[str, Any]:
        """How the data is held and travels (run.json, logs)."""
        return {"scenes": len(self.index.scenes), "in_memory": self.in_memory,
                "dataset_mb": round(self.index.nbytes() / 2**20, 1),
                "shipped_bytes": self.shipped_bytes(), "skipped_scenes": self.index.skipped}

    def describe(self) -> str:
        """One line for progress logs."""
        s = self.summary()
        how = "in memory" if s["in_memory"] else "streamed from the GeoTIFFs"
        text = (f"{s['scenes']} scene(s), {s['dataset_mb']:,.0f} MB normalised, {how}; "
                f"{s['shipped_bytes'] / 2**20:,.2f} MB shipped to each trial")
        if s["skipped_scenes"]:
            listed = ", ".join(s["skipped_scenes"][:10])
            text += (f"; warning: {len(s['skipped_scenes'])} scene(s) skipped, no labelled "
                     f"pixel where enough sensors are valid (require_sensors): {listed}")
        return text

    def source(self) -> ArraySource | BlockSource:
        """The pixels' source, one per process: every dataset of this process shares it, so
        a streamed block cache is `data.cache_mb` per process (not per dataset) and validation
        finds the blocks it read last epoch. A copy in another process (a loader worker, a Ray
        worker) starts its own, empty."""
        if self._source is None:
            self._source = ArraySource(self.arrays, self.masks) if self.arrays is not None \
                else BlockSource(self.index, self.sensor_specs, self.block_size, self.cache_mb)
        return self._source

    def __getstate__(self) -> dict:
        return dict(self.__dict__, _source=None)

    def dataset(
        self, split: str, augment: bool = False, seed: int = 0,
        condition: Condition | None = None,
    ) -> PatchDataset | TileDataset:
        """The torch dataset of one split ('train', 'val' or 'test') for the task kind, seen
        under `condition` (a sensor removed, clouds; `autors.data.conditions`) when given."""
        source = self.source()
        if condition is not None:
            source = ConditionedSource(source, condition, [e.grid.shape for e in self.index.scenes])
        if self.task_kind == "patch_classification":
            return PatchDataset(self.index, source, split, self.patch_size, augment, seed,
                                self.block_size)
        return TileDataset(self.index, source, split, self.tile_size, augment, seed,
                           self.block_size)

    @property
    def sampler_window(self) -> int:
        """Places (blocks) the training sampler mixes at once: as many as a streamed reader's
        cache holds (4..32). The same in memory, so both paths train on the same batches."""
        block_mb = 4 * self.block_size**2 * sum(self.in_channels.values()) / 2**20
        return int(min(32, max(4, self.cache_mb // max(block_mb, 1e-9))))


def prepare(task: TaskSpec, in_memory: bool | None = None) -> PreparedData:
    """Index the dataset (every scene read once by blocks), compute normalisation statistics
    on training pixels and, when the dataset is held in memory (`in_memory`, default: it fits
    in `data.in_memory_max_mb`), normalise every scene's sensors."""
    index, raws = build_index(task, keep_raw=in_memory)
    arrays = masks = None
    if raws is not None:
        arrays, masks = [], [valid for _, valid in raws]
        for values, valid in raws:
            # One sensor at a time, dropping the raw copy, so peak memory is one extra sensor.
            normed = {}
            for name in list(values):
                stack = values.pop(name)
                normed[name] = index.stats.apply({name: stack}, {name: valid[name]})[name]
                del stack
            arrays.append(normed)
    return PreparedData(
        task_kind=task.task,
        index=index,
        sensor_specs=dict(task.sensors),
        arrays=arrays,
        masks=masks,
        class_names=task.class_names,
        patch_size=task.patch_size,
        tile_size=task.tile_size,
        block_size=task.data.block_size,
        cache_mb=task.data.cache_mb,
    )
