"""TrialPool: runs trials as Ray tasks, at most `concurrency` at once, with per-trial timeouts.

Knows nothing about NNI: it takes (trial id, arch dict, seed), returns TrialResults. The task
dict and the prepared data are put in Ray's object store once per search (SharedInputs), the
trial function once per pool; each submission only ships references and the small arch dict.

A trial never takes the search down: an exception in the trial function, an allocation past
`memory_per_trial_mb`, a worker or node that dies (Ray re-runs the trial on a live node up to
`max_retries` times first) or a trial past its timeout (force-cancelled, which kills its worker
process) all come back as a TrialResult with status failed/timeout and the reason in `error`.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray

from autors.errors import SearchError
from autors.plugins import load_plugins
from autors.search.limits import MIB, looks_out_of_memory, memory_limit
from autors.training.result import ERROR_TAIL_CHARS, TrialResult, error_text

# (task dict, arch dict, seed, prepared data, trial id[, rung job]) -> TrialResult; must be
# importable or picklable by value, because it runs in Ray worker processes. The rung job
# (`autors.training.trial.RungJob`) is passed only to multi-fidelity trials.
TrialFn = Callable[..., TrialResult]
_PLUGINS_FIELD = "task field 'plugins' (in a Ray worker)"  # where a plugin error points

@dataclass(frozen=True)
class TrialResources:
    """What one trial may use, from the task's search section."""

    cpus: float
    gpus: float
    timeout_s: float
    memory_mb: int | None = None  # search.memory_per_trial_mb
    # Ray re-runs a task whose worker process or node died (not one that raised): one retry,
    # on whichever node is alive and has room.
    max_retries: int = 1

    @property
    def torch_threads(self) -> int:
        return max(1, int(self.cpus))

    @property
    def memory_bytes(self) -> int | None:
        """Ray's `memory` scheduling resource of one trial (bytes), None without a limit."""
        return None if self.memory_mb is None else self.memory_mb * MIB


@dataclass
class Finished:
    """A trial that came back (successfully or not) from the pool."""

    trial_id: int
    arch: dict
    seed: int
    result: TrialResult
    submitted_at: float  # unix time
    finished_at: float


@dataclass(frozen=True)
class SharedInputs:
    """Object-store references to what every trial of a search reads (put once)."""

    task_ref: ray.ObjectRef
    data_ref: ray.ObjectRef

    @classmethod
    def put(cls, task_dict: dict, data: Any) -> SharedInputs:
        return cls(ray.put(task_dict), ray.put(data))


@dataclass
class _Running:
    trial_id: int
    arch: dict
    seed: int
    ref: ray.ObjectRef
    submitted_at: float
    deadline: float  # time.monotonic() after which the trial is cancelled


def task_attempt() -> int:
    """0 for the first run of the current Ray task, 1 for its first retry, ..."""
    # Not in Ray's public RuntimeContext; the core worker tracks it for retries.
    return ray._private.worker.global_worker.core_worker.get_current_task_attempt_number()


def _run_in_worker(
    trial_fn: TrialFn, task: dict, arch: dict, seed: int, data: Any, trial_id: int, threads: int,
    memory_mb: int | None, rung: Any = None,
) -> dict:
    """Body of the Ray task: set torch threads and the memory limit, run the trial, never
    raise."""
    start = time.perf_counter()
    import torch

    # Ray sets OMP_NUM_THREADS=1 in workers; torch must match the CPUs reserved for the trial.
    torch.set_num_threads(threads)
    try:
        load_plugins(task.get("plugins", ()), _PLUGINS_FIELD)  # the parts the arch may name
        with memory_limit(memory_mb):
            result = trial_fn(task, arch, seed, data, trial_id,
                              *(() if rung is None else (rung,)))
    except Exception as err:  # noqa: BLE001 - any trial error becomes a failed trial
        result = TrialResult(
            trial_id=trial_id, arch=arch, seed=seed, status="failed", error=error_text(err)
        )
    if memory_mb is not None and result.status == "failed" and looks_out_of_memory(result.error):
        result.error = (
            f"exceeded search.memory_per_trial_mb = {memory_mb} MiB (an allocation was refused; "
            f"raise the limit or shrink train.batch_size / the model): {result.error}"
        )
    ctx = ray.get_runtime_context()
    result.node = ray.util.get_node_ip_address()
    result.extra = {
        **result.extra,
        "host": socket.gethostname(),
        "node_id": ctx.get_node_id(),
        "worker_pid": os.getpid(),
        "worker_s": time.perf_counter() - start,
        "attempt": task_attempt(),  # > 0: re-run after its worker or node died
        "resources": ctx.get_assigned_resources(),  # {"CPU": 1.0, "GPU": 1.0, ...} on this node
    }
    if result.duration_s == 0.0:
        result.duration_s = time.perf_counter() - start
    return result.to_dict()


