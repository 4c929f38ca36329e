"""Fixtures of the cluster tests: a REAL two-node Ray cluster on loopback (loopback.py: head
127.0.0.2 with 1 CPU, worker 127.0.0.3 with 1 CPU and 1 logical GPU, token auth, private
RAY_TMPDIR, killed by session at the end), the tiny synthetic scene of the search tests, and a
cheap trial function that records where and when each attempt ran and can inject faults.

Searches run in this process with `address=` (the `--address` code path: connect, run,
disconnect) or as `autors search` subprocesses; the cluster outlives them all.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import isolation
import loopback
import numpy as np
import pytest
import ray
from rich.console import Console

import autors
import fusion
from autors.config import TaskSpec
from autors.search.broker import arch_key
from autors.search.pool import task_attempt
from autors.search.runner import SearchOptions, SearchOutcome, run_search
from autors.synth import generate_scene
from autors.training.result import Cost, TrialResult

WRAPPER = "test_isolated_netns.py"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Outside an isolated network namespace (where one can be made), keep only the wrapper
    test, which re-runs this folder inside one; inside, drop the wrapper."""
    here = Path(__file__).parent
    mine = [it for it in items if here in it.path.parents]
    if isolation.inside_isolated_netns():
        drop = [it for it in mine if it.path.name == WRAPPER]
    elif isolation.can_isolate():
        drop = [it for it in mine if it.path.name != WRAPPER]
    else:
        drop = [it for it in mine if it.path.name == WRAPPER]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [it for it in items if it not in drop]
helpers = loopback.helpers  # tests/search/helpers.py
HEAD_IP, WORKER_IP = loopback.HEAD_IP, loopback.WORKER_IP
SEARCH_TIMEOUT_S = 60.0  # trial_timeout_s of the tests' tasks: bounds every wait in a search


