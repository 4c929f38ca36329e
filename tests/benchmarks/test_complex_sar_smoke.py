"""Smoke run of benchmarks/complex_sar.py (issue 15, complex SAR) in its `--smoke` mode: a 64 px
complex scene, 1 seed, 1 epoch, one candidate per data version. The report must hold the
models table with numeric cells and both picks, the per-class table, the same-pixels
statement and the target line; the JSON the rows. The figures are not checked."""

from __future__ import annotations

import json
import re

from smoke import NUMBER, SmokeRuns, table, uses  # tests/benchmarks (tests/conftest.py)


@uses("complex_sar")
def test_complex_sar_smoke(smoke_runs: SmokeRuns) -> None:
    out = smoke_runs.output("complex_sar")
    text = (out / "complex_sar_smoke.md").read_text()
    for key in ("Command: `python ", "Machine: ", "Versions: ", "Wall time: ", "split hash `",
                "Phase-only classes", "tested on the same "):
        assert key in text
    rows = table(text, "| model | data | picked |")
    assert [r[2] for r in rows] == ["**best complex**", "**best amplitude**"]
    for r in rows:
        assert all(NUMBER.match(c) for c in r[3:]), r
    assert len(table(text, "| class | phase-only |")) == 10
    goals = re.findall(r"^- (.*): \*\*(met|NOT met)\*\*\.$", text, flags=re.MULTILINE)
    assert len(goals) == 1 and "phase-only classes" in goals[0][0]
    report = json.loads((out / "complex_sar_smoke.json").read_text())
    assert {r["group"] for r in report["rows"]} == {"complex", "amplitude"}
    assert len({r["split_sha256"] for r in report["rows"]}) == 1
    assert (out / "complex_sar_smoke.png").stat().st_size > 1000
