"""What the verbs share: the default runs folder, the task arguments (a task file or shipped
task, `--data-root`, `--set`), and the leaderboard printing of `search`, `status` and `demo`.

Verbs import this module and `autors.cli`, never each other. It stays light: at module level it
imports only the standard library and `autors.config` (no torch, Ray, NNI or rasterio), so
importing it costs a verb nothing; the search modules are imported inside the functions.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from autors.config import DATA_ROOT_ENV, TaskSpec, resolve_task, shipped_task_names

if TYPE_CHECKING:
    from rich.console import Console

    from autors.search.search_folder import SearchFolder

RUNS_DIR = Path("results") / "runs"  # where run folders go unless a verb is told otherwise

TASK_HELP = f"a task YAML file, or the name of a shipped task ({', '.join(shipped_task_names())})"


def add_task_options(p: argparse.ArgumentParser) -> None:
    """`--data-root` and the repeatable `--set KEY.PATH=VALUE` (the task argument itself is
    the verb's: its help and whether it is optional differ)."""
    p.add_argument("--data-root", default=None,
                   help=f"data folder for a shipped task (default: ${DATA_ROOT_ENV})")
    p.add_argument("--set", action="append", default=[], dest="overrides",
                   metavar="KEY.PATH=VALUE",
                   help="override a task-file field, e.g. --set train.epochs=3 or --set "
                   "sensors.s1.bands=[1,2] (VALUE is read as YAML; repeatable, a later one "
                   "wins; checked like the file; relative paths are relative to the current "
                   "folder); the run folder's task.yaml holds the result")


def task_from_args(args: argparse.Namespace) -> TaskSpec:
    """The task named by `args.task` (file path or shipped name) with `--data-root` and every
    `--set` applied."""
    return resolve_task(args.task, args.data_root, args.overrides)


def print_leaderboard(console: Console, run: SearchFolder, limit: int | None) -> None:
    """The leaderboard of a search run folder (trials, then final test results when present);
    `limit` rows at most, with a pointer to the CSV for the rest."""
    from autors.search.report import final_stats, leaderboard_rows, retrained
    from autors.search.tables import leaderboard_table

    state = run.read_state()
    task = run.load_task()
    records, _ = run.read_trials(repair=False)
    rows_final, _ = run.read_final(repair=False)
    finals = final_stats(rows_final, retrained(records, rows_final)) if rows_final else []
    rows = leaderboard_rows(records, finals)
    objective = state.get("objective", task.search.objective)
    if not rows:
        console.print("no finished trial yet")
        return
    # On a cluster (--address) every trial's node is shown, even if all ran on one node.
    on_cluster = any(s.get("cluster", {}).get("mode") == "address"
                     for s in state.get("sessions", []))
    console.print(leaderboard_table(rows, objective, limit, node_column=on_cluster or None))
    if limit and len(rows) > limit:
        console.print(f"... {len(rows) - limit} more in {run.leaderboard_file}")


def print_search_result(console: Console, run: SearchFolder, summary: dict) -> None:
    """Leaderboard, counts and where the files are, after a search."""
    print_leaderboard(console, run, limit=10)
    counts = summary.get("counts", {})
    console.print(
        f"{counts.get('finished', 0)} trials ({counts.get('failed', 0)} failed, "
        f"{counts.get('timeout', 0)} timed out, {counts.get('infeasible', 0)} infeasible) in "
        f"{summary.get('wall_s', {}).get('search_s', 0):.0f} s"
    )
    console.print(f"run folder: {run.path}")
    console.print(f"  leaderboard {run.leaderboard_file}")
    console.print(f"  plots       {run.progress_png}, {run.pareto_png}")
    console.print(f"  summary     {run.summary_file}")


def write_run_report(console: Console, run_dir: Path) -> None:
    """Write the run folder's report.html at the end of a verb (`autors.report`). The run is
    done and kept whatever happens here: a page that cannot be written is a warning naming
    the error, and `autors report RUN` writes it again."""
    from autors.report import write_report

    try:
        path = write_report(run_dir)
    except Exception as err:  # noqa: BLE001 - a finished run must not fail over its page
        console.print(f"warning: report.html not written ({type(err).__name__}: {err}); "
                      f"retry with `autors report {run_dir}`", markup=False)
        return
    console.print(f"  report      {path}", markup=False)
