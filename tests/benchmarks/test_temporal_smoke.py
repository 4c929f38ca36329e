"""Smoke run of benchmarks/temporal.py (issue 15, time series) in its `--smoke` mode: a 64 px
series of 4 dates, 1 seed, 1 epoch, one candidate per group, two search trials (one of them
the finalist). The report must hold the models table with numeric cells and both picks, the
trials table (both rungs), the per-class table, the same-pixels statement and both target lines; the JSON the rows. The figures are not
checked."""

from __future__ import annotations

import json
import re

from smoke import NUMBER, SmokeRuns, table, uses  # tests/benchmarks (tests/conftest.py)


@uses("temporal")
def test_temporal_smoke(smoke_runs: SmokeRuns) -> None:
    out = smoke_runs.output("temporal")
    text = (out / "temporal_smoke.md").read_text()
    for key in ("Command: `python ", "Machine: ", "Versions: ", "Wall time: ", "split hash `",
                "time-only (they differ only in timing)", "tested on the same "):
        assert key in text
    rows = table(text, "| model | group | picked |")
    assert {r[1] for r in rows} == {"single", "temporal", "baseline", "searched"}
    assert [r[2] for r in rows].count("**best single-date**") == 1
    assert [r[2] for r in rows].count("**best temporal**") == 1
    for r in rows:
        assert all(NUMBER.match(c) for c in r[3:]), r
    trials = table(text, "| trial |")
    assert len(trials) == 2 and sum(bool(r[5]) for r in trials) == 1  # 1 finalist
    assert len(table(text, "| class | time-only |")) == 8
    goals = re.findall(r"^- (.*): \*\*(met|NOT met)\*\*\.$", text, flags=re.MULTILINE)
    assert len(goals) == 2 and "time-only classes" in goals[0][0]
    report = json.loads((out / "temporal_smoke.json").read_text())
    assert len({r["split_sha256"] for r in report["rows"]}) == 1
    assert (out / "temporal_smoke.png").stat().st_size > 1000
