"""The verbs stay apart: none imports another (shared code is in autors.cli.common), the CLI
imports only the chosen verb, and the shared module loads no heavy library."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from autors.cli import VERBS

CLI = Path(__file__).resolve().parents[2] / "autors" / "cli"
SHARED = {"autors.cli", "autors.cli.common"}  # what a verb may import from autors.cli


def _cli_imports(path: Path) -> set[str]:
    """Modules under autors.cli that `path` imports (anywhere in it, lazily too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("autors.cli")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autors.cli"):
            assert node.module is not None
            found.add(node.module)
            if node.module == "autors.cli":  # `from autors.cli import search` is a verb too
                found |= {f"autors.cli.{a.name}" for a in node.names if a.name in VERBS}
    return found


def test_every_verb_module_exists():
    assert {p.stem for p in CLI.glob("*.py")} == {"__init__", "common", *VERBS}


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_no_verb_imports_another_verb(verb):
    assert _cli_imports(CLI / f"{verb}.py") <= SHARED


def test_the_shared_module_imports_no_verb():
    assert _cli_imports(CLI / "common.py") <= {"autors.cli"}


def _modules_after(code: str) -> list[str]:
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=120)
    return json.loads(done.stdout.splitlines()[-1])


def test_the_cli_imports_only_the_chosen_verb_and_the_shared_module():
    loaded = _modules_after("from autors.cli import build_parser; build_parser('validate')")
    assert [m for m in loaded if m.startswith("autors.cli.")] == \
        ["autors.cli.common", "autors.cli.validate"]


def test_the_shared_module_is_light():
    loaded = _modules_after("import autors.cli.common")
    heavy = [m for m in ("torch", "ray", "nni", "rasterio", "autors.search") if m in loaded]
    assert not heavy, f"autors.cli.common loads {heavy}"
