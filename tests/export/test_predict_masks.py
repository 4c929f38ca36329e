"""`autors predict` with clouds, gaps and missing sensors (issue 14): any non-empty subset of the
model's inputs, mask rasters and QA bands applied with the card's rules, nodata only where no
given sensor is valid, maps that reproduce the training pipeline's robustness rows, and clear
errors for what cannot work.

The model (`cloudy_model`) was trained on the `cloudy` scene, whose optical clouds are marked by
a mask raster and a QA band, with modality dropout and a centre head (see conftest.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from autors.cli import main
from autors.config import load_task
from autors.data import load_scene
from autors.errors import DataError
from autors.export.card import read_card
from autors.export.loader import load_exported
from autors.export.predict import PredictOptions, predict_scene

from .conftest import SENSORS, Scene, Trained
from .test_predict import _read, _test_metrics, _write_like

MASK_INVALID, SCL_INVALID = 1, 9  # a thick cloud in the mask raster; "cloud high" in SCL


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """rich wraps at 80 columns when not on a terminal: keep each message on one line."""
    monkeypatch.setenv("COLUMNS", "300")


def _args(scene: Scene, sensors: tuple[str, ...] = SENSORS, mask: Path | None = None,
          with_mask: bool = True) -> list[str]:
    """--sensor for `sensors` of `scene` and, with optical among them and `with_mask`, its
    --mask (`mask`, default the scene's cloud mask)."""
    out = [a for s in sensors for a in ("--sensor", f"{s}={scene.folder / f'{s}.tif'}")]
    if "optical" in sensors and with_mask:
        out += ["--mask", f"optical={mask or scene.masks()['optical']}"]
    return out


def _predict(model: Path, args: list[str], out: Path, *extra: str) -> int:
    return main(["predict", str(model), *args, "--out", str(out), "--quiet", *extra])


def _maps(out: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(class map [H, W], confidence file [bands, H, W], confidence tags)."""
    with rasterio.open(out.with_name(f"{out.stem}_confidence.tif")) as ds:
        tags = ds.tags()
    return _read(out)[0][0], _read(out.with_name(f"{out.stem}_confidence.tif"))[0], tags


def _copy(scene: Scene, dest: Path) -> Scene:
    """A private copy of the scene's folder, free to be edited by a test."""
    folder = Path(shutil.copytree(scene.folder, dest))
    return Scene(folder=folder, task=folder / scene.task.name,
                 seg_task=folder / scene.seg_task.name, mask_files=scene.mask_files)


def _edit(path: Path, change) -> None:
    """Rewrite the raster at `path` with `change(array [bands, H, W])` applied in place."""
    with rasterio.open(path, "r+") as ds:
        arr = ds.read()
        change(arr)
        ds.write(arr)


def _blank(path: Path, rows: slice, cols: slice, bands: slice = slice(None)) -> None:
    """Set `bands` of the raster at `path` to its nodata value in a block."""
    with rasterio.open(path) as ds:
        nodata = ds.nodata

    def change(a: np.ndarray) -> None:
        a[bands, rows, cols] = nodata

    _edit(path, change)


def _halo(trained: Trained) -> int:
    """Pixels around a pixel that its patch reaches."""
    return load_exported(trained.model).card.task.input_size // 2


def _clear_block(scene: Scene, size: int = 12) -> tuple[slice, slice]:
    """A size x size block where the optical image is clear (mask and QA) and valid."""
    with rasterio.open(scene.masks()["optical"]) as ds:
        clouds = ds.read(1) != 0
    with rasterio.open(scene.folder / "optical.tif") as ds:
        scl = ds.read(ds.count)
    bad = clouds | np.isin(scl, [3, 8, 9])
    for r in range(8, 64 - size - 8):
        for c in range(8, 64 - size - 8):
            if not bad[r:r + size, c:c + size].any():
                return slice(r, r + size), slice(c, c + size)
    raise AssertionError("no clear block in the fixture scene")


# ---- consistency with training ---------------------------------------------------------------
def test_maps_reproduce_the_test_robustness_rows(cloudy_model: Trained, cloudy: Scene,
                                                 tmp_path: Path) -> None:
    """Every sensor subset the source run measured (clean, each sensor removed): the map at the
    test pixels scores exactly what the training pipeline's robustness row says, i.e. predict
    applies the mask raster, the QA rule and an absent sensor as training did."""
    metrics = json.loads((cloudy_model.run / "metrics.json").read_text())["test"]
    card = load_exported(cloudy_model.model).card
    rows = {k: v for k, v in metrics["robustness"].items() if not k.startswith("cloud_")}
    assert sorted(rows) == sorted(["clean", *(f"without_{s}" for s in SENSORS)])
    for condition, row in rows.items():
        given = tuple(s for s in SENSORS if condition != f"without_{s}")
        out = tmp_path / f"{condition}.tif"
        # the rows' ECE is of the raw softmax (calibration: tests/export/test_calibrated_*)
        assert _predict(cloudy_model.model, _args(cloudy, given), out, "--uncalibrated") == 0
        classes, scores, tags = _maps(out)
        assert tags["sensors"] == ",".join(given)
        got = _test_metrics(classes, scores[0], cloudy.folder / "test.tif", card.class_values,
                            card.class_names)
        assert row["no_input"] == 0  # so the map labels every pixel the row scores
        assert got["num_samples"] == row["num_samples"], condition
        for key in ("oa", "aa", "kappa", "miou"):
            assert got[key] == row[key], (condition, key)
        assert got["ece"] == pytest.approx(row["ece"], abs=1e-6)
        if condition == "clean":
            assert got["confusion_matrix"] == metrics["confusion_matrix"]


def test_a_mask_covering_everything_equals_the_sensor_removed(cloudy_model: Trained,
                                                              cloudy: Scene,
                                                              tmp_path: Path) -> None:
    """Optical clouded at every pixel, by its mask raster or by its QA band, gives the very
    map predicted without optical: a per-pixel mask and an absent sensor are one thing."""
    data = _copy(cloudy, tmp_path / "data")
    overcast = _write_like(cloudy.masks()["optical"], tmp_path / "overcast.tif")
    _edit(overcast, lambda a: a.fill(MASK_INVALID))
    _edit(data.folder / "optical.tif", lambda a: a[-1].fill(SCL_INVALID))  # SCL: all cloud
    clear = _write_like(cloudy.masks()["optical"], tmp_path / "clear.tif")
    _edit(clear, lambda a: a.fill(0))
    grid = ("--grid", "hsi")  # the same grid with and without optical
    runs = {"without": _args(cloudy, ("sar", "lidar", "hsi")),
            "mask": _args(cloudy, mask=overcast), "qa": _args(data, mask=clear)}
    maps = {}
    for name, args in runs.items():
        assert _predict(cloudy_model.model, args, tmp_path / f"{name}.tif", *grid,
                        "--probabilities") == 0
        maps[name] = _maps(tmp_path / f"{name}.tif")
    for name in ("mask", "qa"):
        np.testing.assert_array_equal(maps[name][0], maps["without"][0])
        np.testing.assert_array_equal(maps[name][1], maps["without"][1])  # scores and counts
    assert maps["mask"][2]["sensors"] == "optical,sar,lidar,hsi"
    assert maps["without"][2]["absent_sensors"] == "optical"


def test_mask_raster_and_qa_band_mark_a_block_alike(cloudy_model: Trained, cloudy: Scene,
                                                    tmp_path: Path) -> None:
    """A block clouded in the mask raster or in the QA band changes the map in and around the
    block only, the same way, and valid_sensors drops by one there."""
    rows, cols = _clear_block(cloudy)
    masked = _write_like(cloudy.masks()["optical"], tmp_path / "mask.tif")
    _edit(masked, lambda a: a[0, rows, cols].fill(MASK_INVALID))
    data = _copy(cloudy, tmp_path / "data")
    _edit(data.folder / "optical.tif", lambda a: a[-1, rows, cols].fill(SCL_INVALID))
    runs = {"plain": _args(cloudy), "mask": _args(cloudy, mask=masked), "qa": _args(data)}
    maps = {}
    for name, args in runs.items():
        assert _predict(cloudy_model.model, args, tmp_path / f"{name}.tif",
                        "--probabilities") == 0
        maps[name] = _maps(tmp_path / f"{name}.tif")
    np.testing.assert_array_equal(maps["mask"][1], maps["qa"][1])
    plain, mask = maps["plain"][1], maps["mask"][1]
    block = np.zeros(plain.shape[1:], bool)
    block[rows, cols] = True
    np.testing.assert_array_equal(mask[1][block], plain[1][block] - 1)  # valid_sensors
    np.testing.assert_array_equal(mask[1][~block], plain[1][~block])
    assert not np.allclose(mask[2:, block], plain[2:, block])  # the model saw the cloud
    r = _halo(cloudy_model)
    near = np.zeros_like(block)
    near[rows.start - r:rows.stop + r, cols.start - r:cols.stop + r] = True
    np.testing.assert_array_equal(mask[:, ~near], plain[:, ~near])  # only patches touching it


def test_nodata_only_where_no_given_sensor_is_valid(cloudy_model: Trained, cloudy: Scene,
                                                    tmp_path: Path) -> None:
    """A block where every sensor is nodata: the map is nodata exactly where the training
    reader finds no valid sensor (require_sensors: any), and labels the pixels where only
    some are valid (clouds, LiDAR gaps, the block's SAR margin)."""
    data = _copy(cloudy, tmp_path / "data")
    rows, cols = slice(30, 44), slice(20, 34)
    _blank(data.folder / "optical.tif", rows, cols, slice(0, 10))  # the QA band kept
    _blank(data.folder / "lidar.tif", rows, cols)
    _blank(data.folder / "hsi.tif", rows, cols)
    with rasterio.open(data.folder / "labels.tif") as ds:  # the block's SAR pixels
        left, top = ds.transform @ (cols.start, rows.start)
        right, bottom = ds.transform @ (cols.stop, rows.stop)
    with rasterio.open(data.folder / "sar.tif") as ds:
        (c0, r0), (c1, r1) = ~ds.transform @ (left, top), ~ds.transform @ (right, bottom)
    _blank(data.folder / "sar.tif", slice(int(r0), int(np.ceil(r1))),
           slice(int(c0), int(np.ceil(c1))))
    out = tmp_path / "map.tif"
    assert _predict(cloudy_model.model, _args(data), out) == 0
    classes, scores, _ = _maps(out)
    scene = load_scene(load_task(data.task))
    count = np.sum(list(scene.sensor_valid.values()), axis=0)
    assert (count == 0).sum() >= 4 and ((count > 0) & (count < 4)).sum() > 100
    np.testing.assert_array_equal(classes == 0, count == 0)
    np.testing.assert_array_equal(classes == 0, ~scene.valid)
    np.testing.assert_array_equal(scores[1], count)
    assert np.isnan(scores[0][count == 0]).all() and not np.isnan(scores[0][count > 0]).any()


def test_require_sensors_from_the_card(cloudy_model: Trained, cloudy: Scene, tmp_path: Path
                                       ) -> None:
    """A card whose training required every sensor labels only pixels where every GIVEN
    sensor is valid, with all sensors or a subset."""
    model = Path(shutil.copytree(cloudy_model.model, tmp_path / "model"))
    card = json.loads((model / "model.json").read_text())
    card["require_sensors"] = "all"
    (model / "model.json").write_text(json.dumps(card))  # the card is not checksummed
    for given in (SENSORS, ("optical", "lidar", "hsi")):
        out = tmp_path / f"{len(given)}.tif"
        assert _predict(model, _args(cloudy, given), out) == 0
        classes, scores, tags = _maps(out)
        assert tags["required_sensors"] == ",".join(given)
        assert (scores[1] < len(given)).any()  # clouds and LiDAR gaps
        np.testing.assert_array_equal(classes == 0, scores[1] < len(given))


def test_one_sensor_only(cloudy_model: Trained, cloudy: Scene, tmp_path: Path, capsys) -> None:
    out = tmp_path / "sar.tif"
    # SAR alone gives the map its own 5 m grid, 2.5x the 2 m pixels the model was trained on:
    # an input-check error unless allowed (autors.export.input_check)
    assert _predict(cloudy_model.model, _args(cloudy, ("sar",)), out) == 2
    assert "pixel size 5 m is 2.5x the training's 2 m" in capsys.readouterr().err
    assert _predict(cloudy_model.model, _args(cloudy, ("sar",)), out,
                    "--allow-resolution-change") == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "warning: [resolution] the map grid (the pixels of sensor 'sar')" in err
    assert "predicted without optical, lidar, hsi (with sar): accuracy not measured" in err
    assert "removes one sensor at a time; this leaves out 3" in err
    assert "on the grid of 'sar'" in err
    classes, scores, tags = _maps(out)
    with rasterio.open(cloudy.folder / "sar.tif") as ds:
        assert classes.shape == ds.shape
        sar_valid = ds.read(1) != ds.nodata
    assert tags["sensors"] == "sar" and tags["absent_sensors"] == "optical,lidar,hsi"
    np.testing.assert_array_equal(scores[1], sar_valid)
    np.testing.assert_array_equal(classes != 0, sar_valid)


def test_a_measured_subset_prints_its_accuracy(cloudy_model: Trained, cloudy: Scene,
                                               tmp_path: Path, capsys) -> None:
    card = load_exported(cloudy_model.model).card
    row = card.robustness.subset(["optical", "sar", "lidar"])
    assert row is not None and row.condition == "without_hsi"
    assert _predict(cloudy_model.model, _args(cloudy, ("optical", "sar", "lidar")),
                    tmp_path / "m.tif") == 0
    err = " ".join(capsys.readouterr().err.split())
    assert (f"predicted without hsi (with optical, sar, lidar): measured test OA "
            f"{row.test['oa'].mean:.3f}, kappa {row.test['kappa'].mean:.3f}") in err
    assert "'without_hsi'" in err
    assert _predict(cloudy_model.model, _args(cloudy), tmp_path / "all.tif") == 0
    assert "predicted without" not in capsys.readouterr().err  # all sensors: nothing to say


def test_confidence_drops_where_a_sensor_is_missing(cloudy_model: Trained, cloudy: Scene,
                                                    tmp_path: Path) -> None:
    """The confidence comes from the model given the masks: with any sensor removed, the mean
    confidence over the map is lower than with every sensor (a model trained with modality
    dropout knows what it lacks)."""
    means = {}
    for removed in ("none", *SENSORS):
        out = tmp_path / f"{removed}.tif"
        given = tuple(s for s in SENSORS if s != removed)
        grid = "hsi" if removed != "hsi" else "lidar"  # one grid (SAR's is coarser)
        assert _predict(cloudy_model.model, _args(cloudy, given), out, "--grid", grid) == 0
        means[removed] = float(np.nanmean(_maps(out)[1][0]))
    for s in SENSORS:
        assert means[s] < means["none"], means


# ---- ONNX with masks, without autors -----------------------------------------------------------
def test_an_independent_client_reproduces_the_map(cloudy_model: Trained, cloudy: Scene,
                                                  tmp_path: Path) -> None:
    """numpy + rasterio + onnxruntime alone, reading model.json (nodata, scale, the mask and
    QA rules, normalisation, export.inputs), give the map's probabilities: the card says all a
    client needs. SAR is left out (absent: values and mask 0), so every raster read is on the
    map's grid."""
    out = tmp_path / "map.tif"
    assert _predict(cloudy_model.model, _args(cloudy, ("optical", "lidar", "hsi")), out,
                    "--probabilities") == 0
    script = textwrap.dedent(f"""
        import json
        import numpy as np, onnxruntime as ort, rasterio
        folder, data = {str(cloudy_model.model)!r}, {str(cloudy.folder)!r}
        card = json.load(open(folder + "/model.json"))
        size = card["task"]["input_size"]
        r = size // 2
        def read(sensor):
            s = next(x for x in card["sensors"] if x["name"] == sensor)
            rd = s["read"]
            with rasterio.open(f"{{data}}/{{sensor}}.tif") as ds:
                names = list(ds.descriptions)
                raw = ds.read().astype(np.float32)
                nodata = ds.nodata if rd["nodata"] is None else rd["nodata"]
            bands = [names.index(b) for b in rd["bands"]] if rd["bands"] else range(len(names))
            x = raw[list(bands)]
            valid = (x != nodata).all(axis=0) & np.isfinite(x).all(axis=0)
            if rd["qa"]:
                qa = raw[names.index(rd["qa"]["band"])]
                valid &= ~np.isin(qa, rd["qa"]["invalid_values"])
            if rd["mask"]:
                with rasterio.open(f"{{data}}/optical_cloudmask.tif") as ds:
                    valid &= ~np.isin(ds.read(1), rd["mask"]["invalid_values"])
            x = x * rd["scale"] + rd["offset"]
            mean = np.array(s["mean"], np.float32)[:, None, None]
            std = np.array(s["std"], np.float32)[:, None, None]
            x = np.where(valid, (x - mean) / std, 0).astype(np.float32)
            return np.pad(x, ((0, 0), (r, r), (r, r))), np.pad(valid, r).astype(np.float32)
        arrays = {{s: read(s) for s in ("optical", "lidar", "hsi")}}
        h, w = arrays["hsi"][1].shape[0] - 2 * r, arrays["hsi"][1].shape[1] - 2 * r
        pixels = [(i, j) for i in range(0, h, 5) for j in range(0, w, 7)]
        feeds = {{}}
        for t in card["export"]["inputs"]:
            shape = [len(pixels)] + t["shape"][1:]
            if t["sensor"] not in arrays:  # absent: values and mask 0
                feeds[t["name"]] = np.zeros(shape, np.float32)
                continue
            x, m = arrays[t["sensor"]]
            src = x if t["kind"] == "values" else m
            feeds[t["name"]] = np.stack([src[..., i:i + size, j:j + size] for i, j in pixels])
        sess = ort.InferenceSession(folder + "/model.onnx", providers=["CPUExecutionProvider"])
        (logits,) = sess.run(["logits"], feeds)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        with rasterio.open({str(tmp_path / "map_confidence.tif")!r}) as ds:
            probs = ds.read()[-len(card["classes"]):]
        want = np.stack([probs[:, i, j] for i, j in pixels])
        labelled = ~np.isnan(want[:, 0])
        assert labelled.sum() > 50, labelled.sum()
        assert np.abs(p[labelled] - want[labelled]).max() <= 1e-4, np.abs(p - want).max()
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], check=False, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


# ---- errors ----------------------------------------------------------------------------------
def _fails(model: Path, args: list[str], tmp_path: Path, capsys, *texts: str) -> None:
    out_dir = tmp_path / "maps"
    out_dir.mkdir()
    assert _predict(model, args, out_dir / "map.tif") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("error: ") and "Traceback" not in err, err
    for text in texts:
        assert text in err, err
    assert list(out_dir.iterdir()) == []


def test_a_mask_the_model_needs_is_missing(cloudy_model: Trained, cloudy: Scene,
                                           tmp_path: Path, capsys) -> None:
    _fails(cloudy_model.model, _args(cloudy, with_mask=False), tmp_path, capsys,
           "--mask optical=PATH is missing", "trained with a mask raster (values 1, 3 invalid)")


def test_a_mask_for_a_sensor_without_a_rule(cloudy_model: Trained, cloudy: Scene,
                                            tmp_path: Path, capsys) -> None:
    _fails(cloudy_model.model, [*_args(cloudy), "--mask", f"sar={cloudy.masks()['optical']}"],
           tmp_path, capsys, "--mask sar: the model's 'sar' input was trained without a mask "
           "raster", "remove --mask sar")


def test_a_mask_without_its_sensor(cloudy_model: Trained, cloudy: Scene, tmp_path: Path,
                                   capsys) -> None:
    args = [*_args(cloudy, ("sar", "hsi")), "--mask", f"optical={cloudy.masks()['optical']}"]
    _fails(cloudy_model.model, args, tmp_path, capsys,
           "--mask optical: no --sensor optical is given", "or remove --mask optical")


def test_a_mask_that_does_not_overlap_its_sensor(cloudy_model: Trained, cloudy: Scene,
                                                 tmp_path: Path, capsys) -> None:
    with rasterio.open(cloudy.masks()["optical"]) as ds:
        t = ds.transform
    far = _write_like(cloudy.masks()["optical"], tmp_path / "far.tif",
                      transform=Affine(t.a, t.b, t.c + 10_000.0, t.d, t.e, t.f))
    _fails(cloudy_model.model, _args(cloudy, mask=far), tmp_path, capsys,
           f"--mask optical={far}:", "has no overlap with its sensor")


def test_a_qa_band_the_raster_lacks(cloudy_model: Trained, cloudy: Scene, tmp_path: Path,
                                    capsys) -> None:
    with rasterio.open(cloudy.folder / "optical.tif") as ds:
        bands = ds.read()[:10]  # B1..B9, no SCL
    data = _copy(cloudy, tmp_path / "data")
    _write_like(cloudy.folder / "optical.tif", data.folder / "optical.tif", data=bands)
    _fails(cloudy_model.model, _args(data), tmp_path, capsys,
           f"--sensor optical={data.folder / 'optical.tif'}:", "QA rule of band 'SCL' (values "
           "3, 8, 9 invalid), which this raster lacks", "give the raster with its QA band")


def test_no_sensor(cloudy_model: Trained, off_exported: Path, cloudy: Scene, scene: Scene,
                   tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--sensor: no sensor; give at least one of the model's "
                       r"inputs: --sensor optical=PATH \(optical, 10 band\(s\)"):
        predict_scene(load_exported(cloudy_model.model), {}, tmp_path / "m.tif",
                      progress=False)
    with pytest.raises(DataError, match=r"--sensor: only sar, which the model does not use"):
        predict_scene(load_exported(off_exported), {"sar": scene.folder / "sar.tif"},
                      tmp_path / "m.tif", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_the_card_records_the_validity_rules(cloudy_model: Trained) -> None:
    card = read_card(cloudy_model.model)
    optical = card.sensor("optical").read
    assert optical.mask.invalid_values == [1, 3]
    assert optical.qa.band == "SCL" and optical.qa.invalid_values == [3, 8, 9]
    assert optical.bands[0] == "B1" and "SCL" not in optical.bands
    assert card.sensor("lidar").read.mask is None and card.require_sensors == "any"


@pytest.mark.parametrize("fast", [True, False], ids=["fully_convolutional", "per_patch"])
def test_windows_do_not_change_a_masked_map(cloudy_model: Trained, cloudy: Scene,
                                            tmp_path: Path, fast: bool) -> None:
    loaded = load_exported(cloudy_model.model)
    maps = []
    for window in (9, 512):
        out = tmp_path / f"w{window}.tif"
        predict_scene(loaded, {s: p for s, p in cloudy.sensors().items() if s != "hsi"}, out,
                      PredictOptions(window=window, fully_convolutional=fast),
                      progress=False, masks=cloudy.masks())
        maps.append(_maps(out)[:2])
    np.testing.assert_array_equal(maps[0][0], maps[1][0])
    np.testing.assert_allclose(maps[0][1], maps[1][1], rtol=0, atol=1e-6)
