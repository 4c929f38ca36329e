"""Torch datasets over a dataset index: samples addressed by a global id per split (scenes in
order, then row-major), pixels from an in-memory or a streamed source.

Both zero-pad at the scene border. Inputs are normalised, so 0 is the training mean (the same
value invalid pixels carry), i.e. padding adds no artificial contrast. Samples never cross a
scene border.
Augmentation (flips and 90-degree rotations) is drawn from (seed, epoch, global id):
reproducible, independent of the loader's worker count, and different each epoch once the
trainer calls `set_epoch`.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch.utils.data import Dataset

from autors.data.index import DatasetIndex
from autors.data.scenes import SPLIT_NAMES
from autors.data.sources import ArraySource, BlockSource, crop
from autors.errors import DataError
from fusion import DOY_SUFFIX

Source = ArraySource | BlockSource
# Decoded split maps (and pixel positions) kept per process: the sampler mixes up to a few
# dozen scenes in a window, and decoding a 512 x 512 map costs about a millisecond.
_MAPS_CACHE_BYTES = 96 * 2**20


class _IndexDataset(Dataset):
    def __init__(self, index: DatasetIndex, source: Source, split: str, augment: bool,
                 seed: int, block: int = 256) -> None:
        if split not in SPLIT_NAMES:
            raise ValueError(f"unknown split '{split}', expected one of {SPLIT_NAMES}")
        self.index = index
        self.source = source
        self.split = split
        self.augment = augment
        self.seed = seed
        self.block = block  # the read unit of a streamed source: what `places` groups by
        self.epoch = 0
        self.starts = np.concatenate([[0], np.cumsum(index.sizes(split))])  # [S + 1]
        self._maps: OrderedDict[int, np.ndarray] = OrderedDict()
        self._positions: OrderedDict[int, np.ndarray] = OrderedDict()
        self._values: OrderedDict[int, np.ndarray] = OrderedDict()
        targets = index.targets or []
        # continuous targets are normalised with their training mean / std; classes kept
        self._shift = np.array([t.mean for t in targets], np.float32)[:, None, None]
        self._scale = np.array([t.std for t in targets], np.float32)[:, None, None]

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_maps"], state["_positions"] = OrderedDict(), OrderedDict()
        state["_values"] = OrderedDict()
        return state

    def set_epoch(self, epoch: int) -> None:
        """Choose the augmentation draw of this epoch."""
        self.epoch = epoch

    def locate(self, ids: np.ndarray) -> np.ndarray:
        """Scene number of each global sample id."""
        return np.searchsorted(self.starts, ids, side="right") - 1

    def places(self, ids: np.ndarray) -> np.ndarray:
        """Which block of which scene each sample id reads (int64 keys; sorted ids give
        scene-major keys): what the training sampler groups by."""
        scenes = self.locate(ids)
        out = np.empty(ids.size, np.int64)
        for scene in np.unique(scenes):
            mine = scenes == scene
            rows, cols = self._origins(int(scene), ids[mine] - self.starts[scene])
            width = -(-self.index.scenes[scene].grid.width // self.block)
            out[mine] = (int(scene) << 32) + (rows // self.block) * width + cols // self.block
        return out

    def _labels(self, scene: int) -> np.ndarray:
        """Class index per pixel of this split in `scene` (int16 [H, W], -1 elsewhere)."""
        return _cached(self._maps, scene, lambda: self.index.scenes[scene].labels(
            self.split, self.index.num_classes))

    def target_values(self, scene: int) -> np.ndarray:
        """A task with `targets`: every target per pixel of this split in `scene`, float32
        [T, H, W] (class index, or normalised value), NaN where it has none or elsewhere."""
        def make() -> np.ndarray:
            raw = self.index.scenes[scene].target_values(len(self.index.targets))
            out = (raw - self._shift) / self._scale
            out[:, self._labels(scene) < 0] = np.nan
            return out
        return _cached(self._values, scene, make)

    def positions(self, scene: int) -> np.ndarray:
        """Flat (row-major) pixel positions of this split's labelled pixels in `scene`."""
        return _cached(self._positions, scene, lambda: np.flatnonzero(
            self._labels(scene).reshape(-1) >= 0).astype(np.int32))

    def _transform(self, index: int) -> tuple[int, bool]:
        """(number of 90-degree rotations, horizontal flip) for this sample and epoch."""
        if not self.augment:
            return 0, False
        rng = np.random.default_rng([self.seed, self.epoch, index])
        k, flip = rng.integers(0, 4), rng.integers(0, 2)
        return int(k), bool(flip)

    def _inputs(self, scene: int, r0: int, c0: int, size: int, k: int,
                flip: bool) -> dict[str, torch.Tensor]:
        out = {name: torch.from_numpy(_augmented(arr, k, flip))
               for name, arr in self.source.window(scene, r0, c0, size).items()}
        doys = self.index.scenes[scene].doys  # a time series: [T, C, P, P], doy [T]
        for name, steps in self.index.series.items():
            if name in out:
                out[name] = out[name].reshape(steps, -1, size, size)
                out[name + DOY_SUFFIX] = torch.tensor(doys[name], dtype=torch.float32)
        return out


