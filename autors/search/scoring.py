"""One number to maximise per trial and feasibility against the task's constraints (the Pareto
front over several objectives is `front.py`).

NNI strategies always maximise a single score. The raw metric and cost values stay untouched in
the TrialResult; only the strategy sees the score defined here:

- ok and feasible:   score = objective value (val_oa, val_kappa, ... so within [-1, 1])
- ok but infeasible: score = objective - 3 - min(violation, 5), within [-9, -2): always below any
  feasible trial, and closer-to-feasible architectures rank higher among the infeasible ones.
  `violation` sums log2(value / limit) over the violated constraints (2x too many params = 1).
- over_limit (not trained, params/FLOPs over a limit; see prescreen.py): scored as an
  infeasible trial with the worst objective value (-1), so within [-9, -4).
- failed / timeout:  score = FAILED_SCORE (-10), below everything else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from autors.config import ConstraintSpec
from autors.training.result import TrialResult

FAILED_SCORE = -10.0
_INFEASIBLE_OFFSET = 3.0
_MAX_VIOLATION = 5.0
_WORST_OBJECTIVE = -1.0  # every objective (oa, aa, kappa, miou) is >= -1


@dataclass(frozen=True)
class Judgement:
    """How the search sees one finished trial."""

    score: float
    feasible: bool  # False for failed trials too: they can never be chosen as best
    violations: dict[str, float]  # constraint name -> measured / limit (only violated ones)
    reason: str  # why the trial failed ('' when ok)


def objective_value(result: TrialResult, objective: str) -> float | None:
    """The objective metric of an ok trial, or None when missing or not finite."""
    value = result.metrics.get(objective)
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def constraint_violations(result: TrialResult, constraints: ConstraintSpec) -> dict[str, float]:
    """Ratio measured/limit for every violated constraint (empty when feasible or no cost)."""
    if result.status == "over_limit":
        static = result.extra["static_cost"]
        checks: list[tuple[str, float | None, float]] = [
            ("max_params", constraints.max_params, float(static["params"])),
            ("max_flops", constraints.max_flops, float(static["flops"])),
        ]
    elif result.cost is None:
        return {}
    else:
        checks = [
            ("max_params", constraints.max_params, float(result.cost.params)),
            ("max_flops", constraints.max_flops, float(result.cost.flops)),
            ("max_latency_ms", constraints.max_latency_ms, float(result.cost.latency_ms_b1)),
        ]
    out = {
        name: value / float(limit)
        for name, limit, value in checks
        if limit is not None and value > limit
    }
    worst = result.metrics.get("val_oa_worst_missing")
    limit = constraints.min_oa_when_missing
    if limit is not None and worst is not None and worst < limit:
        out["min_oa_when_missing"] = limit / max(float(worst), 1e-6)  # a lower bound: > 1
    return out


def judge(result: TrialResult, objective: str, constraints: ConstraintSpec) -> Judgement:
    """Turn a TrialResult into the strategy's score, feasibility and failure reason."""
    if result.status == "over_limit":
        violations = constraint_violations(result, constraints)
        return Judgement(_infeasible_score(_WORST_OBJECTIVE, violations), False, violations, "")
    # a multi-fidelity trial paused at a lower rung is scored on that rung's metrics
    if result.status not in ("ok", "stopped", "promoted"):
        reason = result.error or f"trial status {result.status}"
        return Judgement(FAILED_SCORE, False, {}, reason)
    value = objective_value(result, objective)
    if value is None:
        got = result.metrics.get(objective)
        reason = (
            f"objective {objective} is missing from the trial metrics {sorted(result.metrics)}"
            if got is None
            else f"objective {objective} is not a finite number ({got!r})"
        )
        return Judgement(FAILED_SCORE, False, {}, reason)
    if any(c is not None for c in _limits(constraints)) and result.cost is None:
        return Judgement(FAILED_SCORE, False, {}, "constraints are set but the trial has no cost")
    violations = constraint_violations(result, constraints)
    if not violations:
        return Judgement(value, True, {}, "")
    return Judgement(_infeasible_score(value, violations), False, violations, "")


def _infeasible_score(value: float, violations: dict[str, float]) -> float:
    excess = sum(math.log2(r) for r in violations.values())
    return value - _INFEASIBLE_OFFSET - min(excess, _MAX_VIOLATION)


def _limits(constraints: ConstraintSpec) -> tuple[Any, ...]:
    return (constraints.max_params, constraints.max_flops, constraints.max_latency_ms,
            constraints.min_oa_when_missing)
