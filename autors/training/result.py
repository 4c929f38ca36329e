"""TrialResult: what one trained-and-evaluated architecture leaves behind.

Plain data (JSON-able) so it crosses Ray process boundaries and is appended to trials.jsonl.
Raw metric and cost values are kept as measured; turning them into one score to maximise
(objective, constraint penalties) is the search adapter's job.
"""

from __future__ import annotations

import dataclasses
import traceback
from dataclasses import dataclass, field
from typing import Any, Literal

# over_limit: never trained, because its parameters or FLOPs (known before training) exceed a
# constraint; extra["static_cost"] holds them (see autors.search.prescreen).
# stopped / promoted: a multi-fidelity trial (autors.search.rungs) trained to a lower rung than
# the top one, not promoted further (yet) / its next rung running; its metrics are those of
# its highest finished rung.
TrialStatus = Literal["ok", "failed", "timeout", "over_limit", "stopped", "promoted"]

ERROR_TAIL_CHARS = 2000  # traceback kept in trials.jsonl: the message and the last frames


def error_text(err: BaseException) -> str:
    """A failed trial's `error`: the error line first (what a leaderboard shows), then the end
    of the traceback (at most ERROR_TAIL_CHARS of it)."""
    tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    tail = tb if len(tb) <= ERROR_TAIL_CHARS else "..." + tb[-ERROR_TAIL_CHARS:]
    return f"{type(err).__name__}: {err}\n{tail}"


@dataclass
class Cost:
    """Model cost: parameters, FLOPs per sample (forward) and measured CPU latency."""

    params: int
    flops: int
    latency_ms_b1: float  # median ms for one patch/tile, batch 1
    latency_ms_per_sample_b256: float  # median ms per sample at batch 256 (throughput view)
    # Batch actually used for the throughput figure: 256 unless 256 samples would exceed the
    # measurement's FLOP budget (large segmentation tiles); see autors.training.cost.
    throughput_batch: int = 256
    threads: int = 0  # torch CPU threads during the measurement (0: not recorded)


@dataclass
class TrialResult:
    trial_id: int
    arch: dict[str, Any]
    seed: int
    status: TrialStatus
    metrics: dict[str, Any] = field(default_factory=dict)  # val_oa, val_aa, val_kappa, ...
    cost: Cost | None = None
    epochs: int = 0
    duration_s: float = 0.0  # wall time of the whole trial inside the worker
    train_s: float = 0.0  # time spent in training + evaluation (the rest is overhead)
    error: str = ""
    node: str = ""  # host / Ray node that ran it
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialResult:
        d = dict(d)
        cost = d.pop("cost", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TrialResult fields {sorted(unknown)}")
        return cls(cost=Cost(**cost) if cost else None, **d)
