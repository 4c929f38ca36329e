"""Calibrated confidence and conformal prediction sets in `autors predict` (issue 21 items 1
and 4), on the real exported tiny model of the synthetic scene (`autors train --test`, `autors
export`): the default map is softmax(logits / T) with the card's T, `--uncalibrated` the raw
softmax, and the `--conformal` set bands at the test pixels reproduce the coverage the card
measured on test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from autors.cli import main
from autors.errors import DataError, ModelFolderError
from autors.export.loader import load_exported
from autors.export.predict import PredictOptions, predict_scene

from .conftest import Scene


def _predict(model: Path, scene: Scene, out: Path, *extra: str) -> int:
    return main(["predict", str(model), *scene.sensor_args(), "--out", str(out), "--quiet",
                 *extra])


def _maps(out: Path) -> tuple[np.ndarray, np.ndarray, tuple, dict]:
    """(class map, confidence file bands, band names, its tags)."""
    with rasterio.open(out) as ds:
        classes = ds.read(1)
    with rasterio.open(out.with_name(f"{out.stem}_confidence.tif")) as ds:
        return classes, ds.read(), ds.descriptions, ds.tags()


def _test_pixels(scene: Scene, values: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(mask of the test raster's labelled pixels, their class index [H, W], -1 elsewhere)."""
    with rasterio.open(scene.folder / "test.tif") as ds:
        ref = ds.read(1)
    lookup = np.full(max(values) + 1, -1)
    lookup[values] = np.arange(len(values))
    pick = np.isin(ref, values)
    return pick, np.where(pick, lookup[np.where(pick, ref, 0)], -1)


def test_the_map_is_calibrated_by_default_and_raw_on_request(
    exported: Path, train_run: Path, scene: Scene, tmp_path: Path
) -> None:
    card = load_exported(exported).card
    t = card.calibration.temperature
    assert t > 0 and abs(t - 1) > 1e-3  # a real temperature, so the two maps differ
    assert _predict(exported, scene, tmp_path / "cal.tif", "--probabilities") == 0
    assert _predict(exported, scene, tmp_path / "raw.tif", "--probabilities",
                    "--uncalibrated") == 0
    c_cls, c_scores, names, c_tags = _maps(tmp_path / "cal.tif")
    r_cls, r_scores, _, r_tags = _maps(tmp_path / "raw.tif")
    np.testing.assert_array_equal(c_cls, r_cls)  # T never changes the class
    k = card.num_classes
    valid = ~np.isnan(c_scores[0])
    p_cal, p_raw = c_scores[-k:][:, valid], r_scores[-k:][:, valid]
    # softmax(z / T) = p^(1/T) / sum p^(1/T)
    powered = p_raw.astype(np.float64) ** (1 / t)
    np.testing.assert_allclose(p_cal, powered / powered.sum(0), rtol=0, atol=2e-4)
    np.testing.assert_allclose(c_scores[0][valid], p_cal.max(0), rtol=0, atol=1e-6)
    assert c_tags["calibration"].startswith(f"temperature {t:.6g}")
    assert r_tags["calibration"].startswith("none (raw softmax, --uncalibrated")
    # the maps' ECE at the test pixels: the run's test figures, raw and calibrated
    checked = json.loads((train_run / "metrics.json").read_text())["test"]["calibration"]
    pick, target = _test_pixels(scene, card.class_values)
    pick &= valid
    lookup = {v: i for i, v in enumerate(card.class_values)}
    pred = np.vectorize(lookup.get)(c_cls[pick])
    from autors.training.metrics import expected_calibration_error as ece

    assert ece(r_scores[0][pick], pred == target[pick]) == pytest.approx(
        checked["ece_before"], abs=1e-6)
    assert ece(c_scores[0][pick], pred == target[pick]) == pytest.approx(
        checked["ece_after"], abs=1e-6)
    assert "set_size" not in names


