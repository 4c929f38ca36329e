"""Smoke run of benchmarks/calibration.py (issue 21, items 1 and 4) in its `--smoke` mode: a
tiny synthetic scene, 1 epoch, 1 seed. The report must hold the temperature-scaling table and
the conformal table with numeric cells, the same-pixels statement, the ensembles/MC-dropout
section (the hook) and the three target lines; the JSON the rows with their calibration. The
figures themselves are not checked: a smoke budget is far too small to mean anything."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?( ± \d+(\.\d+)?)?( \(bound\))?$")


def _table(text: str, header_start: str) -> list[list[str]]:
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_calibration_smoke(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "calibration.py"), "--smoke", "--out",
         str(out), "--workdir", str(tmp_path / "work")],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (out / "calibration_smoke.md").read_text()
    for key in ("Command: `python ", "Machine: ", "Versions: ", "Wall time: ", "split hash `",
                "Every seed is validated (and calibrated) on the same "):
        assert key in text
    rows = _table(text, "| seed | val OA % | test OA % | T |")
    assert [r[0] for r in rows] == ["0", "**mean ± std**"]
    for r in rows:
        assert all(NUMBER.match(c) for c in r[1:]), r
    conformal = _table(text, "| alpha | nominal % | test coverage % |")
    assert [r[0] for r in conformal] == ["0.05", "0.1", "0.2"]
    for r in conformal:
        assert all(NUMBER.match(c) for c in r[:3] + r[4:]), r
    assert "### Ensembles and MC dropout (issue 21, items 2-3)" in text
    goals = re.findall(r"^- (.*): \*\*(met|NOT met)\*\*\.$", text, flags=re.MULTILINE)
    assert len(goals) == 3 and goals[0][0].startswith("test ECE after temperature scaling")
    report = json.loads((out / "calibration_smoke.json").read_text())
    (row,) = report["rows"]
    assert row["temperature"] > 0 and row["n_test"] == row["n_test_split"]
    assert [c["alpha"] for c in row["conformal"]] == [0.05, 0.1, 0.2]
    assert sum(row["reliability"]["after"]["count"]) == row["n_test"]
    assert Path(row["model_file"]).is_file()
    assert report["extra_rows"] == {"synth": []}
    assert (out / "calibration_smoke.png").stat().st_size > 1000
