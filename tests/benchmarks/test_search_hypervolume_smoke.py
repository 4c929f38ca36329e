"""Smoke run of benchmarks/search_hypervolume.py (issue 23) in its `--smoke` mode: the tiny
synthetic scene, 1 epoch, 4 trials, random and Optuna NSGA-II, one seed, through the real
`run_search`. The report must hold the hypervolume table with numeric cells, the reference
point and the target lines stated met / NOT met; the figures themselves are not checked."""

from __future__ import annotations

import json
import re

from smoke import NUMBER, SmokeRuns, table, uses  # tests/benchmarks


@uses("search_hypervolume")
def test_search_hypervolume_smoke(smoke_runs: SmokeRuns) -> None:
    out = smoke_runs.output("search_hypervolume")
    text = (out / "search_hypervolume_smoke.md").read_text()
    for key in ("Command: `python ", "Machine: ", "Versions: ", "Wall time: ", "hash `",
                "reference point 1.1 per objective = val OA "):
        assert key in text
    rows = table(text, "| strategy | final HV |")
    assert [r[0] for r in rows] == ["random", "nsga2"]
    for r in rows:
        assert NUMBER.match(r[1]) and 0.0 <= float(r[1].split(" ± ")[0]) <= 1.21, r
    assert re.search(r"nsga2 reaches random's final hypervolume in at most half the trials "
                     r"\(2\)\": \*\*(met|NOT met)\*\*", text)
    report = json.loads((out / "search_hypervolume_smoke.json").read_text())
    assert [len(r["trials"]) for r in report["rows"]] == [4, 4]
    assert all(len(r["hv_curve"]) == 4 for r in report["rows"])
    assert (out / "search_hypervolume_smoke.png").stat().st_size > 1000
