"""In-memory torch datasets over a normalised scene: no file IO per sample.

Both zero-pad at the scene border. Inputs are normalised, so 0 is the training mean (the same
value invalid pixels carry), i.e. padding adds no artificial contrast.
Augmentation (flips and 90-degree rotations) is drawn from (seed, epoch, index): reproducible,
and different each epoch once the trainer calls `set_epoch`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from autors.errors import DataError


class _SceneDataset(Dataset):
    def __init__(
        self, sensors: dict[str, np.ndarray], labels: np.ndarray, augment: bool, seed: int
    ) -> None:
        shapes = {name: arr.shape[1:] for name, arr in sensors.items()}
        if any(shape != labels.shape for shape in shapes.values()):
            raise DataError(f"sensor grids {shapes} differ from the label grid {labels.shape}")
        self.sensors = sensors  # name -> float32 [C, H, W], normalised
        self.labels = labels  # int [H, W], -1 = no target
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the augmentation draw of this epoch."""
        self.epoch = epoch

    def _transform(self, index: int) -> tuple[int, bool]:
        """(number of 90-degree rotations, horizontal flip) for this sample and epoch."""
        if not self.augment:
            return 0, False
        rng = np.random.default_rng([self.seed, self.epoch, index])
        k, flip = rng.integers(0, 4), rng.integers(0, 2)
        return int(k), bool(flip)


def _augmented(arr: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Rotate/flip the last two axes of `arr` ([..., H, W]); returns a contiguous array."""
    if k:
        arr = np.rot90(arr, k, axes=(-2, -1))
    if flip:
        arr = arr[..., ::-1]
    return np.ascontiguousarray(arr)


def _window(arr: np.ndarray, r0: int, c0: int, size: int, fill: float) -> np.ndarray:
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


class PatchDataset(_SceneDataset):
    """patch_classification: one sample per labelled pixel, the P x P patch centred on it.

    Item: {sensor: float32 tensor [C, P, P], ..., "target": int64 scalar tensor}.
    """

    def __init__(
        self,
        sensors: dict[str, np.ndarray],
        labels: np.ndarray,
        patch_size: int,
        augment: bool = False,
        seed: int = 0,
    ) -> None:
        if patch_size < 1 or patch_size % 2 == 0:
            raise DataError(
                f"patch_size must be odd so the labelled pixel is the centre, got {patch_size}"
            )
        super().__init__(sensors, labels, augment, seed)
        self.patch_size = patch_size
        self.rows, self.cols = np.nonzero(labels >= 0)  # [N] each, row-major order
        self.targets = labels[self.rows, self.cols].astype(np.int64)  # [N]

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        half = self.patch_size // 2
        r0, c0 = int(self.rows[index]) - half, int(self.cols[index]) - half
        k, flip = self._transform(index)
        item = {
            name: torch.from_numpy(_augmented(_window(arr, r0, c0, self.patch_size, 0.0), k, flip))
            for name, arr in self.sensors.items()
        }
        item["target"] = torch.tensor(self.targets[index], dtype=torch.int64)
        return item


class TileDataset(_SceneDataset):
    """segmentation: non-overlapping T x T tiles from the grid origin, kept when they hold at
    least one labelled pixel. Edge tiles are padded (inputs 0, target -1).

    Item: {sensor: float32 tensor [C, T, T], ..., "target": int64 tensor [T, T], -1 ignored}.
    """

    def __init__(
        self,
        sensors: dict[str, np.ndarray],
        labels: np.ndarray,
        tile_size: int,
        augment: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(sensors, labels, augment, seed)
        self.tile_size = tile_size
        n_c = -(-labels.shape[1] // tile_size)
        rows, cols = np.nonzero(labels >= 0)
        tile_ids = np.unique((rows // tile_size) * n_c + cols // tile_size)
        self.origins = np.stack([tile_ids // n_c, tile_ids % n_c], axis=1) * tile_size  # [N, 2]

    def __len__(self) -> int:
        return int(self.origins.shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        r0, c0 = (int(v) for v in self.origins[index])
        t = self.tile_size
        k, flip = self._transform(index)
        item = {
            name: torch.from_numpy(_augmented(_window(arr, r0, c0, t, 0.0), k, flip))
            for name, arr in self.sensors.items()
        }
        target = _window(self.labels, r0, c0, t, -1).astype(np.int64)
        item["target"] = torch.from_numpy(_augmented(target, k, flip))
        return item
