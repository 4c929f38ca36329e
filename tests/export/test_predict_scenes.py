"""`autors predict --template ... [--scenes CSV] --out-dir DIR`: every scene's maps equal what
one-scene `autors predict` writes for it; a failing scene is passed over; listing mistakes
fail before any work."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.windows import Window

from autors.cli import main

from .conftest import SENSORS, Scene

SCENES = ("s1", "s2", "s3")
OTHER_CRS = CRS.from_epsg(32631)  # the fixture scene is in EPSG:32632


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """rich wraps at 80 columns when not on a terminal: keep each message on one line."""
    monkeypatch.setenv("COLUMNS", "300")


def _copy_raster(src: Path, dst: Path, bounds: tuple[float, float, float, float] | None = None,
                 crs: CRS | None = None) -> None:
    """`src` cropped to the pixels covering `bounds` (left, bottom, right, top; None: all),
    re-tagged with `crs` when given (same numbers, another CRS: a scene elsewhere)."""
    with rasterio.open(src) as ds:
        window = Window(0, 0, ds.width, ds.height)
        if bounds is not None:
            left, bottom, right, top = bounds
            c0, r0 = ~ds.transform @ (left, top)
            c1, r1 = ~ds.transform @ (right, bottom)
            c0, r0 = max(math.floor(c0), 0), max(math.floor(r0), 0)
            c1, r1 = min(math.ceil(c1), ds.width), min(math.ceil(r1), ds.height)
            window = Window(c0, r0, c1 - c0, r1 - r0)
        profile = dict(ds.profile, width=window.width, height=window.height,
                       transform=ds.window_transform(window), crs=crs or ds.crs)
        with rasterio.open(dst, "w", **profile) as out:
            out.write(ds.read(window=window))
            out.descriptions = ds.descriptions


def _bounds(src: Path, rows: tuple[int, int], cols: tuple[int, int]) -> tuple:
    """Map bounds of a pixel block of `src`."""
    with rasterio.open(src) as ds:
        t = ds.transform
    left, top = t @ (cols[0], rows[0])
    right, bottom = t @ (cols[1], rows[1])
    return left, bottom, right, top


@pytest.fixture(scope="module")
def dataset(scene: Scene, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three scenes `<scene>_<sensor>.tif`: the whole fixture scene, a crop, and another crop
    in another CRS."""
    folder = tmp_path_factory.mktemp("dataset")
    ref = scene.folder / "optical.tif"
    crops = {"s1": (None, None), "s2": (_bounds(ref, (8, 56), (4, 52)), None),
             "s3": (_bounds(ref, (20, 64), (0, 40)), OTHER_CRS)}
    for scene_id, (bounds, crs) in crops.items():
        for sensor, path in scene.sensors().items():
            _copy_raster(path, folder / f"{scene_id}_{sensor}.tif", bounds, crs)
    return folder


def _templates(folder: Path, sensors: tuple[str, ...] = SENSORS) -> list[str]:
    return [a for s in sensors for a in ("--template", f"{s}={folder}/{{scene}}_{s}.tif")]


def _read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as ds:
        return ds.read(), {"crs": ds.crs, "transform": ds.transform, "dtype": ds.dtypes[0]}


