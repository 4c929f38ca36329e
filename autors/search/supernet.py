"""The `supernet` strategy's driver (registered in `autors.search.catalog`, driven from here
through `autors.search.driver`): a weight-sharing estimator in front of ordinary trials.

1. Train once: a single-path one-shot supernet (`autors.training.supernet`, SPOS) over the
   task's space, one architecture drawn uniformly from the space's choices per batch, as one
   Ray task with a trial's resources (`cpus_per_trial`, `gpus_per_trial`). Its shared weights
   and a record (seed, epochs, steps, wall time, core-seconds, node) go to `supernet/` in the
   run folder (`weights.pt`, `supernet.json`); a resumed run reuses them.
2. Rank: `search.supernet.candidates` distinct architectures drawn uniformly (seeded; ones
   over a params/FLOPs limit are left out, as the broker would screen them) are scored with
   inherited weights, BatchNorm recalibrated per candidate, on the validation split, split over
   `concurrency` Ray tasks. `supernet/ranking.json` keeps every candidate's estimate (also
   reused on resume).
3. Retrain: the best `search.supernet.retrain` by the estimate of `search.objective` go to the
   `SearchBroker` as ordinary trials (full stand-alone training, recorded in trials.jsonl;
   budget, duplicates, time limit as for any strategy); `supernet/retrained.jsonl` puts each
   trial's estimate beside its stand-alone value. The final phase then retrains the top-k of
   those trials from scratch, as for every strategy.

Time spent training and ranking the supernet is search time (search.max_minutes counts it).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray

from autors.config import SearchSpec, TaskSpec
from autors.errors import SearchError
from autors.files import append_fsynced, write_atomic
from autors.plugins import load_plugins
from autors.search.broker import SearchBroker, arch_key
from autors.search.records import TrialRecord
from search_spaces import Sample, SearchSpace

POLL_S = 0.5  # longest wait on Ray between deadline checks
MAX_DRAWS = 1000  # invalid samples in a row before the space is declared unusable
FOLDER = "supernet"
_PLUGINS_FIELD = "task field 'plugins' (in a Ray worker)"


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


# -- Ray task bodies ----------------------------------------------------------------------------
def _setup(threads: int, task_dict: dict) -> TaskSpec:
    import torch

    torch.set_num_threads(threads)
    load_plugins(task_dict.get("plugins", ()), _PLUGINS_FIELD)
    return TaskSpec.from_dict(task_dict)


def _where() -> dict[str, Any]:
    return {"node": ray.util.get_node_ip_address(), "host": socket.gethostname(),
            "worker_pid": os.getpid()}


def train_body(task_dict: dict, data: Any, space: SearchSpace, seed: int, epochs: int,
               threads: int) -> dict[str, Any]:
    """Train the supernet (in a Ray worker): shared weights, training record, worker seconds."""
    from autors.training.supernet import Supernet

    t0 = time.perf_counter()
    task = _setup(threads, task_dict)
    net = Supernet(task, data, seed)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 23]))
    stats = net.train(lambda: space.to_arch(uniform_sample(space, rng)).to_dict(), epochs)
    return {"state": net.state_dict(), "stats": stats.to_dict(),
            "shared_tensors": len(net.store.params), "shared_values": net.store.numel(),
            "worker_s": time.perf_counter() - t0, **_where()}


def rank_body(task_dict: dict, data: Any, state: dict, archs: list[dict], seed: int,
              batches: int, threads: int) -> dict[str, Any]:
    """Score `archs` with the supernet's weights (in a Ray worker)."""
    from autors.training.supernet import Supernet

    t0 = time.perf_counter()
    task = _setup(threads, task_dict)
    net = Supernet(task, data, seed)
    net.load_state_dict(state)
    scores = []
    for arch in archs:
        t = time.perf_counter()
        scores.append({**net.score(arch, batches), "seconds": time.perf_counter() - t})
    return {"scores": scores, "worker_s": time.perf_counter() - t0, **_where()}


_remote_train = ray.remote(train_body)
_remote_rank = ray.remote(rank_body)


# -- the driver ---------------------------------------------------------------------------------
class SupernetRun:
    """Train (or reuse) the supernet, rank (or reuse) the candidates, retrain the best through
    the broker (see the module docstring)."""

    def __init__(self, space: SearchSpace, spec: SearchSpec, seed: int, broker: SearchBroker,
                 history: list[TrialRecord]) -> None:
        self.space = space
        self.spec = spec
        self.settings = spec.supernet
        self.seed = seed
        self.broker = broker
        self.folder = Path(broker.run.path) / FOLDER
        self.done = {arch_key(r.result.arch) for r in history}
        self.epochs = self.settings.epochs  # None: twice the task's epochs (read in run)
        parts = []
        if self._record("supernet.json").get("status") == "trained":
            parts.append("the trained supernet is reused from supernet/")
        if self._record("ranking.json").get("candidates"):
            parts.append("its ranking of the candidates is reused")
        if history:
            parts.append(f"{len(history)} trials recorded")
        self.restored = "; ".join(parts)

    # -- files ------------------------------------------------------------------------------
    def _record(self, name: str) -> dict[str, Any]:
        path = self.folder / name
        return json.loads(path.read_text()) if path.is_file() else {}

    def _write(self, name: str, record: dict[str, Any]) -> None:
        self.folder.mkdir(exist_ok=True)
        write_atomic(self.folder / name, json.dumps(record, indent=1))

    # -- Ray ------------------------------------------------------------------------------------
    def _options(self) -> dict[str, Any]:
        res = self.broker.pool.resources
        return {"num_cpus": res.cpus, "num_gpus": res.gpus, "memory": res.memory_bytes,
                "max_retries": res.max_retries, "retry_exceptions": False}

    def _get(self, refs: list[ray.ObjectRef], what: str) -> list[dict] | None:
        """Wait for `refs`; None when the search's time budget ran out first (cancelled)."""
        pending = list(refs)
        while pending:
            if self.broker.past_deadline():
                for ref in refs:
                    ray.cancel(ref, force=True)
                self.broker.stop_reason = f"time budget reached (search.max_minutes) while {what}"
                return None
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_S)
        try:
            return ray.get(refs)
        except Exception as err:  # noqa: BLE001 - reported with the cause
            raise SearchError(f"supernet: {what} failed: {type(err).__name__}: "
                              f"{str(err)[-2000:]}") from None

    # -- the three steps --------------------------------------------------------------------
    def _trained(self, task: TaskSpec) -> dict | None:
        """The shared weights: reused from the run folder, else trained now (and saved)."""
        import torch

        weights = self.folder / "weights.pt"
        if self._record("supernet.json").get("status") == "trained" and weights.is_file():
            return torch.load(weights, weights_only=True)
        epochs = self.epochs or 2 * task.train.epochs
        inputs = self.broker.pool.inputs
        threads = self.broker.pool.resources.torch_threads
        t0, started = time.monotonic(), time.time()
        got = self._get([_remote_train.options(**self._options()).remote(
            inputs.task_ref, inputs.data_ref, self.space, self.seed, epochs, threads)],
            "training the supernet")
        if got is None:
            return None
        out = got[0]
        self.folder.mkdir(exist_ok=True)
        tmp = weights.with_suffix(".tmp")
        torch.save(out["state"], tmp)
        os.replace(tmp, weights)
        cpus = self.broker.pool.resources.cpus
        self._write("supernet.json", {
            "status": "trained", "seed": self.seed, "epochs": epochs,
            "space": self.space.name, "started": started,
            "wall_s": time.monotonic() - t0, "worker_s": out["worker_s"],
            "core_s": out["worker_s"] * cpus, "cpus": cpus,
            "shared_tensors": out["shared_tensors"], "shared_values": out["shared_values"],
            "node": out["node"], "host": out["host"], **out["stats"]})
        return out["state"]

    def _ranking(self, task: TaskSpec, state: dict) -> list[dict] | None:
        """Every candidate with its estimate, best first: reused, else scored now (saved)."""
        saved = self._record("ranking.json").get("candidates")
        if saved:
            return saved
        n = self.settings.candidates
        drawn = draw_candidates(self.space, n, self.seed, self.broker.screen)
        if not drawn:
            raise SearchError("search.supernet.candidates: no architecture of the space is "
                              "within the task's params/FLOPs limits")
        chunks = max(1, min(self.spec.concurrency, len(drawn)))
        parts = [drawn[i::chunks] for i in range(chunks)]
        inputs = self.broker.pool.inputs
        state_ref = ray.put(state)
        threads = self.broker.pool.resources.torch_threads
        t0 = time.monotonic()
        got = self._get([_remote_rank.options(**self._options()).remote(
            inputs.task_ref, inputs.data_ref, state_ref, [a for _, a in part], self.seed,
            self.settings.calibration_batches, threads) for part in parts],
            "ranking the candidates")
        if got is None:
            return None
        rows = [{"sample": s, "arch": a, "estimate": score}
                for part, out in zip(parts, got) for (s, a), score in zip(part, out["scores"])]
        objective = task.search.objective
        rows.sort(key=lambda r: (-r["estimate"][objective], r["estimate"]["val_loss"]))
        for rank, row in enumerate(rows, 1):
            row["rank"] = rank
        worker_s = sum(out["worker_s"] for out in got)
        self._write("ranking.json", {
            "objective": objective, "drawn": len(rows), "asked": n,
            "calibration_batches": self.settings.calibration_batches,
            "wall_s": time.monotonic() - t0, "worker_s": worker_s,
            "core_s": worker_s * self.broker.pool.resources.cpus, "candidates": rows})
        return rows

    def _retrain(self, ranking: list[dict], objective: str) -> None:
        """The best candidates not yet trained, as ordinary trials through the broker."""
        todo = [r for r in ranking[:self.settings.retrain] if arch_key(r["arch"]) not in self.done]
        by_trial: dict[int, dict] = {}
        while True:
            if self.broker.past_deadline() and self.broker.pool.running:
                self.broker.cancel_running()
                return
            while todo and self.broker.budget_left() and self.broker.has_slot():
                row = todo.pop(0)
                by_trial[self.broker.submit(row["sample"], row["arch"])] = row
            if not self.broker.pool.running:
                return
            for record in self.broker.wait(POLL_S):
                row = by_trial.pop(record.trial_id)
                append_fsynced(self.folder / "retrained.jsonl", {
                    "trial_id": record.trial_id, "rank": row["rank"],
                    "estimate": row["estimate"], "status": record.result.status,
                    "standalone": {k: record.result.metrics.get(k) for k in
                                   (objective, "val_loss") if k in record.result.metrics}})

    def run(self) -> None:
        task = TaskSpec.from_dict(ray.get(self.broker.pool.inputs.task_ref))
        state = self._trained(task)
        if state is None:
            return
        ranking = self._ranking(task, state)
        if ranking is None:
            return
        self._retrain(ranking, task.search.objective)


def start(space: SearchSpace, spec: SearchSpec, seed: int, broker: SearchBroker,
          history: list[TrialRecord]) -> SupernetRun:
    """The adapter's entry point (`autors.search.driver`)."""
    return SupernetRun(space, spec, seed, broker, history)
