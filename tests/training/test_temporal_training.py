"""A time-series task trained for real (`autors train` on the synthetic time series): the run
folder records each time-series sensor's days of year, the model rebuilds from it and runs on
dated inputs, and batches carry the time axis (early fusion on stacked dates trains in the
benchmark smoke test's `early_cnn` baseline; export and predict: tests/export/
test_temporal_predict.py)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from autors.cli import main
from autors.config import load_task
from autors.data import prepare
from autors.synth.timeseries import TimeSeriesConfig, generate_time_series
from autors.training.cost import random_inputs
from autors.training.train_folder import read_train_folder

ARCH = {"version": 1,
        "branches": {"s2": {"kind": "time_ltae_first", "width": 8, "depth": 1, "kernel": 3},
                     "s1": {"kind": "conv", "width": 4, "depth": 0, "kernel": 3}},
        "fusion": {"op": "concat", "position": "middle", "width": 8, "trunk": {"kind": "off"}},
        "head": {"kind": "centre", "hidden": 0, "dropout": 0.0}}


def test_train_a_time_series_model_and_rebuild_it(tmp_path: Path) -> None:
    info = generate_time_series(tmp_path / "ts", TimeSeriesConfig(size=48, dates=4))
    task = yaml.safe_load(info.task_path.read_text())
    task["train"] = {"epochs": 1, "batch_size": 32, "max_train_samples": 128,
                     "val_max_samples": 128, "device": "cpu"}
    info.task_path.write_text(yaml.safe_dump(task))
    (tmp_path / "arch.json").write_text(json.dumps(ARCH))
    out = tmp_path / "run"
    assert main(["train", str(info.task_path), "--arch", str(tmp_path / "arch.json"),
                 "--out", str(out), "--test", "--quiet"]) == 0
    run = json.loads((out / "run.json").read_text())
    s2 = next(s for s in run["inputs"]["sensors"] if s["name"] == "s2")
    assert s2["in_channels"] == 4 and len(s2["doy"]) == 4  # bands of one date, 4 dates
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["oa"] > 0 and metrics["cost"]["flops"] > 0
    folder = read_train_folder(out)
    assert folder.steps == {"s2": 4, "s1": 4}
    model = folder.load_model()
    x = random_inputs(folder.in_channels, 5, 2, dates=folder.steps)
    with torch.no_grad():
        assert torch.isfinite(model(x)).all() and model(x).shape == (2, 8)
    # early fusion reads the same series with the dates stacked as channels
    data = prepare(load_task(info.task_path))
    batch = next(iter(torch.utils.data.DataLoader(data.dataset("train"), batch_size=4)))
    assert batch["s2"].shape == (4, 4, 4, 5, 5) and batch["s2__doy"].shape == (4, 4)


def test_a_dense_time_series_model_trains_and_is_scored_per_pixel(tmp_path: Path) -> None:
    """Segmentation on a series: evaluation reduces each series' date mask to "valid on any
    date" per pixel (as fusion does) before counting pixels with no valid input."""
    info = generate_time_series(tmp_path / "ts", TimeSeriesConfig(size=48, dates=3))
    task = yaml.safe_load(info.task_path.read_text())
    task.update(task="segmentation", tile_size=16)
    task["train"] = {"epochs": 1, "batch_size": 4, "device": "cpu"}
    info.task_path.write_text(yaml.safe_dump(task))
    arch = dict(ARCH, head={"kind": "segmentation", "hidden": 0, "dropout": 0.0})
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    out = tmp_path / "run"
    assert main(["train", str(info.task_path), "--arch", str(tmp_path / "arch.json"),
                 "--out", str(out), "--test", "--quiet"]) == 0
    test = json.loads((out / "metrics.json").read_text())["test"]
    assert test["num_samples"] > 0 and 0 <= test["oa"] <= 1
