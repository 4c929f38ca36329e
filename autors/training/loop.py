"""Train one architecture on prepared data with the task's `train` settings.

- Optimiser: adamw / adam (lr, weight_decay) or sgd (momentum 0.9, Nesterov, weight_decay).
- Schedule: cosine annealing per epoch from `lr` down to `lr / 100` over the epoch budget
  (early stopping may end training before the minimum is reached).
- Loss: cross-entropy, unlabelled pixels (-1) ignored; with `class_weighting`, classes are
  weighted by inverse frequency over the training split: w_k = N / (K * n_k).
- Early stopping on the task's `search.objective` (val_oa, val_aa, val_kappa or val_miou),
  evaluated on the validation split after every epoch; training stops after
  `early_stopping_patience` epochs without a strict improvement and the best epoch's weights
  are restored.
- Modality dropout: per training sample, each sensor the arch uses is dropped (values and
  validity mask 0) with probability `modality_dropout`, never all of them (see
  `batches.modality_keep_mask`). Cloud blobs: with probability `cloud_blobs` a sample's
  optical sensors lose a random elliptical region (`batches.apply_cloud_blobs`).
- Augmentation: flips / 90-degree rotations drawn by the dataset from (seed, epoch, index).
- Reproducible for a seed on CPU: torch's global RNG is seeded (weights, dropout layers), the
  sampler orders samples from (seed, epoch), modality dropout and cloud blobs have their own
  generator, and batches do not depend on the number of loader workers.
- Resumable at an epoch boundary (multi-fidelity search, `autors.search.schedulers`):
  `until` stops after that epoch of an `epochs`-long schedule and keeps a `TrainState` (model,
  optimiser, LR schedule, early-stopping memory, torch's global RNG and the dropout
  generator); `start=` that state continues exactly where it stopped, so training to 3 epochs
  then on to 9 gives the same weights and history as training to 9 straight through (tested).
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.utils.data import DataLoader

import fusion
from autors.config import TaskSpec, TrainSpec
from autors.data import PreparedData
from autors.errors import AutorsError
from autors.training.batches import (
    Batch,
    apply_cloud_blobs,
    apply_modality_dropout,
    resolve_device,
    to_device,
    train_loader,
)
from autors.training.evaluate import evaluate
from autors.training.targets import TargetLoss
from fusion import CLOUDED_KINDS

SCALARS = ("oa", "aa", "kappa", "miou")
MIN_LR_FACTOR = 0.01  # cosine schedule ends at lr * MIN_LR_FACTOR


class TrainingDivergedError(AutorsError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainState:
    """Everything `train_model` needs to continue after epoch `epoch` as if it had never
    stopped (bytes through `to_bytes` / `from_bytes`: a checkpoint any node can be sent)."""

    epoch: int  # epochs done
    finished: bool  # early stopping ended training: continuing trains nothing more
    model: dict[str, Any]  # state_dict after `epoch` (not the best epoch's)
    optimizer: dict[str, Any]
    schedule: dict[str, Any]
    torch_rng: torch.Tensor  # torch's global generator (dropout layers, loader seeds)
    dropout_rng: torch.Tensor  # modality dropout / cloud blobs generator
    history: list[dict[str, float]]
    best_score: float
    best_epoch: int
    best_val: dict[str, Any]
    best_state: dict[str, Any]

    def to_bytes(self) -> bytes:
        # best_val (evaluate's metrics: numpy scalars and arrays) travels as JSON text, so the
        # checkpoint holds only tensors and plain values and loads with weights_only=True: a
        # run folder's checkpoints/ may come from someone else, and unpickling runs code.
        state = dict(self.__dict__, best_val=json.dumps(self.best_val, default=_plain))
        buf = io.BytesIO()
        torch.save(state, buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, raw: bytes) -> TrainState:
        state = torch.load(io.BytesIO(raw), weights_only=True)
        return cls(**dict(state, best_val=json.loads(state["best_val"])))


def _plain(obj: object) -> object:
    """`json.dumps(default=...)` for evaluate's numpy values."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON-serialisable in a checkpoint's metrics: {type(obj).__name__}")


@dataclass
class TrainOutcome:
    """A trained model (best validation epoch restored) and how it got there."""

    model: nn.Module  # on the training device, in eval mode
    arch: fusion.Arch  # the resolved architecture (a baseline name becomes its full Arch)
    history: list[dict[str, float]]  # one record per epoch: epoch, train_loss, lr, val_*, seconds
    val_metrics: dict[str, Any]  # `evaluate(..., "val")` of the restored best epoch
    best_epoch: int
    epochs: int  # epochs actually run
    monitor: str  # the early-stopping metric: task.search.objective, e.g. "val_oa"
    device: str
    train_s: float  # wall time of the loop, validation included
    state: TrainState | None = None  # set when train_model was asked to stop at `until`


