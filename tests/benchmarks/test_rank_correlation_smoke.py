"""Smoke run of benchmarks/rank_correlation.py (issue 17) in its `--smoke` mode: the tiny
synthetic scene, 5 architectures trained stand-alone for 1 epoch, one supernet trained for 2
epochs and every architecture scored with inherited weights. The report must state both
Kendall taus with their intervals and costs, the target met / NOT met and a verdict; the
figures themselves are not checked (5 architectures on 32 validation pixels)."""

from __future__ import annotations

import json
import re

from smoke import NUMBER, SmokeRuns, table, uses  # tests/benchmarks


@uses("rank_correlation")
def test_rank_correlation_smoke(smoke_runs: SmokeRuns) -> None:
    out = smoke_runs.output("rank_correlation")
    text = (out / "rank_correlation_smoke.md").read_text()
    for key in ("Command: `python ", "Machine: ", "Versions: ", "Wall time: ", "split hash `"):
        assert key in text
    rows = table(text, "| dataset | ranking by | Kendall tau |")
    assert [r[1].split(" (")[0] for r in rows] == ["supernet", "first epoch"]
    for r in rows:
        assert NUMBER.match(r[2]) and -1.0 <= float(r[2]) <= 1.0, r
        assert re.match(r"^\[-?[\d.]+, -?[\d.]+\]$", r[3]) and NUMBER.match(r[5]), r
    assert re.search(r"Target \"supernet tau > 0.3 and above the first rung's at no more "
                     r"cost\": \*\*(met|NOT met)\*\*", text)
    assert "**Verdict: " in text
    report = json.loads((out / "rank_correlation_smoke.json").read_text())
    synth = report["datasets"]["synth"]
    assert len(synth["rows"]) == 5 and len(synth["supernet"]["scores"]) == 5
    assert all(len(r["epoch_val_oa"]) == 1 for r in synth["rows"])
    assert (out / "rank_correlation_smoke.png").stat().st_size > 1000
