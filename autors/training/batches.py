"""Batches for training and evaluation: loaders, device placement, modality dropout."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from autors.config import TrainSpec
from autors.errors import TaskFileError
from fusion import MASK_SUFFIX

# {sensor: [B, C, P, P], ..., "target": [B] or [B, H, W], "scene": [B]}
Batch = dict[str, torch.Tensor]


def resolve_device(spec: str) -> torch.device:
    """'auto' -> cuda when available else cpu; 'cuda' without a GPU is a task-file error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cuda" and not torch.cuda.is_available():
        raise TaskFileError(
            "train.device is 'cuda' but torch sees no CUDA GPU on this machine: "
            "set train.device to 'auto' or 'cpu'"
        )
    return torch.device(spec)


class EpochSampler(Sampler[int]):
    """The training order: a fixed seeded subset of at most `max_samples` sample ids (all when
    None), shuffled anew each epoch (`set_epoch`) with locality for streamed reads.

    `places[i]` says which block of which scene sample `ids[i]` reads (None: ids in order);
    the subset is cut into chunks of at most `chunk` samples of one place; chunks are
    shuffled, and the samples of each `window` of chunks are shuffled together. A batch then
    mixes samples from up to `window` places while a loader worker's block cache (sized to
    hold a window's blocks) serves the rest. The order depends only on (seed, epoch), never on
    the number of loader workers.
    """

    def __init__(self, n: int, max_samples: int | None, seed: int,
                 places: Callable[[np.ndarray], np.ndarray] | None = None, chunk: int = 256,
                 window: int = 32) -> None:
        rng = np.random.default_rng([seed, 0])
        if max_samples is None or max_samples >= n:
            ids = np.arange(n, dtype=np.int64)
        else:
            ids = np.sort(rng.choice(n, max_samples, replace=False)).astype(np.int64)
        self.ids = ids
        self.seed, self.window = seed, max(1, window)
        # chunks: runs of one place (stable: ids stay in order inside a place), at most `chunk`
        keys = places(ids) if places is not None and ids.size else np.zeros(ids.size, np.int64)
        order = np.argsort(keys, kind="stable")
        self.ids = ids[order]
        cuts = np.flatnonzero(np.diff(keys[order])) + 1
        bounds = [0]
        for start, stop in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [ids.size]])):
            bounds += list(range(int(start) + chunk, int(stop), chunk)) + [int(stop)]
        self.bounds = np.asarray(sorted(set(bounds)), np.int64)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return int(self.ids.size)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, 1, self.epoch])
        n_chunks = self.bounds.size - 1
        order = rng.permutation(n_chunks)
        for w0 in range(0, n_chunks, self.window):
            ids = np.concatenate([self.ids[self.bounds[c]:self.bounds[c + 1]]
                                  for c in order[w0:w0 + self.window]])
            yield from rng.permutation(ids).tolist()


def train_loader(dataset: Dataset, spec: TrainSpec, seed: int, window: int = 32) -> DataLoader:
    """Seeded loader over at most `spec.max_train_samples` samples (`EpochSampler` grouped by
    `dataset.places`, `window` places mixed), read by `spec.num_workers` processes (batches
    are the same for any number).

    The last incomplete batch is dropped when there is more than one batch, so a batch of one
    sample never reaches BatchNorm layers in training mode.
    """
    sampler = EpochSampler(len(dataset), spec.max_train_samples, seed, dataset.places,
                           window=window)
    return DataLoader(
        dataset,
        batch_size=spec.batch_size,
        sampler=sampler,
        drop_last=len(sampler) > spec.batch_size,
        num_workers=spec.num_workers,
        persistent_workers=False,  # workers are re-made each epoch with its augmentation draw
    )


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    """In order: scene by scene, row-major (streamed reads follow the block cache)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def modality_keep_mask(
    batch_size: int, num_sensors: int, p: float, generator: torch.Generator
) -> torch.Tensor:
    """Bool [B, S]: which sensors each sample keeps. Each sensor is dropped with probability
    `p`; a sample that would lose every sensor keeps one, chosen uniformly, so no sample is
    ever all zeros (the effective drop rate is therefore slightly below `p`)."""
    keep = torch.rand(batch_size, num_sensors, generator=generator) >= p  # [B, S]
    none = ~keep.any(dim=1)  # [B]
    if none.any():
        rescue = torch.randint(num_sensors, (int(none.sum()),), generator=generator)
        keep[none.nonzero().squeeze(1), rescue] = True
    return keep


def apply_modality_dropout(
    batch: Batch, sensors: list[str], p: float, generator: torch.Generator
) -> Batch:
    """Drop whole sensors per sample (see `modality_keep_mask`) among `sensors` (the sensors
    the model uses): the tensor and its validity mask (`<sensor>__mask`) become 0, exactly as
    a sensor absent from a scene. Returns a new dict; tensors are not modified in place."""
    if p <= 0.0 or len(sensors) < 2:
        return batch  # one used sensor: dropping it would leave the sample empty
    b = batch[sensors[0]].shape[0]
    keep = modality_keep_mask(b, len(sensors), p, generator)  # [B, S]
    out = dict(batch)
    for i, name in enumerate(sensors):
        for key in (name, name + MASK_SUFFIX):
            if key in batch:
                x = batch[key]  # [B, C, H, W] or the mask [B, H, W]
                out[key] = x * keep[:, i].to(x.device, x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return out


def apply_cloud_blobs(
    batch: Batch, sensors: list[str], p: float, generator: torch.Generator
) -> Batch:
    """Simulated clouds: each sample, with probability `p`, gets one elliptical blob (centre
    anywhere in the window, radii 15-60 % of its side) over which `sensors` (the optical ones
    the model uses) become invalid: values and masks 0, as a cloud mask makes them. Returns a
    new dict; tensors are not modified in place."""
    if p <= 0.0 or not sensors:
        return batch
    x = batch[sensors[0]]  # [B, C, H, W]
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    hit = torch.rand(b, generator=generator) < p  # [B]
    centre = torch.rand(b, 2, generator=generator) * torch.tensor([h, w])  # [B, 2]
    radii = (0.15 + 0.45 * torch.rand(b, 2, generator=generator)) * torch.tensor([h, w])
    rows = torch.arange(h, dtype=torch.float32)[None, :, None]
    cols = torch.arange(w, dtype=torch.float32)[None, None, :]
    inside = ((rows - centre[:, 0, None, None]) / radii[:, 0, None, None]) ** 2 \
        + ((cols - centre[:, 1, None, None]) / radii[:, 1, None, None]) ** 2 <= 1.0
    clear = ~(inside & hit[:, None, None])  # [B, H, W]
    out = dict(batch)
    for name in sensors:
        for key in (name, name + MASK_SUFFIX):
            if key in batch:
                t = batch[key]
                keep = clear.to(t.device, t.dtype)
                # [B, H, W] onto values [B, C, H, W] / [B, T, C, H, W], masks [B, (T,) H, W]
                out[key] = t * keep.reshape(keep.shape[0], *([1] * (t.dim() - 3)),
                                            *keep.shape[1:])
    return out
