"""The one trial path (`train_evaluate`) behind a search trial, the final retraining and
`autors train`; run_trial: plain data in, TrialResult out; failures recorded, never raised; val
only."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

import fusion
from autors.config import TaskSpec
from autors.data import PreparedData
from autors.search.final import retrain_and_test
from autors.training.loop import SCALARS
from autors.training.result import TrialResult
from autors.training.train_folder import read_train_folder, train_and_write
from autors.training.trial import TrainedModel, run_trial


@dataclasses.dataclass
class RecordingData(PreparedData):
    """PreparedData that records which splits were turned into datasets."""

    asked: list[str] = dataclasses.field(default_factory=list)

    def dataset(self, split: str, augment: bool = False, seed: int = 0, condition=None):
        # a robustness condition is recorded as "split:condition"
        self.asked.append(split if condition is None else f"{split}:{condition.name}")
        return super().dataset(split, augment, seed, condition)


class InterruptingData(PreparedData):
    def dataset(self, split: str, augment: bool = False, seed: int = 0, condition=None):
        raise KeyboardInterrupt


def _read_only(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


def _quick(task: TaskSpec) -> dict:
    d = task.to_dict()
    d["train"].update(epochs=2, max_train_samples=64)
    return d


def test_ok_trial_fills_metrics_cost_and_timing_and_never_reads_test(
    patch_task: TaskSpec, patch_data: PreparedData
) -> None:
    data = RecordingData(**{f.name: getattr(patch_data, f.name)
                            for f in dataclasses.fields(PreparedData) if f.init})
    # Ray's object store hands workers read-only numpy arrays
    data.arrays = [{name: _read_only(a) for name, a in scene.items()}
                   for scene in patch_data.arrays]
    arch = fusion.baseline_arch("late_cnn", patch_data.in_channels).to_dict()
    r = run_trial(_quick(patch_task), arch, 3, data, trial_id=12)
    assert r.status == "ok", r.error
    assert r.trial_id == 12 and r.seed == 3 and r.error == ""
    assert r.arch == arch
    assert 1 <= r.epochs <= 2 and r.node == socket.gethostname()
    assert 0 < r.train_s <= r.duration_s
    for key in ("val_oa", "val_aa", "val_kappa", "val_miou", "val_ece"):
        assert 0.0 <= r.metrics[key] <= 1.0
    assert r.metrics["val_oa"] > 1 / 3  # it learned something in two short epochs
    assert set(r.metrics["val_per_class_accuracy"]) == set(patch_data.class_names)
    assert r.cost is not None
    assert r.cost.params == fusion.count_params(fusion.build_model(arch, data.in_channels, 3))
    assert r.cost.flops > 0 and r.cost.latency_ms_b1 > 0 and r.cost.latency_ms_per_sample_b256 > 0
    assert r.extra["monitor"] == "val_oa" and len(r.extra["history"]) == r.epochs
    assert "test" not in data.asked and "val" in data.asked and "train" in data.asked
    # crosses process boundaries as plain JSON and comes back equal
    assert TrialResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_nan_training_is_a_failed_trial_with_the_reason(
    patch_task: TaskSpec, patch_data: PreparedData
) -> None:
    bad = dict(patch_data.arrays[0])
    bad["optical"] = np.full_like(bad["optical"], np.nan)
    arch = fusion.baseline_arch("late_cnn", patch_data.in_channels).to_dict()
    r = run_trial(_quick(patch_task), arch, 0, dataclasses.replace(patch_data, arrays=[bad]), 5)
    assert r.status == "failed"
    assert r.error.startswith("TrainingDivergedError: the training loss became nan")
    assert "Traceback" in r.error  # where it happened, for the run folder's reader
    assert r.cost is None and r.metrics == {}
    assert r.duration_s > 0 and r.arch == arch


def test_invalid_arch_is_a_failed_trial(patch_task: TaskSpec, patch_data: PreparedData) -> None:
    arch = {"version": 1, "branches": {"optical": {"kind": "conv"}},
            "fusion": {"op": "sum", "position": "late"}, "head": {"kind": "patch"}}
    r = run_trial(_quick(patch_task), arch, 0, patch_data, 6)
    assert r.status == "failed"
    assert "ArchError" in r.error and "no branch for task sensor 'lidar'" in r.error


def test_keyboard_interrupt_is_not_swallowed(
    patch_task: TaskSpec, patch_data: PreparedData
) -> None:
    data = InterruptingData(**{f.name: getattr(patch_data, f.name)
                               for f in dataclasses.fields(PreparedData) if f.init})
    with pytest.raises(KeyboardInterrupt):
        run_trial(_quick(patch_task), fusion.baseline_arch("late_cnn", data.in_channels)
                  .to_dict(), 0, data, 7)


def test_search_trial_final_retraining_and_autors_train_are_one_path(
    patch_task: TaskSpec, patch_data: PreparedData, tmp_path: Path
) -> None:
    """Same task, arch and seed: the three callers train the same model (same weights, same
    validation metrics and cost), and only the final retraining and `train --test` evaluate
    the test split, once each."""
    d = _quick(patch_task)
    data = RecordingData(**{f.name: getattr(patch_data, f.name)
                            for f in dataclasses.fields(PreparedData) if f.init})
    arch = fusion.baseline_arch("late_cnn", patch_data.in_channels).to_dict()

    trial = run_trial(d, arch, 5, data, 1)
    assert trial.status == "ok", trial.error
    assert not [a for a in data.asked if a.startswith("test")]
    final = retrain_and_test(d, arch, 5, data, 1)
    assert data.asked.count("test") == 1
    # the robustness rows are the same test pixels under conditions, read after training
    conditions = [a for a in data.asked if a.startswith("test:")]
    assert conditions and data.asked.index(conditions[0]) > data.asked.index("test")
    trained = train_and_write(TaskSpec.from_dict(d), arch, data, 5, tmp_path / "m", test=True)
    assert data.asked.count("test") == 2
    folder = read_train_folder(tmp_path / "m")

    assert "test_oa" not in trial.metrics
    for k in SCALARS:
        assert trial.metrics[f"val_{k}"] == final.metrics[f"val_{k}"] == folder.metrics["val"][k]
        assert final.metrics[f"test_{k}"] == trained.test_metrics[k] == folder.metrics["test"][k]
    assert trial.epochs == final.epochs == folder.metrics["epochs"]
    assert trial.cost.params == final.cost.params == folder.metrics["cost"]["params"]
    assert trial.cost.flops == final.cost.flops == folder.metrics["cost"]["flops"]

    # The final model reaches the driver as plain data and is rebuilt with the same weights.
    rebuilt = TrainedModel.unpack(final.extra["trained"], patch_data).outcome.model.state_dict()
    written = folder.load_model().state_dict()
    assert rebuilt.keys() == written.keys()
    assert all(torch.equal(rebuilt[k], written[k]) for k in written)
