"""The one trial path: train an architecture, evaluate it, measure its cost.

    trained = train_evaluate(task, arch, data, seed, test=False)   # -> TrainedModel

Every trained model of autors comes out of `train_evaluate`:
- a search trial (`run_trial`, in a Ray worker): validation only, never the test split;
- the search's final retraining (`autors.search.final.retrain_and_test`): test once;
- `autors train` (`autors.training.train_folder.train_and_write`): test only with --test.
The last two also `calibrate`: a temperature and conformal quantiles fitted on the validation
split's logits after training (`autors.training.calibration`), measured on test with the test
evaluation (same pass; nothing is fitted on test); a task with `targets` gets its continuous
targets' interval factors instead (`autors.training.targets.fit_intervals`, on validation).

`run_trial` is plain data in, a `TrialResult` out. Training or model errors never escape it:
they become `status="failed"` with the error text, so the search records them and goes on.
KeyboardInterrupt (and other BaseExceptions such as SystemExit) are let through so a stopped
search stops.
"""

from __future__ import annotations

import socket
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import fusion
from autors.config import TaskSpec
from autors.data import PreparedData
from autors.training.calibration import Calibration, CalibrationCheck
from autors.training.calibration import calibrate as fit_on_validation
from autors.training.cost import measure_cost
from autors.training.evaluate import evaluate
from autors.training.loop import SCALARS, TrainOutcome, TrainState, train_model
from autors.training.result import Cost, TrialResult, error_text
from autors.training.robustness import robust_scores, robustness
from autors.training.targets import evaluate_targets, fit_intervals


@dataclass
class TrainedModel:
    """A trained model (best validation epoch), its evaluation and its cost."""

    outcome: TrainOutcome  # the model, resolved arch, history, validation metrics, epochs
    cost: Cost
    test_metrics: dict[str, Any] | None  # None unless the test split was explicitly asked for
    started: str  # ISO 8601 UTC, when training began
    wall_s: float  # training, evaluation and cost measurement
    cost_s: float  # of which measuring the cost
    # fitted on validation when asked (`train_evaluate(..., calibrate=True)`); the test split's
    # check of it is `test_metrics["calibration"]`
    calibration: Calibration | None = None

    def metrics(self) -> dict[str, Any]:
        """TrialResult.metrics: val_oa, val_aa, val_kappa, val_miou, val_ece, val_loss, per-class
        val_per_class_accuracy / val_per_class_iou ({class: value | None}); with a test
        evaluation also test_oa, test_aa, test_kappa, test_miou, test_ece, test_robustness
        ({condition: oa, kappa, ece, ...}: clean, each used sensor removed, 10/30/60 % cloud
        over optical sensors) and, for a dataset of several scenes, test_per_scene /
        test_per_group ({id: pixels, oa, kappa, miou}). When the search needs it (objective
        val_oa_robust, constraint min_oa_when_missing): val_oa_robust, val_oa_worst_missing."""
        val = self.outcome.val_metrics
        if "scalars" in val:  # a task with `targets`
            return self._target_metrics()
        out: dict[str, Any] = {f"val_{k}": float(val[k]) for k in SCALARS}
        out["val_ece"] = float(val["ece"])
        out["val_loss"] = float(val["loss"])
        out["val_per_class_accuracy"] = val["per_class_accuracy"]
        out["val_per_class_iou"] = val["per_class_iou"]
        for key in ("oa_robust", "oa_worst_missing"):
            if key in val:
                out[f"val_{key}"] = float(val[key])
        if self.test_metrics is not None:
            out.update({f"test_{k}": float(self.test_metrics[k]) for k in SCALARS})
            out["test_ece"] = float(self.test_metrics["ece"])
            for key in ("per_scene", "per_group", "robustness"):
                if key in self.test_metrics:
                    out[f"test_{key}"] = self.test_metrics[key]
        if self.calibration is not None:
            out["temperature"] = self.calibration.temperature
            out["val_ece_calibrated"] = float(self.calibration.val["ece_after"])
            out["val_nll_calibrated"] = float(self.calibration.val["nll_after"])
            checked = (self.test_metrics or {}).get("calibration")
            if checked is not None:
                out["test_ece_calibrated"] = float(checked["ece_after"])
                out["test_conformal"] = checked["conformal"]
        return out

    def _target_metrics(self) -> dict[str, Any]:
        """A task with `targets`: val_score, val_loss, every target's metrics as
        val_<metric>__<target> (the class target's also as val_oa, val_kappa...), and
        val_targets ({target: metrics}); with a test evaluation the same as test_*."""
        out: dict[str, Any] = {}
        for split, metrics in (("val", self.outcome.val_metrics), ("test", self.test_metrics)):
            if metrics is None:
                continue
            out.update({f"{split}_{k}": float(v) for k, v in metrics["scalars"].items()})
            out[f"{split}_loss"] = float(metrics["loss"])
            out[f"{split}_targets"] = metrics["targets"]
        return out

    def trial_result(self, trial_id: int, seed: int) -> TrialResult:
        """This model as an ok TrialResult. `extra` holds best_epoch, monitor, device, cost_s
        and the per-epoch history; `train_s` is training + per-epoch validation."""
        o = self.outcome
        return TrialResult(
            trial_id=trial_id, arch=o.arch.to_dict(), seed=seed, status="ok",
            metrics=self.metrics(), cost=self.cost, epochs=o.epochs, duration_s=self.wall_s,
            train_s=o.train_s, node=socket.gethostname(),
            extra={"best_epoch": o.best_epoch, "monitor": o.monitor, "device": o.device,
                   "cost_s": self.cost_s, "history": o.history},
        )

    def pack(self) -> dict[str, Any]:
        """Plain data (CPU tensors, JSON-able values), so a Ray worker can hand the model to the
        driver, which writes its folder (cluster workers may not share the driver's disk)."""
        o = self.outcome
        return {
            "arch": o.arch.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in o.model.state_dict().items()},
            "history": o.history, "val_metrics": o.val_metrics, "best_epoch": o.best_epoch,
            "epochs": o.epochs, "monitor": o.monitor, "device": o.device, "train_s": o.train_s,
            "cost": asdict(self.cost), "test_metrics": self.test_metrics,
            "started": self.started, "wall_s": self.wall_s, "cost_s": self.cost_s,
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
        }

    @classmethod
    def unpack(cls, packed: dict[str, Any], data: PreparedData) -> TrainedModel:
        """The TrainedModel of `pack()`, its network rebuilt for `data` (eval mode, CPU)."""
        arch = fusion.Arch.from_dict(packed["arch"])
        model = fusion.build_model(arch, data.in_channels, data.model_outputs, dates=data.steps)
        model.load_state_dict(packed["state_dict"])
        outcome = TrainOutcome(
            model=model.eval(), arch=arch, history=packed["history"],
            val_metrics=packed["val_metrics"], best_epoch=packed["best_epoch"],
            epochs=packed["epochs"], monitor=packed["monitor"], device=packed["device"],
            train_s=packed["train_s"],
        )
        cal = packed.get("calibration")
        return cls(outcome=outcome, cost=Cost(**packed["cost"]),
                   test_metrics=packed["test_metrics"], started=packed["started"],
                   wall_s=packed["wall_s"], cost_s=packed["cost_s"],
                   calibration=None if cal is None else Calibration.from_dict(cal))


