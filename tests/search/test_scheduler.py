"""Multi-fidelity search (issue 17): ASHA and Hyperband against their definition (Li et al.,
MLSys 2020), checkpoint continuation equal to straight training, and real ASHA searches on
local Ray: rungs recorded, promotions and stops, --resume keeping the rungs, a worker killed
mid-rung losing no finished rung."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import ray
import torch
from rich.console import Console

from autors.data import prepare
from autors.errors import TaskFileError
from autors.search.pool import task_attempt
from autors.search.runner import SearchOptions, run_search
from autors.search.schedulers import ASHA, Scheduler, max_brackets, rung_resources
from autors.training.loop import TrainState, train_model
from autors.training.trial import run_trial


# -- the algorithm, by hand -------------------------------------------------------------------
def test_rung_resources_are_min_times_eta_powers_capped_at_max() -> None:
    assert rung_resources(1, 9, 3) == [1, 3, 9]
    assert rung_resources(1, 8, 3) == [1, 3, 8]  # max is the top rung even off the grid
    assert rung_resources(2, 20, 2) == [2, 4, 8, 16, 20]
    assert rung_resources(1, 9, 3, offset=1) == [3, 9]  # bracket s = 1
    assert max_brackets(1, 9, 3) == 3
    with pytest.raises(ValueError, match="min_resource < max_resource"):
        rung_resources(9, 9, 3)


def test_asha_promotes_the_top_third_asynchronously_highest_rung_first() -> None:
    asha = ASHA(1, 9, 3)
    scores = {0: 0.50, 1: 0.90, 2: 0.70, 3: 0.60, 4: 0.95, 5: 0.10, 6: 0.80}
    # Two results at rung 0: floor(2/3) = 0 promotable -> a new trial (id 7) at rung 0.
    for t in (0, 1):
        asha.report(t, 0, scores[t])
    job = asha.get_job(7)
    assert (job.trial_id, job.rung, job.epochs, job.from_epochs) == (7, 0, 1, 0)
    # Third result: the top 1 of 3 (trial 1, 0.90) goes to rung 1, from its 1-epoch checkpoint.
    asha.report(2, 0, scores[2])
    job = asha.get_job(8)
    assert (job.trial_id, job.rung, job.epochs, job.from_epochs) == (1, 1, 3, 1)
    assert asha.get_job(9).trial_id == 9  # trial 1 is never promoted twice from rung 0
    # Six results: top 2 = {4 (0.95), 1 (0.90)}; 1 is promoted already -> 4.
    for t in (3, 4, 5):
        asha.report(t, 0, scores[t])
    assert asha.top_of(0) == [4, 1]
    assert (asha.get_job(10).trial_id, asha.promoted[0]) == (4, {1, 4})
    # Rung 1 fills to 3 results (trial 6 got there by hand): its top 1 is promoted to the top
    # rung before anything from rung 0, even with trial 6 promotable at rung 0 as well.
    asha.report(6, 0, scores[6])  # 7 results: top 2 unchanged -> nothing new at rung 0
    for t, s in ((1, 0.91), (4, 0.93), (6, 0.97)):
        asha.report(t, 1, s)
    job = asha.get_job(11)
    assert (job.trial_id, job.rung, job.epochs, job.from_epochs, job.top) == (6, 2, 9, 3, True)
    assert asha.get_job(12).trial_id == 12  # nothing else promotable
    assert asha.highest_rung(6) == 1 and asha.highest_rung(5) == 0


def test_ties_are_broken_by_the_lower_trial_id() -> None:
    asha = ASHA(1, 4, 2)
    for t in (3, 1, 2, 0):
        asha.report(t, 0, 0.5)
    assert asha.top_of(0) == [0, 1]


def test_hyperband_brackets_take_turns_and_the_largest_promotion_goes_first() -> None:
    hb = Scheduler(1, 9, 3, brackets=3)
    jobs = [hb.new_job(t) for t in range(6)]
    assert [(j.bracket, j.epochs) for j in jobs] == [(0, 1), (1, 3), (2, 9)] * 2
    assert jobs[2].top  # bracket 2 = plain full training
    for job, score in zip(jobs, (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)):
        hb.report(job, score)
    # bracket 0 has 2 results (nothing), bracket 1 has 2 (nothing): no promotion yet
    assert hb.next_promotion() is None
    for t, score in ((6, 0.05),):
        hb.report(hb.new_job(t), score)  # bracket 0, third result -> trial 3 (0.4) promotable
    t7 = hb.new_job(7)
    hb.report(t7, 0.7)  # bracket 1, third result -> trial 7 promotable to 9 epochs
    first = hb.next_promotion()
    assert (first.trial_id, first.bracket, first.epochs) == (7, 1, 9)  # 9 epochs beats 3
    second = hb.next_promotion()
    assert (second.trial_id, second.bracket, second.epochs) == (3, 0, 3)
    assert hb.next_promotion() is None
    # --resume: the same state rebuilt from the recorded rungs makes the same next decisions
    again = Scheduler(1, 9, 3, brackets=3)
    recorded = {0: [(0, 0.1)], 1: [(0, 0.2)], 2: [(0, 0.3)], 3: [(0, 0.4), (1, 0.8)],
                4: [(0, 0.5)], 5: [(0, 0.6)], 6: [(0, 0.05)], 7: [(0, 0.7)]}
    for t, rungs in recorded.items():
        again.restore(t, t % 3 if t < 6 else (0 if t == 6 else 1), rungs)
    assert again.next_promotion().trial_id == 7  # trial 3 reached rung 1: promoted already
    assert again.next_promotion() is None
    assert again.new_job(8).bracket == 2  # the turn continues after the restored trials


# -- checkpoint continuation ---------------------------------------------------------------------
def test_continuing_from_a_checkpoint_equals_training_straight_through(make_task) -> None:
    task = make_task(train={"epochs": 3, "early_stopping_patience": 3, "modality_dropout": 0.3,
                            "augment": True})
    data = prepare(task)
    straight = train_model(task, "early_cnn", data, seed=7)
    first = train_model(task, "early_cnn", data, seed=7, until=1)
    torch.manual_seed(12345)  # whatever ran in between must not matter
    state = TrainState.from_bytes(first.state.to_bytes())  # through bytes, as across nodes
    assert state.epoch == 1 and not state.finished
    second = train_model(task, "early_cnn", data, seed=7, until=2, start=state)
    rest = train_model(task, "early_cnn", data, seed=7,
                       start=TrainState.from_bytes(second.state.to_bytes()))
    drop = "seconds"
    assert ([{k: v for k, v in h.items() if k != drop} for h in rest.history]
            == [{k: v for k, v in h.items() if k != drop} for h in straight.history])
    assert rest.best_epoch == straight.best_epoch
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, rest.model.state_dict()[key]), key


def test_scheduler_settings_errors_name_the_field(make_task) -> None:
    with pytest.raises(TaskFileError, match=r"search\.scheduler\.min_resource: 4 epochs must "
                       r"be below train\.epochs"):
        make_task(train={"epochs": 4}, scheduler={"kind": "asha", "min_resource": 4})
    with pytest.raises(TaskFileError, match="brackets"):
        make_task(train={"epochs": 4}, scheduler={"kind": "asha", "brackets": 2})
    with pytest.raises(TaskFileError, match=r"search\.scheduler\.brackets: 4 is more than the 3"):
        make_task(train={"epochs": 4}, scheduler={"kind": "hyperband", "brackets": 4,
                                                  "reduction_factor": 2})


# -- real searches -------------------------------------------------------------------------------
ASHA_2 = {"kind": "asha", "reduction_factor": 2, "min_resource": 1}  # rungs 1 / 2 / 4 epochs
TRAIN_4 = {"epochs": 4, "early_stopping_patience": 4}


def _search(task, run_dir: Path | None = None, resume: Path | None = None, **options: Any):
    log = io.StringIO()
    opts = SearchOptions(out_dir=run_dir.parent if run_dir else Path("."),
                         name=run_dir.name if run_dir else None, resume=resume, quiet=True,
                         **options)
    return run_search(task, opts, Console(file=log, width=200)), log.getvalue()


def _lines(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "trials.jsonl").read_text().splitlines()]


def _kill_worker_at_top_rung(task: dict, arch: dict, seed: int, data: Any, trial_id: int,
                             rung: Any = None):
    """The real trial, except that the worker process dies in the first attempt of the top
    rung's job (as when a node is lost); Ray re-runs that rung on a live worker."""
    if rung is not None and rung.epochs == rung.max_epochs and task_attempt() == 0:
        os._exit(1)
    return run_trial(task, arch, seed, data, trial_id, rung)


