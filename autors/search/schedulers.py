"""Multi-fidelity schedulers: ASHA and asynchronous Hyperband (pure bookkeeping, no Ray).

ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020,
Algorithm 2). A bracket has rungs k = 0..K with resources (epochs)
r_k = min_resource * eta^(s + k), every one below `max_resource`, then `max_resource` itself
as the top rung (s: the bracket's early-stopping rate). When a worker is free, `get_job`:

    for k = K-1, ..., 0:
        candidates = the top floor(|rung k| / eta) trials of rung k by score
        promotable = candidates not yet promoted from rung k
        if promotable: return (the best promotable trial, rung k+1)
    return (a new trial, rung 0)

Results arrive asynchronously (`report`); a trial is promoted at most once per rung and never
waits for a rung to fill. A trial not (yet) promoted is paused, not killed: the rung grows as
results arrive, so it may be promoted later.

Hyperband (the asynchronous variant of the same paper): brackets s = 0..B-1 of ASHA, bracket s
starting at min_resource * eta^s; new trials go to the brackets in turn (trial i: bracket
i mod B), and a free worker takes the promotion to the largest resource over all brackets
(ties: the lower bracket).

Scores are maximised; ties are broken by the lower trial id, so every decision is a function of
the reported scores (and rebuilt identically from trials.jsonl on --resume, `restore`).
"""

from __future__ import annotations

from dataclasses import dataclass


def rung_resources(min_resource: int, max_resource: int, eta: int, offset: int = 0) -> list[int]:
    """Epochs of every rung of a bracket: min * eta^(offset + k) below max, then max."""
    if not 1 <= min_resource < max_resource:
        raise ValueError(f"need 1 <= min_resource < max_resource, got {min_resource}, "
                         f"{max_resource}")
    if eta < 2:
        raise ValueError(f"reduction factor must be >= 2, got {eta}")
    out, r = [], min_resource * eta**offset
    while r < max_resource:
        out.append(r)
        r *= eta
    return [*out, max_resource]


def max_brackets(min_resource: int, max_resource: int, eta: int) -> int:
    """Hyperband's bracket count: one per rung of bracket 0 (the last one trains every trial
    to max_resource, i.e. no early stopping)."""
    return len(rung_resources(min_resource, max_resource, eta))


@dataclass(frozen=True)
class Job:
    """Train `trial_id` up to `epochs` (rung `rung` of bracket `bracket`), continuing from
    its checkpoint at `from_epochs` (0: a new trial)."""

    trial_id: int
    bracket: int
    rung: int
    epochs: int
    from_epochs: int
    top: bool  # the bracket's last rung (max_resource): the trial is then complete


class ASHA:
    """One ASHA bracket: rung results, promotions, `get_job`."""

    def __init__(self, min_resource: int, max_resource: int, eta: int, offset: int = 0,
                 bracket: int = 0) -> None:
        self.eta = eta
        self.bracket = bracket
        self.resources = rung_resources(min_resource, max_resource, eta, offset)
        self.rungs: list[dict[int, float]] = [{} for _ in self.resources]  # trial -> score
        self.promoted: list[set[int]] = [set() for _ in self.resources]

    @property
    def top_rung(self) -> int:
        return len(self.resources) - 1

    def _job(self, trial_id: int, rung: int) -> Job:
        return Job(trial_id, self.bracket, rung, self.resources[rung],
                   0 if rung == 0 else self.resources[rung - 1], rung == self.top_rung)

    def new_job(self, trial_id: int) -> Job:
        """A new trial at the bottom rung."""
        return self._job(trial_id, 0)

    def report(self, trial_id: int, rung: int, score: float) -> None:
        """Trial `trial_id` finished rung `rung` with `score` (higher is better)."""
        self.rungs[rung][trial_id] = float(score)

    def top_of(self, rung: int) -> list[int]:
        """The top floor(|rung| / eta) trials of a rung, best first (ties: lower id)."""
        results = self.rungs[rung]
        ranked = sorted(results, key=lambda t: (-results[t], t))
        return ranked[: len(results) // self.eta]

    def promotable(self) -> Job | None:
        """The promotion `get_job` would make (highest rung first), or None."""
        for k in range(self.top_rung - 1, -1, -1):
            for trial_id in self.top_of(k):
                if trial_id not in self.promoted[k]:
                    return self._job(trial_id, k + 1)
        return None

    def promote(self, job: Job) -> None:
        """Mark `job` (from `promotable`) as given to a worker."""
        self.promoted[job.rung - 1].add(job.trial_id)

    def get_job(self, new_trial_id: int) -> Job:
        """Algorithm 2's get_job: the best promotion, else `new_trial_id` at rung 0."""
        job = self.promotable()
        if job is None:
            return self.new_job(new_trial_id)
        self.promote(job)
        return job

    def highest_rung(self, trial_id: int) -> int | None:
        """The highest rung a trial finished (None: none yet)."""
        done = [k for k, results in enumerate(self.rungs) if trial_id in results]
        return max(done) if done else None


class Scheduler:
    """ASHA (one bracket) or asynchronous Hyperband (several), as the broker uses it."""

    def __init__(self, min_resource: int, max_resource: int, eta: int, brackets: int = 1) -> None:
        limit = max_brackets(min_resource, max_resource, eta)
        if not 1 <= brackets <= limit:
            raise ValueError(f"brackets must be within 1..{limit} for these resources, got "
                             f"{brackets}")
        self.brackets = [ASHA(min_resource, max_resource, eta, s, s) for s in range(brackets)]
        self._bracket_of: dict[int, int] = {}
        self._started = 0

    def bracket_of(self, trial_id: int) -> ASHA:
        return self.brackets[self._bracket_of[trial_id]]

    def next_promotion(self) -> Job | None:
        """The promotion to run on a free worker (marked as given), else None: start a new
        trial then (`new_job`)."""
        jobs = [job for b in self.brackets if (job := b.promotable()) is not None]
        if not jobs:
            return None
        job = max(jobs, key=lambda j: (j.epochs, -j.bracket))
        self.brackets[job.bracket].promote(job)
        return job

    def new_job(self, trial_id: int) -> Job:
        """A new trial, in the next bracket in turn, at its bottom rung."""
        bracket = self._started % len(self.brackets)
        self._started += 1
        self._bracket_of[trial_id] = bracket
        return self.brackets[bracket].new_job(trial_id)

    def report(self, job: Job, score: float) -> None:
        self.brackets[job.bracket].report(job.trial_id, job.rung, score)

    def unpromote(self, job: Job) -> None:
        """A promotion that did not finish (cancelled, or its worker lost for good): the
        trial is promotable again from its last finished rung."""
        self.brackets[job.bracket].promoted[job.rung - 1].discard(job.trial_id)

    def restore(self, trial_id: int, bracket: int, rungs: list[tuple[int, float]]) -> None:
        """Rebuild a recorded trial (--resume): its bracket, its finished rungs' scores, and
        its promotions (a rung is promoted when the next rung has a result)."""
        self._bracket_of[trial_id] = bracket
        self._started += 1
        asha = self.brackets[bracket]
        for k, score in rungs:
            asha.report(trial_id, k, score)
            if k > 0:  # it reached rung k, so it was promoted from rung k-1
                asha.promoted[k - 1].add(trial_id)

    def is_top(self, job: Job) -> bool:
        return job.rung == self.brackets[job.bracket].top_rung
