"""Multi-objective search (issue 23): hypervolume on hand-computed fronts, the front and the
final phase's spread, search.objectives validation, Optuna strategies on the real local Ray
engine (ask/tell, duplicates, constraints, resume re-seeding), `autors export --pick`."""

from __future__ import annotations

import io
import json
import math

import pytest
from rich.console import Console

from autors.cli import main
from autors.config import ObjectiveSpec, parse_task
from autors.errors import AutorsError, SearchError
from autors.search.broker import arch_key
from autors.search.front import (
    REFERENCE,
    Normaliser,
    candidates,
    front_hypervolume,
    hypervolume,
    nondominated,
    pareto_records,
    spread,
)
from autors.search.records import TrialRecord
from autors.search.runner import SearchOptions, run_search
from autors.training.result import Cost, TrialResult

OA_FLOPS = [ObjectiveSpec(name="val_oa", goal="max"), ObjectiveSpec(name="flops", goal="min")]


def test_hypervolume_of_hand_computed_fronts() -> None:
    # 2-D staircase: boxes 3x1 + 2x1 + 1x1 below the reference (4, 4)
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (4, 4)) == pytest.approx(6.0)
    # a dominated point, a duplicate and a point beyond the reference add nothing
    assert hypervolume([(1, 3), (2, 2), (3, 1), (3, 3), (2, 2), (5, 0)], (4, 4)) == \
        pytest.approx(6.0)
    assert hypervolume([], (1, 1)) == 0.0
    # 3-D: two boxes of 2x2x1 and 1x1x2 overlapping in a unit cube: 4 + 2 - 1
    assert hypervolume([(0, 0, 1), (1, 1, 0)], (2, 2, 2)) == pytest.approx(5.0)
    assert hypervolume([(1, 1, 1)], (2, 2, 2)) == pytest.approx(1.0)
    # 3-D, three points, by inclusion-exclusion: boxes of 6 each, pairwise overlaps of 2
    # each, a common unit cube
    assert hypervolume([(0, 1, 2), (1, 2, 0), (2, 0, 1)], (3, 3, 3)) == \
        pytest.approx(6 * 3 - 2 * 3 + 1)


def _rec(tid: int, oa: float | None, flops: int, status: str = "ok",
         feasible: bool = True) -> TrialRecord:
    res = TrialResult(trial_id=tid, arch={}, seed=tid, status=status,
                      metrics={} if oa is None else {"val_oa": oa},
                      cost=Cost(params=flops // 10, flops=flops, latency_ms_b1=1.0,
                                latency_ms_per_sample_b256=0.1))
    return TrialRecord(trial_id=tid, session=0, sample={}, score=oa or -10.0, feasible=feasible,
                       violations={} if feasible else {"max_flops": 2.0},
                       reason="" if status == "ok" else "boom", submitted_at=0.0,
                       finished_at=1.0, elapsed_s=float(tid), result=res)


def test_front_spread_knee_and_extremes() -> None:
    recs = [_rec(0, 0.90, 100_000), _rec(1, 0.88, 10_000), _rec(2, 0.80, 1_000),
            _rec(3, 0.70, 1_000),              # dominated by 2
            _rec(4, 0.95, 1_000_000),
            _rec(5, 0.99, 10, feasible=False),  # infeasible: never on a front
            _rec(6, 0.99, 10, status="failed")]
    assert [r.trial_id for r in pareto_records(recs, OA_FLOPS)] == [4, 0, 1, 2]
    assert nondominated([(0, 0), (1, 1), (0, 0)]) == [0, 2]  # equal points are both kept
    picks = spread(recs, OA_FLOPS, k=3)
    why = {r.trial_id: w for r, w in picks}
    # normalised over the front (OA 0.80..0.95, log10 FLOPs 3..6): trial 1 at (0.47, 0.33)
    # is the one nearest to the ideal corner
    assert why == {1: ["knee"], 4: ["most-accurate"], 2: ["smallest"]}
    assert [w for _, w in spread(recs, OA_FLOPS, k=4)][-1] == ["spread"]  # then the farthest
    assert len(spread(recs, OA_FLOPS, k=1)) == 1 and spread([], OA_FLOPS, k=3) == []
    # the hypervolume of the normalised front, by hand: points (1-x) on the minimised scale
    norm = Normaliser.of([p for _, p in candidates(recs, OA_FLOPS)], OA_FLOPS)
    assert norm.lo == pytest.approx((-0.95, 3.0)) and norm.hi == pytest.approx((-0.70, 6.0))
    pts = [norm(p) for _, p in candidates(recs, OA_FLOPS)]
    assert front_hypervolume(recs, OA_FLOPS, norm) == pytest.approx(
        hypervolume(pts, (REFERENCE, REFERENCE)))
    ref = norm.reference_raw()
    assert ref["val_oa"] == pytest.approx(0.95 - 1.1 * 0.25)
    assert math.log10(ref["flops"]) == pytest.approx(3 + 1.1 * 3)