def _assert_top_of_each_rung_promoted(records, eta: int) -> None:
    """Every rung below the top: its best floor(n / eta) trials by that rung's score reached
    the next rung (what a drained asynchronous ASHA guarantees, whatever the arrival order)."""
    entries = {r.trial_id: r.result.extra["rungs"] for r in records}
    for k in range(2):
        at = {t: e[k]["score"] for t, e in entries.items() if len(e) > k}
        best = sorted(at, key=lambda t: (-at[t], t))[:len(at) // eta]
        assert best and all(len(entries[t]) > k + 1 for t in best), (k, at, entries)


def test_asha_search_records_rungs_promotions_and_stops_and_resume_keeps_them(
    make_task, trial_fns, tmp_path
) -> None:
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    fns = {"trial_fn": _kill_worker_at_top_rung, "final_fn": trial_fns.cheap_final}
    task = make_task(train=TRAIN_4, strategy="random", max_trials=4, concurrency=2,
                     scheduler=ASHA_2)
    run_dir = tmp_path / "runs" / "asha"
    outcome, log = _search(task, run_dir, **fns)
    assert "scheduler asha: reduction factor 2, rung epochs 1/2/4" in log
    by_id = {r.trial_id: r for r in outcome.records}
    assert len(by_id) == 4
    rungs = {t: [g["epochs"] for g in r.result.extra["rungs"]] for t, r in by_id.items()}
    assert all(v == [1, 2, 4][:len(v)] for v in rungs.values())
    # Asynchronous promotions depend on the order results arrive (a trial may be promoted from
    # a rung before the rung fills), so the counts are not fixed; what ASHA guarantees once the
    # search has drained its promotions: the top floor(n / eta) of every rung went on.
    _assert_top_of_each_rung_promoted(by_id.values(), eta=2)
    statuses = {t: r.result.status for t, r in by_id.items()}
    complete = sorted(t for t, v in rungs.items() if len(v) == 3)
    assert complete and sorted(t for t, s in statuses.items() if s == "ok") == complete
    assert all(s == "stopped" for t, s in statuses.items() if t not in complete)
    for r in outcome.records:
        entries = r.result.extra["rungs"]
        assert r.result.epochs == entries[-1]["epochs_run"] == entries[-1]["epochs"]
        assert r.score == pytest.approx(entries[-1]["score"])  # the highest rung's score
        assert all((run_dir / g["checkpoint"]).is_file() for g in entries)
        assert r.result.extra["core_s"] == pytest.approx(sum(g["core_s"] for g in entries))
        assert all(g["core_s"] > 0 and g["node"] for g in entries)
    # each rung was appended when it finished; the last line of a trial is its record
    lines = _lines(run_dir)
    assert len(lines) == sum(len(v) for v in rungs.values())
    summary = outcome.summary
    assert summary["counts"]["stopped"] == 4 - len(complete)
    assert summary["counts"]["promoted"] == sum(len(v) >= 2 for v in rungs.values())
    finals = [f["trial_id"] for f in summary["final"]]  # stopped trials are never final
    assert finals and set(finals) <= set(complete)
    assert (run_dir / "progress.png").stat().st_size > 0
    # every top rung's worker was killed mid-rung: Ray re-ran that rung, continuing from the
    # finished rung's checkpoint; no finished rung was lost
    for t in complete:
        last = by_id[t].result.extra["rungs"]
        assert [g["attempt"] for g in last] == [0, 0, 1] and last[2]["from_epochs"] == 2

    # --resume with a larger budget: the scheduler's rungs come back from trials.jsonl
    bigger = make_task(train=TRAIN_4, strategy="random", max_trials=6, concurrency=2,
                       scheduler=ASHA_2)
    resumed, log = _search(bigger, resume=run_dir, **fns)
    n_rungs = sum(len(v) for v in rungs.values())
    assert f"scheduler rebuilt from trials.jsonl: {n_rungs} rung result(s)" in log
    after = {r.trial_id: r for r in resumed.records}
    assert len(after) == 6
    for t, epochs in rungs.items():  # every finished rung kept, none re-run
        kept = [g["epochs"] for g in after[t].result.extra["rungs"]]
        assert kept[:len(epochs)] == epochs
        assert after[t].result.extra["rungs"][0]["finished_at"] == \
            by_id[t].result.extra["rungs"][0]["finished_at"]
    # 6 results at rung 0: the top 3 went on to rung 1 (and so on up)
    _assert_top_of_each_rung_promoted(after.values(), eta=2)
