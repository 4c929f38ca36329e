"""`autors search TASK.yaml`: search fusion architectures on Ray; `--resume RUN` continues a
stopped run; `--list-spaces` shows the search spaces and strategies."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from autors.cli import RUNS_DIR
from autors.cli.validate import resolve_task
from autors.data.shipped import DATA_ROOT_ENV
from autors.errors import SearchError
from autors.search.catalog import STRATEGIES, list_spaces, strategy_help
from autors.search.runfolder import RunFolder
from autors.search.tables import make_console


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search",
        help="search fusion architectures for a task (NNI strategy, trials on Ray)",
        description="Search the task's space with its strategy, running trials as Ray tasks "
        "(a private local Ray instance, or an existing cluster with --address). Writes "
        "results/runs/<name>/: trials.jsonl (appended as trials end), leaderboard.csv, "
        "progress.png, pareto.png, summary.json. The top-k architectures are retrained on "
        "several seeds and tested once at the end.",
    )
    p.add_argument("task", nargs="?", help="task YAML file (optional with --resume)")
    p.add_argument("--resume", type=Path, metavar="RUN",
                   help="continue this run folder; finished trials are never re-run. With a "
                   "task file, only budget/resource fields may differ from the run's copy")
    p.add_argument("--address", metavar="HOST:PORT",
                   help="join an existing Ray cluster (started with `ray start`) instead of "
                   "starting a local instance")
    p.add_argument("--ship-code", action="store_true",
                   help="with --address: send this autors (and fusion, search_spaces) to the "
                   "cluster's workers as the job's runtime environment instead of using the "
                   "copy installed on each node (the nodes still need torch, nni, rasterio)")
    p.add_argument("--name", help="run folder name (default: <task>-<date>-<time>)")
    p.add_argument("--out", type=Path, default=RUNS_DIR,
                   help=f"folder that holds run folders (default: {RUNS_DIR})")
    p.add_argument("--quiet", action="store_true",
                   help="one log line per trial instead of the live display")
    p.add_argument("--list-spaces", action="store_true",
                   help="list search spaces (sizes for TASK's sensors if given) and strategies")
    p.add_argument("--data-root", default=None,
                   help=f"data folder for a shipped task (default: ${DATA_ROOT_ENV})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    console = make_console()
    task = resolve_task(args.task, args.data_root) if args.task else None
    if args.list_spaces:
        where = f"for the sensors of {task.name}" if task else "for an optical + SAR task"
        console.print(f"[bold]Search spaces[/] (sizes {where}):")
        for line in list_spaces(task):
            console.print(f"  {line}", markup=False, soft_wrap=True)
        console.print("[bold]Strategies[/] (search.strategy):")
        for name in STRATEGIES:
            console.print(f"  {name:<10} {strategy_help(name)}", markup=False, soft_wrap=True)
        return 0
    if task is None and args.resume is None:
        raise SearchError("give a task file, or --resume RUN to continue a run")
    if args.resume is not None and args.name is not None:
        raise SearchError("--name names a new run; a resumed run keeps its folder")
    if args.ship_code and not args.address:
        raise SearchError("--ship-code sends the code to an existing cluster: give --address")
    # Imported here: the search stack (Ray, torch, NNI) is heavy for --list-spaces.
    from autors.search.runner import SearchOptions, run_search

    options = SearchOptions(
        out_dir=args.out, name=args.name, resume=args.resume, address=args.address,
        ship_code=args.ship_code, quiet=args.quiet,
    )
    outcome = run_search(task, options, console)
    print_result(console, RunFolder(outcome.run_dir), outcome.summary)
    return 0


def print_result(console: Console, run: RunFolder, summary: dict) -> None:
    """Leaderboard and where the files are, after a search."""
    from autors.cli.status import print_leaderboard

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
