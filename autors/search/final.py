"""The final phase: the top-k feasible architectures retrained with several seeds, each model
evaluated once on the test split. Each retrained model is kept as an `autors train` run folder
under `final/trial<id>_seed<seed>/` (written by the driver: cluster workers may not share its
file system), which `autors export` reads. Rows go to final.jsonl as they finish, so a
resumed run only redoes the missing (architecture, seed) pairs.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ray

from autors.config import TaskSpec
from autors.data import PreparedData
from autors.search.pool import Finished, SharedInputs, TrialFn, TrialPool, TrialResources
from autors.search.records import TrialRecord
from autors.search.runfolder import RunFolder
from autors.training.cost import measure_cost
from autors.training.evaluate import evaluate
from autors.training.loop import SCALARS, train_model
from autors.training.result import TrialResult
from autors.training.train_run import pack_run, write_packed_run

POLL_S = 0.5


def retrain_and_test(
    task_dict: dict, arch_dict: dict, seed: int, data: PreparedData, trial_id: int
) -> TrialResult:
    """Train `arch_dict` with the task's budget and this seed, then evaluate on test once.

    Runs in a Ray worker (the TrialPool catches any exception as a failed result).
    """
    t0 = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    task = TaskSpec.from_dict(task_dict)
    outcome = train_model(task, arch_dict, data, seed, progress=False)
    test = evaluate(outcome.model, data, "test")  # the only test evaluation of this model
    cost = measure_cost(outcome.model, data.in_channels, task.sample_size)
    metrics: dict[str, Any] = {f"test_{k}": float(test[k]) for k in SCALARS}
    metrics.update({f"val_{k}": float(outcome.val_metrics[k]) for k in SCALARS})
    return TrialResult(
        trial_id=trial_id,
        arch=outcome.arch.to_dict(),
        seed=seed,
        status="ok",
        metrics=metrics,
        cost=cost,
        epochs=outcome.epochs,
        train_s=outcome.train_s,
        extra={"trained": pack_run(outcome=outcome, cost=cost, test_metrics=test,
                                   started=started, wall_s=time.perf_counter() - t0)},
    )


def final_seeds(task: TaskSpec) -> list[int]:
    """Seeds of the retrainings: distinct from every search trial's seed (task.seed + id)."""
    return [task.seed + 1_000_000 * (i + 1) for i in range(task.search.final_seeds)]


def run_final(
    run: RunFolder,
    task: TaskSpec,
    chosen: list[TrialRecord],
    inputs: SharedInputs,
    resources: TrialResources,
    final_fn: TrialFn,
    on_row: Callable[[dict[str, Any]], None],
) -> list[dict[str, Any]]:
    """Retrain + test every (finalist, seed) not yet in final.jsonl; return all rows."""
    rows, _ = run.read_final(repair=True)
    done = {(r["trial_id"], r["seed"]) for r in rows if r["status"] == "ok"}
    jobs = [(rec, s) for rec in chosen for s in final_seeds(task) if (rec.trial_id, s) not in done]
    if not jobs:
        return rows
    data: PreparedData = ray.get(inputs.data_ref)  # zero-copy view, to write run folders
    pool = TrialPool(final_fn, inputs, resources, task.search.concurrency)
    by_job: dict[int, tuple[TrialRecord, int]] = {}
    queue = list(enumerate(jobs))
    try:
        while queue or pool.running:
            while queue and pool.has_slot():
                job, (rec, seed) = queue.pop(0)
                by_job[job] = (rec, seed)
                pool.submit(job, rec.result.arch, seed)
            for done_job in pool.wait(POLL_S):
                rec, seed = by_job[done_job.trial_id]
                row = _row(done_job, rec, seed)
                trained = done_job.result.extra.pop("trained", None)
                if row["status"] == "ok" and trained is not None:
                    row["run_dir"] = _keep_model(run.path, task, data, rec, seed, trained)
                run.append_final(row)
                rows.append(row)
                on_row(row)
    finally:
        pool.cancel_all()
    return rows


def _keep_model(run_path: Path, task: TaskSpec, data: PreparedData, rec: TrialRecord,
                seed: int, trained: dict[str, Any]) -> str:
    """Write the retrained model's run folder; its path relative to the search folder."""
    rel = Path("final") / f"trial{rec.trial_id}_seed{seed}"
    out = run_path / rel
    if out.exists():  # written before a crash that lost its final.jsonl row: redo it
        shutil.rmtree(out)
    out.parent.mkdir(exist_ok=True)
    write_packed_run(out, task, data, seed, trained)
    return str(rel)


def _row(done: Finished, rec: TrialRecord, seed: int) -> dict[str, Any]:
    res = done.result
    return {
        "trial_id": rec.trial_id,
        "seed": seed,
        "status": res.status,
        "metrics": res.metrics,
        "epochs": res.epochs,
        "train_s": res.train_s,
        "duration_s": res.duration_s,
        "node": res.node,
        "error": res.error,
    }
