"""Rich tables of run results (shared by `autors search`, `autors status`, `autors demo`)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

# Rich assumes 80 columns when output goes to a file or pipe; tables of architectures are
# unreadable folded that narrow.
NON_TERMINAL_WIDTH = 200


def make_console() -> Console:
    """The CLI's console: terminal width on a terminal, wide lines in logs and pipes."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else NON_TERMINAL_WIDTH)


def fmt_count(n: int) -> str:
    """12345 -> '12.3k'."""
    return f"{n / 1e6:.2f}M" if n >= 1e6 else (f"{n / 1e3:.1f}k" if n >= 1e3 else str(n))


def leaderboard_table(
    rows: list[dict], objective: str, limit: int | None = 10, node_column: bool | None = None
) -> Table:
    """A rich table of leaderboard rows (report.leaderboard_rows), best first.

    `node_column`: show which node ran each trial (None: only when trials ran on several).
    """
    metric = objective.removeprefix("val_")
    has_test = any(r.get(f"test_{metric}_mean") != "" for r in rows)
    # Which node ran each trial matters on a cluster; on one machine it is noise.
    has_node = (len({r.get("node") for r in rows if r.get("node")}) > 1
                if node_column is None else node_column)
    table = Table(show_lines=False, pad_edge=False, box=None, header_style="bold")
    for col in ("#", "trial", "status", objective, "params", "ms"):
        table.add_column(col, justify="left" if col == "status" else "right", no_wrap=True)
    if has_test:
        table.add_column(f"test {metric} ±std", justify="right", no_wrap=True)
    if has_node:
        table.add_column("node", no_wrap=True)
    table.add_column("architecture")  # wraps on narrow terminals
    for row in rows[:limit] if limit else rows:
        status = row["status"] if row["feasible"] or row["status"] != "ok" else "infeasible"
        style = {"ok": "", "infeasible": "yellow", "over_limit": "yellow",
                 "stopped": "dim", "promoted": "dim"}.get(status, "red")  # stopped: by a scheduler
        value = row[objective]
        cells = [
            str(row["rank"]), str(row["trial_id"]), status,
            f"{value:.4f}" if value != "" else "-",
            fmt_count(row["params"]) if row["params"] != "" else "-",
            f"{row['latency_ms']:.2f}" if row["latency_ms"] != "" else "-",
        ]
        if has_test:
            mean, std = row[f"test_{metric}_mean"], row[f"test_{metric}_std"]
            cells.append(f"{mean:.4f}±{std:.4f} n={row['test_runs']}" if mean != "" else "")
        if has_node:
            runs = int(row.get("attempts") or 1)
            cells.append((str(row["node"]) or "-") + (f" (run {runs})" if runs > 1 else ""))
        cells.append(row["arch"] if row["status"] in ("ok", "stopped", "promoted")
                     else row["reason"] or row["arch"])
        table.add_row(*cells, style=style)
    return table
