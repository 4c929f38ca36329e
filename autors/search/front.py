"""The Pareto front over a search's objectives, its hypervolume, and the spread of it that the
final phase retrains (knee and extremes).

Objectives are `autors.config.ObjectiveSpec` (a value a trial records and its goal). Internally
every objective is turned into a value to MINIMISE:

- a metric (val_oa, ...) maximised is negated; costs (params, flops, latency_ms) are compared
  on a log10 scale, because they span orders of magnitude (a 2x smaller network is the same
  step at 10 kFLOPs as at 10 MFLOPs);
- `Normaliser` maps each of those to [0, 1] between given bounds (0: the best bound, 1: the
  worst); the hypervolume is measured in that space against the reference point
  `REFERENCE` = (1.1, ..., 1.1): 10 % of the bounds' range beyond the worst bound, so the
  extremes of a front still add volume.

Only ok, feasible trials with a finite value for every objective can be on a front: failed,
timed-out, over-limit (never trained) and infeasible trials never are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from autors.config import TRIAL_COSTS, ObjectiveSpec
from autors.search.records import TrialRecord

REFERENCE = 1.1  # per normalised objective: the hypervolume's reference point
Point = tuple[float, ...]


def raw_value(record: TrialRecord, name: str) -> float | None:
    """The value `name` (a metric or a cost) a trained trial recorded; None when missing."""
    res = record.result
    if name in TRIAL_COSTS:
        if res.cost is None:
            return None
        value = res.cost.latency_ms_b1 if name == "latency_ms" else getattr(res.cost, name)
    else:
        value = res.metrics.get(name)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def raw_values(record: TrialRecord, objectives: Sequence[ObjectiveSpec]) -> tuple | None:
    """Every objective's raw value, or None when one is missing."""
    values = tuple(raw_value(record, o.name) for o in objectives)
    return None if any(v is None for v in values) else values


def to_min(value: float, objective: ObjectiveSpec) -> float:
    """`value` on the minimised scale: costs in log10, maximised objectives negated."""
    if objective.name in TRIAL_COSTS:
        value = math.log10(max(value, 1e-12))
    return -value if objective.goal == "max" else value


def from_min(value: float, objective: ObjectiveSpec) -> float:
    """The inverse of `to_min` (a reference point in the objective's own units)."""
    value = -value if objective.goal == "max" else value
    # costs: 6 significant digits (10 ** log10(x) is x only up to rounding)
    return float(f"{10.0 ** value:.6g}") if objective.name in TRIAL_COSTS else value


def candidates(records: list[TrialRecord], objectives: Sequence[ObjectiveSpec]
               ) -> list[tuple[TrialRecord, Point]]:
    """Trials that may be on a front (ok, feasible, every value known), minimised points."""
    out = []
    for r in records:
        if not (r.ok and r.feasible):
            continue
        raw = raw_values(r, objectives)
        if raw is not None:
            out.append((r, tuple(to_min(v, o) for v, o in zip(raw, objectives))))
    return out


def dominates(a: Point, b: Point) -> bool:
    """a is no worse than b everywhere and better somewhere (minimisation)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def nondominated(points: Sequence[Point]) -> list[int]:
    """Indices of the points no other point dominates (equal points are all kept)."""
    return [i for i, p in enumerate(points)
            if not any(dominates(q, p) for j, q in enumerate(points) if j != i)]


def pareto_records(records: list[TrialRecord], objectives: Sequence[ObjectiveSpec]
                   ) -> list[TrialRecord]:
    """The front: non-dominated feasible ok trials, best first on the first objective (then
    trial id)."""
    pool = candidates(records, objectives)
    keep = [pool[i] for i in nondominated([p for _, p in pool])]
    return [r for r, _ in sorted(keep, key=lambda t: (t[1][0], t[0].trial_id))]


# -- hypervolume --------------------------------------------------------------------------------
def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """The volume dominated by `points` and bounded by `reference` (minimisation), exactly.

    Two objectives: a sweep over the points sorted by the first one. More: slicing along the
    last objective (each slab between consecutive values is the (d-1)-dimensional volume of
    the points at or below it times its height); exact, fine for the fronts of a search.
    Points not strictly better than the reference in every objective add nothing.
    """
    pts = [tuple(p) for p in points if all(x < r for x, r in zip(p, reference))]
    if not pts:
        return 0.0
    if len(reference) == 1:
        return reference[0] - min(p[0] for p in pts)
    if len(reference) == 2:
        volume, best_y = 0.0, reference[1]
        for x, y in sorted(pts):
            if y < best_y:
                volume += (reference[0] - x) * (best_y - y)
                best_y = y
        return volume
    pts.sort(key=lambda p: p[-1])
    volume = 0.0
    for i, p in enumerate(pts):
        top = pts[i + 1][-1] if i + 1 < len(pts) else reference[-1]
        if top > p[-1]:
            volume += (top - p[-1]) * hypervolume([q[:-1] for q in pts[: i + 1]],
                                                   reference[:-1])
    return volume


@dataclass(frozen=True)
class Normaliser:
    """Per objective: the best and the worst bound on the minimised scale (`to_min`)."""

    objectives: tuple[ObjectiveSpec, ...]
    lo: Point
    hi: Point

    @classmethod
    def of(cls, points: Sequence[Point], objectives: Sequence[ObjectiveSpec]) -> Normaliser:
        """Bounds spanning `points` (minimised): the ideal and the nadir of what was seen."""
        d = len(objectives)
        lo = tuple(min(p[k] for p in points) for k in range(d))
        hi = tuple(max(p[k] for p in points) for k in range(d))
        return cls(tuple(objectives), lo, hi)

    def __call__(self, point: Point) -> Point:
        return tuple((x - lo) / (hi - lo) if hi > lo else 0.0
                     for x, lo, hi in zip(point, self.lo, self.hi))

    def reference_raw(self) -> dict[str, float]:
        """The reference point in each objective's own units (what a report states)."""
        return {o.name: from_min(lo + REFERENCE * (hi - lo), o)
                for o, lo, hi in zip(self.objectives, self.lo, self.hi)}

    def to_dict(self) -> dict:
        return {"normalised_reference": REFERENCE,
                "best": {o.name: from_min(v, o) for o, v in zip(self.objectives, self.lo)},
                "worst": {o.name: from_min(v, o) for o, v in zip(self.objectives, self.hi)},
                "reference": self.reference_raw()}


