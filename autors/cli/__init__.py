"""The `autors` command line. Each verb is a module in this package with
`add_parser(subparsers)` that registers its arguments and sets `func(args) -> int`."""

from __future__ import annotations

import argparse
import importlib
import sys

from autors.errors import AutorsError

# One line per verb; the module is autors.cli.<name>.
VERBS: tuple[str, ...] = (

)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autors",
        description="Search, train, export and apply multi-sensor fusion networks for GeoTIFFs.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name in VERBS:
        importlib.import_module(f"autors.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AutorsError as err:
        # User errors: the message names the file/field and the fix; a traceback would bury it.
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
