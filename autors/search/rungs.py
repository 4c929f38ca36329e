"""Multi-fidelity trials in the engine: a trial's rungs, its checkpoints, its record.

The broker (`broker.py`) asks `Rungs` for each job it gives the pool: a new trial's first rung,
or (first, whenever a slot is free) a promotion the scheduler (`schedulers.py`) makes. A
finished rung's result is merged into the trial's record (`merge`):

- `result.extra["rungs"]`: one entry per finished rung {rung, epochs, score, val_* metrics,
  seconds (in the worker), core_s (cpus_per_trial x seconds), node, attempt, checkpoint
  (path in the run folder), load_s / save_s (checkpoint cost), finished_at};
- `result.extra["bracket"]`, `result.extra["core_s"]` (all rungs), the metrics, cost and
  epochs of the highest finished rung;
- `result.status`: ok at the top rung (max_resource), `promoted` while its next rung runs,
  `stopped` when the scheduler has not promoted it (it may be later: ASHA pauses, it never
  kills). Stopped trials are not failures: the strategy learns their highest-rung score, and
  they stay off the final phase and the Pareto front (their metrics come from fewer epochs).

Checkpoints (`TrainState` bytes: model, optimiser, LR schedule, RNG streams) come back from the
worker with the result and are written to `<run>/checkpoints/` by the driver before the record
that names them; a promotion ships its checkpoint to whichever node runs it through Ray (like
the task and data), so nodes need no shared disk. A rung is written to trials.jsonl the moment
it finishes, so a lost node or a killed search loses at most the rungs still running;
`restore` rebuilds the scheduler's rungs from trials.jsonl on --resume.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from autors.config import TaskSpec
from autors.search.schedulers import Job, Scheduler, max_brackets
from autors.training.result import TrialResult
from autors.training.trial import CHECKPOINT_KEY, RungJob

CHECKPOINT_DIR = "checkpoints"
RUNG_STATUSES = ("stopped", "promoted")  # trained to a lower rung; see module docstring


def make_scheduler(task: TaskSpec) -> tuple[Scheduler, int] | None:
    """The task's scheduler and max_resource (epochs), None for `scheduler.kind: none`."""
    spec = task.search.scheduler
    if spec.kind == "none":
        return None
    top = spec.max_resource or task.train.epochs
    if spec.kind == "asha":
        brackets = 1
    else:
        brackets = spec.brackets or max_brackets(spec.min_resource, top, spec.reduction_factor)
    return Scheduler(spec.min_resource, top, spec.reduction_factor, brackets), top


