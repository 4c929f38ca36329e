"""Train / validation / test splits by spatial blocks, and how much patches leak across them.

Blocks are the cells of a square lattice anchored at the grid origin. Held-out splits take whole
blocks (never part of one), so labelled pixels of different splits never share a block. Block
selection is a seeded shuffle with the split's own seed (`split.seed`): the same task gives the
same splits whatever the training or search seed. Training pixels within `split.buffer` of a
held-out pixel are then left out, so no held-out footprint reaches a training pixel.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from autors.config import TaskSpec
from autors.data.scene import Scene
from autors.errors import DataError

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class Splits:
    """Class index per pixel for each split: int16 [H, W], -1 outside the split.

    Only usable pixels (`require_sensors`) are labelled; the splits are pairwise disjoint.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    num_classes: int
    dropped_invalid: int = 0  # labelled pixels left out because a sensor is invalid there
    buffer: int = 0  # pixels kept between training pixels and held-out ones
    dropped_buffer: int = 0  # training pixels left out because they lie within the buffer

    def sha256(self) -> str:
        """Hash of the three class-index rasters: equal hashes mean the same pixels in every
        split (recorded by every run, model card and benchmark report)."""
        h = hashlib.sha256()
        for name in SPLIT_NAMES:
            arr = np.ascontiguousarray(self.get(name), dtype=np.int16)
            h.update(name.encode() + str(arr.shape).encode() + arr.tobytes())
        return h.hexdigest()

    def get(self, name: str) -> np.ndarray:
        if name not in SPLIT_NAMES:
            raise ValueError(f"unknown split '{name}', expected one of {SPLIT_NAMES}")
        return getattr(self, name)

    def counts(self) -> dict[str, list[int]]:
        """Labelled pixels per split and class: {'train': [n_0, ..., n_K-1], ...}."""
        return {
            name: np.bincount(self.get(name)[self.get(name) >= 0], minlength=self.num_classes)
            .astype(int)
            .tolist()
            for name in SPLIT_NAMES
        }


@dataclass(frozen=True)
class Leakage:
    """How many pixels of a held-out split have a patch footprint reaching a training pixel."""

    pixels: int
    touching_train: int

    @property
    def fraction(self) -> float:
        return self.touching_train / self.pixels if self.pixels else 0.0


def make_splits(task: TaskSpec, scene: Scene) -> Splits:
    """Train/val/test class-index rasters of a one-scene task (see `split_scene`), with the
    validation subset of `train.val_max_samples`."""
    parts = split_scene(task, scene.labels, scene.valid, None, task.name)
    val = parts["val"]
    if task.train.val_max_samples is not None:
        val = _subsample(val, task.train.val_max_samples, _rng(task.split.seed, 3))
    return Splits(train=parts["train"], val=val, test=parts["test"],
                  num_classes=task.num_classes, dropped_invalid=parts["dropped_invalid"],
                  buffer=task.split_buffer, dropped_buffer=parts["dropped_buffer"])


