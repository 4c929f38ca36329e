"""Repository-level contracts: CI runs the README's command, layering rules hold, packages ship."""

from __future__ import annotations

import ast
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


def test_optuna_is_only_touched_by_its_adapter():
    assert _importers_of("optuna") == {"autors/search/optuna_adapter.py"}


def test_lower_layers_never_import_upper_layers():
    assert not {p for p in _importers_of("autors") if p.startswith(("fusion/", "search_spaces/"))}
    assert not {p for p in _importers_of("search_spaces") if p.startswith("fusion/")}


# Layers inside autors/, lowest first: a module may import its own package and lower layers.
# Rank 0 is the top-level modules (config, errors, files, ...): what every layer shares.
# synth (the synthetic scene generator) sits beside data: it reads and writes GeoTIFFs, and
# only the CLI (demo, synth) and the benchmarks use it. report (report.html, quicklooks) sits
# beside export: both read search and train folders, neither needs the other.
AUTORS_LAYERS = [("data", "synth"), ("training",), ("search",), ("export", "report"), ("cli",)]


def _layer(module: str) -> tuple[int, str]:
    """(rank, group) of an autors module: `autors.search.pool` -> (3, "search");
    `autors.config` -> (0, "") and `autors.__main__` -> the CLI's layer."""
    parts = module.split(".")
    pkg = "cli" if parts[1:] == ["__main__"] else (parts[1] if len(parts) > 1 else "")
    for rank, group in enumerate(AUTORS_LAYERS, start=1):
        if pkg in group:
            return rank, pkg
    return 0, ""


def _module_name(path: Path) -> str:
    """`autors/search/pool.py` -> `autors.search.pool`; a package's __init__ -> the package."""
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _autors_imports(source: str, module: str, is_package: bool) -> set[str]:
    """Every autors module that the code `source` of `module` imports, at module level or
    inside functions (lazy imports count: they run too), relative imports resolved."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join([*parts, *([node.module] if node.module else [])])
            found.add(base)
            # `from autors import data` / `from . import loop` may name modules
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m.split(".")[0] == "autors"}


def test_autors_imports_only_point_down_its_layers():
    """data / synth <- training <- search <- export / report <- cli, each above the shared
    top-level modules; a package never imports another of its own layer or one above (lazy
    imports included)."""
    offenders = []
    for path in sorted((ROOT / "autors").rglob("*.py")):
        module = _module_name(path)
        rank, group = _layer(module)
        for target in sorted(_autors_imports(path.read_text(), module,
                                             path.name == "__init__.py")):
            t_rank, t_group = _layer(target)
            if t_rank > rank or (t_rank == rank and t_group != group):
                offenders.append(f"{module} imports {target}")
    assert not offenders, "imports against the layer order (" + " <- ".join(
        "/".join(g) for g in AUTORS_LAYERS) + "):\n" + "\n".join(offenders)


def test_the_layer_check_sees_lazy_and_relative_imports():
    """The check above would be vacuous if the parser missed an import form."""
    src = ("from . import loop\nfrom ..search import pool\nfrom autors import export\n"
           "def f():\n    import autors.cli.train\n")
    found = _autors_imports(src, "autors.training.probe", is_package=False)
    assert {"autors.training.loop", "autors.search.pool", "autors.export",
            "autors.cli.train"} <= found
    assert "autors.search" in _autors_imports("from .. import search", "autors.data", True)
    assert _layer("autors.search.pool") == (3, "search") and _layer("autors.config") == (0, "")
    assert _layer("autors.__main__")[0] == _layer("autors.cli")[0] == len(AUTORS_LAYERS)
    assert _layer("autors")[0] == 0  # `import autors` (__version__) is the shared top level


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


def test_the_trial_path_imports_no_search_machinery() -> None:
    """A Ray worker imports the trial path at warm-up: NNI (via search_spaces), Lightning and
    the search package would cost seconds per worker and belong to the driver."""
    code = ("import sys, autors.training.trial, autors.data; "
            "print(sorted(m for m in ('nni', 'pytorch_lightning', 'search_spaces', "
            "'autors.search') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout
