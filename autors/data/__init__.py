"""GeoTIFF multi-sensor data: reading, alignment, masks, splits, normalisation, datasets.

data = prepare(task)                # the dataset index (+ normalised arrays when it fits)
ds = data.dataset("train", augment=True)   # samples: sensors, <sensor>__mask, target, scene
scene = load_scene(task)            # one scene read whole, for inspection
splits = make_splits(task, scene)   # that scene's train / val / test maps
"""

from autors.data.datasets import PatchDataset, TileDataset
from autors.data.grid import Grid
from autors.data.index import load_scene
from autors.data.normalize import NormStats
from autors.data.prepare import PreparedData, prepare
from autors.data.raster import RasterInfo
from autors.data.scene import Scene, load_sensor
from autors.data.splits import Leakage, Splits, footprint_leakage, make_splits, split_record

__all__ = [
    "Grid",
    "Leakage",
    "NormStats",
    "PatchDataset",
    "PreparedData",
    "RasterInfo",
    "Scene",
    "Splits",
    "TileDataset",
    "footprint_leakage",
    "load_scene",
    "load_sensor",
    "make_splits",
    "prepare",
    "split_record",
]