def _cached(cache: OrderedDict, key: int, make) -> np.ndarray:
    """An LRU lookup bounded by `_MAPS_CACHE_BYTES` per cache."""
    hit = cache.get(key)
    if hit is not None:
        cache.move_to_end(key)
        return hit
    hit = cache[key] = make()
    while len(cache) > 1 and sum(a.nbytes for a in cache.values()) > _MAPS_CACHE_BYTES:
        cache.popitem(last=False)
    return hit


def _augmented(arr: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Rotate/flip the last two axes of `arr` ([..., H, W]); returns a contiguous array."""
    if k:
        arr = np.rot90(arr, k, axes=(-2, -1))
    if flip:
        arr = arr[..., ::-1]
    return np.ascontiguousarray(arr)


class PatchDataset(_IndexDataset):
    """patch_classification: one sample per labelled pixel, the P x P patch centred on it.

    Item: {sensor: float32 [C, P, P], ..., "target": int64 scalar, "scene": int64 scalar}
    (a time series: [T, C, P, P], its date mask [T, P, P] and `<sensor>__doy` float32 [T]);
    in a task with `targets`, "targets": float32 [T] (NaN: no value) instead of "target".
    """

    def __init__(self, index: DatasetIndex, source: Source, split: str, patch_size: int,
                 augment: bool = False, seed: int = 0, block: int = 256) -> None:
        if patch_size < 1 or patch_size % 2 == 0:
            raise DataError(
                f"patch_size must be odd so the labelled pixel is the centre, got {patch_size}"
            )
        super().__init__(index, source, split, augment, seed, block)
        self.patch_size = patch_size

    def _origins(self, scene: int, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) of the k-th samples of `scene`: their labelled pixels."""
        return np.divmod(self.positions(scene)[k].astype(np.int64),
                         self.index.scenes[scene].grid.width)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        scene = int(self.locate(np.asarray(index)))
        flat = int(self.positions(scene)[index - self.starts[scene]])
        width = self.index.scenes[scene].grid.width
        row, col = divmod(flat, width)
        half = self.patch_size // 2
        k, flip = self._transform(index)
        item = self._inputs(scene, row - half, col - half, self.patch_size, k, flip)
        if self.index.targets is not None:  # float32 [T]: NaN where a target has no value
            item["targets"] = torch.from_numpy(self.target_values(scene)[:, row, col].copy())
        else:
            item["target"] = torch.tensor(int(self._labels(scene)[row, col]),
                                          dtype=torch.int64)
        item["scene"] = torch.tensor(scene, dtype=torch.int64)
        return item


class TileDataset(_IndexDataset):
    """segmentation: non-overlapping T x T tiles from the grid origin, kept when they hold at
    least one labelled pixel of the split. Edge tiles are padded (inputs 0, target -1).

    Without augmentation (evaluation) the tiles are that grid, so every labelled pixel is
    scored exactly once. With augmentation (training) each tile is also shifted by a random
    offset of up to half a tile per axis, drawn from (seed, epoch, id): an epoch samples tiles
    at random places of the training area instead of one fixed grid (a network with context
    would otherwise learn the grid's borders); a shift whose tile holds no labelled pixel of
    the split is not taken.

    Item: {sensor: float32 [C, T, T], ..., "target": int64 [T, T] (-1 ignored), "scene"};
    in a task with `targets`, "targets": float32 [n_targets, T, T] (NaN: no value).
    """

    def __init__(self, index: DatasetIndex, source: Source, split: str, tile_size: int,
                 augment: bool = False, seed: int = 0, block: int = 256) -> None:
        super().__init__(index, source, split, augment, seed, block)
        self.tile_size = tile_size

    def _origins(self, scene: int, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) of the k-th tiles of `scene`: their top-left corners."""
        origins = self.index.scenes[scene].tiles[self.split][k].astype(np.int64)
        return origins[:, 0], origins[:, 1]

    def _shifted(self, scene: int, index: int, r0: int, c0: int
                 ) -> tuple[int, int, np.ndarray]:
        """The tile's origin for this epoch (shifted when augmenting) and its labels."""
        t = self.tile_size
        labels = self._labels(scene)
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index, 1])
            dr, dc = (int(v) for v in rng.integers(-(t // 2), t // 2 + 1, size=2))
            target = crop(labels, r0 + dr, c0 + dc, t, -1)
            if (target >= 0).any():
                return r0 + dr, c0 + dc, target
        return r0, c0, crop(labels, r0, c0, t, -1)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        scene = int(self.locate(np.asarray(index)))
        r0, c0 = (int(v) for v in self.index.scenes[scene].tiles[self.split][
            index - self.starts[scene]])
        r0, c0, target = self._shifted(scene, index, r0, c0)
        t = self.tile_size
        k, flip = self._transform(index)
        item = self._inputs(scene, r0, c0, t, k, flip)
        if self.index.targets is not None:  # float32 [T, t, t]: NaN where no value
            values = crop(self.target_values(scene), r0, c0, t, np.nan)
            item["targets"] = torch.from_numpy(_augmented(values, k, flip))
        else:
            item["target"] = torch.from_numpy(_augmented(target.astype(np.int64), k, flip))
        item["scene"] = torch.tensor(scene, dtype=torch.int64)
        return item
