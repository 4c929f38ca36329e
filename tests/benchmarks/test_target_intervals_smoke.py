"""Smoke run of benchmarks/target_intervals.py in its `--smoke` mode: the synthetic height
task of targets.py's recorded winners, 1 epoch, 1 seed, in one process. The report must hold
a numeric row of nominal and calibrated coverage and its four target lines; the JSON the
fitted factors. The figures themselves are not checked (a smoke budget means nothing)."""

from __future__ import annotations

import json
import re

from smoke import NUMBER, SmokeRuns, table, uses  # tests/benchmarks (tests/conftest.py)


@uses("target_intervals")
def test_target_intervals_smoke(smoke_runs: SmokeRuns) -> None:
    out = smoke_runs.output("target_intervals")
    text = (out / "target_intervals_smoke.md").read_text()
    rows = table(text, "| dataset | task | target |")
    assert [r[:3] for r in rows] == [["synth", "height", "height"]]
    assert all(NUMBER.match(c) for c in rows[0][3:]), rows[0]
    goals = re.findall(r"^- (.*) — \*\*(met|NOT met)\*\*$", text, flags=re.MULTILINE)
    assert len(goals) == 4 and sum("calibrated" in g[0] for g in goals) == 2
    report = json.loads((out / "target_intervals_smoke.json").read_text())
    fitted = report["rows"][0]["intervals"]
    assert 0 < fitted["z68"] <= fitted["z95"] and fitted["n"] > 0
    assert (out / "target_intervals_smoke.png").stat().st_size > 1000
