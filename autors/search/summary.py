"""summary.json: what a search did, on what, with what result (read by people and by
`autors status`)."""

from __future__ import annotations

import os
import platform
import socket
import time
from collections import Counter
from typing import Any

from autors.config import TaskSpec
from autors.files import versions
from autors.search.broker import SearchBroker
from autors.search.cluster import ClusterInfo
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


def _record_view(r: TrialRecord, objective: str) -> dict[str, Any]:
    cost = r.result.cost
    return {
        "trial_id": r.trial_id,
        objective: float(r.result.metrics[objective]),
        "params": cost.params if cost else None,
        "flops": cost.flops if cost else None,
        "latency_ms": cost.latency_ms_b1 if cost else None,
        "feasible": r.feasible,
        "arch_summary": arch_summary(r.result.arch),
    }


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
) -> dict[str, Any]:
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
        "best": None if top is None else {
            **_record_view(top, objective),
            "score": top.score,
            "metrics": {k: v for k, v in top.result.metrics.items() if not isinstance(v, dict)},
            "arch": top.result.arch,
        },
        "pareto_front": [_record_view(r, objective) for r in pareto(records, objective)],
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
            }
            for f in finals
        ],
        "engine": engine_stats(session, spec.concurrency, wall["search_s"]),
        "sessions": state.get("sessions", []),
    }