# -- trial functions (run in Ray workers on both nodes; shipped by value) ---------------------
@dataclass(frozen=True)
class MarkingTrial:
    """A cheap trial: builds the real model (for its parameter count), does not train it.

    Every attempt first writes `<marks>/<trial id>-<attempt>.json` (node, pid, start time, where
    autors was imported from, GPU ids): all nodes share this machine's file system. Faults by
    trial id: `hang` sleeps until the trial timeout cancels it, `allocate_mb` allocates that
    much (the memory limit refuses it), `crash` SIGKILLs its own worker process.
    """

    marks: str
    sleep_s: float = 0.0
    hang: tuple[int, ...] = ()
    allocate_mb: tuple[tuple[int, int], ...] = ()
    crash: tuple[int, ...] = ()

    def __call__(self, task: dict, arch: dict, seed: int, data: Any, trial_id: int
                 ) -> TrialResult:
        mark = {"trial_id": trial_id, "attempt": task_attempt(), "start": time.time(),
                "node": ray.util.get_node_ip_address(), "pid": os.getpid(),
                "autors_file": autors.__file__, "sys_path": sys.path[:6], "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}
        path = Path(self.marks) / f"{trial_id}-{mark['attempt']}.json"
        path.write_text(json.dumps(mark))
        if trial_id in self.crash:
            os.kill(os.getpid(), signal.SIGKILL)
        if trial_id in self.hang:
            time.sleep(3600)
        for tid, mb in self.allocate_mb:
            if tid == trial_id:
                block = np.ones(mb * 2**20, dtype=np.uint8)  # refused past memory_per_trial_mb
                del block
        time.sleep(self.sleep_s)
        model = fusion.build_model(arch, data.in_channels, data.num_classes)
        params = fusion.count_params(model)
        metric = 0.5 + (zlib.crc32(arch_key(arch).encode()) % 400) / 1000  # deterministic
        return TrialResult(
            trial_id=trial_id, arch=arch, seed=seed, status="ok",
            metrics={"val_oa": metric, "val_aa": metric, "val_kappa": metric,
                     "val_miou": metric},
            cost=Cost(params=params, flops=100 * params, latency_ms_b1=params / 1e4,
                      latency_ms_per_sample_b256=params / 1e6),
            epochs=1, duration_s=time.time() - mark["start"], extra={"mark": mark},
        )


def cheap_final(task: dict, arch: dict, seed: int, data: Any, trial_id: int) -> TrialResult:
    """Final-phase stand-in: deterministic 'test' metrics, no training."""
    m = 0.5 + (zlib.crc32(arch_key(arch).encode()) % 400) / 1000
    return TrialResult(trial_id=trial_id, arch=arch, seed=seed, status="ok",
                       metrics={"test_oa": m, "test_aa": m, "test_kappa": m, "test_miou": m})


def read_marks(folder: Path) -> dict[tuple[int, int], dict]:
    """(trial id, attempt) -> the mark that attempt wrote."""
    return {(m["trial_id"], m["attempt"]): m
            for m in (json.loads(p.read_text()) for p in folder.glob("*.json"))}


# -- the cluster --------------------------------------------------------------------------------
_RUNNING: dict[str, Any] = {}  # the cluster shared by this folder's tests, while it runs


def _start_cluster() -> Any:
    if ray.is_initialized():
        # Another folder's fixture left this process connected to its local Ray (only when
        # tests run out of directory order): the searches here must open their own connection.
        ray.shutdown()
    # The cluster's cloudpickle ships the trial functions of this (not importable) module.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    # Short: Ray's socket paths under it must stay within the 107-byte AF_UNIX limit.
    c = loopback.LoopbackCluster(Path(tempfile.mkdtemp(prefix="autors-rc-")))
    try:
        c.start_head(cpus=1)
        c.start_worker(cpus=1, gpus=1)
    except BaseException:
        _stop_cluster(c)
        raise
    return c


def _stop_cluster(c: Any) -> None:
    left = c.stop()
    shutil.rmtree(c.tmpdir, ignore_errors=True)
    assert not left, f"cluster processes survived the teardown: {left}"


@pytest.fixture
def cluster() -> Any:
    """Head 127.0.0.2 (1 CPU) + worker 127.0.0.3 (1 CPU, 1 logical GPU), started by the first
    test that needs it and stopped when the tests leave this folder (not at session end: the
    rest of the suite should not share 2 cores with an idle cluster)."""
    if "cluster" not in _RUNNING:
        _RUNNING["cluster"] = _start_cluster()
    return _RUNNING["cluster"]


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    here = Path(__file__).parent
    if "cluster" in _RUNNING and (nextitem is None or here not in nextitem.path.parents):
        _stop_cluster(_RUNNING.pop("cluster"))


def pytest_sessionfinish(session: pytest.Session) -> None:
    if "cluster" in _RUNNING:  # interrupted runs too
        _stop_cluster(_RUNNING.pop("cluster"))


@pytest.fixture
def two_nodes(cluster: Any) -> Any:
    """Both nodes alive (the worker is started again if a test killed it)."""
    if WORKER_IP not in cluster.nodes:
        cluster.start_worker(cpus=1, gpus=1)
    return cluster


@pytest.fixture
def head_only(cluster: Any) -> Any:
    """Only the head alive: the worker is killed and the GCS has marked it dead."""
    cluster.remove_worker(WORKER_IP)
    return cluster


# -- tasks and searches -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def scene_task_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_scene(tmp_path_factory.mktemp("scene"), helpers.SCENE).files["task"]


@pytest.fixture
def make_task(scene_task_file: Path, tmp_path: Path):
    """task(train=None, **search fields) -> the tiny scene's TaskSpec, written to tmp_path."""

    def make(train: dict | None = None, **search: Any) -> TaskSpec:
        search.setdefault("trial_timeout_s", SEARCH_TIMEOUT_S)
        return helpers.write_task(scene_task_file, tmp_path / "task.yaml", train, **search)

    return make


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    folder = tmp_path / "marks"
    folder.mkdir()
    return folder


def search_on(cluster: Any, task: TaskSpec | None, out: Path, trial_fn: Any,
              name: str = "run", resume: Path | None = None,
              ship_code: bool = False) -> tuple[SearchOutcome, str]:
    """run_search in this process against the cluster's address; (outcome, log text)."""
    log = io.StringIO()
    options = SearchOptions(out_dir=out, name=None if resume else name, resume=resume,
                            address=cluster.address, ship_code=ship_code, quiet=True,
                            trial_fn=trial_fn, final_fn=cheap_final)
    outcome = run_search(task, options, Console(file=log, width=200))
    assert not ray.is_initialized(), "the search must disconnect from the cluster"
    return outcome, log.getvalue()


@pytest.fixture
def kit(cluster: Any) -> SimpleNamespace:
    """What the tests use from this module (tests cannot import conftest under importlib)."""
    return SimpleNamespace(MarkingTrial=MarkingTrial, read_marks=read_marks, search=search_on,
                           helpers=helpers, HEAD_IP=HEAD_IP, WORKER_IP=WORKER_IP)
