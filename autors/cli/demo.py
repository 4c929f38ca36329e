"""`autors demo`: a small synthetic scene and a short real search on it, end to end.

Writes results/runs/demo-<time>/ with the scene in scene/ and the search's run files beside it
(trials.jsonl, leaderboard.csv, progress.png, pareto.png, summary.json). About 12 trials, 2 at
a time, and the top 2 retrained on 2 seeds: a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

from autors.cli.common import RUNS_DIR, print_search_result, write_run_report
from autors.config import TaskSpec, parse_task
from autors.search.progress import log_line
from autors.synth import SynthConfig, generate_scene

# The demo's budget: tiny training (the scene has ~300 training pixels) so the whole search,
# final retraining included, stays within a few minutes on 2 cores.
DEMO_TRAIN = {
    "epochs": 20, "batch_size": 32, "lr": 0.005, "early_stopping_patience": 5, "device": "cpu",
}
DEMO_SEARCH = {
    "space": "fusion",
    "strategy": "evolution",
    "concurrency": 2,
    "cpus_per_trial": 1.0,
    "trial_timeout_s": 240.0,
    "objective": "val_oa",
    "top_k": 2,
    "final_seeds": 2,
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="generate a small synthetic scene and run a short search on it",
        description="Generate the small synthetic multi-sensor scene (optical, SAR, LiDAR, "
        "hyperspectral), search fusion architectures on it (about 12 trials, 2 at a time, on "
        "a local Ray instance), retrain the best two on two seeds, test them once, and print "
        "the leaderboard and where the plots are.",
    )
    p.add_argument("--out", type=Path, default=RUNS_DIR,
                   help=f"folder for the demo run (default: {RUNS_DIR}/demo-<time>)")
    p.add_argument("--scene", type=Path, default=None,
                   help="generate the scene into this folder (default: <run>/scene)")
    p.add_argument("--trials", type=int, default=12, help="search trials (default 12)")
    p.add_argument("--seed", type=int, default=0, help="scene and search seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="log lines instead of the live display")
    p.set_defaults(func=run)


def demo_task(scene_task: Path, trials: int, seed: int) -> TaskSpec:
    """The synthetic scene's task with the demo's training and search budget."""
    data = yaml.safe_load(scene_task.read_text())
    data["seed"] = seed
    data["train"] = {**data.get("train", {}), **DEMO_TRAIN}
    data["search"] = {**DEMO_SEARCH, "max_trials": trials}
    return parse_task(data, scene_task)


def run(args: argparse.Namespace) -> int:
    from autors.search.runner import SearchOptions, run_search
    from autors.search.search_folder import SearchFolder
    from autors.search.tables import make_console

    console = make_console()
    t0 = time.monotonic()
    name = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = args.out / name
    scene_dir = args.scene if args.scene is not None else run_dir / "scene"
    log_line(console, f"generating the small synthetic scene in {scene_dir}")
    info = generate_scene(scene_dir, SynthConfig.small(seed=args.seed))
    task = demo_task(info.files["task"], args.trials, args.seed)
    options = SearchOptions(out_dir=args.out, name=name, quiet=args.quiet)
    outcome = run_search(task, options, console)
    print_search_result(console, SearchFolder(outcome.run_dir), outcome.summary)
    write_run_report(console, outcome.run_dir)
    console.print(f"demo finished in {time.monotonic() - t0:.0f} s; the scene's task file is "
                  f"{info.files['task']} (try: autors search {info.files['task']})")
    return 0