def monitor_metric(task: TaskSpec) -> str:
    """The validation metric early stopping maximises: the search objective of the task
    (`search.objective`, default val_oa; set val_miou for segmentation), so the weights kept
    for a trial are the best ones by the very metric the search ranks trials with. The robust
    objective is measured once, after training (it needs one evaluation per sensor): early
    stopping then uses clean validation OA."""
    return "val_oa" if task.search.objective == "val_oa_robust" else task.search.objective


def resolve_arch(arch: fusion.Arch | dict | str, task: TaskSpec, data: PreparedData) -> fusion.Arch:
    """An Arch for this task: a baseline name, an arch dict or an Arch, checked against the
    task's sensors and output kind; a misfit raises `fusion.ArchError` (the one arch error
    type: the CLI reports it as a user error), its message prefixed with 'architecture:'."""
    dense = task.dense
    try:
        if isinstance(arch, str):
            arch = fusion.baseline_arch(arch, data.in_channels, dense=dense)
        elif isinstance(arch, dict):
            arch = fusion.Arch.from_dict(arch)
        arch.validate(sensors=list(data.in_channels), dense=dense)
    except fusion.ArchError as err:
        raise fusion.ArchError(f"architecture: {err}") from None
    return arch


def build_optimizer(params: Any, spec: TrainSpec) -> torch.optim.Optimizer:
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    return torch.optim.SGD(
        params, lr=spec.lr, momentum=0.9, nesterov=True, weight_decay=spec.weight_decay
    )


def class_weights(train_counts: list[int]) -> torch.Tensor:
    """Inverse-frequency weights [K] from training pixels per class (0 for a class with no
    pixel)."""
    counts = np.asarray(train_counts, dtype=np.float64)  # [K]
    present = counts > 0
    w = np.zeros_like(counts)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return torch.as_tensor(w, dtype=torch.float32)


