"""Feature maps for reuse (`autors predict --features STAGE`, `autors export --features STAGE`):
a float16 GeoTIFF on the map's grid, streamed by windows, equal to the model's stage computed
per patch (patch classifiers) or over the whole scene (an encoder-decoder on the real
Sen1Floods11 chip); a feature-extractor ONNX graph checked against PyTorch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

import fusion
from autors.cli import main
from autors.errors import ModelFolderError
from autors.export.features import add_feature_onnx, features_path, predict_features
from autors.export.inputs import open_inputs
from autors.export.loader import load_exported
from autors.export.predict import PredictOptions, model_inputs

from .conftest import TINY_ARCH
from .test_dense_tiles import _train_export

pytestmark = [
    pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export"),
    pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning"),
]
TRUNK_ARCH = dict(TINY_ARCH, fusion={"op": "concat", "position": "middle", "width": 12,
                                     "trunk": {"kind": "conv", "width": 10, "depth": 0,
                                               "kernel": 3}},
                  head={"kind": "centre", "hidden": 16, "dropout": 0.2})
UNET = {  # S1 enters by 1 block, S2 by 2: they meet at scale 2, the trunk reaches scale 3
    "version": 1,
    "branches": {"s1": {"kind": "conv", "width": 4, "depth": 1, "kernel": 3},
                 "s2": {"kind": "conv", "width": 6, "depth": 2, "kernel": 3}},
    "fusion": {"op": "concat", "position": "middle", "width": 8,
               "trunk": {"kind": "conv", "width": 8, "depth": 1, "kernel": 3}},
    "head": {"kind": "segmentation", "hidden": 0, "dropout": 0.1},
    "decoder": {"width": 6, "skips": [2], "up": "bilinear", "context": "none"},
}


@pytest.fixture(scope="session")
def trunk_model(scene, tmp_path_factory: pytest.TempPathFactory, train_and_export) -> Path:
    """A centre-head model with a trunk (stages fused, trunk), exported with the feature
    graph of both (`autors export --features`)."""
    root = tmp_path_factory.mktemp("trunk")
    (root / "arch.json").write_text(json.dumps(TRUNK_ARCH))
    assert main(["train", str(scene.task), "--arch", str(root / "arch.json"), "--epochs", "2",
                 "--out", str(root / "run"), "--quiet"]) == 0
    assert main(["export", str(root / "run"), "--out", str(root / "model"), "--features",
                 "fused", "--features", "trunk"]) == 0
    return root / "model"


def _read(path: Path) -> tuple[np.ndarray, dict, tuple]:
    with rasterio.open(path) as ds:
        return ds.read(), ds.profile | {"structure": ds.tags(1, "IMAGE_STRUCTURE"),
                                        "tags": ds.tags()}, ds.descriptions


def test_export_writes_feature_graphs_checked_against_pytorch(trunk_model: Path) -> None:
    loaded = load_exported(trunk_model)  # checksums of the new files verified
    card = loaded.card
    assert [(f.stage, f.file, f.channels, f.reduction) for f in card.export.features] == [
        ("fused", "features_fused.onnx", 12, 1), ("trunk", "features_trunk.onnx", 10, 1)]
    assert all(f.parity <= 1e-4 for f in card.export.features)
    assert {"features_fused.onnx", "features_trunk.onnx"} <= set(card.files)
    import onnxruntime as ort

    session = ort.InferenceSession(str(trunk_model / "features_trunk.onnx"),
                                   providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [t.name for t in card.export.inputs]
    gen = torch.Generator().manual_seed(3)
    x = {t.name: (torch.rand(2, 19, 23, generator=gen).round() if t.kind == "mask" else
                  torch.randn(2, t.shape[1], 19, 23, generator=gen)) for t in card.export.inputs}
    (got,) = session.run(["features"], {n: v.numpy() for n, v in x.items()})
    with torch.no_grad():
        want = loaded.model.forward_stage(x, "trunk").numpy()
    assert got.shape == (2, 10, 19, 23)  # any height and width
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_export_refuses_a_stage_the_model_lacks(trunk_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match=r"has no stage 'decoder'; its stages are "
                                               r"fused, trunk"):
        add_feature_onnx(trunk_model, ["decoder"])
    late = fusion.build_model(dict(TINY_ARCH, fusion={"op": "sum", "position": "late"}),
                              {"optical": 10, "sar": 2, "lidar": 2, "hsi": 16}, 6)
    from autors.export.features import stage_model

    with pytest.raises(ModelFolderError, match="no feature stage .late fusion fuses"):
        stage_model(late, "fused", "arch.json")


@pytest.mark.parametrize("stage", ["fused", "trunk"])
def test_predict_features_of_a_patch_classifier(trunk_model: Path, scene, tmp_path: Path,
                                                stage: str) -> None:
    """float16 on disk, on the map's grid, NaN where the map has no class, and the fully
    convolutional pass equals the stage's vector at the centre of each pixel's own patch."""
    loaded = load_exported(trunk_model)
    out = tmp_path / "map.tif"
    assert main(["predict", str(trunk_model), *scene.sensor_args(), "--out", str(out),
                 "--features", stage, "--window", "24", "--quiet"]) == 0
    feats, profile, names = _read(features_path(out, stage))
    classes, map_profile, _ = _read(out)
    assert profile["structure"]["NBITS"] == "16" and profile["dtype"] == "float32"
    assert feats.shape[0] == (12 if stage == "fused" else 10)
    assert names[0] == f"{stage}_0" and profile["tags"]["feature_stage"] == stage
    assert (profile["transform"], profile["crs"], feats.shape[1:]) == (
        map_profile["transform"], map_profile["crs"], classes.shape[1:])
    nodata = classes[0] == loaded.card.ignore_value
    assert np.array_equal(np.isnan(feats).all(axis=0), nodata)
    assert not np.isnan(feats[:, ~nodata]).any()
    fast = predict_features(loaded, scene.sensors(), tmp_path / "again.tif", stage,
                            PredictOptions(window=24))
    slow = predict_features(loaded, scene.sensors(), tmp_path / "slow.tif", stage,
                            PredictOptions(window=24, fully_convolutional=False))
    assert (fast.method, slow.method) == ("fully convolutional", "per patch")
    f_fast, f_slow = _read(fast.path)[0], _read(slow.path)[0]
    np.testing.assert_array_equal(f_fast, feats)
    np.testing.assert_allclose(f_fast, f_slow, rtol=2e-3, atol=2e-3)  # float16 rounding
    assert np.abs(f_fast[:, ~nodata]).max() > 0.1


def test_many_scenes_are_refused(trunk_model: Path, scene, tmp_path: Path, capsys) -> None:
    template = f"optical={scene.folder}/{{scene}}.tif"
    code = main(["predict", str(trunk_model), "--template", template, "--out-dir",
                 str(tmp_path), "--features", "fused"])
    assert code != 0 and "--features writes one scene's feature map" in capsys.readouterr().err


@pytest.fixture(scope="session")
def chip_unet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """UNET trained one epoch on a few tiles of the real chip and exported (skipped without
    the rasters: $AUTORS_DATA or ../shared/data)."""
    env = os.environ.get("AUTORS_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"
    if not (root / "sen1floods11_sample").is_dir():
        pytest.skip("real rasters not found: set AUTORS_DATA or put them in ../shared/data")
    return root, _train_export(root, tmp_path_factory.mktemp("feat_unet"), UNET)


def test_dense_features_equal_one_pass_over_the_scene(chip_unet, tmp_path: Path) -> None:
    """An encoder-decoder on the real chip: the 'fused' map (scale 2: 1/4) repeated over its
    4 x 4 cells and the 'decoder' map at full resolution, the same for two window sizes and
    equal to the stage of one pass over the whole zero-padded scene; their ONNX graphs."""
    root, model = chip_unet
    loaded = load_exported(model)
    card = loaded.card
    sensors = {s: root / "sen1floods11_sample" / f"{s}.tif" for s in ("s1", "s2")}
    assert loaded.model.feature_stages() == ["fused", "trunk", "decoder"]
    r = card.export.receptive_radius
    inputs = open_inputs(card, sensors)
    h, w = inputs.grid.height, inputs.grid.width
    arrays, valid = inputs.read(-r, -r, h + 2 * r, w + 2 * r)
    x = {n: t[None] if not n.endswith("__mask") else t
         for n, t in model_inputs(card, arrays, valid).items()}
    for stage, reduction in (("fused", 4), ("decoder", 1)):
        maps = []
        for window in (256, 512):
            result = predict_features(loaded, sensors, tmp_path / f"{stage}{window}.tif",
                                      stage, PredictOptions(window=window))
            assert result.reduction == reduction and result.method.startswith("overlap-tile")
            maps.append(_read(result.path)[0])
        np.testing.assert_array_equal(maps[0], maps[1])
        with torch.inference_mode():
            whole = loaded.model.forward_stage(x, stage)[0]
        whole = whole.repeat_interleave(reduction, 1).repeat_interleave(reduction, 2)
        whole = whole[:, r:r + h, r:r + w].numpy()
        np.testing.assert_allclose(maps[0], whole, rtol=2e-3, atol=2e-3)
        cells = maps[0].reshape(maps[0].shape[0], h // reduction, reduction, w // reduction,
                                reduction)
        assert (cells == cells[:, :, :1, :, :1]).all()  # one vector per cell of the lattice
    cards = add_feature_onnx(model, ["fused", "decoder"])
    assert [(c.stage, c.reduction, c.channels) for c in cards] == [("fused", 4, 8),
                                                                   ("decoder", 1, 6)]
    assert load_exported(model).card.export.features == cards
