"""Ranking, leaderboard rows, Pareto front and final-test statistics from trial records.

Pure functions of the records: `autors status` uses them on a running run's files, the search
uses them as it goes.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any

from autors.config import SearchSpec
from autors.files import write_atomic
from autors.search.front import pareto_records, spread
from autors.search.records import TrialRecord, trained_count
from autors.search.search_folder import SearchFolder
from fusion import Arch, ArchError

METRICS = ("oa", "aa", "kappa", "miou")


def ranked(records: list[TrialRecord]) -> list[TrialRecord]:
    """Feasible ok trials by score (best first), then infeasible ones, then trials a
    multi-fidelity scheduler stopped below the top rung (higher rung first), then failed ones.

    Equal scores are common on small validation sets (accuracy moves in steps of 1 / pixels):
    they are broken by validation kappa (higher), then validation loss (lower), then FLOPs
    (fewer), then trial id.
    """

    def key(r: TrialRecord) -> tuple:
        group = 0 if (r.ok and r.feasible) else (1 if r.ok else 3)
        if r.stopped:  # a multi-fidelity trial below the top rung: the higher rung first
            return (2, -float(r.result.epochs), -r.score, 0.0, 0.0, r.trial_id)
        if group == 3:
            return (group, 0.0, 0.0, 0.0, 0.0, r.trial_id)
        return (group, -r.score, *tie_break(r.result.metrics, r.result.cost), r.trial_id)

    return sorted(records, key=key)


def tie_break(metrics: dict[str, Any], cost: Any) -> tuple[float, float, float]:
    """Sort key after the objective: (-val_kappa, val_loss, flops); missing values sort last."""

    def number(value: Any, missing: float) -> float:
        try:
            value = float(value)
        except (TypeError, ValueError):
            return missing
        return value if math.isfinite(value) else missing

    return (-number(metrics.get("val_kappa"), -math.inf),
            number(metrics.get("val_loss"), math.inf),
            number(getattr(cost, "flops", None), math.inf))


def best(records: list[TrialRecord]) -> TrialRecord | None:
    """The best feasible ok trial (never an infeasible or failed one)."""
    top = ranked(records)
    return top[0] if top and top[0].ok and top[0].feasible else None


def finalists(records: list[TrialRecord], top_k: int) -> list[TrialRecord]:
    """The best `top_k` feasible ok trials (fewer when fewer exist): retrained and tested."""
    return [r for r in ranked(records) if r.ok and r.feasible][:top_k]


def arch_summary(arch: dict) -> str:
    try:
        return Arch.from_dict(arch).summary()
    except ArchError as err:
        return f"<invalid arch: {err}>"


def pareto(records: list[TrialRecord], spec: SearchSpec) -> list[TrialRecord]:
    """The Pareto front over the search's front objectives (`SearchSpec.front_objectives`):
    non-dominated feasible ok trials, best first on the first objective."""
    return pareto_records(records, spec.front_objectives)


def final_picks(records: list[TrialRecord], spec: SearchSpec
                ) -> list[tuple[TrialRecord, list[str]]]:
    """What the final phase retrains, each with why: with `search.objectives`, a spread of
    the front (knee, extremes, then the farthest; `front.spread`), up to top_k; otherwise
    the top_k feasible trials by score."""
    if spec.objectives:
        return spread(records, spec.objectives, spec.top_k)
    return [(r, [f"rank {i} by score ({spec.objective})"])
            for i, r in enumerate(finalists(records, spec.top_k), start=1)]


def retrained(records: list[TrialRecord], rows: list[dict[str, Any]]) -> list[TrialRecord]:
    """The trials final.jsonl rows retrained, in ranking order."""
    ids = {int(r["trial_id"]) for r in rows}
    return [r for r in ranked(records) if r.trial_id in ids]


def picks_of(rows: list[dict[str, Any]]) -> dict[int, list[str]]:
    """trial id -> why the final phase picked it (final.jsonl's `picked`; [] when absent)."""
    out: dict[int, list[str]] = {}
    for row in rows:
        out.setdefault(int(row["trial_id"]), list(row.get("picked") or []))
    return out


@dataclass
class FinalStats:
    """Test results of one retrained architecture over its seeds."""

    trial_id: int
    arch: dict
    seeds: list[int]
    runs: int  # successful retrainings
    failed: list[str]  # error text of failed retrainings
    mean: dict[str, float]  # test_oa -> mean, ...
    std: dict[str, float]  # sample standard deviation (0 with a single run)
    # test OA per robustness condition (clean, without_<sensor>, cloud_<pct>): mean over seeds
    conditions: dict[str, float] = field(default_factory=dict)


def final_stats(rows: list[dict[str, Any]], finalists: list[TrialRecord]) -> list[FinalStats]:
    """Aggregate final.jsonl rows per finalist (in finalist order)."""
    out = []
    for rec in finalists:
        mine = [r for r in rows if r["trial_id"] == rec.trial_id]
        ok = [r for r in mine if r["status"] == "ok"]
        mean, std = {}, {}
        for m in METRICS:
            key = f"test_{m}"
            values = [float(r["metrics"][key]) for r in ok if key in r["metrics"]]
            if values:
                mu = sum(values) / len(values)
                var = (
                    sum((v - mu) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
                )
                mean[key], std[key] = mu, math.sqrt(var)
        tables = [r["metrics"]["test_robustness"] for r in ok
                  if "test_robustness" in r["metrics"]]
        conditions = {name: sum(t[name]["oa"] for t in tables) / len(tables)
                      for name in (tables[0] if tables else {})}
        out.append(
            FinalStats(
                trial_id=rec.trial_id,
                arch=rec.result.arch,
                seeds=[r["seed"] for r in ok],
                runs=len(ok),
                failed=[r.get("error", "") for r in mine if r["status"] != "ok"],
                mean=mean,
                std=std,
                conditions=conditions,
            )
        )
    return out


def leaderboard_rows(
    records: list[TrialRecord], finals: list[FinalStats] | None = None
) -> list[dict[str, Any]]:
    """One row per trial, ranked; test mean/std columns filled for retrained finalists, and
    their mean test OA under each robustness condition (`test_oa_<condition>_mean`)."""
    by_trial = {f.trial_id: f for f in finals or []}
    # robustness columns: every condition some finalist was tested under (same keys per row)
    conditions = sorted({c for f in finals or [] for c in f.conditions if c != "clean"})
    rows = []
    for rank, r in enumerate(ranked(records), start=1):
        res = r.result
        row: dict[str, Any] = {
            "rank": rank,
            "trial_id": r.trial_id,
            "status": res.status if not r.reason or res.status != "ok" else "failed",
            "feasible": r.feasible,
            "score": round(r.score, 6),
        }
        for m in METRICS:
            v = res.metrics.get(f"val_{m}")
            row[f"val_{m}"] = round(float(v), 6) if isinstance(v, (int, float)) else ""
        cost = res.cost
        static = res.extra.get("static_cost", {})  # over_limit: counted, never trained
        row["params"] = cost.params if cost else static.get("params", "")
        row["flops"] = cost.flops if cost else static.get("flops", "")
        row["latency_ms"] = round(cost.latency_ms_b1, 4) if cost else ""
        row["epochs"] = res.epochs
        row["train_s"] = round(res.train_s, 2)
        row["wall_s"] = round(r.wall_s, 2)
        row["node"] = res.node
        # Runs of the trial's Ray task: 2 when it was re-run after its worker or node died.
        row["attempts"] = 1 + int(res.extra.get("attempt", 0))
        row["violations"] = " ".join(f"{k}x{v:.2f}" for k, v in r.violations.items())
        row["reason"] = (r.reason.splitlines() or [""])[0][:160]
        final = by_trial.get(r.trial_id)
        for m in METRICS:
            key = f"test_{m}"
            row[f"{key}_mean"] = round(final.mean[key], 6) if final and key in final.mean else ""
            row[f"{key}_std"] = round(final.std[key], 6) if final and key in final.std else ""
        row["test_runs"] = final.runs if final else ""
        for c in conditions:
            value = final.conditions.get(c) if final else None
            row[f"test_oa_{c}_mean"] = round(value, 6) if value is not None else ""
        row["arch"] = arch_summary(res.arch)
        rows.append(row)
    return rows


def write_leaderboard(run: SearchFolder, rows: list[dict[str, Any]]) -> None:
    if not rows:
        write_atomic(run.leaderboard_file, "")
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(run.leaderboard_file, buf.getvalue())


def counts(records: list[TrialRecord]) -> dict[str, int]:
    return {
        "finished": trained_count(records),
        "ok": sum(r.ok for r in records),
        "feasible": sum(r.ok and r.feasible for r in records),
        "infeasible": sum(r.ok and not r.feasible for r in records),
        "over_limit": sum(not r.trained for r in records),
        "failed": sum(not r.ok and not r.stopped
                      and r.result.status not in ("timeout", "over_limit") for r in records),
        "timeout": sum(r.result.status == "timeout" for r in records),
        # multi-fidelity trials (search.scheduler): left below the top rung / promoted at least
        # once (a trial promoted and later stopped counts in both)
        "stopped": sum(r.stopped for r in records),
        "promoted": sum(len(r.result.extra.get("rungs", ())) > 1 for r in records),
    }