def test_conformal_sets_reproduce_the_cards_test_coverage(
    exported: Path, scene: Scene, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    card = load_exported(exported).card
    q = card.calibration.conformal.quantile(0.1)
    assert _predict(exported, scene, tmp_path / "m.tif", "--conformal", "0.1",
                    "--probabilities") == 0
    err = capsys.readouterr().err
    assert "confidence: calibrated: softmax(logits /" in err
    assert "prediction sets at alpha 0.1" in err and "measured on test: coverage" in err
    _, scores, names, tags = _maps(tmp_path / "m.tif")
    assert names[-2:] == ("set_size", "set_mask")
    assert tags["conformal_alpha"] == "0.1" and float(tags["conformal_quantile"]) == \
        pytest.approx(q)
    k = card.num_classes
    size, mask, probs = scores[-2], scores[-1], scores[-2 - k:-2]
    valid = ~np.isnan(scores[0])
    np.testing.assert_array_equal(np.isnan(size), ~valid)
    inside = (1.0 - probs[:, valid].astype(np.float64)) <= q  # [K, n]
    np.testing.assert_array_equal(size[valid], inside.sum(0))
    bits = mask[valid].astype(np.int64)
    np.testing.assert_array_equal(bits, (inside * (1 << np.arange(k))[:, None]).sum(0))
    # at the test pixels: the coverage and set size the card measured on test
    pick, target = _test_pixels(scene, card.class_values)
    pick &= valid
    covered = (mask[pick].astype(np.int64) >> target[pick]) & 1
    row = next(r for r in card.calibration.conformal.test if r.alpha == 0.1)
    n = int(pick.sum())
    assert n == card.calibration.test.pixels
    assert covered.mean() == pytest.approx(row.coverage, abs=1.01 / n)
    assert size[pick].mean() == pytest.approx(row.mean_set_size, abs=1.01 / n)
    assert (size[pick] == 0).mean() == pytest.approx(row.empty, abs=1.01 / n)


def test_conformal_errors_name_the_fix(exported: Path, model_copy: Path, scene: Scene,
                                       tmp_path: Path) -> None:
    loaded = load_exported(exported)
    maps = tmp_path / "maps"
    maps.mkdir()
    cases = [(PredictOptions(conformal=0.123), DataError, r"0\.123 is not among .*0\.01, 0\.02"),
             (PredictOptions(conformal=0.1, calibrated=False), DataError,
              "leave out --uncalibrated"),
             (PredictOptions(conformal=0.1, mc_dropout=4), DataError, "use one of the two")]
    for i, (options, error, text) in enumerate(cases):
        with pytest.raises(error, match=text):
            predict_scene(loaded, scene.sensors(), maps / f"e{i}.tif", options,
                          progress=False)
    assert not list(maps.iterdir())  # refused before any file
    with pytest.raises(ValueError, match=r"error rate in \(0, 1\)"):
        PredictOptions(conformal=1.5)
    # a card written before calibration (format 4): raw confidence with a note, no sets
    card = json.loads((model_copy / "model.json").read_text())
    old = dict({k: v for k, v in card.items() if k != "calibration"}, format=4)
    (model_copy / "model.json").write_text(json.dumps(old))
    before = load_exported(model_copy)
    with pytest.raises(ModelFolderError, match="records no conformal quantiles"):
        predict_scene(before, scene.sensors(), maps / "old.tif",
                      PredictOptions(conformal=0.1), progress=False)
    result = predict_scene(before, scene.sensors(), maps / "old.tif", progress=False)
    assert any("records no temperature" in n for n in result.notes)
    assert result.calibration.startswith("raw softmax")


def test_dense_maps_get_calibrated_confidence_and_set_bands(seg_exported: Path, scene: Scene,
                                                           tmp_path: Path) -> None:
    loaded = load_exported(seg_exported)
    cal = loaded.card.calibration
    assert cal is not None and cal.in_compiled and cal.val.pixels > 0
    out = tmp_path / "seg.tif"
    result = predict_scene(loaded, scene.sensors(), out,
                           PredictOptions(conformal=0.2, probabilities=True), progress=False)
    assert result.bands[-2:] == ["set_size", "set_mask"]
    assert result.conformal_quantile == cal.conformal.quantile(0.2)
    _, scores, _, _ = _maps(out)
    k = loaded.card.num_classes
    valid = ~np.isnan(scores[0])
    inside = (1.0 - scores[-2 - k:-2][:, valid].astype(np.float64)) <= result.conformal_quantile
    np.testing.assert_array_equal(scores[-2][valid], inside.sum(0))
