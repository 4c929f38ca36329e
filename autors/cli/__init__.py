"""The `autors` command line.

Each verb is a module `autors.cli.<verb>` with `add_parser(subparsers)` that registers its
arguments and sets `func(args) -> int`. Only the chosen verb's module is imported: verbs pull in
torch, rasterio, NNI or Ray, and one verb's imports must neither slow down nor break another.
Verbs never import each other: what several need is in `autors.cli.common`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from autors.errors import AutorsError

# verb -> one-line help shown by `autors --help` (the verb's module is not imported for it).
VERBS: dict[str, str] = {
    "synth": "generate a synthetic multi-sensor scene with a ready-to-run task file",
    "validate": "check a task file: load and align every raster, make the splits, summarise",
    "train": "train one architecture (baseline name or arch.json) and write a run folder",
    "search": "search fusion architectures for a task (NNI strategy on a Ray engine)",
    "status": "show the leaderboard and progress of a running or finished search",
    "report": "write report.html: a self-contained page of a search or train run folder",
    "demo": "synthetic scene + short search + leaderboard, in a few minutes",
    "export": "export a trained model: arch.json, weights, TorchScript, ONNX, model card",
    "predict": "apply an exported model to GeoTIFFs: class map and confidence map",
}


def _chosen_verb(argv: list[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in VERBS else None
    return None


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The full parser for `verb` (others are listed by name and help only)."""
    parser = argparse.ArgumentParser(
        prog="autors",
        description="Search, train, export and apply multi-sensor fusion networks for GeoTIFFs.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, help_text in VERBS.items():
        if name == verb:
            importlib.import_module(f"autors.cli.{name}").add_parser(sub)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def user_errors() -> tuple[type[Exception], ...]:
    """What the CLI reports as a user error: AutorsError, and fusion's ArchError (an invalid
    architecture; fusion sits below autors, so it is not an AutorsError). fusion is looked up,
    not imported: importing it loads torch, and an ArchError implies fusion was loaded."""
    fusion = sys.modules.get("fusion")
    return (AutorsError,) if fusion is None else (AutorsError, fusion.ArchError)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_chosen_verb(argv)).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except user_errors() as err:
        # User errors: the message names the file/field and the fix; a traceback would bury it.
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
