"""--resume: a search killed with SIGKILL mid-run continues without re-running finished trials;
each strategy is re-seeded from the history; a truncated trials.jsonl line is repaired."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest
from rich.console import Console

from autors.cli import main
from autors.errors import SearchError
from autors.search.broker import arch_key
from autors.search.runner import SearchOptions, run_search


def _resume(run_dir: Path, task=None, trial_fn=None, final_fn=None):
    log = io.StringIO()
    extra = {} if trial_fn is None else {"trial_fn": trial_fn, "final_fn": final_fn}
    outcome = run_search(task, SearchOptions(resume=run_dir, quiet=True, **extra),
                         Console(file=log, width=200))
    return outcome, log.getvalue()


def test_sigkilled_search_resumes_without_rerunning_trials(
    make_task, local_ray, helpers, tmp_path, tmp_path_factory, capsys
) -> None:
    task = make_task(strategy="evolution", max_trials=6, concurrency=2, top_k=1,
                     final_seeds=1, train={"epochs": 2})
    runs = tmp_path / "runs"
    run_dir = runs / "killed"
    ray_dir = tmp_path_factory.mktemp("rk")  # the killed search's own local Ray
    env = {**os.environ, "RAY_TMPDIR": str(ray_dir)}
    log_path = tmp_path / "search.log"
    proc = helpers.start_search([str(task.source), "--out", str(runs), "--name", "killed",
                               "--quiet"], env, log_path)
    try:
        before = helpers.sigkill_after_trials(proc, run_dir / "trials.jsonl", 2, 150, log_path)
    finally:
        helpers.kill_session(proc.pid)  # what is left of its local Ray
    assert 2 <= len(before) < 6, "the search should have been killed mid-run"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    assert main(["status", str(run_dir)]) == 0  # reads the files of the dead run
    assert f"stopped: its process (pid {proc.pid}) is gone" in capsys.readouterr().out
    # A crash while appending leaves half a line: resume must repair it and say so.
    with open(run_dir / "trials.jsonl", "a") as f:
        f.write('{"trial_id": 99, "session": 0, "sam')

    outcome, log = _resume(run_dir)

    helpers.assert_resumed(run_dir / "trials.jsonl", before, outcome.records, 6)
    assert 99 not in {r.trial_id for r in outcome.records}  # the cut line is gone
    assert "cut short by a crash while writing; it was removed" in log
    assert "resumed: strategy re-seeded with population of" in log
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [s["index"] for s in summary["sessions"]] == [0, 1]
    assert summary["sessions"][0]["status"] == "running"  # the killed session never ended
    assert summary["sessions"][1]["resumed_with_trials"] == len(before)
    assert summary["sessions"][1]["repaired"] and summary["counts"]["finished"] == 6
    time.sleep(1.0)
    assert helpers.processes_using(str(ray_dir)) == [], "the killed search left Ray processes"


@pytest.mark.parametrize("strategy", ["random", "grid", "evolution", "tpe"])
def test_resume_with_a_larger_budget_reseeds_the_strategy(
    strategy, make_task, trial_fns, helpers, tmp_path
) -> None:
    first = make_task(strategy=strategy, max_trials=4, concurrency=2)
    options = SearchOptions(out_dir=tmp_path, name="r", quiet=True, trial_fn=trial_fns.cheap,
                            final_fn=trial_fns.cheap_final)
    run_search(first, options, Console(file=io.StringIO()))
    run_dir = tmp_path / "r"
    before = helpers.lines(run_dir / "trials.jsonl")
    more = make_task(strategy=strategy, max_trials=7, concurrency=2)  # only the budget differs
    outcome, log = _resume(run_dir, more, trial_fns.cheap, trial_fns.cheap_final)
    after = helpers.lines(run_dir / "trials.jsonl")
    assert len(after) == 7 and after[:4] == before
    assert len({arch_key(r.result.arch) for r in outcome.records}) == 7
    restored = outcome.summary["sessions"][1]["restored"]
    assert restored and "4" in restored
    assert "resumed: strategy re-seeded with" in log
    # The run is complete: resuming again runs nothing new.
    again, _ = _resume(run_dir, None, trial_fns.cheap, trial_fns.cheap_final)
    assert len(helpers.lines(run_dir / "trials.jsonl")) == 7 and len(again.records) == 7


def test_resume_refuses_a_different_task(make_task, trial_fns, tmp_path) -> None:
    options = SearchOptions(out_dir=tmp_path, name="r", quiet=True, trial_fn=trial_fns.cheap,
                            final_fn=trial_fns.cheap_final)
    run_search(make_task(max_trials=2), options, Console(file=io.StringIO()))
    changed = make_task(max_trials=2, space="fusion")
    with pytest.raises(SearchError, match=r"differs from the run's task.yaml in search.space"):
        _resume(tmp_path / "r", changed)
    with pytest.raises(SearchError, match="not an autors run folder"):
        _resume(tmp_path)


def test_resume_refuses_a_changed_split(scene_task_file, trial_fns, helpers, tmp_path) -> None:
    """Trials scored on other validation pixels would not compare: a label raster that changed
    since the run started stops the resume, naming both split hashes."""
    import shutil

    import numpy as np
    import rasterio

    scene = Path(shutil.copytree(scene_task_file.parent, tmp_path / "scene"))  # edited below
    task = helpers.write_task(scene / scene_task_file.name, tmp_path / "task.yaml", max_trials=2)
    options = SearchOptions(out_dir=tmp_path, name="r", quiet=True, trial_fn=trial_fns.cheap,
                            final_fn=trial_fns.cheap_final)
    run_search(task, options, Console(file=io.StringIO()))
    with rasterio.open(task.split.train, "r+") as ds:
        labels = ds.read(1)
        labels[tuple(np.argwhere(labels > 0)[0])] = 0  # one training label fewer
        ds.write(labels, 1)
    with pytest.raises(SearchError, match=r"the split differs from the one this run's trials "
                                          r"were scored on \(hash \w{12} then, \w{12} now\)"):
        _resume(tmp_path / "r", None)
