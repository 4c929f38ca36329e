"""Fully convolutional prediction of patch classifiers: the same map as one pass per patch,
used only where it is exact, and a fallback (with a note) when its check disagrees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

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


@pytest.mark.parametrize("skip", [(), ("sar",), ("optical", "lidar")],
                         ids=["all", "without_sar", "sar_and_hsi"])
def test_with_masks_and_missing_sensors_the_maps_are_the_same(
    cloudy_model, cloudy, tmp_path: Path, monkeypatch, skip: tuple[str, ...]
) -> None:
    """Mask rasters, QA bands, gaps and absent sensors: the fully convolutional pass gives the
    per-patch map (its parity check on the first window passes: no note)."""
    monkeypatch.setattr(fullconv, "STRIP_ROWS", 10)
    loaded = load_exported(cloudy_model.model)
    sensors = {s: p for s, p in cloudy.sensors().items() if s not in skip}
    masks = {s: p for s, p in cloudy.masks().items() if s not in skip}
    maps = []
    for fast in (True, False):
        out = tmp_path / f"{fast}.tif"
        result = predict_scene(loaded, sensors, out, PredictOptions(
            window=24, probabilities=True, fully_convolutional=fast), progress=False,
            masks=masks)
        assert result.notes == [] and result.absent == list(skip)
        with rasterio.open(result.class_map) as ds, rasterio.open(result.scores) as sc:
            maps.append((result.method, ds.read(1), sc.read()))
    (fast_method, classes, scores), (slow_method, classes_ref, scores_ref) = maps
    assert (fast_method, slow_method) == ("fully convolutional", "per patch")
    assert np.array_equal(classes, classes_ref)
    np.testing.assert_allclose(scores, scores_ref, atol=1e-5)
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
    assert result.method == "fully convolutional"  # one dropout mask per pass over a window


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


# -- the parts say whether they are local: every registered operator, and new ones ------------
def _two_sensor_arch(op: str) -> fusion.Arch:
    return fusion.Arch.from_dict({
        "version": 1,
        "branches": {"a": {"kind": "conv", "width": 4, "depth": 1, "kernel": 3},
                     "b": {"kind": "conv", "width": 6, "depth": 0, "kernel": 3}},
        "fusion": {"op": op, "position": "middle", "width": 8, "trunk": {"kind": "off"}},
        "head": {"kind": "centre", "hidden": 8, "dropout": 0.0}})


def _per_patch_logits(model, window: dict, patch: int) -> torch.Tensor:
    """[K, h, w]: the model on the patch around every pixel whose patch fits in the window."""
    r = patch // 2
    side = next(iter(window.values())).shape[-1]
    rows = []
    for i in range(r, side - r):
        patches = {n: torch.stack([x[0, :, i - r:i + r + 1, j - r:j + r + 1]
                                   for j in range(r, side - r)]) for n, x in window.items()}
        rows.append(model(patches))  # [w, K]
    return torch.stack(rows).permute(2, 0, 1)


@pytest.mark.parametrize("op", sorted(fusion.FUSION_OPS.names()))
def test_every_operator_that_declares_itself_local_gives_the_per_patch_logits(op: str) -> None:
    """The declaration is what fullconv trusts: a local operator must give exactly the per-patch
    logits at every pixel; the others are refused by their declaration."""
    torch.manual_seed(0)
    channels, patch = {"a": 3, "b": 2}, 7
    spec = _two_sensor_arch(op)
    model = fusion.build_model(spec, channels, 3).eval()
    dense, why = fullconv.window_model(model, spec, channels, patch)
    if not fusion.FUSION_OPS.get(op).local:
        assert dense is None and f"'{op}' fusion operator pools over the patch" in why
        return
    assert dense is not None and why == ""
    window = {n: torch.randn(1, c, 15, 15) for n, c in channels.items()}
    with torch.no_grad():
        want = _per_patch_logits(model, window, patch)
        got = dense(window)[0, :, patch // 2:-(patch // 2), patch // 2:-(patch // 2)]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


class MaxFusion(fusion.FusionOp):
    """Test operator: elementwise max of 1x1 projections (local)."""

    local = True

    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__(in_channels, out_channels)
        self.proj = torch.nn.ModuleList(torch.nn.Conv2d(c, out_channels, 1) for c in in_channels)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        out = self.proj[0](xs[0])
        for i, conv in enumerate(self.proj):
            if i > 0:
                out = torch.maximum(out, conv(xs[i]))
        return out


class ContextFusion(MaxFusion):
    """Test operator: adds the patch mean (not local, and does not claim to be)."""

    local = False

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        out = super().forward(xs)
        return out + out.mean(dim=(2, 3), keepdim=True)


@pytest.fixture
def registered_ops() -> object:
    """MaxFusion and ContextFusion registered as fusion operators for one test."""
    fusion.FUSION_OPS.register("test_max")(MaxFusion)
    fusion.FUSION_OPS.register("test_context")(ContextFusion)
    yield
    fusion.FUSION_OPS.unregister("test_max")
    fusion.FUSION_OPS.unregister("test_context")


def test_a_newly_registered_local_operator_predicts_fully_convolutionally(
    registered_ops: object, train_and_export, scene, tmp_path: Path
) -> None:
    """fullconv knows no operator names: a local operator registered here gets the fast path
    and the per-patch map; a registered operator that pools is refused, saying why."""
    conv = {"kind": "conv", "width": 4, "depth": 1, "kernel": 3}
    arch = {"version": 1,
            "branches": {"optical": conv, "sar": {"kind": "off"}, "lidar": conv, "hsi": conv},
            "fusion": {"op": "test_max", "position": "middle", "width": 8,
                       "trunk": {"kind": "off"}},
            "head": {"kind": "centre", "hidden": 8, "dropout": 0.0}}
    model = train_and_export(scene.task, tmp_path, arch, "--epochs", "1")
    fast, classes, scores = _predict(model, scene, tmp_path / "fast.tif")
    _, classes_ref, scores_ref = _predict(model, scene, tmp_path / "slow.tif",
                                          fully_convolutional=False)
    assert (fast.method, fast.notes) == ("fully convolutional", [])
    assert np.array_equal(classes, classes_ref)
    np.testing.assert_allclose(scores, scores_ref, atol=1e-5)

    spec = _two_sensor_arch("test_context")
    channels = {"a": 3, "b": 2}
    dense, why = fullconv.window_model(fusion.build_model(spec, channels, 3), spec, channels, 7)
    assert dense is None
    assert why == ("the 'test_context' fusion operator pools over the patch or mixes positions "
                   "(it does not declare itself local)")
