"""Repository-level contracts: CI runs the README's command, layering rules hold, packages ship."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_test_command() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- test-command -->\s*```(?:bash|sh)?\n(.+?)\n```", text, re.DOTALL)
    assert m, "README.md must hold the test command in a fenced block after <!-- test-command -->"
    return m.group(1).strip()


def test_ci_runs_exactly_the_readme_test_command():
    ci_lines = [ln.strip() for ln in (ROOT / ".ci/run").read_text().splitlines()]
    assert _readme_test_command() in ci_lines


def test_every_declared_package_exists_and_every_package_is_declared():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for init in ROOT.glob("*/**/__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if rel.parts[0] in ("autors", "fusion", "search_spaces"):
            found.add(".".join(rel.parts))
    assert found == declared


def _importers_of(module: str) -> set[str]:
    pattern = re.compile(rf"^\s*(import {module}\b|from {module}\b)", re.MULTILINE)
    return {
        str(p.relative_to(ROOT))
        for pkg in ("autors", "fusion", "search_spaces")
        for p in (ROOT / pkg).rglob("*.py")
        if pattern.search(p.read_text())
    }


def test_nni_is_only_touched_by_the_search_adapter_and_spaces():
    offenders = {
        p for p in _importers_of("nni")
        if not p.startswith(("autors/search/", "search_spaces/"))
    }
    assert not offenders, f"nni imported outside autors/search and search_spaces: {offenders}"


def test_lower_layers_never_import_upper_layers():
    assert not {p for p in _importers_of("autors") if p.startswith(("fusion/", "search_spaces/"))}
    assert not {p for p in _importers_of("search_spaces") if p.startswith("fusion/")}


def test_cli_help_lists_every_verb():
    from autors.cli import VERBS

    out = subprocess.run(
        [sys.executable, "-m", "autors", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for verb in VERBS:
        assert verb in out


def test_every_verb_parses_its_own_help():
    from autors.cli import VERBS, build_parser

    for verb in VERBS:
        with pytest.raises(SystemExit) as exit_info:
            build_parser(verb).parse_args([verb, "--help"])
        assert exit_info.value.code == 0
