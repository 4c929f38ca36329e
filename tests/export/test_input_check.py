"""No silently wrong maps (issue 22): `autors predict` and `autors validate` check a scene
against what the model was trained on, or what the task declares, on the real Sen1Floods11
chip (S1 dB + S2 reflectance x 10000, EPSG:4326, ~8.9 m pixels) and its classic mix-ups:
S1 in linear power, S2 as reflectance 0-1, the chip resampled to 30 m UTM, VV and VH swapped.

One tiny model is trained on the chip (2 epochs) and exported for the module; the bad inputs
are written next to it with rasterio."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject

from autors.cli import main
from autors.errors import InputMismatchError
from autors.export import PredictOptions, load_exported, predict_scene
from autors.export.input_check import CARD_PREDATES, CheckOptions
from autors.export.inputs import ReadOverride
from autors.files import file_sha256

ARCH = {
    "version": 1,
    "branches": {"s1": {"kind": "conv", "width": 8, "depth": 1, "kernel": 3},
                 "s2": {"kind": "conv", "width": 8, "depth": 1, "kernel": 3}},
    "fusion": {"op": "concat", "position": "middle", "width": 16, "trunk": {"kind": "off"}},
    "head": {"kind": "centre", "hidden": 16, "dropout": 0.0},
}


def _data_root() -> Path | None:
    env = os.environ.get("AUTORS_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"
    return root if (root / "sen1floods11_sample").is_dir() else None


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """rich wraps at 80 columns when not on a terminal: keep each message on one line."""
    monkeypatch.setenv("COLUMNS", "400")


@pytest.fixture(scope="module")
def root() -> Path:
    found = _data_root()
    if found is None:
        pytest.skip("real rasters not found: set AUTORS_DATA or put them in ../shared/data")
    return found


@pytest.fixture(scope="module")
def chip(root: Path) -> dict[str, Path]:
    folder = root / "sen1floods11_sample"
    return {"s1": folder / "s1.tif", "s2": folder / "s2.tif", "labels": folder / "labels.tif"}


@pytest.fixture(scope="module")
def model(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model trained on the chip (2 epochs, 3000 samples) and exported."""
    work = tmp_path_factory.mktemp("chip_model")
    (work / "arch.json").write_text(json.dumps(ARCH))
    assert main(["train", "sen1floods11_chip", "--data-root", str(root), "--arch",
                 str(work / "arch.json"), "--set", "train.epochs=2", "--set",
                 "train.max_train_samples=3000", "--set", "train.device=cpu", "--out",
                 str(work / "run"), "--quiet"]) == 0
    assert main(["export", str(work / "run"), "--out", str(work / "model")]) == 0
    return work / "model"


def _write(src: Path, dst: Path, change=None, order: list[int] | None = None) -> Path:
    """A copy of `src` with its values changed by `change` and / or its bands reordered
    (band descriptions kept as they were: a tool that swaps bands rarely swaps names)."""
    with rasterio.open(src) as ds:
        data, profile, desc = ds.read(), ds.profile, ds.descriptions
    if change is not None:
        data = change(data)
    if order is not None:
        data = data[order]
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data.astype(profile["dtype"]))
        out.descriptions = desc
    return dst


def _utm_30m(src: Path, dst: Path) -> Path:
    """The raster resampled to 30 m pixels in UTM zone 30N (EPSG:32630)."""
    with rasterio.open(src) as ds:
        transform, width, height = calculate_default_transform(
            ds.crs, "EPSG:32630", ds.width, ds.height, *ds.bounds, resolution=30)
        profile = dict(ds.profile, crs="EPSG:32630", transform=transform, width=width,
                       height=height)
        with rasterio.open(dst, "w", **profile) as out:
            for b in range(1, ds.count + 1):
                reproject(rasterio.band(ds, b), rasterio.band(out, b),
                          resampling=Resampling.bilinear, dst_nodata=ds.nodata)
            out.descriptions = ds.descriptions
    return dst


