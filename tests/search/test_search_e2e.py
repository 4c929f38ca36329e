"""End to end with real training (autors.training.run_trial) on the tiny synthetic scene and
the session's local Ray: the `autors search` / `autors status` commands and the run folder."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from autors.cli import main
from autors.search.runner import SearchOptions, run_search

PNG = b"\x89PNG\r\n\x1a\n"


def test_search_command_writes_every_run_file(make_task, local_ray, tmp_path, capsys) -> None:
    task = make_task(strategy="evolution", max_trials=4, concurrency=2, top_k=2, final_seeds=2)
    code = main(["search", str(task.source), "--out", str(tmp_path / "runs"), "--name", "e2e",
                 "--quiet"])
    assert code == 0
    run = tmp_path / "runs" / "e2e"
    for name in ("task.yaml", "run.json", "trials.jsonl", "final.jsonl", "leaderboard.csv",
                 "progress.png", "pareto.png", "summary.json", "report.html"):
        assert (run / name).is_file(), name
    for png in ("progress.png", "pareto.png"):
        data = (run / png).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000

    trials = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    assert sorted(t["trial_id"] for t in trials) == [0, 1, 2, 3]
    for t in trials:  # real training happened in a Ray worker on loopback
        res = t["result"]
        assert res["status"] == "ok", res["error"]
        assert 0.0 <= res["metrics"]["val_oa"] <= 1.0
        assert res["epochs"] == 1 and res["train_s"] > 0 and res["cost"]["params"] > 0
        assert res["node"] == "127.0.0.1" and res["extra"]["worker_pid"] > 0

    summary = json.loads((run / "summary.json").read_text())
    assert summary["seed"] == task.seed and summary["strategy"] == "evolution"
    # the split the trials were scored on: the same record in run.json and summary.json, and
    # the same hash in every final model's run folder
    split = json.loads((run / "run.json").read_text())["split"]
    assert summary["split"] == split and split["seed"] == task.split.seed
    assert split["buffer"] == task.patch_size // 2
    assert split["leakage"]["val"]["touching_train"] == 0 == \
        split["leakage"]["test"]["touching_train"]
    assert {"nni", "ray", "torch", "autors"} <= set(summary["versions"])
    assert summary["host"]["cpu_count"] >= 1 and summary["wall_s"]["search_s"] > 0
    assert summary["counts"]["finished"] == 4
    assert summary["pareto_front"] and all("params" in p for p in summary["pareto_front"])
    finals = summary["final"]
    assert len(finals) == 2 and all(f["runs"] == 2 for f in finals)
    for f in finals:
        assert 0.0 <= f["test_mean"]["test_oa"] <= 1.0 and f["test_std"]["test_oa"] >= 0.0
    rows_final = [json.loads(line) for line in (run / "final.jsonl").read_text().splitlines()]
    assert len(rows_final) == 4 and len({(r["trial_id"], r["seed"]) for r in rows_final}) == 4
    for r in rows_final:  # every retrained model is kept as a train-run folder, tested once
        kept = json.loads((run / r["run_dir"] / "metrics.json").read_text())
        assert kept["test"]["oa"] == r["metrics"]["test_oa"]
        # calibrated on validation, checked on test (autors.training.calibration)
        assert kept["calibration"]["temperature"] == r["metrics"]["temperature"] > 0
        assert kept["test"]["calibration"]["ece_after"] == r["metrics"]["test_ece_calibrated"]
        assert (run / r["run_dir"] / "reliability.png").is_file()
        assert json.loads((run / r["run_dir"] / "run.json").read_text())["split"] == split
        assert (run / r["run_dir"] / "weights.pt").is_file()

    # the search's best final model exports and loads (the user's payoff)
    assert main(["export", str(run), "--rank", "1", "--out", str(tmp_path / "exported")]) == 0
    card = json.loads((tmp_path / "exported" / "model.json").read_text())
    best = finals[0]
    assert card["provenance"]["source_kind"] == "search"
    assert card["metrics"]["test"]["oa"]["n"] == 2
    assert abs(card["metrics"]["test"]["oa"]["mean"] - best["test_mean"]["test_oa"]) < 1e-9
    assert card["calibration"]["temperature"] > 0 and card["calibration"]["in_compiled"]
    assert [c["alpha"] for c in card["calibration"]["conformal"]["test"]] == [0.05, 0.1, 0.2]

    with open(run / "leaderboard.csv") as f:
        board = list(csv.DictReader(f))
    assert len(board) == 4 and board[0]["rank"] == "1"
    tested = [r for r in board if r["test_oa_mean"]]
    assert {int(r["trial_id"]) for r in tested} == {f["trial_id"] for f in finals}
    assert board[0]["trial_id"] == str(summary["best"]["trial_id"])

    out = capsys.readouterr().out
    assert "leaderboard" in out and str(run) in out

    assert main(["status", str(run)]) == 0
    status = capsys.readouterr().out
    assert "State finished" in status and "4/4 trials finished" in status
    assert f"Best trial {summary['best']['trial_id']}" in status and "127.0.0.1" in status


def test_a_failing_trial_is_recorded_while_real_trials_succeed(
    make_task, trial_fns, tmp_path
) -> None:
    task = make_task(max_trials=3, concurrency=2, top_k=1, final_seeds=1)
    log = io.StringIO()
    outcome = run_search(
        task,
        SearchOptions(out_dir=tmp_path, name="fail", quiet=True,
                      trial_fn=trial_fns.real_failing_once),
        Console(file=log, width=200),
    )
    by_id = {r.trial_id: r for r in outcome.records}
    assert sorted(by_id) == [0, 1, 2]
    assert by_id[1].result.status == "failed" and "deliberate failure" in by_id[1].reason
    for i in (0, 2):
        assert by_id[i].ok and by_id[i].result.train_s > 0 and by_id[i].result.cost is not None
    assert "trial 1 FAILED: RuntimeError: deliberate failure in trial 1" in log.getvalue()
    assert outcome.summary["best"]["trial_id"] in (0, 2)
    assert Path(outcome.run_dir / "final.jsonl").is_file()


def test_search_joins_an_existing_cluster_with_address(make_task, local_ray, tmp_path) -> None:
    """`--address` connects to a running Ray (here the test session's) instead of starting one."""
    task = make_task(max_trials=2, concurrency=2, top_k=1, final_seeds=1)
    proc = subprocess.run(
        [sys.executable, "-m", "autors", "search", str(task.source), "--address",
         local_ray["address"], "--out", str(tmp_path), "--name", "joined", "--quiet"],
        capture_output=True, text=True, timeout=240, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((tmp_path / "joined" / "summary.json").read_text())
    assert summary["cluster"]["mode"] == "address"
    assert summary["cluster"]["address"] == local_ray["address"]
    assert summary["counts"]["finished"] == 2 and summary["counts"]["ok"] == 2
    assert "Ray address at 127.0.0.1" in proc.stdout
