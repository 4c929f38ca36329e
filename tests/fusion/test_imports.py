"""fusion is the bottom layer: it imports torch and the standard library only."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import fusion

FORBIDDEN = ("nni", "ray", "rasterio", "yaml", "autors", "search_spaces")


def test_importing_fusion_pulls_no_upper_layer_or_heavy_package() -> None:
    code = (
        "import json, sys; import fusion; "
        f"print(json.dumps([m for m in {list(FORBIDDEN)!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_fusion_sources_import_only_torch_and_stdlib() -> None:
    allowed = set(sys.stdlib_module_names) | {"torch", "fusion", "__future__"}
    bad = []
    for path in sorted(Path(fusion.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            bad += [f"{path.name}: {n}" for n in names if n.split(".")[0] not in allowed]
    assert not bad, f"fusion may import torch and the standard library only: {bad}"
