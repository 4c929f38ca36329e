"""Scoring (objective + constraints -> one score), ranking, Pareto front, and the crash-safe
run folder files (no Ray)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from autors.config import ConstraintSpec, SearchSpec
from autors.errors import SearchError
from autors.search.records import TrialRecord
from autors.search.report import best, leaderboard_rows, pareto, ranked
from autors.search.scoring import FAILED_SCORE, judge
from autors.search.search_folder import SearchFolder
from autors.training.result import Cost, TrialResult

ARCH = {"version": 1, "branches": {"a": {"kind": "conv", "width": 8, "depth": 0, "kernel": 3}},
        "fusion": {"op": "sum", "position": "middle", "width": 8, "trunk": {"kind": "off"}},
        "head": {"kind": "patch", "hidden": 0, "dropout": 0.0}}


def result(tid: int, oa: float | None, params: int = 1000, latency: float = 1.0,
           status: str = "ok") -> TrialResult:
    metrics = {} if oa is None else {"val_oa": oa}
    return TrialResult(trial_id=tid, arch=ARCH, seed=0, status=status, metrics=metrics,
                       cost=Cost(params, 10 * params, latency, latency / 10),
                       error="" if status == "ok" else "boom")


def record(res: TrialResult, constraints: ConstraintSpec | None = None) -> TrialRecord:
    j = judge(res, "val_oa", constraints or ConstraintSpec())
    return TrialRecord(trial_id=res.trial_id, session=0, sample={"x": res.trial_id},
                       score=j.score, feasible=j.feasible, violations=j.violations,
                       reason=j.reason, submitted_at=0.0, finished_at=1.0,
                       elapsed_s=float(res.trial_id), result=res)


def test_feasible_score_is_the_objective() -> None:
    j = judge(result(0, 0.8), "val_oa", ConstraintSpec(max_params=5000))
    assert (j.score, j.feasible, j.violations, j.reason) == (0.8, True, {}, "")


def test_infeasible_scores_below_every_feasible_one_and_closer_is_better() -> None:
    limits = ConstraintSpec(max_params=1000, max_latency_ms=2.0)
    worst_feasible = judge(result(0, -1.0, params=1000), "val_oa", limits)  # as low as kappa
    assert worst_feasible.feasible
    slightly = judge(result(1, 0.99, params=1100), "val_oa", limits)
    far = judge(result(2, 0.99, params=100_000, latency=50.0), "val_oa", limits)
    assert not slightly.feasible and not far.feasible
    assert slightly.violations == {"max_params": pytest.approx(1.1)}
    assert set(far.violations) == {"max_params", "max_latency_ms"}
    assert FAILED_SCORE < far.score < slightly.score < -1.0


def test_over_limit_proposals_score_below_trained_infeasible_ones_and_keep_their_ratio() -> None:
    limits = ConstraintSpec(max_params=1000, max_flops=100_000)
    screened = TrialResult(trial_id=3, arch=ARCH, seed=0, status="over_limit",
                           extra={"static_cost": {"params": 2000, "flops": 5000}})
    j = judge(screened, "val_oa", limits)
    assert not j.feasible and j.reason == ""
    assert j.violations == {"max_params": pytest.approx(2.0)}  # flops are within their limit
    trained_twice_over = judge(result(4, -1.0, params=2000), "val_oa", limits)
    assert FAILED_SCORE < j.score <= trained_twice_over.score < -2.0
    rec = record(screened, limits)
    assert not rec.ok and not rec.trained and rec.scored
    row = leaderboard_rows([rec])[0]
    assert (row["status"], row["params"], row["flops"]) == ("over_limit", 2000, 5000)


@pytest.mark.parametrize(
    "res, reason",
    [
        (result(0, None), "objective val_oa is missing"),
        (result(0, math.nan), "objective val_oa is not a finite number"),
        (result(0, 0.9, status="timeout"), "boom"),
    ],
)
def test_failed_trials_get_the_failure_score_and_a_reason(res: TrialResult, reason: str) -> None:
    j = judge(res, "val_oa", ConstraintSpec())
    assert j.score == FAILED_SCORE and not j.feasible
    assert reason in j.reason


def test_best_is_never_infeasible_or_failed() -> None:
    limits = ConstraintSpec(max_params=5000)
    recs = [
        record(result(0, 0.99, params=50_000), limits),  # best metric, infeasible
        record(result(1, 0.95, status="failed"), limits),
        record(result(2, 0.70), limits),
        record(result(3, 0.75), limits),
    ]
    assert best(recs).trial_id == 3
    assert [r.trial_id for r in ranked(recs)] == [3, 2, 0, 1]
    rows = leaderboard_rows(recs)
    assert [(r["trial_id"], r["feasible"], r["status"]) for r in rows] == [
        (3, True, "ok"), (2, True, "ok"), (0, False, "ok"), (1, False, "failed")]
    assert rows[2]["violations"] == "max_paramsx10.00"
    assert best([recs[0], recs[1]]) is None


def test_pareto_front() -> None:
    # (id, metric, params, latency): 1 dominates 0; 2 and 3 trade accuracy for cost; 4 = 1.
    pts = [(0, 0.7, 2000, 2.0), (1, 0.8, 1000, 1.0), (2, 0.9, 5000, 3.0), (3, 0.6, 100, 0.5),
           (4, 0.8, 1000, 1.0)]
    recs = [record(result(i, m, p, lat)) for i, m, p, lat in pts]
    # the default front: the objective (max) against params, flops and latency (min)
    spec = SearchSpec()
    assert [o.name for o in spec.front_objectives] == ["val_oa", "params", "flops", "latency_ms"]
    assert [r.trial_id for r in pareto(recs, spec)] == [2, 1, 4, 3]  # equal points both stay


def _task_stub(tmp_path: Path, make_task) -> SearchFolder:
    return SearchFolder.create(tmp_path / "run", make_task())


def test_truncated_last_line_is_repaired_with_a_warning(tmp_path: Path, make_task) -> None:
    run = _task_stub(tmp_path, make_task)
    for i in range(3):
        run.append_trial(record(result(i, 0.5 + i / 10)))
    full = run.trials_file.read_bytes()
    run.trials_file.write_bytes(full + b'{"trial_id": 3, "sess')  # crash while appending
    records, warning = run.read_trials(repair=False)
    assert [r.trial_id for r in records] == [0, 1, 2]
    assert "cut short" in warning and "ignored" in warning
    assert run.trials_file.read_bytes() != full  # not repaired without repair=True
    records, warning = run.read_trials(repair=True)
    assert [r.trial_id for r in records] == [0, 1, 2] and "removed" in warning
    assert run.trials_file.read_bytes() == full
    assert run.read_trials(repair=True)[1] is None
    # Round trip of a record through the file keeps every field.
    assert records[1].to_dict() == record(result(1, 0.6)).to_dict()


def test_corrupt_line_in_the_middle_is_an_error(tmp_path: Path, make_task) -> None:
    run = _task_stub(tmp_path, make_task)
    run.append_trial(record(result(0, 0.5)))
    with open(run.trials_file, "a") as f:
        f.write("not json\n")
    run.append_trial(record(result(1, 0.5)))
    with pytest.raises(SearchError, match=r"trials.jsonl: line 2 is corrupt"):
        run.read_trials(repair=True)


def test_run_folder_refuses_overwrite_and_non_runs(tmp_path: Path, make_task) -> None:
    run = _task_stub(tmp_path, make_task)
    run.write_state({"status": "created", "sessions": []})
    with pytest.raises(SearchError, match="already holds a run: continue it with --resume"):
        SearchFolder.create(run.path, make_task())
    (tmp_path / "other").mkdir()
    with pytest.raises(SearchError, match=r"not an autors run folder \(missing run.json"):
        SearchFolder.open(tmp_path / "other")
    with pytest.raises(SearchError, match="run folder not found"):
        SearchFolder.open(tmp_path / "missing")
    state = json.loads(run.state_file.read_text())
    assert state["format"] == 1
    assert SearchFolder.open(run.path).load_task().name == make_task().name


def test_ties_on_the_objective_are_broken_by_kappa_then_loss_then_flops() -> None:
    def tied(tid: int, kappa: float | None, loss: float | None, params: int) -> TrialRecord:
        res = result(tid, 0.9, params=params)
        res.metrics.update({k: v for k, v in (("val_kappa", kappa), ("val_loss", loss))
                            if v is not None})
        return record(res)

    recs = [
        tied(0, 0.80, 0.30, 1000),
        tied(1, 0.85, 0.50, 9000),  # highest kappa wins despite loss and FLOPs
        tied(2, 0.80, 0.20, 9000),  # same kappa as 0 and 3: lowest loss next
        tied(3, 0.80, 0.30, 500),  # same kappa and loss as 0: fewer FLOPs first
        tied(4, None, None, 10),  # old records without kappa/loss sort after the others
        record(result(5, 0.91, params=90_000)),  # a better objective beats every tie-break
    ]
    assert [r.trial_id for r in ranked(recs)] == [5, 1, 2, 3, 0, 4]
    assert best(recs[:5]).trial_id == 1


def test_finalists_robustness_becomes_leaderboard_columns() -> None:
    from autors.search.report import final_stats

    recs = [record(result(0, 0.9)), record(result(1, 0.8))]

    def final_row(tid: int, seed: int, clean: float, without: float) -> dict:
        table = {"clean": {"oa": clean}, "without_a": {"oa": without}, "cloud_30": {"oa": clean}}
        return {"trial_id": tid, "seed": seed, "status": "ok",
                "metrics": {"test_oa": clean, "test_robustness": table}}

    rows = [final_row(0, 0, 0.9, 0.5), final_row(0, 1, 0.8, 0.7)]
    finals = final_stats(rows, [recs[0]])
    assert finals[0].conditions["without_a"] == pytest.approx(0.6)
    board = leaderboard_rows(recs, finals)
    assert board[0]["test_oa_without_a_mean"] == pytest.approx(0.6)
    assert board[0]["test_oa_cloud_30_mean"] == pytest.approx(0.85)
    assert board[1]["test_oa_without_a_mean"] == ""  # not retrained: same columns, empty
    assert "test_oa_clean_mean" not in board[0]  # clean is test_oa_mean already


def test_pareto_plot_adds_the_robustness_panel_when_measured(tmp_path: Path) -> None:
    from PIL import Image

    from autors.search.plots import plot_pareto

    recs = [record(result(i, 0.7 + 0.05 * i)) for i in range(3)]
    objectives = SearchSpec().front_objectives
    plot_pareto(recs, recs[-1:], objectives, tmp_path / "plain.png", explicit=False)
    for i, r in enumerate(recs):
        r.result.metrics["val_oa_worst_missing"] = 0.5 + 0.1 * i
    plot_pareto(recs, recs[-1:], objectives, tmp_path / "robust.png", explicit=False)
    plain, robust = (Image.open(tmp_path / n).size for n in ("plain.png", "robust.png"))
    assert robust[0] * robust[1] > 1.3 * plain[0] * plain[1]  # one more panel (a new row)