def test_pareto_plot_ticks_are_plain_and_picks_starred(tmp_path) -> None:
    from autors.search.plots import _compact, plot_pareto

    # issue 19: log axes got overlapping '2x10^-1 3x10^-1' minor labels; now plain, no minors
    assert [_compact(v) for v in (0.2, 3.0, 4_500.0, 3.2e6, 1.5e9)] == \
        ["0.2", "3", "4.5k", "3.2M", "1.5G"]
    recs = [_rec(0, 0.90, 100_000), _rec(1, 0.88, 10_000), _rec(2, 0.80, 1_000)]
    three = [*OA_FLOPS, ObjectiveSpec(name="latency_ms", goal="min")]
    plot_pareto(recs, recs, three, tmp_path / "p.png", marks={1: "knee", 0: "EXPORTED"})
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")  # 3 pairs, starred picks


@pytest.mark.parametrize("objectives, message", [
    ([{"name": "val_oa", "goal": "max"}], "one objective"),
    ([{"name": "val_oa", "goal": "max"}, {"name": "fps", "goal": "min"}],
     r"search.objectives.1.name.*'fps' is not a value a trial records.*flops"),
    ([{"name": "val_oa", "goal": "up"}, {"name": "flops", "goal": "min"}],
     r"search.objectives.0.goal"),
    ([{"name": "flops", "goal": "min"}, {"name": "flops", "goal": "min"}],
     "flops listed more than once"),
])
def test_objectives_are_validated_naming_the_field(make_task, objectives, message,
                                                   tmp_path) -> None:
    data = make_task().model_dump(mode="json")
    data["search"]["objectives"] = objectives
    with pytest.raises(AutorsError, match=message):
        parse_task(data, tmp_path / "task.yaml")


def test_a_multi_objective_strategy_needs_objectives(make_task, tmp_path) -> None:
    with pytest.raises(SearchError, match="'nsga2' is a multi-objective strategy: set "
                                          "search.objectives"):
        run_search(make_task(strategy="nsga2"), SearchOptions(out_dir=tmp_path / "runs",
                                                              quiet=True),
                   Console(file=io.StringIO()))
    assert not (tmp_path / "runs").exists()  # failed before a run folder existed


PARAMS_OBJ = [{"name": "val_oa", "goal": "max"}, {"name": "params", "goal": "min"}]