def train_evaluate(
    task: TaskSpec,
    arch: fusion.Arch | dict | str,
    data: PreparedData,
    seed: int,
    *,
    test: bool = False,
    calibrate: bool = False,
    progress: bool = False,
    max_epochs: int | None = None,
    until: int | None = None,
    start: TrainState | None = None,
    cost: Cost | None = None,
) -> TrainedModel:
    """Train `arch` with `task.train` (early stopping on validation), evaluate it once on the
    test split only if `test`, and measure its cost at the task's input size. With
    `calibrate`, fit a temperature and conformal quantiles on the validation split
    (`autors.training.calibration.calibrate`) and, with `test`, measure them in the test
    evaluation's pass (`test_metrics["calibration"]`).

    `until` / `start`: stop at that epoch of the schedule, or continue from an earlier stop
    (`train_model`; the outcome's `state`); `cost` skips measuring a cost already known
    (it depends on the architecture only).

    Raises `fusion.ArchError` for an arch that does not fit the task and
    `TrainingDivergedError` when the loss stops being finite.
    """
    t0 = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    outcome = train_model(task, arch, data, seed, progress=progress, max_epochs=max_epochs,
                          until=until, start=start)
    if task.search.needs_robustness:  # validation only: it may steer the search
        table = robustness(outcome.model, data, task, "val", clouds=False,
                           clean=outcome.val_metrics)
        outcome.val_metrics.update({f"{k}": v for k, v in robust_scores(table).items()},
                                   robustness=table)
    spec = task.train
    calibration = check = None
    intervals = None
    if task.multi_target:  # temperature and conformal sets are a labels task's; a continuous
        # target's std head gets validation-fitted interval factors instead
        if calibrate:
            intervals = fit_intervals(outcome.model, data, spec.batch_size, spec.num_workers)
            outcome.val_metrics["intervals"] = intervals
        calibrate = False
    if calibrate:  # validation logits only; after every choice training made
        calibration = fit_on_validation(outcome.model, data, spec.batch_size, spec.num_workers,
                                seed=task.split.seed)
        check = CalibrationCheck(calibration)
    test_metrics = None
    if test and task.multi_target:  # every target's metrics, interval coverage included
        test_metrics = evaluate_targets(outcome.model, data, "test", spec.batch_size,
                                        spec.num_workers, intervals=intervals)
    elif test:
        test_metrics = evaluate(outcome.model, data, "test", spec.batch_size,
                                num_workers=spec.num_workers, breakdown=True,
                                on_logits=None if check is None else check.add)
        if check is not None:
            test_metrics["calibration"] = check.result()
        test_metrics["robustness"] = robustness(outcome.model, data, task, "test",
                                                clean=test_metrics)
    t_cost = time.perf_counter()
    if cost is None:
        cost = measure_cost(outcome.model, data.in_channels, task.sample_size, dates=data.steps)
    now = time.perf_counter()
    return TrainedModel(outcome=outcome, cost=cost, test_metrics=test_metrics, started=started,
                        wall_s=now - t0, cost_s=now - t_cost, calibration=calibration)


