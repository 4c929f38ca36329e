"""Fixtures of the search tests: a real local Ray instance (2 CPUs, loopback, private
RAY_TMPDIR), a tiny synthetic scene written as real GeoTIFFs, task factories, and cheap trial
functions for the strategy/engine tests (a real strategy and the real Ray engine with a cheap
evaluator). The end-to-end tests train for real with autors.training.run_trial.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import helpers as search_helpers  # tests/search/helpers.py
import pytest
import ray

import fusion
from autors.config import TaskSpec
from autors.search.cluster import _loopback_only
from autors.synth import generate_scene
from autors.training.result import Cost, TrialResult
from autors.training.trial import run_trial

h = search_helpers


@pytest.fixture(scope="session")
def helpers() -> ModuleType:
    """Scene/task helpers and the crash-test helpers (SIGKILL a search, clean up after it)."""
    return h


@pytest.fixture(scope="session")
def ray_tmpdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private RAY_TMPDIR so parallel test sessions never find each other's Ray."""
    path = tmp_path_factory.mktemp("ray")
    os.environ["RAY_TMPDIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def local_ray(ray_tmpdir: Path) -> Iterator[dict]:
    """One local Ray instance for the session: 2 CPUs, registered on 127.0.0.1."""
    _loopback_only()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    node = ray.nodes()[0]
    assert node["NodeManagerAddress"] == "127.0.0.1", "Ray must stay on loopback"
    # The cheap trial functions below live in this (not importable) conftest module: make Ray
    # ship them by value instead of by module reference.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield {"address": ray.get_runtime_context().gcs_address}
    ray.shutdown()


@pytest.fixture(scope="session")
def scene_task_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    info = generate_scene(tmp_path_factory.mktemp("scene"), h.SCENE)
    return info.files["task"]


@pytest.fixture
def make_task(scene_task_file: Path, tmp_path: Path) -> Callable[..., TaskSpec]:
    """task(**search fields) -> a TaskSpec of the tiny scene, written to tmp_path/task.yaml
    (relative raster paths made absolute) so a subprocess can load it too."""

    def make(train: dict | None = None, **search: Any) -> TaskSpec:
        return h.write_task(scene_task_file, tmp_path / "task.yaml", train, **search)

    return make


# -- cheap trial functions (run in Ray workers) ------------------------------------------------
def _cheap_result(arch: dict, seed: int, data: Any, trial_id: int, metric: float) -> TrialResult:
    model = fusion.build_model(arch, data.in_channels, data.num_classes)
    params = fusion.count_params(model)
    return TrialResult(
        trial_id=trial_id, arch=arch, seed=seed, status="ok",
        metrics={"val_oa": metric, "val_aa": metric, "val_kappa": metric, "val_miou": metric},
        cost=Cost(params=params, flops=100 * params, latency_ms_b1=params / 1e4,
                  latency_ms_per_sample_b256=params / 1e6),
        epochs=1, duration_s=0.01, train_s=0.01,
        extra={"start": time.time()},
    )


def arch_metric(arch: dict) -> float:
    """A deterministic 'accuracy' of an architecture (a smooth function of its choices)."""
    used = [b for b in arch["branches"].values() if b["kind"] != "off"]
    width = sum(b.get("width", 0) for b in used)
    return round(0.3 + 0.1 * len(used) + 0.2 * math.tanh(width / 40.0)
                 - 0.05 * (arch["fusion"]["position"] == "late"), 6)


def cheap_trial(task: dict, arch: dict, seed: int, data: Any, trial_id: int) -> TrialResult:
    """Builds the real model (for its parameter count) but does not train it."""
    return _cheap_result(arch, seed, data, trial_id, arch_metric(arch))


def slow_cheap_trial(task: dict, arch: dict, seed: int, data: Any, trial_id: int) -> TrialResult:
    """Like cheap_trial but takes 1.0 s, to see concurrency and time budgets."""
    start = time.time()
    time.sleep(1.0)
    result = cheap_trial(task, arch, seed, data, trial_id)
    result.extra = {"start": start, "end": time.time()}
    result.duration_s = time.time() - start
    return result


def flaky_trial(task: dict, arch: dict, seed: int, data: Any, trial_id: int) -> TrialResult:
    """Trial 1 raises, trial 2 hangs (until the timeout cancels it), others are cheap."""
    if trial_id == 1:
        raise RuntimeError("deliberate failure in trial 1")
    if trial_id == 2:
        time.sleep(3600)
    return cheap_trial(task, arch, seed, data, trial_id)


def nan_trial(task: dict, arch: dict, seed: int, data: Any, trial_id: int) -> TrialResult:
    """Every odd trial reports a NaN objective."""
    metric = float("nan") if trial_id % 2 else arch_metric(arch)
    return _cheap_result(arch, seed, data, trial_id, metric)


def real_trial_failing_once(
    task: dict, arch: dict, seed: int, data: Any, trial_id: int
) -> TrialResult:
    """The real training, except trial 1 which raises inside the worker."""
    if trial_id == 1:
        raise RuntimeError("deliberate failure in trial 1")
    return run_trial(task, arch, seed, data, trial_id)


def cheap_final(task: dict, arch: dict, seed: int, data: Any, trial_id: int) -> TrialResult:
    """Final phase stand-in for the cheap tests: deterministic 'test' metrics."""
    m = arch_metric(arch) - 0.01 * (seed % 7)
    return TrialResult(trial_id=trial_id, arch=arch, seed=seed, status="ok",
                       metrics={"test_oa": m, "test_aa": m, "test_kappa": m, "test_miou": m})


@pytest.fixture
def trial_fns(local_ray: dict) -> SimpleNamespace:
    """The trial functions above (tests cannot import conftest under importlib mode)."""
    return SimpleNamespace(
        cheap=cheap_trial, slow=slow_cheap_trial, flaky=flaky_trial, nan=nan_trial,
        real_failing_once=real_trial_failing_once, cheap_final=cheap_final, metric=arch_metric,
    )
