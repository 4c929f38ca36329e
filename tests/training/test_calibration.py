"""Temperature scaling and split-conformal sets (`autors.training.calibration`): the numbers on
made-up logits with known answers, then the real trial path on the tiny GeoTIFF scene (patch
and segmentation): fitted on validation, measured on test, never fitted on test."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import fusion
from autors.config import TaskSpec
from autors.data import PreparedData
from autors.training.calibration import (
    CONFORMAL_ALPHAS,
    REPORTED_ALPHAS,
    Calibration,
    CalibrationCheck,
    TemperatureScaled,
    auroc,
    ece_of_bins,
    fit,
    fit_temperature,
    nll,
    prediction_sets,
    reliability_bins,
    softmax,
    split_conformal_quantiles,
)
from autors.training.evaluate import evaluate, predict_split
from autors.training.metrics import expected_calibration_error
from autors.training.train_folder import RELIABILITY_PNG, read_train_folder, train_and_write
from autors.training.trial import TrainedModel, train_evaluate


def _overconfident(n: int, k: int, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z) and logits z * scale: the right temperature is `scale`."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, k))
    p = softmax(z)
    y = (rng.random((n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    return z * scale, np.minimum(y, k - 1)


def test_the_fitted_temperature_undoes_a_known_overconfidence() -> None:
    logits, target = _overconfident(40_000, 4, 3.0, seed=0)
    t, at_bound = fit_temperature(logits, target)
    assert not at_bound
    assert abs(t - 3.0) < 0.15
    # the minimum of the NLL: no temperature on a fine grid does better
    grid = np.exp(np.linspace(math.log(0.2), math.log(20), 400))
    assert nll(logits, target, t) <= min(nll(logits, target, g) for g in grid) + 1e-9
    # and calibration improves: ECE of the scaled probabilities is small, the raw one is not
    cal, raw = softmax(logits, t), softmax(logits)
    correct = raw.argmax(1) == target
    assert expected_calibration_error(cal.max(1), correct) < 0.015
    assert expected_calibration_error(raw.max(1), correct) > 0.1


def test_an_underconfident_model_gets_a_temperature_below_one_and_bounds_are_reported() -> None:
    logits, target = _overconfident(20_000, 3, 0.5, seed=1)
    t, _ = fit_temperature(logits, target)
    assert abs(t - 0.5) < 0.05
    # separable data: the NLL falls as T -> 0, the search stops at the bound and says so
    sep = np.array([[5.0, -5.0], [-5.0, 5.0]] * 50)
    t, at_bound = fit_temperature(sep, np.array([0, 1] * 50))
    assert at_bound and t == pytest.approx(0.05, rel=1e-5)
    # ... and `fit` then keeps the raw softmax (T = 1) rather than an unbounded sharpening
    cal = fit(sep, np.array([0, 1] * 50))
    assert cal.temperature == 1.0 and cal.val["at_bound"]
    assert cal.val["nll_after"] == cal.val["nll_before"]
    with pytest.raises(ValueError, match="no labelled pixel"):
        fit_temperature(np.zeros((0, 2)), np.zeros(0, np.int64))


def test_binned_ece_is_the_metrics_ece() -> None:
    rng = np.random.default_rng(2)
    conf = np.concatenate([rng.random(5000), [0.0, 1.0, 1 / 15, 2 / 15]])
    correct = rng.random(conf.size) < conf
    assert ece_of_bins(*reliability_bins(conf, correct)) == pytest.approx(
        expected_calibration_error(conf, correct), abs=1e-12)


def test_conformal_quantile_uses_the_finite_sample_rank() -> None:
    scores = np.arange(1, 10) / 10  # n = 9: 0.1 .. 0.9
    q = dict(zip((0.1, 0.2, 0.5), split_conformal_quantiles(scores, (0.1, 0.2, 0.5))))
    # ceil(10 * 0.9) = 9th, ceil(10 * 0.8) = 8th, ceil(10 * 0.5) = 5th smallest
    assert q == {0.1: pytest.approx(0.9), 0.2: pytest.approx(0.8), 0.5: pytest.approx(0.5)}
    # n = 8, alpha 0.1: rank ceil(8.1) = 9 > n: every class is in the set
    assert split_conformal_quantiles(np.arange(1, 9) / 10, (0.1,)) == [1.0]
    # (n + 1)(1 - alpha) = 900 exactly, not 900.0000000000001 -> 901
    s = np.arange(999) / 1000
    assert split_conformal_quantiles(s, (0.1,)) == [pytest.approx(s[899])]


def test_split_conformal_sets_cover_exchangeable_pixels_at_the_nominal_rate() -> None:
    """Calibration and test pixels from one distribution: coverage >= 1 - alpha on average,
    and close to it (the LAC sets are not needlessly large)."""
    logits, target = _overconfident(60_000, 5, 2.0, seed=3)
    cal = fit(logits[:20_000], target[:20_000])
    probs = softmax(logits[20_000:], cal.temperature)
    for alpha in (0.05, 0.1, 0.2):
        sets = prediction_sets(probs, cal.quantile(alpha))
        coverage = sets[np.arange(len(sets)), target[20_000:]].mean()
        assert 1 - alpha - 0.01 <= coverage <= 1 - alpha + 0.015, (alpha, coverage)
    with pytest.raises(ValueError, match="0.01, 0.02"):
        cal.quantile(0.123)


def test_auroc_matches_pairwise_counting_with_ties() -> None:
    rng = np.random.default_rng(4)
    score = rng.integers(0, 5, 60).astype(float)  # many ties
    pos = rng.random(60) < 0.4
    pairs = [(1.0 if a > b else 0.5 if a == b else 0.0)
             for a, b in itertools.product(score[pos], score[~pos])]
    assert auroc(score, pos) == pytest.approx(np.mean(pairs))
    assert auroc(score, np.zeros(60, bool)) is None


def test_the_check_streams_the_same_figures_as_whole_arrays() -> None:
    logits, target = _overconfident(3000, 3, 2.5, seed=5)
    cal = fit(logits[:1500], target[:1500])
    check = CalibrationCheck(cal)
    for i in range(1500, 3000, 250):  # batches
        check.add(torch.from_numpy(logits[i:i + 250]).float(), torch.from_numpy(target[i:i + 250]))
    r = check.result()
    z, y = logits[1500:].astype(np.float32).astype(np.float64), target[1500:]
    raw, scaled = softmax(z), softmax(z, cal.temperature)
    correct = raw.argmax(1) == y
    assert r["pixels"] == 1500
    assert r["ece_before"] == pytest.approx(expected_calibration_error(raw.max(1), correct))
    assert r["ece_after"] == pytest.approx(expected_calibration_error(scaled.max(1), correct))
    assert r["nll_after"] == pytest.approx(nll(z, y, cal.temperature))
    ent = -(scaled * np.log(scaled)).sum(1)
    assert r["entropy_auroc"] == pytest.approx(auroc(ent, ~correct), abs=1e-6)
    for row, alpha in zip(r["conformal"], REPORTED_ALPHAS):
        sets = prediction_sets(scaled, cal.quantile(alpha))
        assert row["alpha"] == alpha
        assert row["coverage"] == pytest.approx(sets[np.arange(1500), y].mean())
        assert row["mean_set_size"] == pytest.approx(sets.sum(1).mean())
        assert row["empty"] == pytest.approx((sets.sum(1) == 0).mean())
    assert sum(r["reliability"]["after"]["count"]) == 1500
    json.dumps(r, allow_nan=False)  # JSON-able, no NaN


def test_temperature_scaled_divides_the_logits_and_scripts() -> None:
    model = fusion.build_model("late_cnn", {"a": 2}, 3).eval()
    x = {"a": torch.randn(2, 2, 7, 7)}
    wrapped = TemperatureScaled(model, 2.0).eval()
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), model(x) / 2.0)
        torch.testing.assert_close(torch.jit.script(wrapped)(x), model(x) / 2.0)
    with pytest.raises(ValueError, match="> 0"):
        TemperatureScaled(model, 0.0)


def _quick(task: TaskSpec, **train: object) -> TaskSpec:
    d = task.to_dict()
    d["train"].update({"epochs": 3, "max_train_samples": 256} | train)
    return TaskSpec.from_dict(d)


@dataclasses.dataclass
class CountingData(PreparedData):
    asked: list[str] = dataclasses.field(default_factory=list)

    def dataset(self, split: str, augment: bool = False, seed: int = 0, condition=None):
        self.asked.append(split if condition is None else f"{split}:{condition.name}")
        return super().dataset(split, augment, seed, condition)


def test_train_evaluate_calibrates_on_validation_and_only_measures_on_test(
    patch_task: TaskSpec, patch_data: PreparedData
) -> None:
    data = CountingData(**{f.name: getattr(patch_data, f.name)
                           for f in dataclasses.fields(PreparedData) if f.init})
    task = _quick(patch_task)
    trained = train_evaluate(task, "late_cnn", data, 0, test=True, calibrate=True)
    cal = trained.calibration
    assert cal is not None and cal.temperature > 0
    assert data.asked.count("test") == 1  # the test figures come from the one test pass
    # fitted on every labelled validation pixel: the model's own validation logits
    n_val = sum(patch_data.index.counts()["val"])
    assert cal.val["pixels"] == cal.conformal["n"] == n_val
    refit = fit(*_logits(trained.outcome.model, patch_data, "val"))
    assert refit.temperature == pytest.approx(cal.temperature, rel=1e-9)
    assert cal.val["nll_after"] <= cal.val["nll_before"] + 1e-12
    assert cal.conformal["alphas"] == list(CONFORMAL_ALPHAS)
    assert cal.conformal["quantiles"] == sorted(cal.conformal["quantiles"], reverse=True)
    # test: measured with the fitted values, the raw ECE is the test metrics' ECE
    checked = trained.test_metrics["calibration"]
    assert checked["temperature"] == cal.temperature
    assert checked["pixels"] == trained.test_metrics["num_samples"]
    assert checked["ece_before"] == pytest.approx(trained.test_metrics["ece"], abs=1e-9)
    assert [c["quantile"] for c in checked["conformal"]] == [cal.quantile(a)
                                                            for a in REPORTED_ALPHAS]
    # the same numbers from the test logits directly
    z, y = _logits(trained.outcome.model, patch_data, "test")
    scaled = softmax(z, cal.temperature)
    sets = prediction_sets(scaled, cal.quantile(0.1))
    row = next(c for c in checked["conformal"] if c["alpha"] == 0.1)
    assert row["coverage"] == pytest.approx(sets[np.arange(len(y)), y].mean())
    m = trained.metrics()
    assert m["temperature"] == cal.temperature and m["test_ece_calibrated"] == \
        checked["ece_after"]
    # through the worker -> driver hand-over unchanged
    json.dumps(trained.pack()["calibration"], allow_nan=False)
    assert TrainedModel.unpack(trained.pack(), patch_data).calibration == cal


def _logits(model: torch.nn.Module, data: PreparedData, split: str
            ) -> tuple[np.ndarray, np.ndarray]:
    zs, ys = [], []
    predict_split(model, data, split, 64, on_logits=lambda z, y: (zs.append(z.numpy()),
                                                                  ys.append(y.numpy())))
    return np.concatenate(zs).astype(np.float64), np.concatenate(ys)


def test_a_search_trial_is_not_calibrated(patch_task: TaskSpec, patch_data: PreparedData
                                          ) -> None:
    trained = train_evaluate(_quick(patch_task, epochs=1), "late_cnn", patch_data, 0)
    assert trained.calibration is None and "temperature" not in trained.metrics()


def test_segmentation_calibrates_on_the_labelled_validation_pixels(
    seg_task: TaskSpec, seg_data: PreparedData
) -> None:
    trained = train_evaluate(_quick(seg_task), "unet", seg_data, 0, test=True, calibrate=True)
    cal = trained.calibration
    # every labelled validation pixel once (not tiles, not unlabelled pixels)
    assert cal.val["pixels"] == evaluate(trained.outcome.model, seg_data, "val")["num_samples"]
    assert cal.val["pixels"] == sum(seg_data.index.counts()["val"])
    checked = trained.test_metrics["calibration"]
    assert checked["pixels"] == trained.test_metrics["num_samples"]
    assert 0 <= checked["ece_after"] <= 1 and math.isfinite(checked["nll_after"])


def test_autors_train_records_the_calibration_and_the_reliability_diagram(
    patch_task: TaskSpec, patch_data: PreparedData, tmp_path: Path
) -> None:
    trained = train_and_write(_quick(patch_task), "late_cnn", patch_data, 1, tmp_path / "run",
                              test=True)
    folder = read_train_folder(tmp_path / "run")
    assert folder.calibration == trained.calibration
    assert folder.metrics["test"]["calibration"]["temperature"] == trained.calibration.temperature
    png = tmp_path / "run" / RELIABILITY_PNG
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5000
    # without --test: calibrated on validation, no test figures, no diagram
    train_and_write(_quick(patch_task), "late_cnn", patch_data, 1, tmp_path / "val_only")
    folder = read_train_folder(tmp_path / "val_only")
    assert isinstance(folder.calibration, Calibration) and "test" not in folder.metrics
    assert not (tmp_path / "val_only" / RELIABILITY_PNG).exists()
