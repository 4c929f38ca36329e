"""Smoke run of benchmarks/search_efficiency.py (issue 17) in its `--smoke` mode: the tiny
synthetic scene, 3 epochs (rungs 1/3), full-training evolution (2 trials) against ASHA + random
(3 sampled architectures), one seed, through the real `run_search`. The report must hold the
core-hours table with numeric cells, the reach definition and the target stated met / NOT met;
the JSON must hold each row's anytime curve and the rungs ASHA ran."""

from __future__ import annotations

import json
import re

from smoke import SmokeRuns, table, uses  # tests/benchmarks


@uses("search_efficiency")
def test_search_efficiency_smoke(smoke_runs: SmokeRuns) -> None:
    out = smoke_runs.output("search_efficiency")
    text = (out / "search_efficiency_smoke.md").read_text()
    for key in ("Command: `python ", "Machine: ", "Versions: ", "Wall time: ", "hash `",
                "selection never sees test", "rungs 1/3 epochs", "Kendall tau",
                "Load caveat"):
        assert key in text, key
    rows = table(text, "| row | final incumbent test OA % (per seed) |")
    assert [r[0] for r in rows] == ["evolution", "asha_random"]
    for r in rows:
        assert float(r[2]) > 0, r  # core-minutes used
    assert re.search(r"Target \"asha_random reaches within 0\.5 OA points of full-training "
                     r"evolution's final test OA with at most 1/3 of its core-hours\" on synth: "
                     r"\*\*(met|NOT met)\*\*", text)
    report = json.loads((out / "search_efficiency_smoke.json").read_text())
    evo, asha = report["rows"]
    assert evo["complete"] == 2 and asha["trained"] == 3
    assert asha["stopped"] == 2 and asha["promoted"] == 1  # 3 at rung 0 -> the top 1 goes on
    hours = [p[0] for p in asha["curve"]]
    assert hours == sorted(hours) and hours[-1] == asha["core_h"] > 0
    assert asha["curve"][-1][3] == asha["epochs"] == 3 + 1 * 2  # 3 at rung 0, one on to 3
    assert (out / "search_efficiency_smoke.png").stat().st_size > 1000
