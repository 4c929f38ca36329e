"""`autors status RUN`: progress and leaderboard of a running or finished search (reads the
run folder's files only; never starts Ray or changes a file)."""

from __future__ import annotations

import argparse
import os
import socket
import time
from collections import Counter
from pathlib import Path

from autors.cli.common import print_leaderboard
from autors.search.records import TrialRecord
from autors.search.report import arch_summary, best, counts
from autors.search.search_folder import SearchFolder
from autors.search.tables import make_console


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "status",
        help="show the progress and leaderboard of a search run",
        description="Read a run folder (results/runs/<name>) and print whether it is running, "
        "how far it got, the best architecture and the leaderboard (with the node that ran "
        "each trial). Works while the search runs.",
    )
    p.add_argument("run", type=Path, help="run folder")
    p.add_argument("--top", type=int, default=15, help="leaderboard rows to show (default 15)")
    p.add_argument("--all", action="store_true", help="show every trial")
    p.set_defaults(func=run)


def run_state_text(state: dict) -> str:
    """'running (pid N)', 'finished', or why a 'running' run is not actually running."""
    status = state.get("status", "?")
    sessions = state.get("sessions") or []
    if status != "running" or not sessions:
        return status
    last = sessions[-1]
    if last.get("host") != socket.gethostname():
        return f"running on {last.get('host')} (last update {state.get('updated')})"
    pid = last.get("pid")
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, TypeError, ValueError):
        return (
            f"stopped: its process (pid {pid}) is gone without finishing; continue with "
            "`autors search --resume` on this folder"
        )
    except PermissionError:
        pass
    return f"running (pid {pid})"


def nodes_text(records: list[TrialRecord]) -> str:
    """'Nodes 127.0.0.2 (3 trials), 127.0.0.3 (2 trials); re-run after a worker or node died:
    trial 4'. A trial that never came back from its node has no node ('?')."""
    per_node = Counter(r.result.node or "?" for r in records)
    shown = ", ".join(f"{node} ({n} trial{'s' if n > 1 else ''})"
                      for node, n in sorted(per_node.items()))
    rerun = [str(r.trial_id) for r in records if r.result.extra.get("attempt", 0)]
    if rerun:
        shown += (f"; re-run after a worker or node died: trial{'s' if len(rerun) > 1 else ''} "
                  + ", ".join(rerun))
    return f"Nodes {shown}"


def run(args: argparse.Namespace) -> int:
    console = make_console()
    folder = SearchFolder.open(args.run)
    state = folder.read_state()
    task = folder.load_task()
    records, warning = folder.read_trials(repair=False)
    c = counts(records)
    console.print(f"[bold]Run[/] {folder.path}  task {state.get('task_name')}  "
                  f"space {state.get('space')}  strategy {state.get('strategy')}  "
                  f"seed {state.get('seed')}")
    console.print(f"[bold]State[/] {run_state_text(state)}")
    if warning:
        console.print(f"[yellow]warning:[/] {warning}")
    total = state.get("max_trials") or task.search.max_trials
    running = state.get("running") or []
    elapsed = float(state.get("elapsed_s") or 0.0)
    console.print(
        f"[bold]Progress[/] {c['finished']}/{total if total else '?'} trials finished, "
        f"{len(running)} running{(' ' + str(running)) if running else ''}, {c['failed']} failed, "
        f"{c['timeout']} timed out, {c['infeasible']} infeasible"
        + (f", {c['over_limit']} proposals over a params/FLOPs limit (not trained)"
           if c["over_limit"] else "")
        + "; search time "
        f"{time.strftime('%H:%M:%S', time.gmtime(elapsed))}"
        + (f" of {task.search.max_minutes:g} min" if task.search.max_minutes else "")
    )
    top = best(records)
    objective = state.get("objective", task.search.objective)
    if top is not None:
        console.print(
            f"[bold]Best[/] trial {top.trial_id}: {objective}="
            f"{float(top.result.metrics[objective]):.4f}  {arch_summary(top.result.arch)}",
            markup=True,
        )
    if records:
        console.print(nodes_text(records), markup=False)
    print_leaderboard(console, folder, None if args.all else args.top)
    return 0
