"""One search trial: plain data in, a `TrialResult` out (runs inside a Ray worker).

Training or model errors never escape: they become `status="failed"` with the error text, so
the search records them and goes on. KeyboardInterrupt (and other BaseExceptions such as
SystemExit) are let through so a stopped search stops. The test split is never touched here.
"""

from __future__ import annotations

import socket
import time
import traceback
from typing import Any

from autors.config import TaskSpec
from autors.data import PreparedData
from autors.training.cost import measure_cost
from autors.training.loop import SCALARS, TrainOutcome, train_model
from autors.training.result import TrialResult

ERROR_TAIL_CHARS = 2000  # enough for the message and the last frames of the traceback


def val_metrics(outcome: TrainOutcome) -> dict[str, Any]:
    """TrialResult.metrics: val_oa, val_aa, val_kappa, val_miou, val_ece, val_loss, and per-class
    val_per_class_accuracy / val_per_class_iou ({class: value | None})."""
    val = outcome.val_metrics
    out: dict[str, Any] = {f"val_{k}": float(val[k]) for k in SCALARS}
    out["val_ece"] = float(val["ece"])
    out["val_loss"] = float(val["loss"])
    out["val_per_class_accuracy"] = val["per_class_accuracy"]
    out["val_per_class_iou"] = val["per_class_iou"]
    return out


def _error_text(err: BaseException) -> str:
    """The error line first (what a leaderboard shows), then the end of the traceback."""
    tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    tail = tb if len(tb) <= ERROR_TAIL_CHARS else "..." + tb[-ERROR_TAIL_CHARS:]
    return f"{type(err).__name__}: {err}\n{tail}"


def run_trial(
    task_dict: dict[str, Any],
    arch_dict: dict[str, Any],
    seed: int,
    data: PreparedData,
    trial_id: int,
) -> TrialResult:
    """Train `arch_dict` with the task's `train` budget, evaluate on validation, measure cost.

    `extra` holds best_epoch, monitor, device, cost_s (time measuring cost) and the per-epoch
    history. `train_s` is training + per-epoch validation; `duration_s` the whole call.
    """
    t0 = time.perf_counter()
    result = TrialResult(
        trial_id=trial_id, arch=arch_dict, seed=seed, status="failed", node=socket.gethostname()
    )
    try:
        task = TaskSpec.from_dict(task_dict)
        outcome = train_model(task, arch_dict, data, seed, progress=False)
        result.train_s = outcome.train_s
        result.epochs = outcome.epochs
        result.arch = outcome.arch.to_dict()
        result.metrics = val_metrics(outcome)
        t_cost = time.perf_counter()
        result.cost = measure_cost(outcome.model, data.in_channels, task.sample_size)
        result.extra = {
            "best_epoch": outcome.best_epoch,
            "monitor": outcome.monitor,
            "device": outcome.device,
            "cost_s": time.perf_counter() - t_cost,
            "history": outcome.history,
        }
        result.status = "ok"
    except Exception as err:  # noqa: BLE001 - any failure of this trial is recorded, not raised
        result.status = "failed"
        result.error = _error_text(err)
    result.duration_s = time.perf_counter() - t0
    return result
