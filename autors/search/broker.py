"""SearchBroker: the search's bookkeeping between a strategy and the TrialPool (no NNI here).

It hands out trial ids and seeds, enforces the budget (max_trials over all sessions of a run,
max_minutes of search wall time over all sessions), answers architectures that were already
evaluated from memory instead of training them again, records proposals whose parameters or
FLOPs break a limit without training them (prescreen.py), judges each result (score,
feasibility) and appends it to trials.jsonl the moment it arrives.

With a multi-fidelity scheduler (`rungs.py`, `search.scheduler`), a trial is a chain of rung
jobs: whenever a slot is free the broker first gives it the scheduler's promotion (ASHA's
get_job: the highest promotable rung first) and only then lets the strategy start a new trial
at the bottom rung. Every finished rung appends the trial's updated record (a trial id may
then have several lines; the last one counts, `SearchFolder.read_trials`). The strategy is told
one value per sample: the first time the trial stops running (paused at a rung the scheduler
did not promote, or complete at the top rung, or failed), the score of the highest rung it
reached. Promotions after that update the record, the final phase and the front, not the
strategy (NNI and Optuna take one final value per sample).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from autors.search.pool import TrialPool
from autors.search.prescreen import Screen
from autors.search.records import TrialRecord
from autors.search.rungs import Rungs
from autors.search.scoring import Judgement
from autors.search.search_folder import SearchFolder
from autors.training.result import TrialResult

# The strategy proposed this many already-evaluated or over-limit architectures in a row: the
# space (or what the strategy can still reach in it under the limits) is exhausted, so the
# search ends.
MAX_IDLE_STREAK = 200


@dataclass(frozen=True)
class Budget:
    max_trials: int | None  # finished + running trials over the whole run
    max_seconds: float | None  # search wall time over the whole run


def arch_key(arch: dict) -> str:
    """Canonical text of an arch dict: equal architectures give equal keys."""
    return json.dumps(arch, sort_keys=True, separators=(",", ":"))


class SearchBroker:
    """Budget, ids, dedup and recording for one session of a run."""

    def __init__(
        self,
        pool: TrialPool,
        run: SearchFolder,
        judge: Callable[[TrialResult], Judgement],
        budget: Budget,
        history: list[TrialRecord],
        session: int,
        base_seed: int,
        elapsed_before: float,
        screen: Screen | None = None,
        rungs: Rungs | None = None,
    ) -> None:
        self.pool = pool
        self.run = run
        self.judge = judge
        self.budget = budget
        self.session = session
        self.base_seed = base_seed
        self.elapsed_before = elapsed_before
        self.screen = screen
        self.rungs = rungs
        self.records: list[TrialRecord] = list(history)
        self._position = {r.trial_id: i for i, r in enumerate(self.records)}
        self._told = {r.trial_id for r in history}  # the strategy was told (or replayed) these
        self.promotions = 0  # rung jobs started by promotion in this session
        self.listeners: list[Callable[[TrialRecord], None]] = []
        self.started = time.monotonic()
        self.next_id = max((r.trial_id for r in history), default=-1) + 1
        self._known: dict[str, TrialRecord] = {arch_key(r.result.arch): r for r in history}
        self._samples: dict[int, dict] = {}  # running trial id -> sample
        self.duplicates = 0
        self._idle_streak = 0
        self.cancelled: list[int] = []  # trials stopped at the time budget (not recorded)
        self.stop_reason: str | None = None
        self._clock_stopped_at: float | None = None

    # -- budget ---------------------------------------------------------------------------------
    def start_clock(self) -> None:
        """The search phase starts now (after Ray start, warm-up and strategy set-up)."""
        self.started = time.monotonic()

    def elapsed(self) -> float:
        """Search wall time of the whole run so far (earlier sessions included)."""
        now = self._clock_stopped_at if self._clock_stopped_at is not None else time.monotonic()
        return self.elapsed_before + (now - self.started)

    def stop_clock(self) -> None:
        """The search phase is over: later work (final retraining) is not search time."""
        if self._clock_stopped_at is None:
            self._clock_stopped_at = time.monotonic()

    def past_deadline(self) -> bool:
        return self.budget.max_seconds is not None and self.elapsed() >= self.budget.max_seconds

    def seconds_left(self) -> float | None:
        if self.budget.max_seconds is None:
            return None
        return max(0.0, self.budget.max_seconds - self.elapsed())

    @property
    def submitted_total(self) -> int:
        """Trials of the whole run that are finished or running (screened-out ones aside; a
        promoted trial counts once)."""
        done = {r.trial_id for r in self.records if r.trained}
        return len(done | set(self.pool.running_ids()))

    def budget_left(self) -> bool:
        if self.stop_reason is not None:
            return False
        if self.past_deadline():
            self.stop_reason = "time budget reached (search.max_minutes)"
            return False
        limit = self.budget.max_trials
        return limit is None or self.submitted_total < limit

    def has_slot(self) -> bool:
        """A slot for a new trial: free slots go to the scheduler's promotions first."""
        self._promote()
        return self.pool.has_slot()

    def _promote(self, arrived: dict[int, TrialResult] | None = None) -> None:
        """Give free slots to the scheduler's promotions; `arrived`: rung results merged but
        not recorded yet (recorded with their status once the promotions are made)."""
        if self.rungs is None or self.past_deadline():
            return
        while self.pool.has_slot():
            results = {r.trial_id: r.result for r in self.records}
            results.update(arrived or {})
            promotion = self.rungs.promotion(results)
            if promotion is None:
                return
            trial_id, job = promotion
            self.pool.submit(trial_id, results[trial_id].arch, results[trial_id].seed, job)
            self.promotions += 1

    def promotable(self) -> bool:
        """Whether the scheduler would promote a trial now (without doing so)."""
        return self.rungs is not None and any(
            b.promotable() is not None for b in self.rungs.scheduler.brackets)

    def drain(self, poll_s: float = 0.5) -> None:
        """After the strategy's last trial: run the promotions still due until none is left
        (or the time budget ends), so trials reach the rungs their results earn."""
        if self.rungs is None:
            return
        while not self.past_deadline():
            self._promote()
            if not self.pool.running:
                return
            self.wait(poll_s)
        self.cancel_running()

    # -- trials ---------------------------------------------------------------------------------
    def lookup(self, arch: dict) -> tuple[float, bool] | None:
        """(score, scored) of an architecture already evaluated in this run, else None."""
        known = self.lookup_record(arch)
        return None if known is None else (known.score, known.scored)

    def lookup_record(self, arch: dict) -> TrialRecord | None:
        """The record of an architecture already evaluated in this run (counted as a
        duplicate proposal), else None."""
        known = self._known.get(arch_key(arch))
        if known is not None:
            self.duplicates += 1
            self._count_idle()
        return known

    def count_invalid(self) -> None:
        """The strategy proposed a sample that is no architecture (told a failure)."""
        self._count_idle()

    def screen_out(self, sample: dict, arch: dict) -> TrialRecord | None:
        """Record `arch` as over_limit, untrained, when its params or FLOPs break a limit."""
        if self.screen is None:
            return None
        try:
            cost = self.screen(arch)
        except Exception:  # noqa: BLE001 - an arch that cannot be built fails as a trial, recorded there
            return None
        if cost is None:
            return None
        trial_id = self.next_id
        self.next_id += 1
        self._count_idle()
        now = time.time()
        result = TrialResult(trial_id=trial_id, arch=arch, seed=self.base_seed + trial_id,
                             status="over_limit", extra={"static_cost": cost})
        return self._record(result, arch, sample, now, now)

    def _count_idle(self) -> None:
        self._idle_streak += 1
        if self._idle_streak >= MAX_IDLE_STREAK:
            self.stop_reason = (
                f"the strategy proposed {MAX_IDLE_STREAK} already-evaluated or over-limit "
                "architectures in a row: the search space (under its limits) looks exhausted"
            )

    def submit(self, sample: dict, arch: dict) -> int:
        trial_id = self.next_id
        self.next_id += 1
        self._idle_streak = 0
        self._samples[trial_id] = dict(sample)
        rung = None if self.rungs is None else self.rungs.new(trial_id)
        self.pool.submit(trial_id, arch, self.base_seed + trial_id, rung)
        return trial_id

    def wait(self, timeout: float) -> list[TrialRecord]:
        """Wait up to `timeout` s for finished trials (or rungs); judge, append and return the
        records the strategy has not been told yet (see the module docstring)."""
        finished = self.pool.wait(timeout)
        if self.rungs is None:
            return [
                self._record(done.result, done.arch, self._samples.pop(done.trial_id),
                             done.submitted_at, done.finished_at)
                for done in finished
            ]
        merged = [(done, self._merge_rung(done.result)) for done in finished]
        # the freed slots go to promotions before new trials
        self._promote({result.trial_id: result for _, result in merged})
        records = []
        for done, result in merged:
            self.rungs.settle(result)
            before = self._position.get(done.trial_id)
            sample = (self._samples.get(done.trial_id) if before is None
                      else self.records[before].sample)
            submitted = done.submitted_at if before is None else self.records[before].submitted_at
            records.append(self._record(result, done.arch, sample, submitted, done.finished_at))
        told = [r for r in records if r.trial_id not in self._told
                and r.result.status != "promoted"]
        for record in told:
            self._told.add(record.trial_id)
            self._samples.pop(record.trial_id, None)
        return told

    def _merge_rung(self, result: TrialResult) -> TrialResult:
        before = self._position.get(result.trial_id)
        previous = None if before is None else self.records[before].result
        ok = result.status == "ok"
        score = None
        if ok:
            verdict = self.judge(result)
            score = verdict.score if not verdict.reason else None
        return self.rungs.merge(result, previous, score, ok and score is not None)

    def _record(self, result: TrialResult, arch: dict, sample: dict, submitted_at: float,
                finished_at: float) -> TrialRecord:
        """Judge a finished (or screened-out) trial, append it to trials.jsonl, tell listeners."""
        verdict = self.judge(result)
        if self.rungs is None and result.status != "over_limit":
            seconds = float(result.extra.get("worker_s") or result.duration_s)
            result.extra["core_s"] = self.pool.resources.cpus * seconds  # cost accounting
        record = TrialRecord(
            trial_id=result.trial_id,
            session=self.session,
            sample=sample,
            score=verdict.score,
            feasible=verdict.feasible,
            violations=verdict.violations,
            reason=verdict.reason,
            submitted_at=submitted_at,
            finished_at=finished_at,
            elapsed_s=self.elapsed(),
            result=result,
        )
        self.run.append_trial(record)
        if record.trial_id in self._position:  # a later rung of a multi-fidelity trial
            self.records[self._position[record.trial_id]] = record
        else:
            self._position[record.trial_id] = len(self.records)
            self.records.append(record)
        self._known[arch_key(arch)] = record  # as proposed
        for listener in self.listeners:
            listener(record)
        return record

    def cancel_running(self) -> list[int]:
        """Stop every running trial (time budget or interrupt); they are not recorded. A
        cancelled promotion leaves its trial recorded at its last finished rung, `stopped`;
        the ids returned are those of trials the strategy was never told about."""
        ids = self.pool.cancel_all()
        fresh = []
        for trial_id in ids:
            if self.rungs is not None:
                self.rungs.cancelled(trial_id)
            position = self._position.get(trial_id)
            if position is None:
                self._samples.pop(trial_id, None)
                fresh.append(trial_id)
                continue
            record = self.records[position]
            if record.result.status == "promoted":
                record.result.status = "stopped"
                self.run.append_trial(record)
            if trial_id not in self._told:  # promoted at once, then cut: tell it now
                fresh.append(trial_id)
        self.cancelled.extend(fresh)
        return fresh
