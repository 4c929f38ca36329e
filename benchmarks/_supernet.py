"""The weight-sharing estimator measured by `benchmarks/rank_correlation.py` (issue 17 item 3):
a single-path one-shot supernet (SPOS, Guo et al. 2020) over any search space, without a
hand-written supernet: weights shared between the architectures `fusion.build_model` builds.
It did not earn a place in the product (results/benchmarks/rank_correlation.md: its ranking
agrees with stand-alone training far less than a first epoch's at the same cost), so it lives
here, beside the benchmark that measures it, and nothing in `autors` uses it.

    net = Supernet(task, data, seed)
    net.train(sample_arch, epochs)          # one uniformly sampled arch per training batch
    metrics = net.score(arch)               # inherited weights, BatchNorm recalibrated
    draw_candidates(space, n, seed)         # the architectures to rank (uniform, distinct)

How the weights are shared: every model built for a sampled architecture (cached per arch,
`MODEL_CACHE` of them) has each of its Parameters replaced by the one in the `WeightStore`
under the key (qualified parameter name, owning module's class, shape); a key seen for the
first time keeps the new model's freshly initialised tensor, which then becomes the shared
one. Two architectures whose modules agree in name, type and shape (same sensor branch kind
and width at the same stage, the same head width...) train and read the very same tensor;
a different choice (another width, kind or input size) has its own weights, as SPOS's choice
blocks do. Any space (plugins' too) works, because nothing here knows a space's choices.

BatchNorm running statistics are not shared (each cached model keeps its own, and they do
not match a path trained with other paths' batches): `score` recalibrates them on a fixed set
of training batches (cumulative average, train mode, no gradient) before the validation pass,
as SPOS does. One optimiser holds every shared tensor (a tensor first seen mid-training is
added as its own parameter group); a step updates only the sampled path's tensors (gradients
of the others are None, so AdamW skips them, weight decay included). The learning rate
follows the cosine of `autors.training.loop` per epoch.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

import fusion
from autors.config import TaskSpec
from autors.data import PreparedData
from autors.errors import SearchError
from autors.training.batches import (
    Batch,
    apply_cloud_blobs,
    apply_modality_dropout,
    resolve_device,
    to_device,
    train_loader,
)
from autors.training.evaluate import evaluate
from autors.training.loop import (
    MIN_LR_FACTOR,
    TrainingDivergedError,
    _stream_seed,
    build_optimizer,
    class_weights,
    resolve_arch,
)
from fusion import CLOUDED_KINDS
from search_spaces import Sample, SearchSpace

MODEL_CACHE = 128  # built models kept (least recently used dropped; rebuilt when drawn again)
CALIBRATION_BATCHES = 4  # training batches that re-estimate BatchNorm statistics per candidate
MAX_DRAWS = 1000  # invalid samples in a row before the space is declared unusable


def arch_key(arch: dict) -> str:
    """Canonical text of an arch dict: equal architectures give equal keys."""
    return json.dumps(arch, sort_keys=True, separators=(",", ":"))


# -- the candidates -------------------------------------------------------------------------------
def uniform_sample(space: SearchSpace, rng: np.random.Generator) -> Sample:
    """A valid sample, each label's value drawn uniformly from its options (an invalid
    combination, e.g. every sensor off, is drawn again)."""
    options = space.options()
    for _ in range(MAX_DRAWS):
        sample = {label: values[int(rng.integers(len(values)))]
                  for label, values in options.items()}
        if space.invalid_reason(sample) is None:
            return sample
    raise SearchError(f"search.space: {MAX_DRAWS} uniform draws of '{space.name}' in a row "
                      "were not valid architectures")


def draw_candidates(space: SearchSpace, n: int, seed: int,
                    over_limit: Any = None) -> list[tuple[Sample, dict]]:
    """Up to `n` distinct architectures (sample, arch dict), drawn uniformly with `seed`;
    `over_limit(arch) -> cost | None` leaves out those over a params/FLOPs limit. Fewer when
    the space (under its limits) has fewer."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 17]))
    out: list[tuple[Sample, dict]] = []
    seen: set[str] = set()
    misses = 0
    while len(out) < n and misses < 50 * n + MAX_DRAWS:
        sample = uniform_sample(space, rng)
        arch = space.to_arch(sample).to_dict()
        key = arch_key(arch)
        if key in seen or (over_limit is not None and over_limit(arch) is not None):
            misses += 1
            continue
        seen.add(key)
        out.append((sample, arch))
    return out


