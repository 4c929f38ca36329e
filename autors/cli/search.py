"""`autors search TASK.yaml`: search fusion architectures on Ray; `--resume RUN` continues a
stopped run; `--list-spaces` shows the search spaces and strategies."""

from __future__ import annotations

import argparse
from pathlib import Path

from autors.cli.common import (
    RUNS_DIR,
    TASK_HELP,
    add_task_options,
    print_search_result,
    task_from_args,
    write_run_report,
)
from autors.config import load_task
from autors.errors import SearchError
from autors.search.catalog import STRATEGIES, list_spaces, strategy_help
from autors.search.search_folder import SearchFolder
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
    p.add_argument("task", nargs="?", help=f"{TASK_HELP}; optional with --resume")
    p.add_argument("--resume", type=Path, metavar="RUN",
                   help="continue this run folder; finished trials are never re-run. With a "
                   "task file or --set, only budget/resource fields may differ from the run's "
                   "copy (--set without a task file changes the run's copy)")
    p.add_argument("--address", metavar="HOST:PORT",
                   help="join an existing Ray cluster (started with `ray start`) instead of "
                   "starting a local instance")
    p.add_argument("--ship-code", action="store_true",
                   help="with --address: send this autors (and fusion, search_spaces, the "
                   "task's plugins) to the "
                   "cluster's workers as the job's runtime environment instead of using the "
                   "copy installed on each node (the nodes still need torch, nni, rasterio)")
    p.add_argument("--name", help="run folder name (default: <task>-<date>-<time>)")
    p.add_argument("--out", type=Path, default=RUNS_DIR,
                   help=f"folder that holds run folders (default: {RUNS_DIR})")
    p.add_argument("--quiet", action="store_true",
                   help="one log line per trial instead of the live display")
    p.add_argument("--list-spaces", action="store_true",
                   help="list search spaces (sizes for TASK's sensors if given) and strategies")
    add_task_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    console = make_console()
    if args.task:
        task = task_from_args(args)
    elif args.resume is not None and args.overrides:
        # --set on the run's own task copy; the runner then allows budget/resource changes only
        task = load_task(SearchFolder.open(args.resume).task_file, args.overrides)
    else:
        task = None
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
    print_search_result(console, SearchFolder(outcome.run_dir), outcome.summary)
    write_run_report(console, outcome.run_dir)
    return 0
