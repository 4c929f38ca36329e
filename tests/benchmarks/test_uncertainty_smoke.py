"""Smoke run of benchmarks/uncertainty.py (issue 21, items 2-3) in its `--smoke` mode: a tiny
synthetic scene, 1 epoch, 2 seeds, 2 MC passes. The report must hold the single-model and
ensemble rows with numeric cells, the three maps with their path and pixels/s, the AUROC
columns, the same-pixels statement and the target line; the JSON the same figures. The
figures themselves are not checked: a smoke budget is far too small to mean anything."""

from __future__ import annotations

import json
import re

from smoke import NUMBER, SmokeRuns, table, uses  # tests/benchmarks (tests/conftest.py)


@uses("uncertainty")
def test_uncertainty_smoke(smoke_runs: SmokeRuns) -> None:
    out = smoke_runs.output("uncertainty")
    text = (out / "uncertainty_smoke.md").read_text()
    for key in ("Command: `python ", "Machine: ", "Versions: ", "Wall time: ", "split hash `",
                "Every row is scored on the same ", "## Targets (issue 21)"):
        assert key in text
    models = table(text, "| model | test OA %")
    assert models[0][0] == "single model, per seed (mean ± std)"
    assert re.fullmatch(r"single model \(seed [01], best validation\)", models[1][0])
    assert models[2][0] == "**ensemble of 2** (mean calibrated probability)"
    for r in models:
        assert all(NUMBER.match(c) or c == "-" for c in r[1:]), r
    maps = table(text, "| map | path |")
    assert [r[0] for r in maps] == ["single pass", "MC dropout x2", "ensemble of 2"]
    assert all(r[1] == "fully convolutional" for r in maps), maps  # the benchmark's network
    for r in maps:
        assert all(NUMBER.match(c) for c in r[2:7]), r
    assert maps[0][8] == "-" and NUMBER.match(maps[1][8]) and NUMBER.match(maps[2][8])
    assert re.search(r"Target \(issue 21\): MC dropout with 2 passes .*\*\*(met|NOT met)\*\*\.",
                     text)
    report = json.loads((out / "uncertainty_smoke.json").read_text())
    (ds,) = report["datasets"]
    assert ds["dataset"] == "synth" and len(ds["seeds"]) == 2
    assert ds["ensemble"]["members"] == [0, 1] and ds["target_met"] in (True, False)
    assert ds["ensemble"]["cost"]["params"] == 2 * ds["single"]["cost"]["params"]
    assert {m["name"] for m in ds["maps"]} == {"single pass", "MC dropout x2", "ensemble of 2"}
    assert all(m["bands"][:3] == ["confidence", "entropy", "mutual_information"]
               for m in ds["maps"][1:])
    assert (out / "uncertainty_smoke.png").stat().st_size > 1000