def test_optuna_strategy_on_the_ray_engine_resumes_reseeded(
    make_task, trial_fns, helpers, tmp_path
) -> None:
    strategy = "nsga2"
    first = make_task(strategy=strategy, max_trials=6, concurrency=2, top_k=3,
                      objectives=PARAMS_OBJ)
    options = SearchOptions(out_dir=tmp_path, name="mo", quiet=True, trial_fn=trial_fns.cheap,
                            final_fn=trial_fns.cheap_final)
    a = run_search(first, options, Console(file=io.StringIO()))
    run = tmp_path / "mo"
    assert len(a.records) == 6 and len({arch_key(r.result.arch) for r in a.records}) == 6
    front = a.summary["front"]
    assert front["objectives"] == PARAMS_OBJ and front["explicit"]
    assert front["trial_ids"] and 0 < front["hypervolume"] <= REFERENCE ** 2
    assert set(front["normalisation"]["reference"]) == {"val_oa", "params"}
    finals = a.summary["final"]
    assert {w for f in finals for w in f["picked"]} >= {"knee", "most-accurate", "smallest"}
    assert {f["trial_id"] for f in finals} <= set(front["trial_ids"])
    rows = [json.loads(x) for x in helpers.lines(run / "final.jsonl")]
    assert all(r["picked"] for r in rows)
    # resume with a larger budget: the study is re-seeded with the 6 recorded trials
    more = make_task(strategy=strategy, max_trials=9, concurrency=2, top_k=3,
                     objectives=PARAMS_OBJ)
    b = run_search(more, SearchOptions(resume=run, quiet=True, trial_fn=trial_fns.cheap,
                                       final_fn=trial_fns.cheap_final),
                   Console(file=io.StringIO()))
    assert b.summary["sessions"][1]["restored"].startswith("6 trials added to the Optuna study")
    assert len(b.records) == 9 and len({arch_key(r.result.arch) for r in b.records}) == 9


@pytest.mark.parametrize("strategy, objectives", [("nsga2", PARAMS_OBJ), ("optuna_tpe", [])])
def test_optuna_strategies_keep_infeasible_and_failed_trials_off_the_front(
    strategy, objectives, make_task, trial_fns, tmp_path
) -> None:
    task = make_task(strategy=strategy, max_trials=6, concurrency=2, objectives=objectives,
                     constraints={"max_latency_ms": 0.25})  # cheap trial: latency = params/1e4
    out = run_search(task, SearchOptions(out_dir=tmp_path, name="c", quiet=True,
                                         trial_fn=trial_fns.nan,  # odd trials: NaN val_oa
                                         final_fn=trial_fns.cheap_final),
                     Console(file=io.StringIO()))
    by_id = {r.trial_id: r for r in out.records}
    assert not by_id[1].ok and "not a finite number" in by_id[1].reason
    on_front = set(out.summary["front"]["trial_ids"])
    assert on_front and all(by_id[t].ok and by_id[t].feasible for t in on_front)
    assert any(not r.feasible for r in out.records if r.ok)  # the constraint did bite


def test_real_search_exports_the_knee(make_task, local_ray, tmp_path, capsys) -> None:
    """Real training (multi-objective TPE), real final models: `autors export --pick` and the
    starred pareto.png."""
    task = make_task(strategy="motpe", max_trials=4, concurrency=2, top_k=2,
                     objectives=[{"name": "val_oa", "goal": "max"},
                                 {"name": "flops", "goal": "min"}])
    assert main(["search", str(task.source), "--out", str(tmp_path), "--name", "real",
                 "--quiet"]) == 0
    run = tmp_path / "real"
    rows = [json.loads(x) for x in (run / "final.jsonl").read_text().splitlines()]
    picked = {r["trial_id"]: r["picked"] for r in rows}
    knee = next(t for t, w in picked.items() if "knee" in w)
    assert main(["export", str(run), "--pick", "knee", "--out", str(tmp_path / "m")]) == 0
    card = json.loads((tmp_path / "m" / "model.json").read_text())
    trials = {json.loads(x)["trial_id"]: json.loads(x)
              for x in (run / "trials.jsonl").read_text().splitlines()}
    exported = json.loads((tmp_path / "m" / "arch.json").read_text())
    assert exported == trials[knee]["result"]["arch"]
    assert card["provenance"]["source_kind"] == "search"
    assert (tmp_path / "m" / "pareto.png").read_bytes().startswith(b"\x89PNG")
    assert "(--pick knee)" in capsys.readouterr().out
    assert main(["export", "--list", str(run)]) == 0
    assert "knee" in capsys.readouterr().out  # the picked column
    missing = next((p for p in ("smallest", "most-accurate")
                    if all(p not in w for w in picked.values())), None)
    if missing:  # top_k=2 may leave one extreme out: the error says what was picked
        with pytest.raises(AutorsError, match=f"no final model .* was picked as '{missing}'"):
            main(["export", str(run), "--pick", missing, "--out", str(tmp_path / "n")])