def front_hypervolume(records: list[TrialRecord], objectives: Sequence[ObjectiveSpec],
                      norm: Normaliser) -> float:
    """Hypervolume of the records' front, normalised by `norm`, reference REFERENCE each."""
    pts = [norm(p) for _, p in candidates(records, objectives)]
    return hypervolume(pts, (REFERENCE,) * len(objectives))


def hypervolume_curve(records: list[TrialRecord], objectives: Sequence[ObjectiveSpec],
                      norm: Normaliser) -> list[float]:
    """Hypervolume after each trained trial, in the order they were recorded."""
    trained = sorted((r for r in records if r.trained), key=lambda r: r.elapsed_s)
    d = len(objectives)
    out, pts = [], []
    for r in trained:
        got = candidates([r], objectives)
        if got:
            pts.append(norm(got[0][1]))
            pts = [pts[i] for i in nondominated(pts)]
        out.append(hypervolume(pts, (REFERENCE,) * d))
    return out


# -- what the final phase retrains --------------------------------------------------------------
def most_accurate_index(objectives: Sequence[ObjectiveSpec]) -> int:
    """The first objective that is not a cost (the accuracy), else the first one."""
    return next((k for k, o in enumerate(objectives) if o.name not in TRIAL_COSTS), 0)


def smallest_index(objectives: Sequence[ObjectiveSpec]) -> int | None:
    """The first cost objective (the size), None when no objective is a cost."""
    return next((k for k, o in enumerate(objectives) if o.name in TRIAL_COSTS), None)


def spread(records: list[TrialRecord], objectives: Sequence[ObjectiveSpec], k: int
           ) -> list[tuple[TrialRecord, list[str]]]:
    """Up to `k` front trials to retrain, each with why it was picked, in this order:

    - `knee`: the front trial closest (Euclidean) to the ideal point once each objective is
      normalised to [0, 1] over the front;
    - `most-accurate` / `smallest`: the best on the first metric / first cost objective;
      `best <name>`: the best on every other objective (the extremes);
    - `spread`: then the trial farthest from every one picked so far, until k.

    A trial picked for several reasons is retrained once, with all of them.
    """
    pool = [(r, p) for r, p in candidates(records, objectives)]
    pool = [pool[i] for i in nondominated([p for _, p in pool])]
    if not pool:
        return []
    pool.sort(key=lambda t: (t[1], t[0].trial_id))
    norm = Normaliser.of([p for _, p in pool], objectives)
    unit = {r.trial_id: norm(p) for r, p in pool}
    named: list[tuple[str, TrialRecord]] = []
    knee = min(pool, key=lambda t: (math.dist(unit[t[0].trial_id], [0.0] * len(objectives)),
                                    t[0].trial_id))[0]
    named.append(("knee", knee))
    acc, small = most_accurate_index(objectives), smallest_index(objectives)
    for kk, o in enumerate(objectives):
        best = min(pool, key=lambda t: (t[1][kk], t[1], t[0].trial_id))[0]
        why = ("most-accurate" if kk == acc else "smallest" if kk == small
               else f"best {o.name}")
        named.append((why, best))
    picked: dict[int, tuple[TrialRecord, list[str]]] = {}
    for why, r in named:
        if r.trial_id in picked:
            picked[r.trial_id][1].append(why)
        elif len(picked) < k:
            picked[r.trial_id] = (r, [why])
    while len(picked) < min(k, len(pool)):
        far = max((t for t in pool if t[0].trial_id not in picked),
                  key=lambda t: (min(math.dist(unit[t[0].trial_id], unit[i]) for i in picked),
                                 -t[0].trial_id))[0]
        picked[far.trial_id] = (far, ["spread"])
    return list(picked.values())
