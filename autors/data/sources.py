"""Where samples' pixels come from: normalised arrays in memory, or blocks read from the
GeoTIFFs on demand. Both answer `window(scene, row, col, size)` with the same values, because
both are made of the same block reads (`autors.data.index.read_block`): every sensor's
normalised values `[C, P, P]` (0 where invalid) and its validity mask `<sensor>__mask`
`[P, P]` float32 (1 valid, 0 invalid or outside the scene); a time series `[T * C, P, P]` and
`[T, P, P]` (`autors.data.timeseries`; the datasets give it its time axis).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from rasterio.windows import Window

from autors.config import SensorSpec
from autors.data.index import DatasetIndex, read_block
from fusion import MASK_SUFFIX


def crop(arr: np.ndarray, r0: int, c0: int, size: int, fill: float) -> np.ndarray:
    """arr[..., r0:r0+size, c0:c0+size] as a new array, `fill` where it leaves the array."""
    h, w = arr.shape[-2:]
    if r0 >= 0 and c0 >= 0 and r0 + size <= h and c0 + size <= w:
        return arr[..., r0 : r0 + size, c0 : c0 + size].copy()
    out = np.full(arr.shape[:-2] + (size, size), fill, dtype=arr.dtype)
    rs, cs = max(r0, 0), max(c0, 0)
    re, ce = min(r0 + size, h), min(c0 + size, w)
    if re > rs and ce > cs:
        out[..., rs - r0 : re - r0, cs - c0 : ce - c0] = arr[..., rs:re, cs:ce]
    return out


class ArraySource:
    """The whole dataset in memory: per scene, normalised float32 [C, H, W] per sensor and
    bool [H, W] validity per sensor."""

    def __init__(self, arrays: list[dict[str, np.ndarray]],
                 masks: list[dict[str, np.ndarray]]) -> None:
        self.arrays = arrays
        self.masks = masks

    def window(self, scene: int, r0: int, c0: int, size: int) -> dict[str, np.ndarray]:
        """Normalised values and masks of every sensor in the size x size window at (r0, c0);
        0 (the training mean; mask 0) outside the scene."""
        out = {name: crop(arr, r0, c0, size, 0.0) for name, arr in self.arrays[scene].items()}
        for name, valid in self.masks[scene].items():
            out[name + MASK_SUFFIX] = crop(valid, r0, c0, size, False).astype(np.float32)
        return out


class BlockSource:
    """Streamed: blocks of `index`'s block lattice read from the GeoTIFFs when first needed,
    normalised, and kept in a least-recently-used cache of at most `cache_mb` per process."""

    def __init__(self, index: DatasetIndex, sensors: dict[str, SensorSpec], block: int,
                 cache_mb: float) -> None:
        self.index = index
        self.sensors = sensors
        self.block = block
        self.cache_bytes = int(cache_mb * 2**20)
        self._cache: OrderedDict[tuple[int, int, int], dict[str, np.ndarray]] = OrderedDict()
        self._held = 0
        self.reads = 0  # blocks read from disk (a measure of cache efficiency)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cache"], state["_held"] = OrderedDict(), 0  # a new process starts empty
        return state

    def _block(self, scene: int, br: int, bc: int) -> dict[str, np.ndarray]:
        key = (scene, br, bc)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        entry = self.index.scenes[scene]
        b = self.block
        h, w = entry.grid.shape
        window = Window(bc * b, br * b, min(b, w - bc * b), min(b, h - br * b))
        values, valid = read_block(entry, self.sensors, window, self.index.in_channels)
        normed = self.index.stats.apply(values, valid)
        normed.update({name + MASK_SUFFIX: m.astype(np.float32) for name, m in valid.items()})
        self.reads += 1
        size = sum(a.nbytes for a in normed.values())
        while self._cache and self._held + size > self.cache_bytes:
            _, old = self._cache.popitem(last=False)
            self._held -= sum(a.nbytes for a in old.values())
        self._cache[key] = normed
        self._held += size
        return normed

    def window(self, scene: int, r0: int, c0: int, size: int) -> dict[str, np.ndarray]:
        """As `ArraySource.window`, assembled from the blocks the window overlaps."""
        h, w = self.index.scenes[scene].grid.shape
        steps = self.index.steps  # time series: [T * C] values, [T] masks
        out = {name: np.zeros((len(self.index.band_names[name]) * max(steps.get(name, 1), 1),
                               size, size), np.float32) for name in self.sensors}
        out.update({name + MASK_SUFFIX: np.zeros(((steps[name],) if name in steps else ())
                                                 + (size, size), np.float32)
                    for name in self.sensors})
        rs, re = max(r0, 0), min(r0 + size, h)
        cs, ce = max(c0, 0), min(c0 + size, w)
        b = self.block
        for br in range(rs // b, (re - 1) // b + 1) if re > rs else ():
            for bc in range(cs // b, (ce - 1) // b + 1) if ce > cs else ():
                blk = self._block(scene, br, bc)
                y0, y1 = max(rs, br * b), min(re, (br + 1) * b)
                x0, x1 = max(cs, bc * b), min(ce, (bc + 1) * b)
                for name, arr in blk.items():
                    out[name][..., y0 - r0 : y1 - r0, x0 - c0 : x1 - c0] = \
                        arr[..., y0 - br * b : y1 - br * b, x0 - bc * b : x1 - bc * b]
        return out

