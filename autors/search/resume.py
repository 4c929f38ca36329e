"""What `--resume RUN` checks and restores before a search continues.

Restored from the run folder: every finished trial (trials.jsonl, a truncated last line is
repaired), the search wall time already spent (for max_minutes), the finished final-phase
retrainings (final.jsonl). The strategy is re-seeded from the finished trials' samples and
scores (see nni_adapter: dedup memory for all strategies, the population for evolution, the
observation history for TPE). With a multi-fidelity scheduler the rungs, promotions and
checkpoints of every trial come back too (`autors.search.rungs.Rungs.restore`). Not restored: the strategies' random generator position
(re-seeded from seed and trial count, so a resumed run is reproducible but does not replay the
same proposals) and trials that were running when the run stopped (never recorded; they are
proposed afresh if the strategy picks them again).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from autors.config import TaskSpec
from autors.errors import SearchError
from autors.search.records import TrialRecord

# Task fields that may change between sessions of a run (budget and resources only).
RESUMABLE_CHANGES = {
    "search.max_trials",
    "search.max_minutes",
    "search.concurrency",
    "search.cpus_per_trial",
    "search.gpus_per_trial",
    "search.trial_timeout_s",
    "search.memory_per_trial_mb",
    "search.top_k",
    "search.final_seeds",
    "train.device",
}


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def merge_resumed_task(run_task: TaskSpec, given: TaskSpec | None, run_dir: Path) -> TaskSpec:
    """The task to continue with: the run's copy, or `given` if it differs only in budget and
    resources (then it replaces the copy's values for this session)."""
    if given is None:
        return run_task
    a, b = _flatten(run_task.to_dict()), _flatten(given.to_dict())
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    forbidden = [k for k in changed if k not in RESUMABLE_CHANGES]
    if forbidden:
        shown = ", ".join(f"{k} ({a.get(k)!r} -> {b.get(k)!r})" for k in forbidden[:5])
        raise SearchError(
            f"--resume {run_dir}: the task given (file or --set) differs from the run's "
            f"task.yaml in {shown}; only the budget and resources (search.max_trials, "
            "max_minutes, concurrency, ...) may change. Resume without a task file or --set "
            "to use the run's copy, or start a new run"
        )
    return given


def check_same_split(state: dict[str, Any], split: dict[str, Any], run_dir: Path) -> None:
    """Refuse to resume on other validation pixels than the run's trials were scored on (a label
    raster or a sensor's validity changed): their scores would not compare."""
    before = (state.get("split") or {}).get("sha256")
    if before is not None and before != split["sha256"]:
        raise SearchError(
            f"{run_dir}: the split differs from the one this run's trials were scored on (hash "
            f"{before[:12]} then, {split['sha256'][:12]} now): a label raster, a sensor's "
            "validity or the split settings changed. Restore the data, or start a new run"
        )


def check_not_running(state: dict[str, Any], run_dir: Path) -> None:
    """Refuse to resume a run whose driver is still alive on this machine."""
    if state.get("status") != "running" or not state.get("sessions"):
        return
    last = state["sessions"][-1]
    if last.get("host") != socket.gethostname():
        return
    pid = last.get("pid")
    if isinstance(pid, int) and pid != os.getpid() and _alive(pid):
        raise SearchError(
            f"{run_dir} is still running (pid {pid} on this machine): wait for it, or stop it "
            "before resuming"
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def previous_elapsed(state: dict[str, Any], history: list[TrialRecord]) -> float:
    """Search wall time spent by earlier sessions (for max_minutes)."""
    recorded = float(state.get("elapsed_s") or 0.0)
    last_trial = max((r.elapsed_s for r in history), default=0.0)
    return max(recorded, last_trial)
