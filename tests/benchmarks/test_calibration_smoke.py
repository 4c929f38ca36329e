"""Smoke run of benchmarks/calibration.py (issue 21, items 1 and 4) in its `--smoke` mode: a
tiny synthetic scene, 1 epoch, 1 seed. The report must hold the temperature-scaling table and
the conformal table with numeric cells, the same-pixels statement, the ensembles/MC-dropout
section (the hook) and the three target lines; the JSON the rows with their calibration. The
figures themselves are not checked: a smoke budget is far too small to mean anything."""

from __future__ import annotations

import json
import re
from pathlib import Path

from smoke import NUMBER, SmokeRuns, table, uses  # tests/benchmarks (tests/conftest.py)

BOUND = re.compile(NUMBER.pattern.removesuffix("$") + r"( \(bound\))?$")  # "0.05 (bound)"


@uses("calibration")
def test_calibration_smoke(smoke_runs: SmokeRuns) -> None:
    out = smoke_runs.output("calibration")
    text = (out / "calibration_smoke.md").read_text()
    for key in ("Command: `python ", "Machine: ", "Versions: ", "Wall time: ", "split hash `",
                "Every seed is validated (and calibrated) on the same "):
        assert key in text
    rows = table(text, "| seed | val OA % | test OA % | T |")
    assert [r[0] for r in rows] == ["0", "**mean ± std**"]
    for r in rows:
        assert all(BOUND.match(c) for c in r[1:]), r
    conformal = table(text, "| alpha | nominal % | test coverage % |")
    assert [r[0] for r in conformal] == ["0.05", "0.1", "0.2"]
    for r in conformal:
        assert all(BOUND.match(c) for c in r[:3] + r[4:]), r
    assert "[uncertainty.md](uncertainty.md)" in text
    goals = re.findall(r"^- (.*): \*\*(met|NOT met)\*\*\.$", text, flags=re.MULTILINE)
    assert len(goals) == 3 and goals[0][0].startswith("test ECE after temperature scaling")
    report = json.loads((out / "calibration_smoke.json").read_text())
    (row,) = report["rows"]
    assert row["temperature"] > 0 and row["n_test"] == row["n_test_split"]
    assert [c["alpha"] for c in row["conformal"]] == [0.05, 0.1, 0.2]
    assert sum(row["reliability"]["after"]["count"]) == row["n_test"]
    assert Path(row["model_file"]).is_file()
    assert (out / "calibration_smoke.png").stat().st_size > 1000
