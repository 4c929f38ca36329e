"""summary.json: what a search did, on what, with what result (read by people, by
`autors status` and by reports).

Its trade-off keys: `objectives` (the task's search.objectives, [{name, goal}], empty for a
single-objective search), `front` (`front_block`: the front's objectives with goals, its trial
ids, its hypervolume and the normalisation and reference point it was measured with),
`pareto_front` (one entry per front trial with every objective's value, params, flops,
latency_ms) and `final[*].picked` (why the final phase retrained each architecture).
"""

from __future__ import annotations

import os
import platform
import socket
import time
from collections import Counter
from typing import Any

from autors.config import SearchSpec, TaskSpec
from autors.files import versions
from autors.search.broker import SearchBroker
from autors.search.cluster import ClusterInfo
from autors.search.front import (
    Normaliser,
    candidates,
    front_hypervolume,
    pareto_records,
    raw_value,
)
from autors.search.records import TrialRecord
from autors.search.report import FinalStats, arch_summary, best, counts, pareto
from autors.search.search_folder import SearchFolder
from search_spaces import SearchSpace


def engine_stats(records: list[TrialRecord], concurrency: int, search_s: float) -> dict[str, Any]:
    """How much of the search wall time went into trial work, this session only.

    - overhead per trial: driver-side time from submission to record minus the trial
      function's own time (Ray scheduling, worker start and imports, argument and result
      transfer, judging, the fsynced append).
    - slot utilisation: trial-function time / (concurrency x search wall time); the rest is
      idle slots (strategy thinking, waiting for the last trials, overhead).
    """
    records = [r for r in records if r.trained]  # screened-out proposals took no slot
    if not records:
        return {}
    wall = [r.wall_s for r in records]
    work = [r.result.duration_s for r in records]
    train = [r.result.train_s for r in records]
    over = [w - d for w, d in zip(wall, work)]
    n = len(records)
    return {
        "trials": n,
        "mean_trial_wall_s": sum(wall) / n,
        "mean_trial_work_s": sum(work) / n,
        "mean_train_s": sum(train) / n,
        "mean_overhead_s": sum(over) / n,
        "max_overhead_s": max(over),
        "overhead_fraction": sum(over) / sum(wall) if sum(wall) > 0 else 0.0,
        "slot_utilisation": sum(work) / (concurrency * search_s) if search_s > 0 else 0.0,
    }


def front_block(records: list[TrialRecord], spec: SearchSpec) -> dict[str, Any]:
    """summary.json's `front`: the objectives, the front's trial ids and its hypervolume.

    The hypervolume is measured with every objective normalised between the best and the worst
    value among the run's feasible ok trials (costs on a log10 scale), minimised, against the
    reference point 1.1 per objective (`front.REFERENCE`); `normalisation.reference` is that
    point in each objective's own units.
    """
    objectives = spec.front_objectives
    pool = candidates(records, objectives)
    front = pareto_records(records, objectives)
    block: dict[str, Any] = {
        "objectives": [o.model_dump() for o in objectives],
        "explicit": bool(spec.objectives),  # False: the default (objective against the costs)
        "trial_ids": [r.trial_id for r in front],
        "hypervolume": None,
        "normalisation": None,
    }
    if pool:
        norm = Normaliser.of([p for _, p in pool], objectives)
        block["hypervolume"] = front_hypervolume(records, objectives, norm)
        block["normalisation"] = norm.to_dict()
    return block


def _record_view(r: TrialRecord, objective: str, spec: SearchSpec | None = None
                 ) -> dict[str, Any]:
    cost = r.result.cost
    extra = {o.name: raw_value(r, o.name) for o in (spec.front_objectives if spec else [])}
    return {
        "trial_id": r.trial_id,
        objective: float(r.result.metrics[objective]),
        **extra,
        "params": cost.params if cost else None,
        "flops": cost.flops if cost else None,
        "latency_ms": cost.latency_ms_b1 if cost else None,
        "feasible": r.feasible,
        "arch_summary": arch_summary(r.result.arch),
    }


def scheduler_block(task: TaskSpec, records: list[TrialRecord]) -> dict[str, Any] | None:
    """search.scheduler as run, and per rung epochs the results, core-seconds and (for each
    rung below the top) how many of those trials went on; None without a scheduler."""
    spec = task.search.scheduler
    if spec.kind == "none":
        return None
    per_rung: dict[int, dict[str, Any]] = {}
    for r in records:
        entries = r.result.extra.get("rungs", [])
        for i, g in enumerate(entries):
            row = per_rung.setdefault(g["epochs"], {"epochs": g["epochs"], "results": 0,
                                                    "promoted": 0, "core_s": 0.0})
            row["results"] += 1
            row["promoted"] += i + 1 < len(entries)
            row["core_s"] += g["core_s"]
    return {**spec.model_dump(), "max_resource": spec.max_resource or task.train.epochs,
            "rungs": [per_rung[k] for k in sorted(per_rung)]}


def build(
    *,
    run: SearchFolder,
    task: TaskSpec,
    space: SearchSpace,
    state: dict[str, Any],
    records: list[TrialRecord],
    finals: list[FinalStats],
    broker: SearchBroker,
    cluster: ClusterInfo,
    wall: dict[str, float],
    picked: dict[int, list[str]] | None = None,
) -> dict[str, Any]:
    picked = picked or {}
    spec = task.search
    objective = spec.objective
    top = best(records)
    session = [r for r in records if r.session == broker.session]
    return {
        "run": run.path.name,
        "task": task.name,
        "task_digest": task.digest(),
        "task_source": str(task.source) if task.source else None,
        "seed": task.seed,
        "split": state.get("split"),
        "space": {"name": space.name, "architectures": space.size(),
                  "choices": len(space.choices())},
        "strategy": spec.strategy,
        "objective": objective,
        "constraints": spec.constraints.model_dump(),
        "budget": {"max_trials": spec.max_trials, "max_minutes": spec.max_minutes},
        "resources": {"concurrency": spec.concurrency, "cpus_per_trial": spec.cpus_per_trial,
                      "gpus_per_trial": spec.gpus_per_trial,
                      "trial_timeout_s": spec.trial_timeout_s,
                      "memory_per_trial_mb": spec.memory_per_trial_mb},
        "versions": versions(),
        "host": {"hostname": socket.gethostname(), "platform": platform.platform(),
                 "cpu_count": os.cpu_count()},
        "cluster": {"mode": cluster.mode, "address": cluster.address, "nodes": cluster.nodes,
                    "cpus": cluster.cpus, "gpus": cluster.gpus,
                    "shipped_code": cluster.shipped_code,
                    "trials_per_node": dict(Counter(r.result.node or "?" for r in records)),
                    "rerun_trials": [r.trial_id for r in records
                                     if r.result.extra.get("attempt")]},
        "created": state.get("created"),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_s": {**wall, "search_all_sessions_s": broker.elapsed()},
        "counts": {**counts(records), "duplicates_answered_from_memory": broker.duplicates,
                   "cancelled_at_time_budget": len(broker.cancelled)},
        "stop_reason": broker.stop_reason,
        "scheduler": scheduler_block(task, records),
        "core_s": sum(float(r.result.extra.get("core_s", 0.0)) for r in records),
        "best": None if top is None else {
            **_record_view(top, objective),
            "score": top.score,
            "metrics": {k: v for k, v in top.result.metrics.items() if not isinstance(v, dict)},
            "arch": top.result.arch,
        },
        "objectives": [o.model_dump() for o in spec.objectives],
        "front": front_block(records, spec),
        "pareto_front": [_record_view(r, objective, spec) for r in pareto(records, spec)],
        "final": [
            {
                "trial_id": f.trial_id,
                "arch_summary": arch_summary(f.arch),
                "arch": f.arch,
                "seeds": f.seeds,
                "runs": f.runs,
                "test_mean": f.mean,
                "test_std": f.std,
                "failed": f.failed,
                "picked": picked.get(f.trial_id, []),
            }
            for f in finals
        ],
        "engine": engine_stats(session, spec.concurrency, wall["search_s"]),
        "sessions": state.get("sessions", []),
    }
