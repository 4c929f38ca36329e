"""CI smoke runs of the benchmark scripts (their `--smoke` mode: a tiny scene, 1 epoch, 1-2
trials), so the scripts do not rot. Each must write its report with the expected table header
and cells that parse as numbers. The figures themselves are not checked: smoke budgets are
far too small to mean anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from smoke import NUMBER, SmokeRuns, table, uses  # tests/benchmarks (tests/conftest.py)


def _numeric(cells: list[str]) -> None:
    for cell in cells:
        assert NUMBER.match(cell), f"not a number: {cell!r}"


def _common_head(text: str) -> None:
    for key in ("Command: `python ", "Machine: ", "Versions: ", "Wall time: "):
        assert key in text


@uses("synth_ablation")
def test_synth_ablation_smoke(smoke_runs: SmokeRuns) -> None:
    out = smoke_runs.output("synth_ablation")
    text = (out / "synth_ablation_smoke.md").read_text()
    _common_head(text)
    assert "Scene s0: Every row is tested on the same" in text
    _repeat_matched(text)
    rows = table(text, "| sensor subset | OA scene s0 | mean OA | AA | kappa |")
    assert [r[0] for r in rows] == ["optical", "sar", "lidar", "hsi", "all four",
                                    "all − optical", "all − sar", "all − lidar", "all − hsi"]
    for r in rows:
        _numeric(r[1:])
        assert 0.0 <= float(r[2]) <= 100.0
    assert "best single sensor" in text and "## Verdict" in text
    assert (out / "synth_ablation_smoke.png").stat().st_size > 1000


@pytest.fixture
def chain(smoke_runs: SmokeRuns) -> Path:
    """baselines -> search_compare (FLOPs limit from the baselines) -> searched_vs_baselines,
    in their smoke modes, into one folder: each reads what the one before wrote (smoke.RUNS)."""
    return smoke_runs.output("chain")


def _repeat_matched(text: str) -> None:
    """The report states its repeat check; single-process training repeats exactly."""
    line = next(line for line in text.splitlines() if line.startswith("Repeat check: "))
    assert "matched exactly" in line and "NOT" not in line, line


@uses("chain")
def test_baselines_smoke(chain: Path) -> None:
    out = chain
    text = (out / "baselines_smoke.md").read_text()
    _common_head(text)
    rows = table(text, "| model | val OA % | OA % | AA % | kappa | params | MFLOPs | latency ms |")
    assert [r[0] for r in rows][:6] == ["early_cnn", "late_cnn", "two_branch", "early_cnn_centre",
                                        "late_cnn_centre", "two_branch_centre"]
    assert "lidar only" in [r[0] for r in rows]
    for r in rows:
        _numeric(r[1:])
        assert int(r[5].replace(",", "")) > 0  # params
    # every row, single sensors included, scored on one split and one set of test pixels
    json_rows = json.loads((out / "baselines_smoke.json").read_text())
    assert len({(r["split_sha256"], r["n_test"], r["n_val"]) for r in json_rows}) == 1
    assert f"Every row is tested on the same {json_rows[0]['n_test']:,} test pixels" in text
    _repeat_matched(text)
    assert (out / "baselines_smoke.png").is_file()


@uses("engine_scaling")
def test_engine_scaling_smoke(smoke_runs: SmokeRuns) -> None:
    out = smoke_runs.output("engine_scaling")
    text = (out / "engine_scaling_smoke.md").read_text()
    _common_head(text)
    _repeat_matched(text)
    rows = table(text, "| concurrency | Ray start s |")
    assert [r[0] for r in rows] == ["2"]
    _numeric(rows[0])
    trials = table(text, "| concurrency | trial | span s |")
    assert len(trials) == 2
    for r in trials:
        _numeric(r)
        assert float(r[3]) > 0  # train s
    assert (out / "engine_scaling_smoke.png").stat().st_size > 1000


@uses("chain")
def test_search_compare_smoke(chain: Path) -> None:
    text = (chain / "search_compare_smoke.md").read_text()
    _common_head(text)
    rows = table(text, "| strategy | best val OA % |")
    assert rows[0][0] == "random"
    _numeric([rows[0][1], rows[0][3], rows[0][4], rows[0][7]])
    assert "MFLOPs per sample (0.2 x the " in text  # the limit came from baselines_smoke.json
    limit = json.loads((chain / "search_compare_smoke.json").read_text())["max_flops"]
    assert 0 < float(rows[0][4]) * 1e6 <= limit
    assert "Every search selected on the same" in text
    assert "Repeat check: the random seed 0 search was run twice" in text
    assert (chain / "search_compare_smoke.png").is_file()


@uses("chain")
def test_searched_vs_baselines_smoke(chain: Path) -> None:
    text = (chain / "searched_vs_baselines_smoke.md").read_text()
    _common_head(text)
    rows = table(text, "| model | val OA % | OA % | AA % | kappa | params | MFLOPs |")
    names = [r[0] for r in rows]
    assert names[:3] == ["early_cnn", "late_cnn", "two_branch"] and names[-1] == "**searched**"
    for r in rows:
        _numeric(r[1:])
    assert "## Verdict (issue 8.1 target)" in text and "- overall: target " in text
    assert "Every row is tested on the same" in text
    _repeat_matched(text)
    speed = table(text, "| model | method | test OA % (this run) |")
    models = list(dict.fromkeys(r[0] for r in speed))
    # the searched network, the best centre-head and the best patch-head baseline
    assert models[0] == "searched" and len(models) == 3
    assert models[1].endswith("_centre") and not models[2].endswith("_centre")
    for model in models:  # per patch always; fully convolutional first where allowed
        methods = [r[1] for r in speed if r[0] == model]
        assert methods in (["per patch"], ["fully convolutional", "per patch"]), (model, methods)
    assert "- same path (per patch): searched predicts" in text
    for r in speed:
        _numeric(r[2:3] + r[4:])
        assert float(r[5].replace(",", "")) > 0  # pixels / s
    assert (chain / "searched_vs_baselines_smoke.png").stat().st_size > 1000


@uses("data_scale")
def test_data_scale_smoke(smoke_runs: SmokeRuns) -> None:
    out = smoke_runs.output("data_scale")
    text = (out / "data_scale_smoke.md").read_text()
    _common_head(text)
    _repeat_matched(text)
    datasets = table(text, "| dataset | scenes | px | channels |")
    assert len(datasets) == 2
    for r in datasets:
        _numeric(r[1:7])
    big = table(text, "| loader workers | status | peak RSS sum MiB |")
    assert [r[0] for r in big] == ["1"] and big[0][1] == "ok"
    _numeric(big[0][2:])
    assert int(big[0][6]) >= 2  # the trainer and its loader worker were both measured
    compare = table(text, "| loader workers | in memory samples/s | streamed samples/s |")
    assert [r[0] for r in compare] == ["1"]
    _numeric(compare[0][1:11])
    assert compare[0][11:] == ["yes", "yes"]  # streamed == in memory: metrics and weights
    assert "## 3. Cluster\n\nSkipped (--smoke" in text
    assert json.loads((out / "data_scale_smoke.json").read_text())["smoke"] is True
    assert (out / "data_scale_smoke.png").stat().st_size > 1000


@uses("robustness")
def test_robustness_smoke(smoke_runs: SmokeRuns) -> None:
    out = smoke_runs.output("robustness")
    text = (out / "robustness_smoke.md").read_text()
    _common_head(text)
    _repeat_matched(text)
    rows = table(text, "| model | seeds | val OA % | OA clean % |")
    names = [r[0] for r in rows]
    assert names[:2] == ["early_cnn", "late_cnn_centre"]
    assert names[2:6] == ["optical only", "sar only", "lidar only", "hsi only"]
    assert names[6:] == ["**searched (clean)**", "**searched (robust)**"]
    for r in rows:
        _numeric(r[1:])
    data = json.loads((out / "robustness_smoke.json").read_text())
    expected = ["clean", "without_optical", "without_sar", "without_lidar", "without_hsi",
                "cloud_10", "cloud_30", "cloud_60"]
    n = data["pixel_check"]["test_any"]
    for r in data["rows"]:
        assert list(r["conditions"]) == expected
        # every row and condition scores the same pixels (the smoke run scores the whole split)
        assert {c["num_samples"] for c in r["conditions"].values()} == {n}
        assert r["split_sha256"] == data["rows"][0]["split_sha256"]
    by_model = {r["model"]: r["conditions"] for r in data["rows"]}
    sar = by_model["sar only"]
    assert sar["without_sar"]["no_input"] == n and sar["without_sar"]["measured"]
    assert sar["without_optical"] == dict(sar["clean"], measured=False)  # optical unused
    optical = by_model["optical only"]  # nested clouds: more pixels lose their only sensor
    assert (optical["clean"]["no_input"] < optical["cloud_10"]["no_input"]
            < optical["cloud_30"]["no_input"] < optical["cloud_60"]["no_input"] < n)
    check = data["pixel_check"]
    assert check["test_equals_expected"] and check["test_any"] == check["labelled_any_valid"]
    assert check["labelled_some_invalid"] > 0 and check["test_all"] < check["test_any"]
    assert [s["objective"] for s in data["searches"]] == ["val_oa", "val_oa_robust"]
    goals = [line for line in text.splitlines() if line.startswith("- ")
             and line.endswith(("**met**.", "**NOT met**."))]
    assert len(goals) == 3 and goals[2].endswith("**met**.")  # no test pixel dropped
    assert (out / "robustness_smoke.png").stat().st_size > 1000
