"""`autors search --set`: a real search on the tiny scene runs the overridden budget, and its run
folder's task copies (the search's and every final model's) hold the overridden task; with
--resume, --set may change the budget only."""

from __future__ import annotations

import json

from autors.cli import main
from autors.config import load_task


def test_search_runs_and_keeps_the_overridden_task(make_task, local_ray, tmp_path, capsys):
    task = make_task(max_trials=4, top_k=1, final_seeds=1)
    assert main(["search", str(task.source), "--set", "search.max_trials=2", "--out",
                 str(tmp_path / "runs"), "--name", "set", "--quiet"]) == 0
    run = tmp_path / "runs" / "set"
    trials = (run / "trials.jsonl").read_text().splitlines()
    assert len(trials) == 2  # the overridden budget, not the file's 4
    copy = load_task(run / "task.yaml")
    assert copy.search.max_trials == 2
    assert json.loads((run / "run.json").read_text())["task_digest"] == copy.digest()
    assert "# --set search.max_trials=2\n" in (run / "task.yaml").read_text()
    finals = sorted(run.glob("final/*/task.yaml"))
    assert finals and all(load_task(f).digest() == copy.digest() for f in finals)

    # --resume with --set alone applies to the run's copy; a non-budget field is refused
    # before anything runs, with the same check as a changed task file
    capsys.readouterr()
    assert main(["search", "--resume", str(run), "--set", "train.epochs=3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "differs from the run's task.yaml in train.epochs (1 -> 3)" in err