class Rungs:
    """The scheduler, the running jobs and the checkpoints of one search session."""

    def __init__(self, scheduler: Scheduler, max_epochs: int, run_dir: Path, cpus: float) -> None:
        self.scheduler = scheduler
        self.max_epochs = max_epochs
        self.run_dir = Path(run_dir)
        self.cpus = cpus
        self.jobs: dict[int, Job] = {}  # running job per trial

    # -- jobs -------------------------------------------------------------------------------------
    def new(self, trial_id: int) -> RungJob:
        job = self.scheduler.new_job(trial_id)
        self.jobs[trial_id] = job
        return RungJob(job.rung, job.epochs, self.max_epochs)

    def promotion(self, results: dict[int, TrialResult]) -> tuple[int, RungJob] | None:
        """The next promotion (highest rung first), with the checkpoint it continues from."""
        job = self.scheduler.next_promotion()
        if job is None:
            return None
        self.jobs[job.trial_id] = job
        last = results[job.trial_id].extra["rungs"][-1]
        raw = (self.run_dir / last["checkpoint"]).read_bytes()
        cost = results[job.trial_id].cost
        return job.trial_id, RungJob(job.rung, job.epochs, self.max_epochs, raw,
                                     None if cost is None else dict(cost.__dict__))

    def cancelled(self, trial_id: int) -> Job | None:
        """A running job was cancelled: a promotion can be made again later."""
        job = self.jobs.pop(trial_id, None)
        if job is not None and job.rung > 0:
            self.scheduler.unpromote(job)
        return job

    # -- results ----------------------------------------------------------------------------------
    def merge(self, result: TrialResult, before: TrialResult | None, score: float | None,
              ok: bool) -> TrialResult:
        """The trial's record after its running job finished: `result` of this rung merged
        with the record `before` it (None for a new trial). `score`: the rung's judged score
        (None when the rung failed); `ok`: it trained and was judged without failure."""
        job = self.jobs.pop(result.trial_id)
        rungs = list(before.extra.get("rungs", [])) if before is not None else []
        if ok and score is not None:
            raw = result.extra.pop(CHECKPOINT_KEY)
            self.scheduler.report(job, score)
            rungs.append(self._entry(job, result, score, raw))
            merged = result
            merged.status = "ok" if job.top else "stopped"
        else:
            result.extra.pop(CHECKPOINT_KEY, None)
            if before is None or not rungs:  # failed at its first rung: a failed trial
                merged = result
            else:  # a later rung failed: the trial keeps what it had, stopped there
                merged = before
                merged.status = "stopped"
                merged.extra = {**merged.extra, "failed_rung": {
                    "rung": job.rung, "epochs": job.epochs, "status": result.status,
                    "error": result.error}}
        extra = {k: v for k, v in merged.extra.items() if k != CHECKPOINT_KEY}
        extra.update(rungs=rungs, bracket=job.bracket,
                     core_s=sum(r["core_s"] for r in rungs) + (
                         0.0 if ok else self.cpus * _worker_s(result)))
        merged.extra = extra
        if before is not None and merged is result:  # times of the whole trial, all rungs
            merged.duration_s += before.duration_s
            merged.train_s += before.train_s
        return merged

    def _entry(self, job: Job, result: TrialResult, score: float, raw: bytes) -> dict[str, Any]:
        folder = self.run_dir / CHECKPOINT_DIR
        folder.mkdir(exist_ok=True)
        rel = f"{CHECKPOINT_DIR}/trial{job.trial_id:04d}_e{job.epochs}.pt"
        tmp = self.run_dir / (rel + ".tmp")
        tmp.write_bytes(raw)
        tmp.replace(self.run_dir / rel)  # written before the record that names it
        seconds = _worker_s(result)
        return {
            "rung": job.rung, "epochs": job.epochs, "from_epochs": job.from_epochs,
            "epochs_run": result.epochs, "score": score,
            **{k: v for k, v in result.metrics.items() if isinstance(v, (int, float))},
            "seconds": seconds, "core_s": self.cpus * seconds, "node": result.node,
            "attempt": result.extra.get("attempt", 0), "checkpoint": rel,
            "checkpoint_bytes": len(raw), "load_s": result.extra.get("load_s"),
            "save_s": result.extra.get("save_s"),
            "early_stopped": result.extra.get("early_stopped", False),
            "finished_at": time.time(),
        }

    def settle(self, result: TrialResult) -> None:
        """Status once the free slots got their promotions: `promoted` while a job runs."""
        if result.status == "stopped" and result.trial_id in self.jobs:
            result.status = "promoted"

    # -- --resume ---------------------------------------------------------------------------------
    def restore(self, results: list[TrialResult]) -> int:
        """Rebuild the scheduler from recorded trials (in trial-id order); the number of rung
        results restored. A trial recorded as `promoted` was running its next rung when the
        run stopped: it is back at its last finished rung, promotable again."""
        n = 0
        for result in sorted(results, key=lambda r: r.trial_id):
            if "bracket" not in result.extra:
                continue
            rungs = [(r["rung"], r["score"]) for r in result.extra.get("rungs", [])]
            self.scheduler.restore(result.trial_id, result.extra["bracket"], rungs)
            if result.status == "promoted":
                result.status = "stopped"
            n += len(rungs)
        return n


def _worker_s(result: TrialResult) -> float:
    """Seconds the rung held its worker (the pool's measure, else the trial's own)."""
    return float(result.extra.get("worker_s") or result.duration_s)
