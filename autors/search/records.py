"""TrialRecord: one line of trials.jsonl (a TrialResult plus what the search made of it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from autors.training.result import TrialResult


@dataclass
class TrialRecord:
    """A finished trial as the search recorded it. `result` keeps the raw measured values."""

    trial_id: int
    session: int  # 0 for the first run, +1 for each --resume
    sample: dict[str, Any]  # the strategy's flat {label: value} choice
    score: float  # what the strategy maximised (see scoring.py)
    feasible: bool
    violations: dict[str, float]  # violated constraint -> measured / limit
    reason: str  # failure reason ('' when ok)
    submitted_at: float  # unix time the driver sent the trial
    finished_at: float  # unix time the driver recorded it
    elapsed_s: float  # search wall time (over all sessions) at which the trial was recorded
    result: TrialResult = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.result.status == "ok" and not self.reason

    @property
    def trained(self) -> bool:
        """False for proposals the driver screened out before training (status over_limit)."""
        return self.result.status != "over_limit"

    @property
    def stopped(self) -> bool:
        """A multi-fidelity trial the scheduler left below the top rung (not a failure; its
        metrics come from fewer epochs, so it is off the final phase and the front)."""
        return self.result.status in ("stopped", "promoted") and not self.reason

    @property
    def scored(self) -> bool:
        """The strategy learns from this score: trained ok trials, stopped multi-fidelity
        trials (their highest rung) and screened-out proposals."""
        return self.ok or self.stopped or not self.trained

    @property
    def wall_s(self) -> float:
        """Driver-side time from submission to record: training plus every overhead."""
        return self.finished_at - self.submitted_at

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "result"}
        d["result"] = self.result.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialRecord:
        d = dict(d)
        result = TrialResult.from_dict(d.pop("result"))
        return cls(result=result, **d)


def trained_count(records: list[TrialRecord]) -> int:
    """Trials that were trained (proposals screened out as over_limit are not trials)."""
    return sum(r.trained for r in records)
