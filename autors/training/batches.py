"""Batches for training and evaluation: loaders, device placement, modality dropout."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from autors.config import TrainSpec
from autors.errors import TaskFileError

Batch = dict[str, torch.Tensor]  # {sensor: [B, C, P, P], ..., "target": [B] or [B, H, W]}


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


def subset_indices(n: int, max_samples: int | None, seed: int) -> list[int] | None:
    """A seeded random subset of `max_samples` of range(n) (sorted), or None to keep all."""
    if max_samples is None or max_samples >= n:
        return None
    gen = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(n, generator=gen)[:max_samples].tolist())


def train_loader(dataset: Dataset, spec: TrainSpec, seed: int) -> DataLoader:
    """Shuffled, seeded, single-process loader over at most `spec.max_train_samples` samples.

    The last incomplete batch is dropped when there is more than one batch, so a batch of one
    sample never reaches BatchNorm layers in training mode.
    """
    keep = subset_indices(len(dataset), spec.max_train_samples, seed)
    ds = dataset if keep is None else Subset(dataset, keep)
    return DataLoader(
        ds,
        batch_size=spec.batch_size,
        shuffle=True,
        drop_last=len(ds) > spec.batch_size,
        num_workers=0,  # data is in memory; workers would copy it and break determinism
        generator=torch.Generator().manual_seed(seed),
    )


def eval_loader(dataset: Dataset, batch_size: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)


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
    """Zero whole sensor tensors per sample (see `modality_keep_mask`) among `sensors`
    (the sensors the model uses). Returns a new dict; tensors are not modified in place."""
    if p <= 0.0 or len(sensors) < 2:
        return batch  # one used sensor: dropping it would leave the sample empty
    b = batch[sensors[0]].shape[0]
    keep = modality_keep_mask(b, len(sensors), p, generator)  # [B, S]
    out = dict(batch)
    for i, name in enumerate(sensors):
        x = batch[name]  # [B, C, H, W]
        out[name] = x * keep[:, i].to(x.device, x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return out