def split_scene(
    task: TaskSpec,
    labels: dict[str, np.ndarray],
    valid: np.ndarray,
    split_of_scene: str | None,
    scene_id: str,
    strata: int | None = None,
) -> dict | None:
    """One scene's train / val / test class-index maps (int16 [H, W], -1 elsewhere), plus
    'dropped_invalid' and 'dropped_buffer' counts; deterministic for `split.seed`.

    spatial_blocks: test, then val, are carved from the full labels by blocks of `block_size`.
    given: train, test (and val, when given) come from their rasters; otherwise val is carved
    from train by blocks of `val_block_size`. scenes: every labelled pixel goes to
    `split_of_scene`. Fractions count labelled pixels (in whole blocks). A carve never takes
    the last training pixels of a class. Then training pixels within `task.split_buffer` of a
    held-out pixel are dropped. Only pixels in `valid` (where `require_sensors` holds) are
    labelled.

    In a one-scene task a class left with no training pixel is a DataError; in a dataset that
    is checked over all scenes, and a scene with no usable labelled pixel returns None.

    `strata`: the number of values in `labels` when it is not the class map (a task with
    `targets`: the class target's classes, then one value for "no class, another target").
    """
    k = task.num_classes if strata is None else strata
    seed = task.split.seed
    single = task.scenes is None
    invalid = ~valid
    empty = np.full(valid.shape, -1, np.int16)
    val = None
    if task.split.kind == "scenes":
        full = labels["full"]
        dropped = int(((full >= 0) & invalid).sum())
        pool = np.where(invalid, np.int16(-1), full)
        if not (pool >= 0).any():
            return None
        parts = {name: pool if name == split_of_scene else empty for name in SPLIT_NAMES}
        return parts | {"dropped_invalid": dropped, "dropped_buffer": 0}
    if task.split.kind == "spatial_blocks":
        full = labels["full"]
        dropped = int(((full >= 0) & invalid).sum())
        pool = np.where(invalid, np.int16(-1), full)
        if not single and not (pool >= 0).any():
            return None
        if single:
            _require_classes(task, pool, f"the label raster {task.class_labels.path}"
                             if task.class_labels is not None else "")
        block = task.split.block_size
        labelled = int((pool >= 0).sum())
        test_mask = _carve(pool, block, task.split.test_fraction * labelled, k, _rng(seed, 1),
                           "test", scene_id, single)
        test = np.where(test_mask, pool, np.int16(-1))
        pool = np.where(test_mask, np.int16(-1), pool)
        val_target = task.split.val_fraction * labelled
    else:
        given = {key: labels[key] for key in ("train", "val", "test") if key in labels}
        dropped = int((np.logical_or.reduce([g >= 0 for g in given.values()]) & invalid).sum())
        pool = np.where(invalid, np.int16(-1), given["train"])
        test = np.where(invalid, np.int16(-1), given["test"])
        if not single and not ((pool >= 0).any() or (test >= 0).any()):
            return None
        if single:
            _require_classes(task, pool, f"the train raster {task.split.train}")
        if "val" in given:
            val = np.where(invalid, np.int16(-1), given["val"])
        block = task.split.val_block_size
        val_target = task.split.val_fraction * int((pool >= 0).sum())
    if val is None:
        val_mask = _carve(pool, block, val_target, k, _rng(seed, 2), "validation", scene_id, single)
        val = np.where(val_mask, pool, np.int16(-1))
        pool = np.where(val_mask, np.int16(-1), pool)
    buffer = task.split_buffer
    near_held_out = box_any((val >= 0) | (test >= 0), buffer) & (pool >= 0)
    train = np.where(near_held_out, np.int16(-1), pool)
    if buffer and single:
        _require_classes(
            task, train,
            f"the training pixels farther than split.buffer = {buffer} px from every "
            "validation and test pixel",
            fix=f"use larger blocks than the {task.sample_size} px model input, or set a "
            "smaller split.buffer (leakage is then reported)",
        )
    return {"train": train, "val": val, "test": test, "dropped_invalid": dropped,
            "dropped_buffer": int(near_held_out.sum())}