@dataclass(frozen=True)
class RungJob:
    """One rung of a multi-fidelity trial: train to `epochs` of a `max_epochs` schedule, from
    `checkpoint` (a `TrainState` as bytes) when the trial already reached an earlier rung."""

    rung: int
    epochs: int
    max_epochs: int
    checkpoint: bytes | None = None
    cost: dict[str, Any] | None = None  # the trial's cost measured at its first rung


CHECKPOINT_KEY = "checkpoint_bytes"  # extra key of a rung's TrainState (the driver stores it)


def run_trial(
    task_dict: dict[str, Any],
    arch_dict: dict[str, Any],
    seed: int,
    data: PreparedData,
    trial_id: int,
    rung: RungJob | None = None,
) -> TrialResult:
    """A search trial (the search's TrialFn): `train_evaluate` on validation only, as a
    TrialResult; a failure is a failed TrialResult with the error text, never an exception.
    `duration_s` is the whole call. With `rung`, train to the rung's epochs (continuing from
    its checkpoint) and return the new `TrainState` bytes in `extra[CHECKPOINT_KEY]`, with
    `extra["load_s"]` / `extra["save_s"]`: what continuing cost beyond the epochs."""
    return trial_model(task_dict, arch_dict, seed, data, trial_id, rung)[1]


def trial_model(
    task_dict: dict[str, Any],
    arch_dict: dict[str, Any],
    seed: int,
    data: PreparedData,
    trial_id: int,
    rung: RungJob | None = None,
) -> tuple[TrainedModel | None, TrialResult]:
    """`run_trial` with its trained model (None when the trial failed), for a trial function
    that measures more in the worker (benchmarks/search_efficiency.py)."""
    t0 = time.perf_counter()
    trained = None
    try:
        task = TaskSpec.from_dict(task_dict)
        if rung is None:
            trained = train_evaluate(task, arch_dict, data, seed)
            result = trained.trial_result(trial_id, seed)
        else:
            trained, result = _run_rung(task, arch_dict, seed, data, trial_id, rung)
    except Exception as err:  # noqa: BLE001 - any failure of this trial is recorded, not raised
        result = TrialResult(trial_id=trial_id, arch=arch_dict, seed=seed, status="failed",
                             error=error_text(err), node=socket.gethostname())
    result.duration_s = time.perf_counter() - t0
    return trained, result


def _run_rung(task: TaskSpec, arch_dict: dict[str, Any], seed: int, data: PreparedData,
              trial_id: int, rung: RungJob) -> tuple[TrainedModel, TrialResult]:
    t0 = time.perf_counter()
    start = None if rung.checkpoint is None else TrainState.from_bytes(rung.checkpoint)
    load_s = time.perf_counter() - t0
    trained = train_evaluate(task, arch_dict, data, seed, max_epochs=rung.max_epochs,
                             until=rung.epochs, start=start,
                             cost=None if rung.cost is None else Cost(**rung.cost))
    t1 = time.perf_counter()
    raw = trained.outcome.state.to_bytes()
    result = trained.trial_result(trial_id, seed)
    result.extra.update({CHECKPOINT_KEY: raw, "load_s": load_s,
                         "save_s": time.perf_counter() - t1,
                         "early_stopped": trained.outcome.state.finished})
    return trained, result
