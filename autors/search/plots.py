"""progress.png and pareto.png of a run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, NullFormatter

from autors.config import TRIAL_COSTS, ObjectiveSpec
from autors.search.front import raw_values
from autors.search.records import TrialRecord


def _best_so_far(values: list[float | None]) -> list[float | None]:
    out, best = [], None
    for v in values:
        if v is not None and (best is None or v > best):
            best = v
        out.append(best)
    return out


def plot_progress(records: list[TrialRecord], objective: str, path: Path) -> None:
    """Best feasible objective so far against trial count and against search wall time (the
    best so far counts complete trials only: with a scheduler, those at the top rung)."""
    # trials only: proposals screened out before training took no time and no slot
    recs = sorted((r for r in records if r.trained), key=lambda r: r.elapsed_s)
    values = [
        float(r.result.metrics[objective]) if r.ok and r.feasible else None for r in recs
    ]
    best = _best_so_far(values)
    n = list(range(1, len(recs) + 1))
    minutes = [r.elapsed_s / 60.0 for r in recs]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, x, label in ((axes[0], n, "trials finished"), (axes[1], minutes, "search wall time (min)")):
        ok = [(xi, v) for xi, v in zip(x, values) if v is not None]
        infeasible = [
            (xi, float(r.result.metrics[objective]))
            for xi, r in zip(x, recs)
            if r.ok and not r.feasible
        ]
        # multi-fidelity trials (search.scheduler) left below the top rung: not failures, shown
        # at their highest rung's value; a ring marks every trial promoted at least once
        stopped = [(xi, float(r.result.metrics[objective])) for xi, r in zip(x, recs)
                   if r.stopped and objective in r.result.metrics]
        promoted = [(xi, float(r.result.metrics[objective])) for xi, r in zip(x, recs)
                    if len(r.result.extra.get("rungs", ())) > 1
                    and objective in r.result.metrics]
        failed = [xi for xi, r in zip(x, recs) if not r.ok and not r.stopped]
        if stopped:
            ax.scatter(*zip(*stopped), s=10, marker="v", color="tab:gray", alpha=0.6,
                       label="stopped at a lower rung (its last rung's value)")
        if promoted:
            ax.scatter(*zip(*promoted), s=46, facecolors="none", edgecolors="tab:green",
                       label="promoted (reached a higher rung)")
        if ok:
            ax.scatter(*zip(*ok), s=14, color="tab:blue", alpha=0.6, label="feasible trial")
        if infeasible:
            ax.scatter(*zip(*infeasible), s=14, facecolors="none", edgecolors="tab:orange",
                       label="infeasible trial")
        if failed:
            ax.scatter(failed, [0.0] * len(failed), marker="x", color="tab:red", s=18,
                       label="failed (shown at 0)")
        steps = [(xi, b) for xi, b in zip(x, best) if b is not None]
        if steps:
            ax.step(*zip(*steps), where="post", color="black", label="best so far")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(objective)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"search progress ({len(recs)} trials)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _compact(value: float, _pos: object = None) -> str:
    """A tick label: 3 significant digits with k / M / G (plain, no 'x10^n' labels that overlap
    on log axes)."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _pairs(objectives: list[ObjectiveSpec], explicit: bool) -> list[tuple[int, int]]:
    """Panels: every pair of the search's own objectives; the default front (objective against
    params, flops, latency) shows the objective against each cost."""
    d = len(objectives)
    if explicit:
        return [(i, j) for i in range(d) for j in range(i + 1, d)]
    return [(0, j) for j in range(1, d)]


AXIS_LABELS = {"params": "parameters", "flops": "FLOPs per sample",
               "latency_ms": "CPU latency, batch 1 (ms)"}


def plot_pareto(
    records: list[TrialRecord], front: list[TrialRecord], objectives: list[ObjectiveSpec],
    path: Path, marks: dict[int, str] | None = None, explicit: bool = True,
) -> None:
    """Every pair of objectives (costs on the x axis, log scale), feasible and infeasible
    trials, the Pareto front over all objectives marked; `marks` (trial id -> label: the final
    phase's picks, the exported model) are starred and labelled. Failed, timed-out and
    over-limit trials have no values and are not drawn. When the trials measured it, an extra
    panel: clean validation OA against the worst OA with one sensor removed."""
    marks = marks or {}
    ok = [r for r in records if r.ok and raw_values(r, objectives) is not None]
    front_ids = {r.trial_id for r in front}
    robust = [r for r in ok if "val_oa_worst_missing" in r.result.metrics]
    pairs = _pairs(objectives, explicit)
    n = len(pairs) + bool(robust)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    if robust:
        _plot_robust(flat[len(pairs)], robust, front_ids)
    value = {r.trial_id: raw_values(r, objectives) for r in ok}
    for ax, (a, b) in zip(flat, pairs):
        # a cost goes on the x axis: "accuracy against cost"
        x, y = (a, b) if objectives[a].name in TRIAL_COSTS and objectives[b].name not in \
            TRIAL_COSTS else (b, a)
        for feasible, style in ((True, {"color": "tab:blue"}),
                                (False, {"facecolors": "none", "edgecolors": "tab:orange"})):
            pts = [(value[r.trial_id][x], value[r.trial_id][y]) for r in ok
                   if r.feasible == feasible and r.trial_id not in front_ids]
            if pts:
                ax.scatter(*zip(*pts), s=16, alpha=0.6,
                           label="feasible" if feasible else "infeasible", **style)
        fpts = sorted((value[r.trial_id][x], value[r.trial_id][y]) for r in front
                      if r.trial_id in value)
        if fpts:
            ax.scatter(*zip(*fpts), s=40, color="tab:green", edgecolors="black",
                       label=f"Pareto front ({', '.join(o.name for o in objectives)})",
                       zorder=3)
        for tid, label in marks.items():
            if tid in value:
                px, py = value[tid][x], value[tid][y]
                ax.scatter([px], [py], s=160, marker="*", color="gold", edgecolors="black",
                           zorder=4)
                ax.annotate(label, (px, py), textcoords="offset points", xytext=(6, 6),
                            fontsize=7)
        for k, axis in ((x, ax.xaxis), (y, ax.yaxis)):
            name = objectives[k].name
            if name in TRIAL_COSTS and ok and all(value[r.trial_id][k] > 0 for r in ok):
                (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log")
                axis.set_major_formatter(FuncFormatter(_compact))
                axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{AXIS_LABELS.get(objectives[x].name, objectives[x].name)} "
                      f"({objectives[x].goal})")
        ax.set_ylabel(f"{AXIS_LABELS.get(objectives[y].name, objectives[y].name)} "
                      f"({objectives[y].goal})")
        ax.grid(alpha=0.3)
    flat[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("the trade-off: every pair of objectives"
                 + (" (stars: " + ", ".join(sorted(set(marks.values()))) + ")" if marks else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_robust(ax, records: list[TrialRecord], front_ids: set[int]) -> None:
    """Clean validation OA (x) against the worst OA with one used sensor removed (y)."""
    for on_front, style in ((False, {"color": "tab:blue", "alpha": 0.6, "s": 16}),
                            (True, {"color": "tab:green", "edgecolors": "black", "s": 40})):
        pts = [(float(r.result.metrics["val_oa"]), float(r.result.metrics["val_oa_worst_missing"]))
               for r in records if (r.trial_id in front_ids) == on_front]
        if pts:
            ax.scatter(*zip(*pts), label="Pareto front" if on_front else "trial", zorder=3,
                       **style)
    ax.set_xlabel("validation OA, all sensors")
    ax.set_ylabel("validation OA, worst sensor missing")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
