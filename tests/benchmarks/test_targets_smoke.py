"""Smoke run of benchmarks/targets.py (issue 16) in its `--smoke` mode: a tiny synthetic
scene, 1 epoch, 1 searched architecture per task, 1 seed, in one process. The report must hold the table of
the multi-task, class-only and height-only models with numeric cells on shared test pixels and
every target line; the JSON its searches and rows. The figures themselves are not checked: a
smoke budget is far too small to mean anything."""

from __future__ import annotations

import json
import re

from smoke import NUMBER, SmokeRuns, table, uses  # tests/benchmarks (tests/conftest.py)


@uses("targets")
def test_targets_smoke(smoke_runs: SmokeRuns) -> None:
    out = smoke_runs.output("targets")
    text = (out / "targets_smoke.md").read_text()
    for key in ("Command: `python ", "Machine: ", "Versions: ", "Wall time: ",
                "test pixels every row shares"):
        assert key in text
    rows = table(text, "| task | model | FLOPs/sample |")
    assert [(r[0], r[1]) for r in rows] == [("classes", "searched"), ("height", "searched"),
                                            ("multi", "searched")]
    multi = rows[2]
    assert all(NUMBER.match(c) for c in multi[2:]), multi  # both targets, coverage included
    goals = re.findall(r"^- (.*) — \*\*(met|NOT met)\*\*$", text, flags=re.MULTILINE)
    assert len(goals) == 7 and "FLOPs" in goals[2][0]
    report = json.loads((out / "targets_smoke.json").read_text())
    assert set(report["searches"]) == {"synth/multi", "synth/classes", "synth/height"}
    assert all("heads" in r["arch"] for r in report["rows"] if r["task"] == "multi")
    assert (out / "targets_smoke.png").stat().st_size > 1000
