"""The final phase: the chosen architectures (the top-k feasible ones, or with several objectives
a spread of the Pareto front: `report.final_picks`) retrained with several seeds, each model
evaluated once on the test split; each final.jsonl row says why its architecture was picked
(`picked`: knee, most-accurate, smallest, best <objective>, spread, rank i by score). Each retrained model is kept as a train folder (what
`autors train` writes, `autors.training.train_folder`) under `final/trial<id>_seed<seed>/`
(written by the driver: cluster workers may not share its file system), which `autors export`
reads. Rows go to final.jsonl as they finish, so a resumed run only redoes the missing
(architecture, seed) pairs.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from autors.config import TaskSpec
from autors.data import PreparedData
from autors.search.pool import Finished, SharedInputs, TrialFn, TrialPool, TrialResources
from autors.search.records import TrialRecord
from autors.search.search_folder import SearchFolder
from autors.training.result import TrialResult
from autors.training.train_folder import write_train_folder
from autors.training.trial import TrainedModel, train_evaluate

POLL_S = 0.5


def retrain_and_test(
    task_dict: dict, arch_dict: dict, seed: int, data: PreparedData, trial_id: int
) -> TrialResult:
    """The final phase's TrialFn: `train_evaluate` with this seed, calibrated on validation,
    and the one test evaluation of the model; `extra["trained"]` carries the model back to the
    driver (`TrainedModel.pack`).

    Runs in a Ray worker (the TrialPool catches any exception as a failed result).
    """
    trained = train_evaluate(TaskSpec.from_dict(task_dict), arch_dict, data, seed, test=True,
                             calibrate=True)
    result = trained.trial_result(trial_id, seed)
    result.extra["trained"] = trained.pack()
    return result


def final_seeds(task: TaskSpec) -> list[int]:
    """Seeds of the retrainings: distinct from every search trial's seed (task.seed + id)."""
    return [task.seed + 1_000_000 * (i + 1) for i in range(task.search.final_seeds)]


def run_final(
    run: SearchFolder,
    task: TaskSpec,
    chosen: list[TrialRecord],
    inputs: SharedInputs,
    resources: TrialResources,
    final_fn: TrialFn,
    on_row: Callable[[dict[str, Any]], None],
    picked: dict[int, list[str]] | None = None,
) -> list[dict[str, Any]]:
    """Retrain + test every (finalist, seed) not yet in final.jsonl; return all rows.
    `picked`: trial id -> why it was chosen (kept in each row)."""
    rows, _ = run.read_final(repair=True)
    done = {(r["trial_id"], r["seed"]) for r in rows if r["status"] == "ok"}
    jobs = [(rec, s) for rec in chosen for s in final_seeds(task) if (rec.trial_id, s) not in done]
    if not jobs:
        return rows
    data: PreparedData = ray.get(inputs.data_ref)  # zero-copy view, to write train folders
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
                row["picked"] = list((picked or {}).get(rec.trial_id, []))
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
    """Write the retrained model's train folder; its path relative to the search folder."""
    rel = Path("final") / f"trial{rec.trial_id}_seed{seed}"
    out = run_path / rel
    if out.exists():  # written before a crash that lost its final.jsonl row: redo it
        shutil.rmtree(out)
    out.parent.mkdir(exist_ok=True)
    write_train_folder(out, task, data, seed, TrainedModel.unpack(trained, data))
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