@pytest.fixture(scope="module")
def bad(chip: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad_inputs")
    return {
        "s1_linear": _write(chip["s1"], d / "s1_linear.tif", lambda a: 10 ** (a / 10)),
        "s2_reflectance": _write(chip["s2"], d / "s2_reflectance.tif", lambda a: a * 1e-4),
        "s1_swapped": _write(chip["s1"], d / "s1_swapped.tif", order=[1, 0]),
        "s1_30m": _utm_30m(chip["s1"], d / "s1_30m.tif"),
        "s2_30m": _utm_30m(chip["s2"], d / "s2_30m.tif"),
    }


def _predict(model: Path, s1: Path, s2: Path, out: Path, **options):
    return predict_scene(load_exported(model), {"s1": s1, "s2": s2}, out,
                         PredictOptions(**options), progress=False)


def _classes(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


# ---- predict ------------------------------------------------------------------------------
def test_the_right_inputs_pass_and_the_map_carries_its_provenance(model, chip, tmp_path):
    result = _predict(model, chip["s1"], chip["s2"], tmp_path / "map.tif")
    report = result.checks
    assert report.status == "passed" and report.findings == () and result.notes == []
    figures = {f.sensor: f for f in report.figures}
    assert set(figures) == {"s1", "s2"}
    for f in figures.values():  # ~7.9 x 10.0 m at 38 deg N, as in training
        assert f.pixel_m == pytest.approx(8.863, rel=1e-3) and f.invalid == 0.0
        assert f.training_pixel_m == pytest.approx((8.863, 8.863), rel=1e-3)
    assert abs(figures["s2"].log10_scale) < 0.1 and figures["s1"].log10_scale is None
    for path in result.class_map, result.scores:
        with rasterio.open(path) as ds:
            tags = ds.tags()
        assert tags["model_card_sha256"] == file_sha256(model / "model.json")
        assert tags["input_s1"] == str(chip["s1"].resolve())
        assert tags["input_s2"] == str(chip["s2"].resolve())
        assert tags["input_checks"] == "passed"
        assert not [k for k in tags if k.startswith("input_warning")]
        assert "read_overrides" not in tags
        tagged = json.loads(tags["input_check_figures"])
        assert [t["sensor"] for t in tagged] == ["s1", "s2"]
        assert tagged[0]["bands"][0]["band"] == "S1 VV backscatter (dB)"
        assert tagged[0]["bands"][0]["training_p50"] == pytest.approx(-10.4, abs=0.3)


def test_s1_in_linear_power_is_an_error_naming_the_fix(model, chip, bad, tmp_path):
    out = tmp_path / "map.tif"
    with pytest.raises(InputMismatchError) as caught:
        _predict(model, bad["s1_linear"], chip["s2"], out)
    text = str(caught.value)
    assert text.count("\n  [") == 1 and "[sar_units] sensor 's1' (" in text
    assert str(bad["s1_linear"]) in text and "look like linear power, not dB" in text
    assert "100% of them are positive" in text and "S1 VV backscatter (dB)' 0.09" in text
    assert "sar_units 'db'" in text and "medians -10.4, -17.5 dB" in text
    assert "--sar-units s1=linear" in text
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing written
    # the fix: read as linear power (converted to dB, as training's values were)
    fixed = _predict(model, bad["s1_linear"], chip["s2"], out,
                     reads=(ReadOverride("s1", sar_units="linear"),))
    assert fixed.checks.status == "passed"
    right = _predict(model, chip["s1"], chip["s2"], tmp_path / "right.tif")
    assert (_classes(out) == _classes(right.class_map)).mean() > 0.999
    with rasterio.open(out) as ds:
        assert ds.tags()["read_overrides"] == "s1 sar_units=linear"


def test_s2_as_reflectance_0_1_is_an_error_naming_the_fix(model, chip, bad, tmp_path):
    with pytest.raises(InputMismatchError) as caught:
        _predict(model, chip["s1"], bad["s2_reflectance"], tmp_path / "map.tif")
    text = str(caught.value)
    assert text.count("\n  [") == 1 and "[scale] sensor 's2' (" in text
    assert str(bad["s2_reflectance"]) in text and "about 10^-4 times" in text
    assert "S2 L1C B1 coastal (TOA refl x10000)': 1-99 % 1.2" in text and "0.123 to 0.198" in text
    assert "reflectance 0-1 where the model expects reflectance x 10000" in text
    assert "read with scale 0.0001" in text and "--scale s2=1 " in text
    fixed = _predict(model, chip["s1"], bad["s2_reflectance"], tmp_path / "map.tif",
                     reads=(ReadOverride("s2", scale=1.0),))
    assert fixed.checks.status == "passed"


def test_the_chip_at_30_m_is_an_error_naming_both_pixel_sizes(model, bad, tmp_path):
    out = tmp_path / "map.tif"
    with pytest.raises(InputMismatchError) as caught:
        _predict(model, bad["s1_30m"], bad["s2_30m"], out)
    lines = str(caught.value).splitlines()[1:]
    assert [line.split("]")[0].strip() for line in lines] == ["[resolution"] * 2
    assert "the map grid (the pixels of sensor 's1'): pixel size 30 m is 3.4x the " \
        "training's 8.86 m (7.88 x 9.97 m)" in lines[0]
    assert f"sensor 's2' ({bad['s2_30m']}): pixel size 30 m" in lines[1]
    assert all("--allow-resolution-change" in line for line in lines)
    # allowed: the map is written, its tags say what was allowed
    result = _predict(model, bad["s1_30m"], bad["s2_30m"], out,
                      checks=CheckOptions(allow=frozenset({"resolution"})))
    assert result.checks.status == "warnings" and len(result.checks.warnings) == 2
    with rasterio.open(out) as ds:
        tags = ds.tags()
    assert tags["input_checks"] == "2 warning(s)"
    assert tags["input_warning_1"].startswith("[resolution] the map grid")
    assert "predicted anyway: --allow-resolution-change" in tags["input_warning_2"]
    # a wide enough tolerance lets it through without a word
    wide = _predict(model, bad["s1_30m"], bad["s2_30m"], tmp_path / "wide.tif",
                    checks=CheckOptions(resolution_factor=4.0))
    assert wide.checks.status == "passed"


def test_swapped_vv_and_vh_are_a_warning_with_figures(model, chip, bad, tmp_path):
    result = _predict(model, bad["s1_swapped"], chip["s2"], tmp_path / "map.tif")
    report = result.checks
    assert report.status == "warnings" and not report.errors
    (w,) = report.warnings
    assert w.check == "band_order" and w.sensor == "s1" and w.level == "warning"
    assert "bands 1 and 2 look swapped" in w.message
    assert "'S1 VV backscatter (dB)' and band 2 'S1 VH backscatter (dB)'" in w.message
    assert "medians -17.7, -10.4 against -10.4, -17.5" in w.message
    with rasterio.open(result.class_map) as ds:
        tags = ds.tags()
    assert tags["input_checks"] == "1 warning(s)" and tags["input_warning_1"] == w.text()
    assert json.loads(tags["input_check_figures"])[0]["bands"][0]["p50"] == \
        pytest.approx(-17.7, abs=0.3)


def test_a_card_before_input_profiles_skips_the_checks(model, chip, bad, tmp_path):
    old = Path(shutil.copytree(model, tmp_path / "old"))
    card = json.loads((old / "model.json").read_text())
    card = dict({k: v for k, v in card.items() if k != "input_profile"}, format=3)
    (old / "model.json").write_text(json.dumps(card))
    result = _predict(old, bad["s1_linear"], chip["s2"], tmp_path / "map.tif")
    assert result.checks.status == "skipped" and result.checks.skipped == CARD_PREDATES
    with rasterio.open(result.class_map) as ds:
        tags = ds.tags()
    assert tags["input_checks"] == f"skipped: {CARD_PREDATES}"
    assert tags["model_card_sha256"] == file_sha256(old / "model.json")
    assert "input_check_figures" not in tags


# ---- the CLI ------------------------------------------------------------------------------
def test_cli_error_is_a_message_and_exit_2(model, chip, bad, tmp_path, capsys):
    code = main(["predict", str(model), "--sensor", f"s1={bad['s1_linear']}", "--sensor",
                 f"s2={bad['s2_reflectance']}", "--out", str(tmp_path / "map.tif"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: the scene's rasters do not look like what the model was "
                          "trained on")
    assert "[sar_units] sensor 's1'" in err and "[scale] sensor 's2'" in err
    assert "--sar-units s1=linear" in err and "--scale s2=1" in err
    # with the two fixes it predicts and prints the figures
    code = main(["predict", str(model), "--sensor", f"s1={bad['s1_linear']}", "--sensor",
                 f"s2={bad['s2_reflectance']}", "--out", str(tmp_path / "map.tif"), "--quiet",
                 "--sar-units", "s1=linear", "--scale", "s2=1"])
    err = capsys.readouterr().err
    assert code == 0 and "input checks: passed" in err
    assert "s2: pixel 8.86 m (training 8.86 m); invalid 0.0% (training 0.0%); values 1" in err


def test_cli_warnings_and_allowed_errors_are_printed(model, bad, tmp_path, capsys):
    code = main(["predict", str(model), "--sensor", f"s1={bad['s1_30m']}", "--sensor",
                 f"s2={bad['s2_30m']}", "--out", str(tmp_path / "map.tif"), "--quiet",
                 "--allow-resolution-change"])
    err = capsys.readouterr().err
    assert code == 0 and "input checks: 2 warning(s)" in err
    assert err.count("warning: [resolution]") == 2


def test_cli_old_card_says_the_checks_were_skipped_in_one_line(model, chip, tmp_path, capsys):
    old = Path(shutil.copytree(model, tmp_path / "old"))
    card = json.loads((old / "model.json").read_text())
    (old / "model.json").write_text(json.dumps(
        dict({k: v for k, v in card.items() if k != "input_profile"}, format=3)))
    assert main(["predict", str(old), "--sensor", f"s1={chip['s1']}", "--sensor",
                 f"s2={chip['s2']}", "--out", str(tmp_path / "map.tif"), "--quiet"]) == 0
    lines = [x for x in capsys.readouterr().err.splitlines() if "input checks" in x]
    assert lines == [f"note: input checks skipped: {CARD_PREDATES}"]


@pytest.fixture
def scenes(chip, bad, tmp_path) -> Path:
    """Two scenes: 'a_bad' (S2 as reflectance 0-1), then 'b_good' (the chip)."""
    d = tmp_path / "scenes"
    d.mkdir()
    for scene, s1, s2 in (("a_bad", chip["s1"], bad["s2_reflectance"]),
                          ("b_good", chip["s1"], chip["s2"])):
        (d / f"{scene}_s1.tif").symlink_to(s1)
        (d / f"{scene}_s2.tif").symlink_to(s2)
    return d


def _scenes_args(model: Path, scenes: Path, out: Path) -> list[str]:
    return ["predict", str(model), "--template", f"s1={scenes}/{{scene}}_s1.tif",
            "--template", f"s2={scenes}/{{scene}}_s2.tif", "--out-dir", str(out), "--quiet"]


def test_predict_scenes_skips_a_failing_scene_with_its_reason(model, scenes, tmp_path, capsys):
    out = tmp_path / "maps"
    assert main(_scenes_args(model, scenes, out)) == 1
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert (out / "b_good.tif").is_file() and not (out / "a_bad.tif").exists()
    assert "failed a_bad: the scene's rasters do not look like" in text
    assert "[scale] sensor 's2'" in text and "--scale s2=1" in text
    assert "1 of 2 scene(s) predicted" in text
    rows = [x for x in text.splitlines() if x.startswith(("│ a_bad", "│ b_good"))]
    assert "failed" in rows[0] and "passed" in rows[1]
    with rasterio.open(out / "b_good.tif") as ds:
        assert ds.tags()["input_checks"] == "passed"
        assert ds.tags()["input_s2"] == str((scenes / "b_good_s2.tif").resolve())


def test_predict_scenes_strict_stops_at_the_failing_scene(model, scenes, tmp_path, capsys):
    out = tmp_path / "maps"
    assert main(_scenes_args(model, scenes, out) + ["--strict"]) == 2
    err = capsys.readouterr().err
    assert "error: scene 'a_bad' failed and --strict stops the run (0 scene(s) predicted, 1 " \
        "not tried)" in err and "[scale] sensor 's2'" in err
    assert not (out / "b_good.tif").exists()


# ---- validate -----------------------------------------------------------------------------
def _task(tmp_path: Path, chip: dict[str, Path], s1: Path, s2: Path, s1_units: str = "db",
          scenes: list[tuple[str, Path, Path]] | None = None) -> Path:
    sensors = {"s1": {"kind": "sar", "sar_units": s1_units},
               "s2": {"kind": "optical", "nodata": 0, "scale": 0.0001}}
    task = {"name": "chip", "task": "patch_classification", "sensors": sensors,
            "labels": {"classes": {1: "not_water", 2: "water"}, "ignore": 0},
            "split": {"kind": "spatial_blocks", "block_size": 64, "test_fraction": 0.25,
                      "val_fraction": 0.15},
            "patch_size": 9}
    if scenes is None:
        sensors["s1"]["path"], sensors["s2"]["path"] = str(s1), str(s2)
        task["labels"]["path"] = str(chip["labels"])
    else:
        task["scenes"] = {"items": [{"id": i, "sensors": {"s1": str(a), "s2": str(b)},
                                     "labels": str(chip["labels"])} for i, a, b in scenes]}
    path = tmp_path / "task.yaml"
    path.write_text(json.dumps(task))  # JSON is YAML
    return path


def test_validate_the_right_chip_passes(chip, tmp_path, capsys):
    assert main(["validate", str(_task(tmp_path, chip, chip["s1"], chip["s2"]))]) == 0
    assert "Input checks (1 scene(s), a few windows each" in capsys.readouterr().out


def test_validate_db_declared_on_linear_power_is_an_error(chip, bad, tmp_path, capsys):
    task = _task(tmp_path, chip, bad["s1_linear"], chip["s2"])
    assert main(["validate", str(task)]) == 2
    captured = capsys.readouterr()
    assert "Input checks" in captured.out and "1 error(s)" in captured.out
    err = captured.err
    assert err.startswith("error: the rasters do not hold what the task declares")
    assert f"[sar_units] sensor 's1' ({bad['s1_linear']}): values look like linear power" in err
    assert "the task declares sensors.s1.sar_units: db" in err
    assert "set sensors.s1.sar_units: linear in the task file" in err and "Traceback" not in err
    # and linear declared on dB values
    task = _task(tmp_path, chip, chip["s1"], chip["s2"], s1_units="linear")
    assert main(["validate", str(task)]) == 2
    assert "set sensors.s1.sar_units: db in the task file" in capsys.readouterr().err


def test_validate_a_scale_that_does_not_give_reflectance_is_a_warning(chip, bad, tmp_path,
                                                                      capsys):
    task = _task(tmp_path, chip, chip["s1"], bad["s2_reflectance"])
    assert main(["validate", str(task)]) == 0
    out = " ".join(capsys.readouterr().out.split())  # long lines wrap
    assert "0 error(s), 1 warning(s)" in out and "[declared_scale] sensor 's2'" in out
    assert "set sensors.s2.scale: 1 in the task file" in out


def test_validate_finds_the_odd_scene_of_a_dataset(chip, bad, tmp_path, capsys):
    scenes = [("a", chip["s1"], chip["s2"]), ("b", chip["s1"], bad["s2_reflectance"]),
              ("c", chip["s1"], chip["s2"])]
    task = _task(tmp_path, chip, chip["s1"], chip["s2"], scenes=scenes)
    assert main(["validate", str(task)]) == 2
    captured = capsys.readouterr()
    assert "Input checks (3 scene(s)" in captured.out
    err = captured.err
    assert err.startswith("error: 1 of 3 scene(s) fail the input checks; scene 'b': ")
    assert "[scale] sensor 's2'" in err and "about 10^-4 times those of the dataset's " \
        "typical scene" in err and "where the dataset's other scenes hold reflectance" in err
    assert "convert this scene's raster to the other scenes' units" in err
