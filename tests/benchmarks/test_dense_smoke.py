"""Smoke run of benchmarks/dense.py (issue 20) in its `--smoke` mode: a tiny synthetic
multi-scene dataset, 1 epoch, 1 seed, a real 2-trial search. The report must hold every dense
baseline and the searched row with numeric cells, the same-pixels statement and a target line.
The figures themselves are not checked: a smoke budget is far too small to mean anything."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from smoke import NUMBER, ROOT, SmokeRuns, table, uses  # tests/benchmarks (tests/conftest.py)

ROWS = ["unet", "two_stream_unet", "early_cnn", "late_cnn", "two_branch", "searched"]


@uses("dense")
def test_dense_smoke(smoke_runs: SmokeRuns) -> None:
    out = smoke_runs.output("dense")
    text = (out / "dense_smoke.md").read_text()
    for key in ("Command: `python ", "Machine: ", "Versions: ", "Wall time: ", "split hash `"):
        assert key in text
    assert "## Targets (issue 20)" in text
    assert re.search(r"- synth_scenes: searched water IoU .*\*\*(met|NOT met)\*\*\.", text)
    assert "Every row is tested on the same " in text
    assert re.search(r"Target \(issue 20\): .*\*\*(met|NOT met)\*\*\.", text)
    rows = table(text, "| model | kind | water IoU")
    assert [r[0].strip("*") for r in rows] == ROWS
    for r in rows:
        assert all(NUMBER.match(c) for c in r[2:]), r
    report = json.loads((out / "dense_smoke.json").read_text())
    ds = report["datasets"]["synth_scenes"]
    assert {r["model"] for r in report["rows"]} == set(ROWS)
    assert len({r["split_sha256"] for r in report["rows"]}) == 1
    assert ds["search"]["trials"] == 2 and ds["search"]["max_flops"] > 0
    assert ds["target"]["met"] in (True, False)
    assert (out / "dense_smoke.png").stat().st_size > 1000
    # --render writes the report again from its JSON: the same table, the run's header kept
    again = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "dense.py"), "--smoke", "--render", "--out",
         str(out)], check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    rendered = (out / "dense_smoke.md").read_text()
    assert "Rendered again from `dense_smoke.json`" in rendered
    assert rendered.split("\nRendered again from")[0] == text.split("\nOne split per")[0]
    assert "| model | kind | water IoU" in rendered and "**" in rendered
