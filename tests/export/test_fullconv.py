"""Fully convolutional prediction of patch classifiers: the same map as one pass per patch,
used only where it is exact, and a fallback (with a note) when its check disagrees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

import fusion
from autors.cli import main
from autors.export import fullconv
from autors.export.loader import load_exported
from autors.export.predict import PredictOptions, PredictResult, predict_scene


def _predict(model: Path, scene, out: Path, **options) -> tuple[PredictResult, np.ndarray,
                                                                 np.ndarray]:
    result = predict_scene(load_exported(model), scene.sensors(), out,
                           PredictOptions(window=24, probabilities=True, **options),
                           progress=False)
    with rasterio.open(result.class_map) as ds:
        classes = ds.read(1)
    with rasterio.open(result.scores) as ds:
        scores = ds.read()
    return result, classes, scores


def test_fully_convolutional_map_equals_the_per_patch_map(centre_exported: Path, scene,
                                                          tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(fullconv, "STRIP_ROWS", 10)  # several strips, a padded last one
    fast, classes, scores = _predict(centre_exported, scene, tmp_path / "fast.tif")
    slow, classes_ref, scores_ref = _predict(centre_exported, scene, tmp_path / "slow.tif",
                                             fully_convolutional=False)
    assert (fast.method, slow.method) == ("fully convolutional", "per patch")
    assert fast.notes == [] and fast.valid_pixels == slow.valid_pixels > 0
    assert np.array_equal(classes, classes_ref)
    np.testing.assert_allclose(scores, scores_ref, atol=1e-5)  # confidence + probabilities
    assert np.array_equal(np.isnan(scores), np.isnan(scores_ref))


def test_a_disagreement_on_the_first_window_falls_back_to_patches(
    centre_exported: Path, scene, tmp_path: Path, monkeypatch
) -> None:
    real = fullconv.window_logits
    monkeypatch.setattr("autors.export.predict.window_logits",
                        lambda *a: real(*a) + 0.5 * (real(*a).argsort(dim=0) == 0))
    result, classes, scores = _predict(centre_exported, scene, tmp_path / "m.tif")
    assert result.method == "per patch"
    assert len(result.notes) == 1 and "differed from per-patch inference" in result.notes[0]
    _, classes_ref, scores_ref = _predict(centre_exported, scene, tmp_path / "ref.tif",
                                          fully_convolutional=False)
    assert np.array_equal(classes, classes_ref)
    np.testing.assert_allclose(scores, scores_ref, atol=1e-6)


def test_models_that_are_not_local_predict_per_patch(exported: Path, centre_exported: Path,
                                                     scene, tmp_path: Path) -> None:
    result, _, _ = _predict(exported, scene, tmp_path / "patch_head.tif")  # mean over patch
    assert result.method == "per patch" and result.notes == []
    result, _, _ = _predict(centre_exported, scene, tmp_path / "mc.tif", mc_dropout=2)
    assert result.method == "per patch"  # per-patch dropout masks


@pytest.mark.parametrize("change, reason", [
    ({"fusion": {"op": "gate", "position": "middle", "width": 8, "trunk": {"kind": "off"}}},
     "'gate' fusion operator pools over the patch"),
    ({"fusion": {"op": "sum", "position": "late"}}, "late fusion has a head per sensor"),
    ({"branches": {"a": {"kind": "conv", "width": 4, "depth": 3, "kernel": 5},
                   "b": {"kind": "conv", "width": 4, "depth": 0, "kernel": 3}}},
     "receptive field reaches"),
])
def test_ineligible_architectures_say_why(change: dict, reason: str) -> None:
    arch = {"version": 1,
            "branches": {"a": {"kind": "conv", "width": 4, "depth": 1, "kernel": 3},
                         "b": {"kind": "conv", "width": 4, "depth": 0, "kernel": 3}},
            "fusion": {"op": "concat", "position": "middle", "width": 8,
                       "trunk": {"kind": "off"}},
            "head": {"kind": "centre", "hidden": 0, "dropout": 0.0}}
    channels = {"a": 3, "b": 2}
    patch = 7
    spec = fusion.Arch.from_dict(arch)
    ok, why = fullconv.window_model(fusion.build_model(spec, channels, 3), spec, channels, patch)
    assert ok is not None and why == "", "the base architecture is eligible"
    spec = fusion.Arch.from_dict({**arch, **change})
    model, why = fullconv.window_model(fusion.build_model(spec, channels, 3), spec, channels,
                                       patch)
    assert model is None and reason in why


def test_cli_says_which_method_and_per_patch_forces_patches(centre_exported: Path, scene,
                                                            tmp_path: Path, capsys) -> None:
    base = ["predict", str(centre_exported), *scene.sensor_args(), "--quiet", "--out"]
    assert main([*base, str(tmp_path / "a.tif")]) == 0
    assert "(fully convolutional)" in capsys.readouterr().err
    assert main([*base, str(tmp_path / "b.tif"), "--per-patch"]) == 0
    assert "(per patch)" in capsys.readouterr().err
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert np.array_equal(a.read(), b.read())
