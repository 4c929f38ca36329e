"""The search sections: progress, the Pareto front(s), the sortable leaderboard and the
architecture diagrams of the top models, from the search folder's records (`SearchFolder`,
`autors.search.report`) and summary.json."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from autors.report.archdiagram import arch_svg
from autors.report.page import Cell, esc, fmt, note, table
from autors.report.svg import STYLES, Point, legend, scatter
from autors.search.front import raw_value
from autors.search.records import TrialRecord
from autors.search.report import arch_summary, leaderboard_rows

COSTS = {"params": "parameters", "flops": "FLOPs per sample", "latency_ms": "latency (ms, batch 1)"}


def status(r: TrialRecord) -> str:
    """How a trial is marked: ok, infeasible, over_limit, timeout, stopped (a multi-fidelity
    trial a scheduler left below the top rung: not a failure) or failed."""
    if not r.trained:
        return "over_limit"
    if r.result.status == "timeout":
        return "timeout"
    if r.stopped:
        return "stopped"
    if not r.ok:
        return "failed"
    return "ok" if r.feasible else "infeasible"


def value(r: TrialRecord, name: str) -> float | None:
    """A trial's metric or cost `name` (`autors.search.front.raw_value`); params and FLOPs of
    a proposal screened out before training come from its static cost."""
    if name in COSTS and r.result.cost is None:
        try:
            v = float(r.result.extra.get("static_cost", {}).get(name))
        except (TypeError, ValueError):
            return None
        return v if math.isfinite(v) else None
    return raw_value(r, name) if r.ok or name in COSTS else None


def tip(r: TrialRecord, objective: str) -> str:
    """Hover text of a trial: what it was, what it scored, what it cost, where it ran."""
    res = r.result
    lines = [f"trial {r.trial_id}: {status(r).replace('_', ' ')}",
             arch_summary(res.arch)]
    v = value(r, objective)
    if v is not None:
        lines.append(f"{objective} {v:.4f}")
    if res.cost is not None:
        lines.append(f"params {res.cost.params:,}  FLOPs {res.cost.flops:,}  latency "
                     f"{res.cost.latency_ms_b1:.3g} ms")
    elif res.extra.get("static_cost"):
        sc = res.extra["static_cost"]
        lines.append(f"params {sc.get('params', '?'):,}  FLOPs {sc.get('flops', '?'):,} "
                     "(not trained)")
    if r.violations:
        lines.append("over: " + ", ".join(f"{k} x{v:.2f}" for k, v in r.violations.items()))
    if r.reason:
        lines.append(r.reason.splitlines()[0][:200])
    lines.append(f"node {res.node or '?'}, {r.wall_s:.1f} s")
    return "\n".join(lines)


def counts_text(summary: dict | None, records: list[TrialRecord]) -> str:
    seen = [status(r) for r in records]
    parts = [f"{seen.count(s)} {STYLES[s][3]}" for s in STYLES if seen.count(s)]
    text = f"{len(records)} recorded: " + ", ".join(parts)
    cancelled = ((summary or {}).get("counts") or {}).get("cancelled_at_time_budget")
    if cancelled:
        text += f"; {cancelled} stopped at the time budget (not recorded)"
    if (summary or {}).get("stop_reason"):
        text += f"; search stopped: {summary['stop_reason']}"
    return text


def progress_chart(records: list[TrialRecord], objective: str) -> str:
    """The objective of every trial against the search time, with the best so far."""
    points, best, line = [], -math.inf, []
    for r in sorted(records, key=lambda r: r.elapsed_s):
        x = r.elapsed_s / 60.0
        y = value(r, objective)
        points.append(Point(x, y, status(r), tip(r, objective)))
        if y is not None and r.ok and r.feasible and y > best:
            best = y
            line.append((x, y))
    if line:
        line.append((max(p.x for p in points if p.x is not None), best))
    return scatter(points, "search time (min)", objective, line=line,
                   line_label=f"best feasible {objective} so far", title="search progress")


def objectives(summary: dict | None, objective: str) -> list[tuple[str, str]]:
    """(name, goal) of the objectives the front is over: summary.json's `front.objectives`
    (or `objectives`, a multi-objective search's), else the objective against FLOPs and
    latency."""
    s = summary or {}
    listed = (s.get("front") or {}).get("objectives") or s.get("objectives")
    out = []
    for o in listed or []:
        if isinstance(o, dict) and "name" in o:
            name = str(o["name"])
            out.append((name, str(o.get("goal", "min" if name in COSTS else "max"))))
        elif isinstance(o, str):
            out.append((o, "min" if o in COSTS else "max"))
    return out or [(objective, "max"), ("flops", "min"), ("latency_ms", "min")]


def front_ids(summary: dict | None) -> set[int] | None:
    """Trials on the Pareto front as summary.json records them (`front.trial_ids`, or the
    `pareto_front` entries); None before summary.json is written."""
    s = summary or {}
    ids = (s.get("front") or {}).get("trial_ids")
    if ids is None and isinstance(s.get("pareto_front"), list):
        ids = [p["trial_id"] for p in s["pareto_front"] if isinstance(p, dict)
               and "trial_id" in p]
    return None if ids is None else {int(i) for i in ids}


def front_charts(records: list[TrialRecord], summary: dict | None, objective: str) -> str:
    """The front drawn over each pair (the first metric objective against each other one)."""
    objs = objectives(summary, objective)
    on_front = front_ids(summary) or set()
    y_name = next((n for n, _ in objs if n not in COSTS), objective)
    charts = []
    for x_name, goal in objs:
        if x_name == y_name:
            continue
        points = [Point(value(r, x_name), value(r, y_name), status(r), tip(r, objective),
                        r.trial_id in on_front) for r in records]
        line: list[tuple[float, float]] = []
        if len(objs) == 2:  # a 2-D front is a staircase; projections of more are not
            front = sorted((p.x, p.y) for p in points if p.front and p.x is not None
                           and p.y is not None)
            line = front if goal == "min" else front[::-1]
        charts.append(scatter(points, COSTS.get(x_name, x_name), y_name, x_log=x_name in COSTS,
                              line=line, line_label="Pareto front",
                              title=f"{y_name} against {x_name}"))
    label = ("on the Pareto front over " + ", ".join(f"{n} ({g})" for n, g in objs))
    present = sorted({status(r) for r in records}, key=list(STYLES).index)
    hv = ((summary or {}).get("front") or {}).get("hypervolume")
    return (f'<div class="row">{"".join(charts)}</div>' + legend(present, label)
            + (note("the front is marked once the search has written summary.json")
               if front_ids(summary) is None else "")
            + (f"<p>front hypervolume {hv:.4f} (normalised objectives, as summary.json "
               "records it)</p>" if isinstance(hv, (int, float)) else "")
            + note("hover a mark for the trial's architecture, cost and node"))


LEADER_COLUMNS = (
    ("rank", "rank"), ("trial_id", "trial"), ("status", "status"), ("score", "score"),
    ("val_oa", "val OA"), ("val_aa", "val AA"), ("val_kappa", "val kappa"),
    ("val_miou", "val mIoU"), ("params", "params"), ("flops", "FLOPs"),
    ("latency_ms", "latency ms"), ("epochs", "epochs"), ("train_s", "train s"),
    ("node", "node"), ("test_oa_mean", "test OA"), ("test_oa_std", "± std"),
    ("violations", "violations"), ("arch", "architecture"), ("reason", "failure"),
)


def leaderboard(records: list[TrialRecord], finals: Sequence[Any]) -> str:
    """Every trial ranked, sortable by any column (click a header)."""
    rows = leaderboard_rows(records, list(finals))
    if not rows:
        return note("no finished trial yet")
    cols = [(k, h) for k, h in LEADER_COLUMNS if any(row.get(k) not in ("", None) for row in rows)
            or k in ("rank", "trial_id", "status")]
    body, classes = [], []
    for row in rows:
        cells = []
        for k, _ in cols:
            v = row.get(k, "")
            if k in ("arch", "reason", "violations", "node", "status"):
                cells.append(Cell(str(v), left=True))
            else:
                cells.append(Cell(fmt(v), v if isinstance(v, (int, float)) else None))
        body.append(cells)
        classes.append("" if row["status"] == "ok" and row["feasible"] else
                       "muted" if row["status"] in ("ok", "over_limit", "stopped", "promoted")
                       else "failed")
    return (note("click a column header to sort; failed trials in red, infeasible, "
                 "untrained and scheduler-stopped ones in grey") +
            table([h for _, h in cols], body, table_id="trials", sortable=True,
                  row_classes=classes, keys=[k for k, _ in cols]))


def architectures(chosen: list[TrialRecord], sensors: dict[str, str],
                  classes: int | None, objective: str) -> str:
    if not chosen:
        return note("no feasible trial: no architecture to draw")
    out = []
    for rank, r in enumerate(chosen, start=1):
        v = value(r, objective)
        out.append(f"<h3>rank {rank}: trial {r.trial_id}"
                   + (f", {esc(objective)} {v:.4f}" if v is not None else "") + "</h3>"
                   + f"<p><code>{esc(arch_summary(r.result.arch))}</code></p>"
                   + arch_svg(r.result.arch, sensors, classes))
    return "".join(out)
