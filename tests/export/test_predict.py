"""`autors predict`: the map reproduces the evaluation, is georeferenced, streamed by windows,
and bad input fails clearly without leaving files behind."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

import fusion
from autors.cli import main
from autors.config import load_task
from autors.data import load_scene
from autors.errors import DataError, ModelFolderError, RasterError
from autors.export.loader import load_exported
from autors.export.predict import PredictOptions, _enable_dropout, predict_scene
from autors.training.metrics import confusion_matrix, expected_calibration_error, summarize

from .conftest import SENSORS, Scene


def _predict(model: Path, scene: Scene, out: Path, *extra: str, skip: tuple[str, ...] = ()
             ) -> int:
    return main(["predict", str(model), *scene.sensor_args(skip), "--out", str(out),
                 "--quiet", *extra])


def _read(path: Path) -> tuple[np.ndarray, rasterio.profiles.Profile, tuple]:
    with rasterio.open(path) as ds:
        return ds.read(), ds.profile, ds.descriptions


def _test_metrics(class_map: np.ndarray, conf: np.ndarray, test_raster: Path,
                  values: list[int], names: list[str]) -> dict:
    """Metrics of the map at the test raster's labelled pixels (the map's valid ones)."""
    with rasterio.open(test_raster) as ds:
        ref = ds.read(1)
    lookup = np.full(max(values) + 1, -1)
    lookup[values] = np.arange(len(values))
    pick = np.isin(ref, values) & np.isin(class_map, values)
    target, pred = lookup[ref[pick]], lookup[class_map[pick]]
    out = summarize(confusion_matrix(target, pred, len(values)), names)
    out["ece"] = expected_calibration_error(conf[pick], pred == target)
    return out


def test_map_reproduces_the_test_evaluation(exported: Path, train_run: Path, scene: Scene,
                                            tmp_path: Path) -> None:
    out = tmp_path / "map.tif"
    assert _predict(exported, scene, out) == 0
    (classes,), _, _ = _read(out)
    conf = _read(tmp_path / "map_confidence.tif")[0][0]
    card = load_exported(exported).card
    got = _test_metrics(classes, conf, scene.folder / "test.tif", card.class_values,
                        card.class_names)
    want = json.loads((train_run / "metrics.json").read_text())["test"]
    assert got["num_samples"] == want["num_samples"]  # same pixels
    assert got["confusion_matrix"] == want["confusion_matrix"]  # same predictions
    for key in ("oa", "aa", "kappa", "miou"):
        assert got[key] == want[key]
    # the confidence is calibrated by default: the test ECE of softmax(logits / T)
    assert got["ece"] == pytest.approx(want["calibration"]["ece_after"], abs=1e-6)
    assert want["oa"] > 1.5 / len(card.classes)  # the model learned something to reproduce


def test_output_files_georeferencing_and_nodata(exported: Path, scene: Scene, tmp_path: Path
                                                ) -> None:
    out = tmp_path / "map.tif"
    assert _predict(exported, scene, out, "--probabilities", "--window", "24") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.tif", "map_confidence.tif"]
    (classes,), prof, desc = _read(out)
    scores, sprof, sdesc = _read(tmp_path / "map_confidence.tif")
    card = load_exported(exported).card
    with rasterio.open(scene.folder / "optical.tif") as ref:
        assert prof["crs"] == ref.crs and prof["transform"] == ref.transform
        assert (prof["height"], prof["width"]) == ref.shape
    for p in (prof, sprof):
        assert p["tiled"] and p["compress"] == "deflate" and p["blockxsize"] == 256
    assert prof["dtype"] == "uint8" and prof["nodata"] == card.ignore_value
    assert desc == ("class",)
    assert sprof["dtype"] == "float32" and math.isnan(sprof["nodata"])
    assert sdesc == ("confidence", "valid_sensors", *[f"prob_{n}" for n in card.class_names])
    with rasterio.open(tmp_path / "map_confidence.tif") as ds:
        assert ds.tags()["sensors"] == "optical,sar,lidar,hsi"
        assert ds.tags()["require_sensors"] == "any" and "absent_sensors" not in ds.tags()
    # nodata exactly where the training pipeline finds no usable pixel (require_sensors: any,
    # so this scene's LiDAR gaps are labelled from the other sensors); valid_sensors counts
    # the sensors the training reader finds valid
    task = load_task(scene.task)
    loaded = load_scene(task)
    valid = loaded.valid
    assert valid.shape == classes.shape
    np.testing.assert_array_equal(classes == card.ignore_value, ~valid)
    count = np.sum(list(loaded.sensor_valid.values()), axis=0)
    assert (count < len(SENSORS)).any()  # the LiDAR gaps
    np.testing.assert_array_equal(scores[1], count)
    assert set(np.unique(classes[valid])) <= set(card.class_values)
    probs = scores[2:]
    assert np.isnan(scores[0, ~valid]).all() and np.isnan(probs[:, ~valid]).all()
    np.testing.assert_allclose(probs[:, valid].sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(scores[0][valid], probs[:, valid].max(axis=0))
    values = np.asarray(card.class_values)
    np.testing.assert_array_equal(classes[valid], values[probs[:, valid].argmax(axis=0)])


def test_window_size_does_not_change_the_map(exported: Path, scene: Scene, tmp_path: Path
                                              ) -> None:
    loaded = load_exported(exported)
    maps = []
    for window, batch in ((7, 1), (512, 512)):  # batches of one sample, too
        out = tmp_path / f"w{window}.tif"
        predict_scene(loaded, scene.sensors(), out, PredictOptions(window=window,
                                                                   batch_size=batch),
                      progress=False)
        maps.append((_read(out)[0], _read(tmp_path / f"w{window}_confidence.tif")[0]))
    np.testing.assert_array_equal(maps[0][0], maps[1][0])
    np.testing.assert_allclose(maps[0][1], maps[1][1], rtol=0, atol=1e-6)


def test_mc_dropout_adds_entropy(exported: Path, scene: Scene, tmp_path: Path) -> None:
    loaded = load_exported(exported)
    plain = predict_scene(loaded, scene.sensors(), tmp_path / "plain.tif", progress=False)
    mc = predict_scene(loaded, scene.sensors(), tmp_path / "mc.tif",
                       PredictOptions(mc_dropout=4), progress=False)
    assert mc.bands == ["confidence", "entropy", "mutual_information", "valid_sensors"]
    assert plain.bands == ["confidence", "valid_sensors"]
    scores, _, desc = _read(mc.scores)
    assert desc == ("confidence", "entropy", "mutual_information", "valid_sensors")
    conf, entropy, mi, _ = scores
    valid = ~np.isnan(conf)
    assert valid.sum() == mc.valid_pixels == plain.valid_pixels
    k = loaded.card.num_classes
    assert (entropy[valid] >= 0).all() and (entropy[valid] <= math.log(k) + 1e-5).all()
    # the epistemic part: 0 <= mutual information <= entropy, > 0 where passes disagree
    assert (mi[valid] >= 0).all() and (mi[valid] <= entropy[valid] + 1e-6).all()
    assert mi[valid].max() > 0
    plain_conf = _read(plain.scores)[0][0]
    assert not np.allclose(conf[valid], plain_conf[valid])  # dropout was really active
    assert not loaded.model.training and not any(m.training for m in loaded.model.modules())
    # the same seed gives the same map
    again = predict_scene(loaded, scene.sensors(), tmp_path / "mc2.tif",
                          PredictOptions(mc_dropout=4), progress=False)
    np.testing.assert_array_equal(_read(again.scores)[0], scores)


def test_mc_dropout_needs_dropout() -> None:
    arch = fusion.Arch.from_dict({
        "version": 1, "branches": {"a": {"kind": "conv", "width": 4, "depth": 1}},
        "fusion": {"op": "concat", "position": "early", "width": 4},
        "head": {"kind": "patch", "hidden": 0, "dropout": 0.0},
    })
    model = fusion.build_model(arch, {"a": 2}, 3)
    with pytest.raises(ModelFolderError, match="no active dropout layer"):
        _enable_dropout(model, Path("some_model"))


def test_segmentation_map(seg_exported: Path, scene: Scene, tmp_path: Path) -> None:
    """Overlapping tiles: the map does not depend on the window; it is close to the tile-wise
    evaluation (not equal: evaluation cuts non-overlapping tiles, the map overlaps them)."""
    loaded = load_exported(seg_exported)
    assert loaded.card.task.dense and loaded.card.task.input_size == 16
    maps = []
    for window in (8, 512):
        out = tmp_path / f"seg{window}.tif"
        predict_scene(loaded, scene.sensors(), out, PredictOptions(window=window),
                      progress=False)
        maps.append((_read(out)[0][0], _read(tmp_path / f"seg{window}_confidence.tif")[0][0]))
    np.testing.assert_array_equal(maps[0][0], maps[1][0])
    classes, conf = maps[1]
    card = loaded.card
    got = _test_metrics(classes, conf, scene.folder / "test.tif", card.class_values,
                        card.class_names)
    assert abs(got["oa"] - card.metrics.test["oa"].mean) < 0.15


# ---- bad input -----------------------------------------------------------------------------
def _write_like(src: Path, dst: Path, data: np.ndarray | None = None,
                transform: Affine | None = None, tiled_uncompressed: bool = False) -> Path:
    with rasterio.open(src) as ds:
        profile = ds.profile
        arr = ds.read() if data is None else data
        descriptions = ds.descriptions[: arr.shape[0]]
    profile.update(count=arr.shape[0])
    if transform is not None:
        profile.update(transform=transform)
    if tiled_uncompressed:
        profile.update(tiled=True, blockxsize=16, blockysize=16, compress=None)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(arr)
        for i, d in enumerate(descriptions, start=1):
            out.set_band_description(i, d or "")
    return dst


def _assert_no_output(folder: Path) -> None:
    assert list(folder.iterdir()) == [], [p.name for p in folder.iterdir()]


def _predict_cli_fails(exported: Path, scene: Scene, tmp_path: Path, capsys, match: str,
                       *extra: str, skip: tuple[str, ...] = ()) -> None:
    out_dir = tmp_path / "maps"
    out_dir.mkdir()
    assert _predict(exported, scene, out_dir / "map.tif", *extra, skip=skip) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert match in " ".join(err.split()), err
    _assert_no_output(out_dir)


def test_unknown_sensor(exported: Path, scene: Scene, tmp_path: Path) -> None:
    sensors = scene.sensors() | {"thermal": scene.folder / "lidar.tif"}
    with pytest.raises(DataError, match="the model has no sensor 'thermal'; its sensors are "
                       r"optical \(optical, 10 bands\)"):
        predict_scene(load_exported(exported), sensors, tmp_path / "map.tif", progress=False)
    _assert_no_output(tmp_path)


def test_wrong_band_count(exported: Path, scene: Scene, tmp_path: Path) -> None:
    with rasterio.open(scene.folder / "hsi.tif") as ds:
        fewer = ds.read()[:15]
    (tmp_path / "in").mkdir()
    bad = _write_like(scene.folder / "hsi.tif", tmp_path / "in" / "hsi15.tif", data=fewer)
    (tmp_path / "out").mkdir()
    with pytest.raises(RasterError, match=r"--sensor hsi=.*hsi15\.tif: the raster has 15 "
                       r"band\(s\) but the model's 'hsi' input takes 16"):
        predict_scene(load_exported(exported), scene.sensors() | {"hsi": bad},
                      tmp_path / "out" / "map.tif", progress=False)
    _assert_no_output(tmp_path / "out")


def test_non_overlapping_rasters(exported: Path, scene: Scene, tmp_path: Path, capsys
                                 ) -> None:
    with rasterio.open(scene.folder / "lidar.tif") as ds:
        t = ds.transform
    far = Affine(t.a, t.b, t.c + 10_000.0, t.d, t.e, t.f)  # 10 km east
    moved = _write_like(scene.folder / "lidar.tif", tmp_path / "lidar_far.tif", transform=far)
    out_dir = tmp_path / "maps"
    out_dir.mkdir()
    code = main(["predict", str(exported), *scene.sensor_args(skip=("lidar",)), "--sensor",
                 f"lidar={moved}", "--out", str(out_dir / "map.tif"), "--quiet"])
    assert code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "sensor 'lidar'" in err and "does not overlap the reference grid" in err
    _assert_no_output(out_dir)


def test_corrupted_model_folder(model_copy: Path, scene: Scene, tmp_path: Path, capsys
                                ) -> None:
    weights = model_copy / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:1000])
    _predict_cli_fails(model_copy, scene, tmp_path, capsys,
                       "weights.pt does not match its checksum")


def test_raster_failing_mid_scene_leaves_no_partial_map(exported: Path, scene: Scene,
                                                        tmp_path: Path) -> None:
    """The header reads fine, the end of the pixel data is cut off: the error comes while the
    windows are streamed (the first ones already written), and the temporary files go."""
    (tmp_path / "in").mkdir()
    broken = _write_like(scene.folder / "lidar.tif", tmp_path / "in" / "lidar.tif",
                         tiled_uncompressed=True)
    size = broken.stat().st_size
    with open(broken, "r+b") as f:
        f.truncate(size - size // 4)
    out_dir = tmp_path / "maps"
    out_dir.mkdir()
    with pytest.raises(RasterError, match=r"lidar\.tif cannot be read .* truncated"):
        predict_scene(load_exported(exported), scene.sensors() | {"lidar": broken},
                      out_dir / "map.tif", PredictOptions(window=16), progress=False)
    _assert_no_output(out_dir)


def test_bad_out_path_fails_before_work(exported: Path, scene: Scene, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist; create it first"):
        predict_scene(load_exported(exported), scene.sensors(), tmp_path / "no" / "map.tif",
                      progress=False)
    with pytest.raises(DataError, match="ending in .tif"):
        predict_scene(load_exported(exported), scene.sensors(), tmp_path / "map.png",
                      progress=False)


def test_model_with_an_unused_sensor(off_exported: Path, scene: Scene, tmp_path: Path) -> None:
    loaded = load_exported(off_exported)
    card = loaded.card
    assert card.inputs == ["optical", "lidar", "hsi"] and not card.sensor("sar").used
    assert [i.name for i in loaded.onnx_session().get_inputs()] == \
        card.inputs + [f"{s}__mask" for s in card.inputs]
    without = predict_scene(loaded, {s: p for s, p in scene.sensors().items() if s != "sar"},
                            tmp_path / "a.tif", progress=False)
    given = predict_scene(loaded, scene.sensors(), tmp_path / "b.tif", progress=False)
    assert without.ignored_sensors == [] and given.ignored_sensors == ["sar"]
    np.testing.assert_array_equal(_read(without.class_map)[0], _read(given.class_map)[0])


def test_band_names_differing_from_training_are_noted(exported: Path, scene: Scene,
                                                      tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    renamed = _write_like(scene.folder / "lidar.tif", tmp_path / "in" / "lidar.tif")
    with rasterio.open(renamed, "r+") as ds:
        ds.set_band_description(1, "intensity")
        ds.set_band_description(2, "height")
    result = predict_scene(load_exported(exported), scene.sensors() | {"lidar": renamed},
                           tmp_path / "map.tif", progress=False)
    assert len(result.notes) == 1
    assert "band names intensity, height differ from the training raster's height, " \
        "intensity" in result.notes[0]


def test_memory_does_not_grow_with_the_scene(exported: Path, scene: Scene, big_scene: Path,
                                             tmp_path: Path) -> None:
    """Peak RSS of predicting a 4x larger scene (fresh processes, the benchmark's child mode:
    benchmarks/predict_memory.py)."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "predict_memory.py"
    figures = []
    for folder in (scene.folder, big_scene):
        sensors = {name: str(folder / f"{name}.tif") for name in scene.sensors()}
        done = subprocess.run(
            [sys.executable, str(script), "--child", str(exported), json.dumps(sensors),
             str(tmp_path / f"{folder.name}.tif"), "32"],
            check=False, capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        figures.append(json.loads(done.stdout.strip().splitlines()[-1]))
    small, big = figures
    assert big["pixels"] == 4 * small["pixels"]
    assert big["peak_mb"] <= 1.5 * small["peak_mb"], figures
    # what the streaming itself adds stays flat (a per-window leak would grow 4x here)
    assert big["peak_mb"] - big["base_mb"] <= 1.5 * (small["peak_mb"] - small["base_mb"]) + 16, \
        figures
