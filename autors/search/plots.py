"""progress.png and pareto.png of a run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from autors.search.records import TrialRecord


def _best_so_far(values: list[float | None]) -> list[float | None]:
    out, best = [], None
    for v in values:
        if v is not None and (best is None or v > best):
            best = v
        out.append(best)
    return out


def plot_progress(records: list[TrialRecord], objective: str, path: Path) -> None:
    """Best feasible objective so far against trial count and against search wall time."""
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
        failed = [xi for xi, r in zip(x, recs) if not r.ok]
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


def plot_pareto(
    records: list[TrialRecord], front: list[TrialRecord], objective: str, path: Path
) -> None:
    """Objective against parameters and against latency; the Pareto front marked. When the
    trials measured it (robust objective or constraint), a third panel: clean validation OA
    against the worst OA with one sensor removed."""
    ok = [r for r in records if r.ok and r.result.cost is not None]
    front_ids = {r.trial_id for r in front}
    robust = [r for r in ok if "val_oa_worst_missing" in r.result.metrics]
    fig, axes = plt.subplots(1, 3 if robust else 2, figsize=(15 if robust else 10, 3.8))
    if robust:
        _plot_robust(axes[2], robust, front_ids)
    for ax, attr, label in (
        (axes[0], "params", "parameters"),
        (axes[1], "latency_ms_b1", "CPU latency, batch 1 (ms)"),
    ):
        for feasible, style in ((True, {"color": "tab:blue"}),
                                (False, {"facecolors": "none", "edgecolors": "tab:orange"})):
            pts = [
                (getattr(r.result.cost, attr), float(r.result.metrics[objective]))
                for r in ok
                if r.feasible == feasible and r.trial_id not in front_ids
            ]
            if pts:
                ax.scatter(*zip(*pts), s=16, alpha=0.6,
                           label="feasible" if feasible else "infeasible", **style)
        fpts = sorted(
            (getattr(r.result.cost, attr), float(r.result.metrics[objective])) for r in front
        )
        if fpts:
            ax.scatter(*zip(*fpts), s=40, color="tab:green", edgecolors="black",
                       label="Pareto front (metric, params, latency)", zorder=3)
        if ok and all(getattr(r.result.cost, attr) > 0 for r in ok):
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[1].sharey(axes[0])
    axes[0].set_ylabel(objective)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("accuracy against cost")
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
