"""The synthetic time series (`autors synth --time-series`): its files and task, and classes
that differ only in timing (the same spectra and peak, another season length; seasonal water
equal to permanent water inside its window and to bare soil outside it), with clouds per
date."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import yaml

from autors.cli import main
from autors.synth.timeseries import CLASSES, _states


def test_time_only_classes_differ_only_in_timing() -> None:
    rng = np.random.default_rng(0)
    cls = np.repeat(np.arange(len(CLASSES)), 50)
    doys = list(range(1, 366, 5))
    v, water, _ = _states(cls, rng, doys)
    name = np.asarray(CLASSES)[cls]
    short, long_ = v[name == "crop_short"], v[name == "crop_long"]
    np.testing.assert_allclose(short.max(1).mean(), long_.max(1).mean(), atol=0.02)  # one peak
    green_s, green_l = (short > 0.5).sum(1) * 5, (long_ > 0.5).sum(1) * 5
    assert 50 <= green_s.mean() <= 70 and 110 <= green_l.mean() <= 130  # season lengths
    seasonal, permanent = water[name == "water_seasonal"], water[name == "water_permanent"]
    assert permanent.all() and seasonal.any(1).all() and not seasonal.all(1).any()
    # outside its window seasonal water is drawn exactly as bare soil
    dry = v[name == "water_seasonal"][~seasonal]
    assert (dry == v[name == "bare_soil"][0, 0]).all()


def test_cli_writes_a_dated_scene_and_its_task(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ts"
    assert main(["synth", str(out), "--time-series", "--size", "40", "--dates", "4"]) == 0
    assert "time-only classes" in capsys.readouterr().out
    task = yaml.safe_load((out / "task.yaml").read_text())
    dates = task["sensors"]["s2"]["dates"]
    assert len(dates) == 4 and task["sensors"]["s1"]["path"] == "s1_{date}.tif"
    clouded = []
    for d in dates:
        with rasterio.open(out / f"s2_{d}.tif") as ds:
            clouded.append(float((ds.read(1) == ds.nodata).mean()))
        assert (out / f"s1_{d}.tif").is_file()
    assert len(set(clouded)) > 1 and max(clouded) > 0  # clouds differ from date to date