def footprint_leakage(splits: Splits, size: int) -> dict[str, Leakage]:
    """For val and test: pixels whose size x size footprint (the patch, or a tile, centred on
    them) contains a training pixel.

    Such footprints see training pixels as *input* (never as targets); the split buffer removes
    them (0 with the default buffer), and this counts what is left, so a user can judge it.
    """
    touching = box_any(splits.train >= 0, size // 2)
    out = {}
    for name in ("val", "test"):
        held = splits.get(name) >= 0
        out[name] = Leakage(int(held.sum()), int((held & touching).sum()))
    return out


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def _require_classes(task: TaskSpec, pool: np.ndarray, where: str, fix: str | None = None) -> None:
    if task.class_labels is None:
        return  # no class target: continuous targets are checked over the whole dataset
    counts = np.bincount(pool[pool >= 0], minlength=task.num_classes)
    empty = [
        f"'{name}' (value {value})"
        for name, value, n in zip(task.class_names, task.class_labels.class_values, counts)
        if n == 0
    ]
    if empty:
        raise DataError(
            f"class {', '.join(empty)} has no training pixel in {where} (pixels where a sensor "
            "is invalid do not count); "
            + (fix or "label some training pixels of it or remove it from 'labels.classes'")
        )


def _carve(
    pool: np.ndarray, block: int, target: float, k: int, rng: np.random.Generator, what: str,
    scene_id: str = "", strict: bool = True,
) -> np.ndarray:
    """Bool [H, W]: the labelled pixels of whole blocks, picked in seeded random order to hold
    about `target` labelled pixels of `pool`, never taking the last pixel of a class."""
    rows, cols = np.nonzero(pool >= 0)
    held = np.zeros(pool.shape, dtype=bool)
    if rows.size == 0:
        return held
    n_block_cols = -(-pool.shape[1] // block)
    block_id = (rows // block) * n_block_cols + cols // block
    blocks, inverse = np.unique(block_id, return_inverse=True)
    # per_block[b, c]: labelled pixels of class c in block b
    per_block = np.bincount(inverse * k + pool[rows, cols], minlength=blocks.size * k)
    per_block = per_block.reshape(blocks.size, k)
    remaining = per_block.sum(axis=0)
    taken = 0
    chosen = np.zeros(blocks.size, dtype=bool)
    for b in rng.permutation(blocks.size):
        if taken >= target:
            break
        n = int(per_block[b].sum())
        if taken + n / 2 > target:
            continue  # taking it would move us further from the target than leaving it
        if np.any((per_block[b] > 0) & (remaining - per_block[b] <= 0)):
            continue  # would take the last remaining pixels of a class
        chosen[b] = True
        taken += n
        remaining -= per_block[b]
    if taken == 0:
        # Every block overshoots the target: take the smallest one that keeps every class.
        sizes = per_block.sum(axis=1)
        keeps = ~np.any((per_block > 0) & (remaining - per_block <= 0), axis=1)
        if not strict:
            return held  # a scene of a dataset may give nothing to this split
        if not keeps.any():
            raise DataError(
                f"cannot carve the {what} split{f' of scene {scene_id!r}' if scene_id else ''}: "
                f"the labelled pixels lie in {blocks.size} "
                f"block(s) of {block} px and none can be spared without losing a class from "
                "training; use a smaller block size or label more areas"
            )
        chosen[np.flatnonzero(keeps)[np.argmin(sizes[keeps])]] = True
    held[rows, cols] = chosen[inverse]
    return held


def _subsample(labels: np.ndarray, keep: int, rng: np.random.Generator) -> np.ndarray:
    """`labels` with all but `keep` seeded-random labelled pixels unlabelled (-1). The dropped
    pixels stay out of training too: their blocks were held out."""
    idx = np.flatnonzero(labels.reshape(-1) >= 0)
    if idx.size <= keep:
        return labels
    out = labels.copy().reshape(-1)
    out[rng.permutation(idx)[keep:]] = -1
    return out.reshape(labels.shape)


def box_any(mask: np.ndarray, radius: int) -> np.ndarray:
    """Bool [H, W]: True where the (2r+1)^2 window centred on the pixel has any True in `mask`."""
    h, w = mask.shape
    integral = np.zeros((h + 1, w + 1), dtype=np.int64)
    np.cumsum(np.cumsum(mask, axis=0), axis=1, out=integral[1:, 1:])
    r0 = np.clip(np.arange(h) - radius, 0, h)
    r1 = np.clip(np.arange(h) + radius + 1, 0, h)
    c0 = np.clip(np.arange(w) - radius, 0, w)
    c1 = np.clip(np.arange(w) + radius + 1, 0, w)
    total = integral[r1][:, c1] - integral[r0][:, c1] - integral[r1][:, c0] + integral[r0][:, c0]
    return total > 0


def split_record(splits: Splits, footprint: int, seed: int) -> dict:
    """The split's provenance as plain data (run.json, summary.json, model card, reports): hash,
    seed, buffer, what the buffer and invalid sensors removed, and the footprint leakage left."""
    leak = footprint_leakage(splits, footprint)
    return {
        "sha256": splits.sha256(),
        "seed": seed,
        "buffer": splits.buffer,
        "dropped_buffer": splits.dropped_buffer,
        "dropped_invalid": splits.dropped_invalid,
        "counts": {name: int(sum(c)) for name, c in splits.counts().items()},
        "footprint": footprint,
        "leakage": {name: {"pixels": lk.pixels, "touching_train": lk.touching_train}
                    for name, lk in leak.items()},
    }
