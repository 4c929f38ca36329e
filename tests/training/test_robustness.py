"""Robustness evaluation: sensors removed and seeded clouds, on the same pixels; the robust
objective and the worst-case constraint."""

from __future__ import annotations

import numpy as np
import pytest

from autors.config import ConstraintSpec, TaskSpec
from autors.data import PreparedData
from autors.data.conditions import Condition, cloud_field, standard_conditions
from autors.search.scoring import judge
from autors.training.result import Cost, TrialResult
from autors.training.robustness import robust_scores
from autors.training.trial import train_evaluate


def test_cloud_fields_cover_exactly_and_nest() -> None:
    small, big = (cloud_field((120, 90), c, seed=3, scene=1) for c in (0.1, 0.6))
    assert small.mean() == pytest.approx(0.1, abs=0.01) and big.mean() == pytest.approx(0.6,
                                                                                      abs=0.01)
    assert not (small & ~big).any()  # more cover clouds a superset
    assert not np.array_equal(cloud_field((120, 90), 0.3, 3, 1), cloud_field((120, 90), 0.3, 3, 2))
    # regions, not salt and pepper: most clouded pixels have clouded neighbours
    inner = big[1:-1, 1:-1] & big[:-2, 1:-1] & big[2:, 1:-1] & big[1:-1, :-2] & big[1:-1, 2:]
    assert inner.sum() > 0.8 * big[1:-1, 1:-1].sum()


def test_standard_conditions_follow_the_sensor_kinds() -> None:
    names = [c.name for c in standard_conditions({"s1": "sar", "s2": "optical"})]
    assert names == ["clean", "without_s1", "without_s2", "cloud_10", "cloud_30", "cloud_60"]
    assert [c.name for c in standard_conditions({"dem": "lidar"})] == ["clean"]


def test_conditions_score_the_same_pixels_and_remove_only_their_sensor(
    patch_task: TaskSpec, patch_data: PreparedData
) -> None:
    ds = patch_data.dataset("val")
    removed = patch_data.dataset("val", condition=Condition("w", removed=("lidar",)))
    clouds = patch_data.dataset("val", condition=Condition(
        "c", cloud_cover=0.5, clouded=("optical",), seed=1))
    assert len(ds) == len(removed) == len(clouds)
    a, b, c = ds[3], removed[3], clouds[3]
    assert b["lidar"].abs().sum() == 0 and b["lidar__mask"].sum() == 0
    assert np.array_equal(a["optical"].numpy(), b["optical"].numpy())
    assert np.array_equal(a["lidar"].numpy(), c["lidar"].numpy())  # LiDAR: flown below them
    n_clear = [float(clouds[i]["optical__mask"].mean()) for i in range(0, len(ds), 7)]
    assert 0.2 < np.mean(n_clear) < 0.8


def test_test_evaluation_reports_every_condition(
    patch_task: TaskSpec, patch_data: PreparedData
) -> None:
    task = patch_task.model_copy(update={"train": patch_task.train.model_copy(
        update={"epochs": 1, "max_train_samples": 64})})
    trained = train_evaluate(task, "late_cnn", patch_data, seed=0, test=True)
    table = trained.metrics()["test_robustness"]
    used = trained.outcome.arch.sensors
    assert set(table) == {"clean", *(f"without_{s}" for s in used), "cloud_10", "cloud_30",
                          "cloud_60"}
    assert len({v["num_samples"] for v in table.values()}) == 1  # the same pixels
    assert table["clean"]["oa"] == pytest.approx(trained.test_metrics["oa"])
    assert all(0 <= v["ece"] <= 1 for v in table.values())
    scores = robust_scores(table)
    assert scores["oa_worst_missing"] == min(table[f"without_{s}"]["oa"] for s in used)


def _ok(metrics: dict) -> TrialResult:
    return TrialResult(trial_id=1, arch={}, seed=0, status="ok", metrics=metrics,
                       cost=Cost(params=10, flops=10, latency_ms_b1=1.0,
                                 latency_ms_per_sample_b256=0.1, throughput_batch=256,
                                 threads=1))


def test_the_worst_case_constraint_makes_a_trial_infeasible() -> None:
    limits = ConstraintSpec(min_oa_when_missing=0.8)
    good = judge(_ok({"val_oa_robust": 0.9, "val_oa_worst_missing": 0.85}), "val_oa_robust", limits)
    bad = judge(_ok({"val_oa_robust": 0.95, "val_oa_worst_missing": 0.6}), "val_oa_robust", limits)
    assert good.feasible and good.score == 0.9
    assert not bad.feasible and bad.violations == {"min_oa_when_missing": pytest.approx(0.8 / 0.6)}
    assert bad.score < good.score
