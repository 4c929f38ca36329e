"""Real NNI strategies on the real Ray engine (local Ray, 2 CPUs) with cheap trial functions:
reproducibility, concurrency, failures, timeouts, constraints, the time budget."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from rich.console import Console

from autors.cli import main
from autors.config import TaskSpec
from autors.errors import AutorsError
from autors.search.broker import arch_key
from autors.search.runner import SearchOptions, SearchOutcome, run_search
from autors.search.search_folder import SearchFolder


def search(task, tmp_path: Path, name: str, trial_fn, final_fn) -> SearchOutcome:
    out = io.StringIO()
    outcome = run_search(
        task,
        SearchOptions(out_dir=tmp_path, name=name, quiet=True, trial_fn=trial_fn,
                      final_fn=final_fn),
        Console(file=out, width=200),
    )
    outcome.summary["_log"] = out.getvalue()
    return outcome


def samples(outcome: SearchOutcome) -> list[dict]:
    return [r.sample for r in sorted(outcome.records, key=lambda r: r.trial_id)]


@pytest.mark.parametrize("strategy", ["random", "grid", "evolution", "tpe"])
def test_same_seed_gives_the_same_sequence(strategy, make_task, trial_fns, tmp_path) -> None:
    task = make_task(strategy=strategy, max_trials=8, concurrency=1)
    a = search(task, tmp_path, "a", trial_fns.cheap, trial_fns.cheap_final)
    b = search(task, tmp_path, "b", trial_fns.cheap, trial_fns.cheap_final)
    assert len(a.records) == 8
    assert samples(a) == samples(b)
    # No architecture is trained twice in a run.
    keys = [arch_key(r.result.arch) for r in a.records]
    assert len(set(keys)) == len(keys)
    if strategy == "random":
        other = search(make_task(strategy=strategy, max_trials=8, concurrency=1) .model_copy(
            update={"seed": 1}), tmp_path, "c", trial_fns.cheap, trial_fns.cheap_final)
        assert samples(other) != samples(a)


def test_evolution_mutates_the_best_after_the_initial_population(
    make_task, trial_fns, tmp_path
) -> None:
    outcome = search(make_task(strategy="evolution", max_trials=12, concurrency=2), tmp_path,
                     "evo", trial_fns.cheap, trial_fns.cheap_final)
    recs = sorted(outcome.records, key=lambda r: r.trial_id)
    population = 4  # max(4, 12 // 3)
    parents = [r.sample for r in recs[:population]]
    for child in recs[population:]:
        # A mutated child differs from some earlier individual in only a few labels.
        nearest = min(sum(child.sample[k] != p[k] for k in p) for p in parents)
        assert nearest <= 4
        parents.append(child.sample)


def test_concurrency_limit_and_parallel_trials(make_task, trial_fns, tmp_path) -> None:
    task = make_task(max_trials=4, concurrency=2)
    t0 = time.monotonic()
    outcome = search(task, tmp_path, "par", trial_fns.slow, trial_fns.cheap_final)
    spans = [(r.result.extra["start"], r.result.extra["end"]) for r in outcome.records]
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running, peak = 0, 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak == 2  # two trials really ran at once, never three
    assert outcome.summary["wall_s"]["search_s"] < 3.5  # 4 x 1 s trials, 2 at a time
    assert time.monotonic() - t0 < 60
    engine = outcome.summary["engine"]
    assert engine["trials"] == 4 and engine["mean_overhead_s"] < 0.5
    assert {r.result.node for r in outcome.records} == {"127.0.0.1"}


def test_failures_and_timeouts_are_recorded_and_the_search_goes_on(
    make_task, trial_fns, tmp_path
) -> None:
    task = make_task(max_trials=5, concurrency=2, trial_timeout_s=3.0)
    outcome = search(task, tmp_path, "flaky", trial_fns.flaky, trial_fns.cheap_final)
    by_id = {r.trial_id: r for r in outcome.records}
    assert sorted(by_id) == [0, 1, 2, 3, 4]
    assert by_id[1].result.status == "failed" and not by_id[1].feasible
    assert "RuntimeError: deliberate failure in trial 1" in by_id[1].reason
    assert "Traceback" in by_id[1].result.error
    assert by_id[2].result.status == "timeout"
    assert "exceeded search.trial_timeout_s = 3 s" in by_id[2].reason
    assert 3.0 <= by_id[2].wall_s < 8.0
    assert all(by_id[i].ok for i in (0, 3, 4))
    counts = outcome.summary["counts"]
    assert (counts["ok"], counts["failed"], counts["timeout"]) == (3, 1, 1)
    assert outcome.summary["best"]["trial_id"] in (0, 3, 4)
    # Every line of trials.jsonl is one finished trial, failed ones included.
    lines = (outcome.run_dir / "trials.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["trial_id"] for line in lines) == [0, 1, 2, 3, 4]
    assert "TIMEOUT" in outcome.summary["_log"] and "FAILED" in outcome.summary["_log"]


def test_nan_objective_is_a_failed_trial(make_task, trial_fns, tmp_path) -> None:
    outcome = search(make_task(max_trials=4), tmp_path, "nan", trial_fns.nan,
                     trial_fns.cheap_final)
    odd = [r for r in outcome.records if r.trial_id % 2]
    assert odd and all(not r.ok and "not a finite number" in r.reason for r in odd)
    assert all(r.ok for r in outcome.records if r.trial_id % 2 == 0)


def test_constraints_keep_infeasible_trials_but_never_pick_them(
    make_task, trial_fns, tmp_path
) -> None:
    # Latency is measured after training (not screened): these trials train, then fail it.
    # The cheap trials report latency = params / 1e4 ms, so this is a 1500-parameter limit.
    limit = 0.15
    task = make_task(max_trials=10, strategy="random", top_k=2,
                     constraints={"max_latency_ms": limit})
    outcome = search(task, tmp_path, "cons", trial_fns.cheap, trial_fns.cheap_final)
    recs = outcome.records
    assert all(r.trained for r in recs)
    infeasible = [r for r in recs if not r.feasible]
    feasible = [r for r in recs if r.feasible]
    assert infeasible and feasible, "the limit should split this sample of architectures"
    assert all(r.result.cost.latency_ms_b1 > limit and "max_latency_ms" in r.violations
               for r in infeasible)
    assert max(r.score for r in infeasible) < min(r.score for r in feasible)
    best = outcome.summary["best"]
    assert best["feasible"] and best["latency_ms"] <= limit
    # The constraint changed the order: some infeasible trial has a better raw metric than a
    # feasible one it now ranks below.
    assert max(trial_fns.metric(r.result.arch) for r in infeasible) > \
        min(trial_fns.metric(r.result.arch) for r in feasible)
    finals = {f["trial_id"] for f in outcome.summary["final"]}
    assert finals and finals <= {r.trial_id for r in feasible}
    board = (outcome.run_dir / "leaderboard.csv").read_text().splitlines()
    assert board[1].split(",")[3] == "True"  # rank 1 is feasible


def test_params_limit_screens_proposals_out_before_training(
    make_task, trial_fns, tmp_path, capsys
) -> None:
    limit = 1500
    task = make_task(max_trials=6, strategy="random", top_k=2, constraints={"max_params": limit})
    outcome = search(task, tmp_path, "screen", trial_fns.cheap, trial_fns.cheap_final)
    recs = outcome.records
    screened = [r for r in recs if not r.trained]
    trained = [r for r in recs if r.trained]
    assert screened, "the limit should screen out part of this sample of architectures"
    assert len(trained) == 6, "max_trials counts trained trials, not screened-out proposals"
    for r in screened:  # never sent to a worker: no trial-function output at all
        assert r.result.status == "over_limit" and r.result.duration_s == 0.0
        assert "start" not in r.result.extra and r.result.cost is None
        assert r.result.extra["static_cost"]["params"] > limit and "max_params" in r.violations
    assert all(r.result.cost.params <= limit for r in trained)
    assert max(r.score for r in screened) < min(r.score for r in trained)
    counts = outcome.summary["counts"]
    assert (counts["over_limit"], counts["failed"]) == (len(screened), 0)
    assert {f["trial_id"] for f in outcome.summary["final"]} <= {r.trial_id for r in trained}
    assert f"{len(screened)} proposals over a params/FLOPs limit" in outcome.summary["_log"]
    assert main(["status", str(outcome.run_dir)]) == 0
    status = capsys.readouterr().out
    assert "6/6 trials finished" in status
    assert f"{len(screened)} proposals over a params/FLOPs limit (not trained)" in status


def test_time_budget_stops_the_search(make_task, trial_fns, tmp_path) -> None:
    task = make_task(max_trials=None, max_minutes=0.05, concurrency=2)  # 3 s
    outcome = search(task, tmp_path, "budget", trial_fns.slow, trial_fns.cheap_final)
    s = outcome.summary
    assert "time budget reached" in s["stop_reason"]
    assert 2 <= len(outcome.records) <= 8
    assert s["wall_s"]["search_s"] < 6.0
    assert all(r.elapsed_s <= 3.5 for r in outcome.records)
    # Trials cut at the deadline are not recorded as finished.
    state = SearchFolder(outcome.run_dir).read_state()
    assert state["trials_finished"] == len(outcome.records) and state["running"] == []


def test_a_task_whose_file_is_gone_fails_before_a_run_folder_exists(make_task, tmp_path) -> None:
    gone = make_task().model_copy(update={"source": tmp_path / "moved.yaml"})
    with pytest.raises(AutorsError, match=r"moved\.yaml does not exist"):
        run_search(gone, SearchOptions(out_dir=tmp_path / "runs", name="gone", quiet=True))
    assert not (tmp_path / "runs").exists()


def test_bad_data_fails_before_a_run_folder_exists(make_task, tmp_path) -> None:
    d = make_task().to_dict()
    d["sensors"]["optical"]["path"] = str(tmp_path / "missing.tif")
    task = TaskSpec.from_dict(d)
    with pytest.raises(AutorsError, match="missing.tif"):
        run_search(task, SearchOptions(out_dir=tmp_path / "runs", name="bad", quiet=True),
                   Console(file=io.StringIO()))
    assert not (tmp_path / "runs" / "bad").exists()