def _warm_worker(trial_fn: TrialFn, threads: int, task: dict, data: Any) -> int:
    """Pay a worker's one-off costs once, before its first trial: the trial function's
    imports, the shared inputs' first dereference (Ray resolves them as arguments), and torch's
    lazy initialisation of autograd, the optimiser and the FLOP counter (measured: about 1 s
    that the first trial of every worker paid on top of its training)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(threads)
    model = torch.nn.Sequential(  # [2, 1, 4, 4] -> [2, 2, 2, 2] -> [2, 8] -> [2, 2]
        torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8, 2)
    )
    x = torch.zeros(2, 1, 4, 4)
    optimiser = torch.optim.AdamW(model.parameters())
    torch.nn.functional.cross_entropy(model(x), torch.zeros(2, dtype=torch.long)).backward()
    optimiser.step()
    with FlopCounterMode(display=False), torch.no_grad():
        model(x)
    # A plugin this node cannot import stops the search here, before any trial.
    load_plugins(task.get("plugins", ()), _PLUGINS_FIELD)
    del trial_fn, task, data  # deserialising the function imported its modules
    task_attempt()  # fails here, not in every trial, on a Ray without attempt numbers
    return os.getpid()


_remote_trial = ray.remote(_run_in_worker)
_remote_warm = ray.remote(_warm_worker)


class TrialPool:
    """Submit trials, wait for whichever finishes first, enforce the trial timeout."""

    def __init__(
        self,
        trial_fn: TrialFn,
        inputs: SharedInputs,
        resources: TrialResources,
        concurrency: int,
    ) -> None:
        self.resources = resources
        self.concurrency = concurrency
        # Task and data sit in the object store once per search (SharedInputs.put); each
        # submission ships only their references and the small arch dict.
        self._fn_ref = ray.put(trial_fn)
        self._inputs = inputs
        self._remote = _remote_trial.options(
            num_cpus=resources.cpus,
            num_gpus=resources.gpus,
            memory=resources.memory_bytes,
            max_retries=resources.max_retries,
            retry_exceptions=False,
        )
        self._running: dict[int, _Running] = {}

    def start_warm_up(self) -> list[ray.ObjectRef]:
        """Start one warm-up task per slot so that the first trials do not pay for Python
        imports and torch initialisation (Ray reuses the warmed worker processes)."""
        warm = _remote_warm.options(num_cpus=self.resources.cpus, num_gpus=self.resources.gpus,
                                    memory=self.resources.memory_bytes)
        return [
            warm.remote(self._fn_ref, self.resources.torch_threads,
                        self._inputs.task_ref, self._inputs.data_ref)
            for _ in range(self.concurrency)
        ]

    def finish_warm_up(self, refs: list[ray.ObjectRef]) -> None:
        """Wait for the warm-up (at most one trial timeout); a worker that cannot load the
        trial function is fatal."""
        try:
            ray.get(refs, timeout=self.resources.timeout_s)
        except ray.exceptions.GetTimeoutError:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise SearchError(
                f"no Ray worker could start within search.trial_timeout_s = "
                f"{self.resources.timeout_s:g} s: no live node has a free slot with the per-trial "
                "resources (cpus_per_trial, gpus_per_trial, memory_per_trial_mb); check "
                "`ray status` on the cluster"
            ) from None
        except Exception as err:  # noqa: BLE001 - reported with the cause
            raise SearchError(
                "Ray workers cannot load the trial code (on a cluster, install autors on every "
                f"node or ship it with a runtime environment): {type(err).__name__}: {err}"
            ) from None

    @property
    def running(self) -> int:
        return len(self._running)

    def running_ids(self) -> list[int]:
        return sorted(self._running)

    def has_slot(self) -> bool:
        return len(self._running) < self.concurrency

    def submit(self, trial_id: int, arch: dict, seed: int, rung: Any = None) -> None:
        """Start a trial (or, with `rung`, one rung of a multi-fidelity trial)."""
        if trial_id in self._running:
            raise ValueError(f"trial {trial_id} is already running")
        ref = self._remote.remote(
            self._fn_ref,
            self._inputs.task_ref,
            arch,
            seed,
            self._inputs.data_ref,
            trial_id,
            self.resources.torch_threads,
            self.resources.memory_mb,
            rung,
        )
        self._running[trial_id] = _Running(
            trial_id, arch, seed, ref, time.time(), time.monotonic() + self.resources.timeout_s
        )

    def wait(self, timeout: float) -> list[Finished]:
        """Block up to `timeout` seconds for at least one trial; return every one that is done.

        Trials past their deadline are cancelled (their worker is killed) and returned as
        status 'timeout'.
        """
        if not self._running:
            return []
        now = time.monotonic()
        next_deadline = min(r.deadline for r in self._running.values())
        timeout = max(0.0, min(timeout, next_deadline - now))
        by_ref = {r.ref: r for r in self._running.values()}
        ready, _ = ray.wait(list(by_ref), num_returns=1, timeout=timeout)
        if ready:
            # Collect everything else that finished meanwhile, without waiting.
            ready, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=0)
        done = [self._collect(by_ref[ref]) for ref in ready]
        now = time.monotonic()
        for run in list(self._running.values()):
            if run.deadline <= now:
                done.append(self._time_out(run))
        return done

    def cancel_all(self) -> list[int]:
        """Force-cancel every running trial (nothing is returned for them)."""
        ids = sorted(self._running)
        for run in self._running.values():
            ray.cancel(run.ref, force=True)
        self._running.clear()
        return ids

    def _collect(self, run: _Running) -> Finished:
        del self._running[run.trial_id]
        try:
            result = TrialResult.from_dict(ray.get(run.ref))
        except Exception as err:  # noqa: BLE001 - a dead worker/node is a failed trial
            result = TrialResult(
                trial_id=run.trial_id,
                arch=run.arch,
                seed=run.seed,
                status="failed",
                error=(
                    f"the Ray task failed outside the trial code after "
                    f"{self.resources.max_retries} retr{'y' if self.resources.max_retries == 1 else 'ies'}"
                    f": {type(err).__name__}: {str(err)[-ERROR_TAIL_CHARS:]}"
                ),
            )
        return Finished(run.trial_id, run.arch, run.seed, result, run.submitted_at, time.time())

    def _time_out(self, run: _Running) -> Finished:
        del self._running[run.trial_id]
        ray.cancel(run.ref, force=True)
        result = TrialResult(
            trial_id=run.trial_id,
            arch=run.arch,
            seed=run.seed,
            status="timeout",
            duration_s=self.resources.timeout_s,
            error=(
                f"exceeded search.trial_timeout_s = {self.resources.timeout_s:g} s; the trial was "
                "cancelled (raise trial_timeout_s or shrink train.epochs if this is expected)"
            ),
        )
        return Finished(run.trial_id, run.arch, run.seed, result, run.submitted_at, time.time())