def _stream_seed(seed: int, stream: int) -> int:
    """An independent 63-bit seed per random stream (weights, shuffling, dropout...)."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(2, np.uint64)[0] >> 1)


def _train_epoch(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    drop: Callable[[Batch], Batch],
    on_batch: Callable[[float], object],
) -> float:
    """One pass over `loader`; returns the mean batch loss. `drop` applies modality dropout,
    `on_batch` receives the running mean loss (progress display)."""
    device = next(model.parameters()).device
    model.train()
    loss_sum, n_batches = 0.0, 0
    for i, batch in enumerate(loader, start=1):
        batch = to_device(batch, device)
        # [B] or [B, H, W]; several targets: [B, T] or [B, T, H, W], NaN where none
        target = batch.pop("targets" if "targets" in batch else "target")
        del batch["scene"]
        loss = loss_fn(model(drop(batch)), target)
        if not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"the training loss became {loss.item()} at epoch {epoch}, batch {i} "
                f"(lr {optimizer.param_groups[0]['lr']:g}): lower train.lr, or check the "
                "inputs for NaN / infinite values"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.item()
        n_batches += 1
        on_batch(loss_sum / n_batches)
    return loss_sum / max(n_batches, 1)


def train_model(
    task: TaskSpec,
    arch: fusion.Arch | dict | str,
    data: PreparedData,
    seed: int,
    *,
    progress: bool = False,
    max_epochs: int | None = None,
    until: int | None = None,
    start: TrainState | None = None,
) -> TrainOutcome:
    """Train `arch` on `data` with `task.train`; `max_epochs` overrides `task.train.epochs`
    (the schedule's length). With `until`, stop after that epoch and return the `TrainState`
    to continue from (`outcome.state`); `start` continues from such a state (same task, arch,
    data and seed). The outcome holds the best epoch so far either way.

    Raises `fusion.ArchError` for an arch that does not fit the task and `TrainingDivergedError`
    when the loss stops being finite.
    """
    spec = task.train
    epochs = max_epochs if max_epochs is not None else spec.epochs
    if epochs < 1:
        raise ValueError(f"max_epochs must be >= 1, got {epochs}")
    stop_at = epochs if until is None else until
    if not 1 <= stop_at <= epochs:
        raise ValueError(f"until must be within 1..{epochs} epochs, got {until}")
    arch = resolve_arch(arch, task, data)
    # robustness training chosen with the network (a search space's train.* choices) wins
    spec = spec.model_copy(update=arch.training.to_dict())
    device = resolve_device(spec.device)
    torch.manual_seed(_stream_seed(seed, 0))  # weights and dropout layers
    model = fusion.build_model(arch, data.in_channels, data.model_outputs, dense=arch.dense,
                               dates=data.steps)
    model.to(device)

    train_ds = data.dataset("train", augment=spec.augment, seed=_stream_seed(seed, 1))
    loader = train_loader(train_ds, spec, _stream_seed(seed, 2), data.sampler_window)
    dropout_gen = torch.Generator().manual_seed(_stream_seed(seed, 3))
    clouded = [s for s in arch.sensors if task.sensors[s].kind in CLOUDED_KINDS]
    counts = data.index.counts()["train"][:data.num_classes]  # classes (not the no-class stratum)
    weight = class_weights(counts).to(device) if spec.class_weighting and counts else None
    if data.targets is not None:  # several targets: each its loss on its own pixels
        loss_fn = TargetLoss(data.targets, model.output_slices(), weight).to(device)
    else:
        loss_fn = nn.CrossEntropyLoss(weight=weight, ignore_index=-1)
    # learned target weights (uncertainty weighting) are trained with the network
    optimizer = build_optimizer([*model.parameters(), *loss_fn.parameters()], spec)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=epochs, eta_min=spec.lr * MIN_LR_FACTOR
    )
    monitor = monitor_metric(task)

    history: list[dict[str, float]] = []
    best_score, best_epoch, best_val, best_state = -math.inf, 0, {}, None
    done, finished = 0, False
    if start is not None:  # continue exactly where an earlier call stopped
        model.load_state_dict(start.model)
        optimizer.load_state_dict(start.optimizer)
        schedule.load_state_dict(start.schedule)
        dropout_gen.set_state(start.dropout_rng)
        torch.set_rng_state(start.torch_rng)
        history = list(start.history)
        best_score, best_epoch, best_val = start.best_score, start.best_epoch, start.best_val
        best_state, done, finished = start.best_state, start.epoch, start.finished
    t_start = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[status]}"))
    with Progress(*columns, disable=not progress) as bar:
        for epoch in range(done + 1, 1 if finished else stop_at + 1):
            t_epoch = time.perf_counter()
            train_ds.set_epoch(epoch)
            loader.sampler.set_epoch(epoch)
            bar_task = bar.add_task(f"epoch {epoch}/{epochs}", total=len(loader), status="")
            train_loss = _train_epoch(
                model, loader, loss_fn, optimizer, epoch,
                lambda batch: apply_cloud_blobs(
                    apply_modality_dropout(batch, arch.sensors, spec.modality_dropout,
                                           dropout_gen),
                    clouded, spec.cloud_blobs, dropout_gen),
                lambda mean_loss, task_id=bar_task: bar.update(
                    task_id, advance=1, status=f"loss {mean_loss:.3f}"),
            )
            lr = optimizer.param_groups[0]["lr"]
            schedule.step()

            val = evaluate(model, data, "val", spec.batch_size, num_workers=spec.num_workers)
            record = {"epoch": epoch, "train_loss": train_loss, "lr": lr}
            scalars = val["scalars"] if "scalars" in val else {k: val[k] for k in SCALARS}
            record.update({f"val_{k}": float(v) for k, v in scalars.items()})
            record["seconds"] = time.perf_counter() - t_epoch
            history.append(record)
            if record[monitor] > best_score:
                best_score, best_epoch, best_val = record[monitor], epoch, val
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            bar.update(bar_task, status=f"loss {record['train_loss']:.3f}  {monitor} "
                       f"{record[monitor]:.3f}  best {best_score:.3f} (epoch {best_epoch})")
            done = epoch
            if epoch - best_epoch >= spec.early_stopping_patience:
                finished = True
                break

    state = None
    if until is not None:  # before the best epoch's weights replace the last epoch's
        state = TrainState(
            epoch=done, finished=finished,
            model={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            optimizer=optimizer.state_dict(), schedule=schedule.state_dict(),
            torch_rng=torch.get_rng_state(), dropout_rng=dropout_gen.get_state(),
            history=history, best_score=best_score, best_epoch=best_epoch, best_val=best_val,
            best_state=best_state)
    model.load_state_dict(best_state)  # set in epoch 1: any score beats -inf
    model.eval()
    return TrainOutcome(
        model=model,
        arch=arch,
        history=history,
        val_metrics=best_val,
        best_epoch=best_epoch,
        epochs=len(history),
        monitor=monitor,
        device=str(device),
        train_s=time.perf_counter() - t_start,
        state=state,
    )
