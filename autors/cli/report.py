"""`autors report RUN`: write RUN/report.html, one self-contained page (opens offline) of a
search's or a trained model's run folder (`autors.report`). `autors search`, `autors demo` and
`autors train` write it at their end too."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="write report.html: a self-contained page of a search or train run folder",
        description="Read a run folder (a search's, or one `autors train` run's) and write "
        "RUN/report.html: the task (sensors, bands, classes, split sizes, thumbnails), the "
        "search's progress and Pareto front with hover details, a sortable leaderboard, "
        "architecture diagrams of the top models, the final models' per-class metrics, "
        "confusion matrix, reliability and robustness, and the provenance. One file with its "
        "pictures inside: it opens offline. Works while a search runs.",
    )
    p.add_argument("run", type=Path, help="run folder (results/runs/<name>)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from autors.report import write_report  # imports torch (architectures): not for --help

    print(f"report {write_report(args.run)}")
    return 0
