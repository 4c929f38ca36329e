"""Datasets over arrays held in a test: a one-scene index whose training split is `labels`."""

from __future__ import annotations

import zlib

import numpy as np
from rasterio.crs import CRS
from rasterio.transform import Affine

from autors.data import PatchDataset, TileDataset
from autors.data.grid import Grid
from autors.data.index import DatasetIndex, SceneEntry, _tiles
from autors.data.normalize import NormStats
from autors.data.scenes import SceneFiles
from autors.data.sources import ArraySource


def array_index(sensors, labels, tile=8):
    """A one-scene index whose training split is `labels` (class index, -1 none)."""
    k = int(labels.max()) + 1
    h, w = labels.shape
    entry = SceneEntry(
        files=SceneFiles("toy", None, {}, {}),
        grid=Grid(CRS.from_epsg(32632), Affine.identity(), h, w),
        rasters={}, bands={n: list(range(1, a.shape[0] + 1)) for n, a in sensors.items()},
        codes_z=zlib.compress(labels.astype(np.int16).tobytes()),
        counts={"train": np.bincount(labels[labels >= 0], minlength=k).tolist(),
                "val": [0] * k, "test": [0] * k},
    )
    entry.tiles = _tiles(entry, k, tile)
    return DatasetIndex(
        scenes=[entry], num_classes=k, stats=NormStats({}, {}),
        band_names={n: [str(i) for i in range(a.shape[0])] for n, a in sensors.items()},
        tile_size=tile, dense=False, seed=0, buffer=0, footprint=1, scenes_digest="",
    )


def patch_dataset(sensors, labels, patch_size, augment=False, seed=0):
    return PatchDataset(array_index(sensors, labels), ArraySource([sensors], [_all_valid(sensors)]), "train", patch_size,
                        augment, seed)


def tile_dataset(sensors, labels, tile, augment=False, seed=0):
    index = array_index(sensors, labels, tile)
    index.dense = True
    return TileDataset(index, ArraySource([sensors], [_all_valid(sensors)]), "train", tile, augment, seed)


def _all_valid(sensors):
    return {n: np.ones(a.shape[-2:], bool) for n, a in sensors.items()}