@pytest.fixture(scope="module")
def single_maps(exported: Path, dataset: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Path:
    """What one-scene `autors predict` writes for each scene (the reference)."""
    out = tmp_path_factory.mktemp("single")
    for scene_id in SCENES:
        sensors = [a for s in SENSORS
                   for a in ("--sensor", f"{s}={dataset}/{scene_id}_{s}.tif")]
        assert main(["predict", str(exported), *sensors, "--out", str(out / f"{scene_id}.tif"),
                     "--quiet"]) == 0
    return out


def _assert_same_maps(got: Path, want: Path, scene_ids: tuple[str, ...] = SCENES) -> None:
    for scene_id in scene_ids:
        for name in (f"{scene_id}.tif", f"{scene_id}_confidence.tif"):
            a, meta_a = _read(got / name)
            b, meta_b = _read(want / name)
            assert meta_a == meta_b, name
            assert a.tobytes() == b.tobytes(), name  # byte-equal arrays


@pytest.mark.parametrize("listing", ["glob", "csv_ids", "csv_files"])
def test_each_map_equals_the_one_scene_prediction(exported: Path, dataset: Path,
                                                  single_maps: Path, tmp_path: Path,
                                                  listing: str, capsys) -> None:
    extra: list[str] = []
    if listing != "glob":
        csv = tmp_path / "scenes.csv"
        rows = SCENES if listing == "csv_ids" else \
            [f"{s}_optical.tif,{s}_labels.tif" for s in SCENES]  # labels: no template, passed
        csv.write_text("id\n" + "\n".join(rows) + "\n" if listing == "csv_ids"
                       else "\n".join(rows) + "\n")
        extra = ["--scenes", str(csv)]
    out = tmp_path / "maps"
    assert main(["predict", str(exported), *_templates(dataset), *extra,
                 "--out-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        n for s in SCENES for n in (f"{s}.tif", f"{s}_confidence.tif"))
    _assert_same_maps(out, single_maps)
    with rasterio.open(out / "s3.tif") as ds:
        assert ds.crs == OTHER_CRS
    err = capsys.readouterr().err
    assert "3 scene(s) ->" in err
    for i, scene_id in enumerate(SCENES, start=1):
        assert f"scene {i}/3 {scene_id}:" in err and "ETA" in err
    assert "3 of 3 scene(s) predicted" in err and "failed" not in err
    summary = err[err.index("Scenes"):]
    with rasterio.open(dataset / "s2_optical.tif") as ds:
        assert f"{ds.height * ds.width:,}" in summary  # pixels per scene


def test_a_failing_scene_is_passed_over(exported: Path, dataset: Path, single_maps: Path,
                                        tmp_path: Path, capsys) -> None:
    folder = Path(shutil.copytree(dataset, tmp_path / "data"))
    data = (folder / "s2_hsi.tif").read_bytes()
    (folder / "s2_hsi.tif").write_bytes(data[: len(data) // 2])  # a broken download
    (folder / "s3_sar.tif").unlink()
    out = tmp_path / "maps"
    assert main(["predict", str(exported), *_templates(folder), "--out-dir", str(out),
                 "--quiet"]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["s1.tif", "s1_confidence.tif"]
    _assert_same_maps(out, single_maps, ("s1",))
    err = capsys.readouterr().err
    assert "1 of 3 scene(s) predicted" in err and "2 failed" in err
    assert "failed s2:" in err and "s2_hsi.tif" in err
    assert "failed s3: sensor 'sar':" in err and "s3_sar.tif does not exist" in err
    assert "Traceback" not in err


def _fails(argv: list[str], capsys, *texts: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: "), err
    for text in texts:
        assert text in err, err


def test_template_without_placeholder(exported: Path, dataset: Path, tmp_path: Path,
                                      capsys) -> None:
    templates = _templates(dataset)
    templates[1] = f"optical={dataset}/s1_optical.tif"
    _fails(["predict", str(exported), *templates, "--out-dir", str(tmp_path / "o")], capsys,
           "--template optical=", "has no {scene} placeholder")
    assert not (tmp_path / "o").exists()


def test_csv_naming_a_missing_file(exported: Path, dataset: Path, tmp_path: Path,
                                   capsys) -> None:
    csv = tmp_path / "scenes.csv"
    csv.write_text("s1_optical.tif\ns9_optical.tif\n")
    _fails(["predict", str(exported), *_templates(dataset), "--scenes", str(csv),
            "--out-dir", str(tmp_path / "o")], capsys,
           f"{csv} row 2 names s9_optical.tif, which does not exist")
    assert not (tmp_path / "o").exists()


def test_no_scene_matched(exported: Path, tmp_path: Path, capsys) -> None:
    _fails(["predict", str(exported), *_templates(tmp_path / "empty"),
            "--out-dir", str(tmp_path / "o")], capsys,
           "--template optical=", "no scene found", "--scenes CSV")


def test_unknown_template_sensor(exported: Path, dataset: Path, tmp_path: Path,
                                 capsys) -> None:
    _fails(["predict", str(exported), *_templates(dataset), "--template",
            f"radar={dataset}/{{scene}}_sar.tif", "--out-dir", str(tmp_path / "o")], capsys,
           "--template radar: the model has no sensor 'radar'")


# ---- mask rasters and missing sensors ---------------------------------------------------------
@pytest.fixture(scope="module")
def cloudy_dataset(cloudy: Scene, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two scenes of the cloudy fixture scene (whole, a crop), each with its cloud mask
    `<scene>_cloudmask.tif`."""
    folder = tmp_path_factory.mktemp("cloudy_dataset")
    ref = cloudy.folder / "optical.tif"
    files = cloudy.sensors() | {"cloudmask": cloudy.masks()["optical"]}
    for scene_id, bounds in (("s1", None), ("s2", _bounds(ref, (8, 56), (4, 52)))):
        for name, path in files.items():
            _copy_raster(path, folder / f"{scene_id}_{name}.tif", bounds)
    return folder


def _mask_template(folder: Path) -> list[str]:
    return ["--mask", f"optical={folder}/{{scene}}_cloudmask.tif"]


def test_mask_templates_and_a_sensor_subset(cloudy_model, cloudy_dataset: Path, tmp_path: Path,
                                            capsys) -> None:
    """Without SAR, with each scene's cloud mask: every map equals the one-scene prediction
    with the same sensors and mask, and the measured accuracy is printed once."""
    given = ("optical", "lidar", "hsi")
    out = tmp_path / "maps"
    assert main(["predict", str(cloudy_model.model), *_templates(cloudy_dataset, given),
                 *_mask_template(cloudy_dataset), "--out-dir", str(out), "--quiet"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert err.count("predicted without sar (with optical, lidar, hsi): measured test OA") == 1
    single = tmp_path / "single"
    single.mkdir()
    for scene_id in ("s1", "s2"):
        args = [a for s in given for a in ("--sensor", f"{s}={cloudy_dataset}/{scene_id}_{s}.tif")]
        assert main(["predict", str(cloudy_model.model), *args, "--mask",
                     f"optical={cloudy_dataset}/{scene_id}_cloudmask.tif",
                     "--out", str(single / f"{scene_id}.tif"), "--quiet"]) == 0
    _assert_same_maps(out, single, ("s1", "s2"))


def test_mask_template_mistakes(cloudy_model, cloudy_dataset: Path, tmp_path: Path,
                                capsys) -> None:
    model = str(cloudy_model.model)
    _fails(["predict", model, *_templates(cloudy_dataset), "--out-dir", str(tmp_path / "o")],
           capsys, "--mask optical=PATH is missing")
    _fails(["predict", model, *_templates(cloudy_dataset), "--mask",
            f"optical={cloudy_dataset}/s1_cloudmask.tif", "--out-dir", str(tmp_path / "o")],
           capsys, "--mask optical=", "has no {scene} placeholder")
    assert not (tmp_path / "o").exists()
    data = Path(shutil.copytree(cloudy_dataset, tmp_path / "data"))
    (data / "s2_cloudmask.tif").unlink()
    assert main(["predict", model, *_templates(data), *_mask_template(data), "--out-dir",
                 str(tmp_path / "maps"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "failed s2: mask of 'optical':" in err and "s2_cloudmask.tif does not exist" in err


@pytest.mark.parametrize("flags, text", [
    (["--sensor", "optical=a.tif", "--scenes", "s.csv"], "--sensor gives one scene's rasters"),
    (["--sensor", "optical=a.tif", "--template", "optical={scene}.tif"],
     "--sensor gives one scene's rasters"),
    (["--scenes", "s.csv", "--out-dir", "o"], "give each sensor's file with --template"),
    (["--template", "optical={scene}.tif", "--out", "m.tif"], "give --out-dir DIR"),
    (["--template", "optical={scene}.tif"], "--out-dir DIR: give the folder"),
    (["--out", "m.tif"], "give the rasters: --sensor NAME=PATH"),
])
def test_one_scene_and_many_scene_flags_do_not_mix(exported: Path, flags: list[str], text: str,
                                                   capsys) -> None:
    _fails(["predict", str(exported), *flags], capsys, text)
