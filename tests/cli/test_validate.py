"""`autors validate`: summary on a generated scene, user errors without traceback."""

from __future__ import annotations

import os
from pathlib import Path

import make_fixtures  # tests/data (on sys.path via tests/conftest.py)
import pytest

from autors.cli import main
from autors.config import load_task
from autors.data import load_scene, make_splits


@pytest.fixture
def task_path(tmp_path: Path) -> Path:
    fx = make_fixtures
    return fx.write_task(tmp_path, fx.task_dict(fx.make_scene(tmp_path)))


def test_validate_prints_the_summary(task_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # rich wraps at 80 columns when not on a terminal
    assert main(["validate", str(task_path)]) == 0
    out = capsys.readouterr().out
    task = load_task(task_path)
    counts = make_splits(task, load_scene(task)).counts()
    for text in (
        "Task fixture: patch_classification",
        ("optical (optical): 4 band(s): blue, green, red, nir"),
        "sar (sar, linear): 2 band(s): VV, VH",
        "lidar (lidar)",
        "EPSG:4326, 5e-05 x 5e-05 deg",
        "-> resampled (bilinear)",
        "-> window read",
        "Reference grid (labels): 80 x 60 px, EPSG:32632, pixel 10 x 10 m",
        ("Valid pixels: optical 99.5%, sar 100.0%, lidar 100.0% of the grid; a label is used "
        "where any sensor is valid (require_sensors)"),
        "of rasters on disk;",
        "normalised in memory <= data.in_memory_max_mb 2048: training holds it in memory",
        "Patch: 5 x 5 px",
        "leakage: val footprints touching training pixels: 0 of",
        "leakage: test footprints touching training pixels: 0 of",
        "buffer 2 px:",
        ("Search: space fusion, strategy evolution, 20 trials"),
        "OK: the task is usable",
    ):
        assert text in out, text
    rows = [line for line in out.splitlines() if "water" in line]
    assert rows and all(str(counts[s][0]) in rows[0] for s in ("train", "val", "test"))
    assert "labelled pixels dropped" not in out  # require_sensors: any (the default)


def test_validate_counts_pixels_dropped_for_an_invalid_sensor(task_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    assert main(["validate", str(task_path), "--set", "require_sensors=all"]) == 0
    out = capsys.readouterr().out
    assert "a label is used where every sensor is valid (require_sensors)" in out
    # the optical nodata corner
    assert "10 labelled pixels dropped: too few sensors valid there (require_sensors: all)" in out


def test_validate_reports_a_user_error_without_traceback(task_path, tmp_path, capsys):
    fx = make_fixtures
    labels = fx.label_values()
    labels[0, 0] = 5
    fx.write_raster(tmp_path / "labels.tif", labels, fx.UTM, fx.LABEL_TRANSFORM)
    assert main(["validate", str(task_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "label values 5 (1 px) are not declared" in err
    assert "Traceback" not in err


def test_validate_reports_a_bad_field(task_path, capsys):
    task_path.write_text(task_path.read_text().replace("patch_size: 5", "patch_size: 6"))
    assert main(["validate", str(task_path)]) == 2
    assert "patch_size: must be odd" in capsys.readouterr().err


def test_validate_missing_task_file(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "task file not found" in capsys.readouterr().err


def test_validate_shipped_task_on_real_data(capsys):
    env = os.environ.get("AUTORS_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"
    if not (root / "sen1floods11_sample").is_dir():
        pytest.skip("real rasters not found: set AUTORS_DATA or put them in ../shared/data")
    assert main(["validate", "sen1floods11_chip", "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "s2 (optical): 13 band(s)" in out and "512 x 512 px, EPSG:4326" in out
    assert "not_water" in out