class WeightStore:
    """The shared Parameters, keyed by qualified name, owning module class and shape."""

    def __init__(self) -> None:
        self.params: dict[str, nn.Parameter] = {}

    @staticmethod
    def key(module_name: str, param_name: str, module: nn.Module, shape: torch.Size) -> str:
        name = f"{module_name}.{param_name}" if module_name else param_name
        return f"{name}|{type(module).__name__}|{'x'.join(str(s) for s in shape)}"

    def keys(self, model: nn.Module) -> list[tuple[str, nn.Module, str, nn.Parameter]]:
        """(key, owning module, parameter name, parameter) of each of `model`'s Parameters."""
        return [(self.key(module_name, param_name, module, p.shape), module, param_name, p)
                for module_name, module in model.named_modules()
                for param_name, p in module._parameters.items() if p is not None]

    def adopt(self, model: nn.Module) -> list[nn.Parameter]:
        """Replace `model`'s Parameters by the shared ones (in place); returns the tensors the
        store did not hold (the model's own, now shared)."""
        new: list[nn.Parameter] = []
        for key, module, param_name, p in self.keys(model):
            shared = self.params.get(key)
            if shared is None:
                self.params[key] = p
                new.append(p)
            else:
                module._parameters[param_name] = shared
        return new

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shared tensors on the CPU (plain data: saved to the run folder, sent by Ray)."""
        return {k: p.detach().cpu().clone() for k, p in self.params.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], device: torch.device) -> None:
        self.params = {k: nn.Parameter(v.to(device)) for k, v in state.items()}

    def numel(self) -> int:
        return sum(p.numel() for p in self.params.values())


@dataclass
class _Path:
    arch: fusion.Arch
    model: nn.Module
    keys: frozenset[str]  # the store keys of its Parameters


@dataclass
class SupernetStats:
    """What training the supernet did and cost."""

    epochs: int
    steps: int = 0
    distinct_archs: int = 0  # distinct architectures drawn
    history: list[dict[str, float]] = field(default_factory=list)  # epoch, train_loss, lr, s
    train_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "steps": self.steps,
                "distinct_archs": self.distinct_archs, "history": self.history,
                "train_s": self.train_s}


def recalibrate_batchnorm(model: nn.Module, batches: list[Batch]) -> int:
    """Re-estimate every BatchNorm layer's running mean and variance as the plain average over
    `batches` (train mode, no gradient); returns the number of BatchNorm layers. The model is
    left in eval mode with the layers' momentum as it was."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or not batches:
        model.eval()
        return len(norms)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    return len(norms)


class Supernet:
    """The shared weights and the models built over them for one task's prepared data."""

    def __init__(self, task: TaskSpec, data: PreparedData, seed: int) -> None:
        self.task = task
        self.data = data
        self.seed = seed
        self.spec = task.train
        self.device = resolve_device(self.spec.device)
        self.store = WeightStore()
        self._paths: OrderedDict[str, _Path] = OrderedDict()
        self._calibration: list[Batch] | None = None
        self.trained: set[str] = set()  # store keys some training step updated (or loaded)
        torch.manual_seed(_stream_seed(seed, 0))  # the shared tensors' initial values

    # -- paths ------------------------------------------------------------------------------
    def path(self, arch: dict) -> tuple[_Path, list[nn.Parameter]]:
        """The model of `arch` over the shared weights (built and cached on first use), and
        the tensors it added to the store."""
        key = arch_key(arch)
        found = self._paths.get(key)
        if found is not None:
            self._paths.move_to_end(key)
            return found, []
        resolved = resolve_arch(arch, self.task, self.data)
        model = fusion.build_model(resolved, self.data.in_channels, self.data.model_outputs,
                                   dense=resolved.dense, dates=self.data.steps).to(self.device)
        new = self.store.adopt(model)
        made = _Path(resolved, model, frozenset(k for k, *_ in self.store.keys(model)))
        self._paths[key] = made
        if len(self._paths) > MODEL_CACHE:
            self._paths.popitem(last=False)
        return made, new

    def model(self, arch: dict) -> nn.Module:
        return self.path(arch)[0].model

    # -- training ---------------------------------------------------------------------------
    def train(self, sample_arch: Callable[[], dict], epochs: int,
              on_epoch: Callable[[dict[str, float]], object] | None = None) -> SupernetStats:
        """Train the shared weights for `epochs` passes over the task's training loader, each
        batch through one architecture `sample_arch()` draws (SPOS single-path uniform
        sampling). Raises `TrainingDivergedError` when the loss stops being finite."""
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        spec, data, task = self.spec, self.data, self.task
        if data.targets is not None:
            raise ValueError("the supernet trains tasks with one class target (labels) only")
        train_ds = data.dataset("train", augment=spec.augment, seed=_stream_seed(self.seed, 1))
        loader = train_loader(train_ds, spec, _stream_seed(self.seed, 2), data.sampler_window)
        drop_gen = torch.Generator().manual_seed(_stream_seed(self.seed, 3))
        counts = data.index.counts()["train"][:data.num_classes]
        weight = (class_weights(counts).to(self.device)
                  if spec.class_weighting and counts else None)
        loss_fn = nn.CrossEntropyLoss(weight=weight, ignore_index=-1)
        first, _ = self.path(sample_arch())
        optimizer = build_optimizer(list(first.model.parameters()), spec)
        stats = SupernetStats(epochs=epochs)
        seen: set[str] = set()
        t_start = time.perf_counter()
        for epoch in range(1, epochs + 1):
            t_epoch = time.perf_counter()
            lr = spec.lr * (MIN_LR_FACTOR + (1 - MIN_LR_FACTOR)
                            * (1 + math.cos(math.pi * (epoch - 1) / epochs)) / 2)
            for group in optimizer.param_groups:
                group["lr"] = lr
            train_ds.set_epoch(epoch)
            loader.sampler.set_epoch(epoch)
            loss_sum, n = 0.0, 0
            for batch in loader:
                arch = sample_arch()
                seen.add(arch_key(arch))
                path, new = self.path(arch)
                self.trained |= path.keys
                if new:  # a tensor no earlier path had: trained from now on
                    optimizer.add_param_group({"params": new, "lr": lr})
                batch = to_device(batch, self.device)
                target = batch.pop("target")
                del batch["scene"]
                a_spec = spec.model_copy(update=path.arch.training.to_dict())
                clouded = [s for s in path.arch.sensors if task.sensors[s].kind in CLOUDED_KINDS]
                batch = apply_cloud_blobs(
                    apply_modality_dropout(batch, path.arch.sensors, a_spec.modality_dropout,
                                           drop_gen), clouded, a_spec.cloud_blobs, drop_gen)
                path.model.train()
                loss = loss_fn(path.model(batch), target)
                if not torch.isfinite(loss):
                    raise TrainingDivergedError(
                        f"the supernet's training loss became {loss.item()} at epoch {epoch} "
                        f"(lr {lr:g}): lower train.lr")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item()
                n += 1
            stats.steps += n
            record = {"epoch": epoch, "train_loss": loss_sum / max(n, 1), "lr": lr,
                      "seconds": time.perf_counter() - t_epoch}
            stats.history.append(record)
            if on_epoch is not None:
                on_epoch(record)
        stats.distinct_archs = len(seen)
        stats.train_s = time.perf_counter() - t_start
        return stats

    # -- scoring ----------------------------------------------------------------------------
    def calibration_batches(self, n: int = CALIBRATION_BATCHES) -> list[Batch]:
        """The first `n` batches of a fixed-seed training order (the same for every
        candidate), inputs only, on the device."""
        if self._calibration is None or len(self._calibration) != n:
            ds = self.data.dataset("train", augment=False, seed=_stream_seed(self.seed, 4))
            loader = train_loader(ds, self.spec, _stream_seed(self.seed, 5),
                                  self.data.sampler_window)
            batches = []
            for batch in loader:
                if len(batches) == n:
                    break
                batch = to_device(batch, self.device)
                batch.pop("target")
                batch.pop("scene")
                batches.append(batch)
            self._calibration = batches
        return self._calibration

    def score(self, arch: dict, batches: int = CALIBRATION_BATCHES) -> dict[str, Any]:
        """Validation metrics of `arch` with inherited weights, BatchNorm recalibrated on
        `batches` training batches: val_oa, val_aa, val_kappa, val_miou, val_loss, and
        `inherited` (the share of its parameter values the supernet had trained)."""
        path, _ = self.path(arch)
        recalibrate_batchnorm(path.model, self.calibration_batches(batches))
        val = evaluate(path.model, self.data, "val", self.spec.batch_size,
                       num_workers=self.spec.num_workers)
        out = {f"val_{k}": float(val[k]) for k in ("oa", "aa", "kappa", "miou")}
        out["val_loss"] = float(val["loss"])
        out["inherited"] = self.inherited(path.model)
        return out

    def inherited(self, model: nn.Module) -> float:
        """The share of `model`'s parameter values that some training step updated (the rest
        were never trained: a choice combination no sampled path had)."""
        sizes = [(key in self.trained, p.numel()) for key, _, _, p in self.store.keys(model)]
        return sum(n for hit, n in sizes if hit) / max(sum(n for _, n in sizes), 1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.store.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Shared weights saved by `state_dict` (models built so far are dropped)."""
        self.store.load_state_dict(state, self.device)
        self.trained = set(state)
        self._paths.clear()
