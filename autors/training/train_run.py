"""Train one architecture, evaluate it, measure its cost and write its run folder.

The one path from (task, arch, data, seed) to a run folder: `autors train` uses it, and so can
the search's final retraining (its run folders are what `autors export` reads).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import fusion
from autors.config import TaskSpec
from autors.data import PreparedData
from autors.training.cost import measure_cost
from autors.training.evaluate import evaluate
from autors.training.loop import TrainOutcome, train_model
from autors.training.result import Cost
from autors.training.run_folder import (
    RunRecord,
    check_new_run_dir,
    check_task_copyable,
    write_run,
)


@dataclass
class TrainRun:
    """A written run folder and what went into it."""

    path: Path
    outcome: TrainOutcome
    cost: Cost
    test_metrics: dict[str, Any] | None  # None unless test=True


def train_and_write(
    task: TaskSpec,
    arch: fusion.Arch | dict | str,
    data: PreparedData,
    seed: int,
    out: Path,
    *,
    test: bool = False,
    progress: bool = False,
    max_epochs: int | None = None,
) -> TrainRun:
    """Train, evaluate on validation (and once on test only if `test`), measure cost, and
    write the run folder `out` (refused up front if it exists and is not empty).

    run.json `wall_s` covers this call (data preparation is the caller's and not included).
    """
    t0 = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    check_new_run_dir(Path(out))  # before minutes of training, not after
    check_task_copyable(task)
    outcome = train_model(task, arch, data, seed, progress=progress, max_epochs=max_epochs)
    test_metrics = evaluate(outcome.model, data, "test", task.train.batch_size) if test else None
    cost = measure_cost(outcome.model, data.in_channels, task.sample_size)
    path = write_run(Path(out), RunRecord(
        task=task, outcome=outcome, data=data, seed=seed, cost=cost,
        test_metrics=test_metrics, started=started, wall_s=time.perf_counter() - t0,
    ))
    return TrainRun(path=path, outcome=outcome, cost=cost, test_metrics=test_metrics)


def pack_run(*, outcome: TrainOutcome, cost: Cost,
             test_metrics: dict[str, Any] | None, started: str, wall_s: float) -> dict[str, Any]:
    """A trained model and its results as plain data (CPU tensors, JSON-able values), so a Ray
    worker can hand them to the driver, which writes the run folder with `write_packed_run`
    (workers of a cluster may not share the driver's file system)."""
    return {
        "arch": outcome.arch.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in outcome.model.state_dict().items()},
        "history": outcome.history,
        "val_metrics": outcome.val_metrics,
        "best_epoch": outcome.best_epoch,
        "epochs": outcome.epochs,
        "monitor": outcome.monitor,
        "device": outcome.device,
        "train_s": outcome.train_s,
        "cost": asdict(cost),
        "test_metrics": test_metrics,
        "started": started,
        "wall_s": wall_s,
    }


def write_packed_run(out: Path, task: TaskSpec, data: PreparedData, seed: int,
                     packed: dict[str, Any]) -> Path:
    """Rebuild the model from `pack_run` data and write its run folder `out`."""
    arch = fusion.Arch.from_dict(packed["arch"])
    model = fusion.build_model(arch, data.in_channels, data.num_classes)
    model.load_state_dict(packed["state_dict"])
    model.eval()
    outcome = TrainOutcome(
        model=model, arch=arch, history=packed["history"], val_metrics=packed["val_metrics"],
        best_epoch=packed["best_epoch"], epochs=packed["epochs"], monitor=packed["monitor"],
        device=packed["device"], train_s=packed["train_s"],
    )
    return write_run(Path(out), RunRecord(
        task=task, outcome=outcome, data=data, seed=seed, cost=Cost(**packed["cost"]),
        test_metrics=packed["test_metrics"], started=packed["started"], wall_s=packed["wall_s"],
    ))
