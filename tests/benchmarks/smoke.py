"""What the benchmark smoke tests share: run a script in its `--smoke` mode, read a report's
markdown tables, tell a numeric cell."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?( ± \d+(\.\d+)?)?$")


def run_smoke(script: str, tmp_path: Path, *extra: str) -> Path:
    """Run `benchmarks/<script> --smoke` into `tmp_path / "out"` (returned); fails the test
    with the script's stderr when it fails."""
    out = tmp_path / "out"
    # Ray's socket paths must fit AF_UNIX's ~107 characters: pytest's tmp_path is too deep.
    ray_tmp = tempfile.mkdtemp(prefix="rb", dir="/tmp")
    env = dict(os.environ, OMP_NUM_THREADS="1", RAY_TMPDIR=ray_tmp)
    try:
        proc = subprocess.run(
            [sys.executable, str(BENCH / script), "--smoke", "--out", str(out),
             "--workdir", str(tmp_path / "work"), *extra],
            check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def table(text: str, header_start: str) -> list[list[str]]:
    """Data rows of the first markdown table whose header begins with `header_start`."""
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows
