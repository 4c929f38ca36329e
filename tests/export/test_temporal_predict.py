"""Export and predict of a time-series model (issue 15, item 4 for dated inputs), for real: the
synthetic time series (`autors synth --time-series`, 48 px, 4 dates) trained 1 epoch with
`autors train`, exported with `autors export` (card dates and `[B, T, ...]` inputs, TorchScript
and ONNX parity on dated inputs), and `autors predict --sensor s2=.../s2_{date}.tif`: the map
holds the classes the run's model gives the same pixels through the training data pipeline,
and a date whose raster is missing is masked (a valid map, a note, the model's output with that
date masked), also over many scenes (`--template` with {scene} and {date})."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml

from autors.cli import main
from autors.config import load_task
from autors.data import prepare
from autors.errors import DataError
from autors.export import load_exported
from autors.export.card import MaskRule, ModelCard
from autors.export.inputs import open_inputs
from autors.export.predict import predict_scene
from autors.synth.timeseries import TimeSeriesConfig, generate_time_series
from autors.training.train_folder import read_train_folder

ARCH = {"version": 1,
        "branches": {"s2": {"kind": "time_ltae_first", "width": 8, "depth": 1, "kernel": 3},
                     "s1": {"kind": "conv", "width": 4, "depth": 0, "kernel": 3}},
        "fusion": {"op": "concat", "position": "middle", "width": 8, "trunk": {"kind": "off"}},
        "head": {"kind": "centre", "hidden": 0, "dropout": 0.0}}


def _test_items(task_path: Path) -> tuple[dict[str, torch.Tensor], np.ndarray, np.ndarray]:
    """Every test pixel's item as the training pipeline reads it (batched), and its (rows,
    cols)."""
    data = prepare(load_task(task_path))
    ds = data.dataset("test")
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=len(ds))))
    rows, cols = np.divmod(ds.positions(0).astype(np.int64), data.index.scenes[0].grid.width)
    return batch, rows, cols


def _classes(model: torch.nn.Module, batch: dict[str, torch.Tensor], values: list[int]
             ) -> np.ndarray:
    x = {k: v for k, v in batch.items() if k not in ("target", "scene")}
    with torch.no_grad():
        return np.asarray(values)[model(x).argmax(1).numpy()]


def test_export_and_predict_a_time_series_model(tmp_path: Path) -> None:
    info = generate_time_series(tmp_path / "ts", TimeSeriesConfig(size=48, dates=4))
    task = yaml.safe_load(info.task_path.read_text())
    task["train"] = {"epochs": 1, "batch_size": 32, "max_train_samples": 128,
                     "val_max_samples": 128, "device": "cpu"}
    info.task_path.write_text(yaml.safe_dump(task))
    (tmp_path / "arch.json").write_text(json.dumps(ARCH))
    run, out = tmp_path / "run", tmp_path / "model"
    assert main(["train", str(info.task_path), "--arch", str(tmp_path / "arch.json"),
                 "--out", str(run), "--test", "--quiet"]) == 0
    assert main(["export", str(run), "--out", str(out)]) == 0

    # the card: each series' dates and day of year, dated input shapes
    card = json.loads((out / "model.json").read_text())
    s2 = next(s for s in card["sensors"] if s["name"] == "s2")
    assert [d["date"] for d in s2["dates"]] == task["sensors"]["s2"]["dates"]
    assert [d["doy"] for d in s2["dates"]] == [30, 130, 230, 330]
    shapes = {t["name"]: t["shape"] for t in card["export"]["inputs"]}
    assert shapes["s2"] == ["batch", 4, 4, 5, 5] and shapes["s2__mask"] == ["batch", 4, 5, 5]
    assert shapes["s2__doy"] == ["batch", 4] and shapes["s1"] == ["batch", 4, 2, 5, 5]
    assert set(card["export"]["parity"]) == {"torchscript", "onnx"}
    assert max(card["export"]["parity"].values()) <= 1e-4

    # the loader rebuilds the dated model; the compiled files agree with it on real items
    exported = load_exported(out)
    run_model = read_train_folder(run).load_model()
    batch, rows, cols = _test_items(info.task_path)
    values = exported.card.class_values
    want = _classes(run_model, batch, values)
    assert (_classes(exported.model, batch, values) == want).all()
    x = {k: v for k, v in batch.items() if k not in ("target", "scene")}
    with torch.no_grad():
        logits = exported.model(x).numpy()
        assert np.abs(exported.torchscript()(x).numpy() - logits).max() <= 1e-4
    session = exported.onnx_session()
    feed = {i.name: x[i.name].numpy() for i in session.get_inputs()}
    assert np.abs(session.run(["logits"], feed)[0] - logits).max() <= 1e-4

    # predict with the dated rasters: the map's classes are the model's on the same pixels
    paths = {"s2": info.task_path.parent / "s2_{date}.tif",
             "s1": info.task_path.parent / "s1_{date}.tif"}
    result = predict_scene(exported, paths, tmp_path / "map.tif", progress=False)
    with rasterio.open(result.class_map) as src:
        assert (src.read(1)[rows, cols] == want).all()
    # fully convolutional (checked against per patch on the first window by predict itself),
    # and the input checks run date by date against the card's profile
    assert result.method == "fully convolutional", result.notes
    assert result.checks.status in ("passed", "warnings")
    assert sorted(f.sensor for f in result.checks.figures) == sorted(
        f"{s} {d}" for s in ("s1", "s2") for d in task["sensors"]["s2"]["dates"])

    # a date's raster missing: that date is masked (invalid everywhere), with a note
    gone = info.task_path.parent / "s2_2021-05-10.tif"
    shutil.move(gone, tmp_path / "aside.tif")
    result = predict_scene(exported, paths, tmp_path / "map_gap.tif", progress=False)
    assert any("no raster for date(s) 2021-05-10" in n for n in result.notes)
    assert result.valid_pixels == 48 * 48  # s1 is valid everywhere
    batch["s2"][:, 1] = 0.0
    batch["s2__mask"][:, 1] = 0.0
    masked = _classes(run_model, batch, values)
    assert (masked != want).any()  # the date matters to the model, so the check can fail
    with rasterio.open(result.class_map) as src:
        assert (src.read(1)[rows, cols] == masked).all()
    # the same dates listed in a CSV (item 4 "or a CSV"): the same map
    listing = tmp_path / "s2.csv"
    listing.write_text("date,path\n" + "".join(
        f"{d},{info.task_path.parent / f's2_{d}.tif'}\n" for d in task["sensors"]["s2"]["dates"]
        if d != "2021-05-10"))
    by_csv = predict_scene(exported, paths | {"s2": listing}, tmp_path / "map_csv.tif",
                           progress=False)
    with rasterio.open(result.class_map) as a, rasterio.open(by_csv.class_map) as b:
        assert (a.read(1) == b.read(1)).all()

    # many scenes (`--template` with {scene} and {date}, ids from a CSV): the same map
    (tmp_path / "scenes" / "a").mkdir(parents=True)
    for f in info.task_path.parent.glob("s[12]_*.tif"):
        shutil.copy(f, tmp_path / "scenes" / "a" / f.name)
    (tmp_path / "ids.csv").write_text("a\n")
    assert main(["predict", str(out), "--template", f"s2={tmp_path}/scenes/{{scene}}/s2_{{date}}.tif",
                 "--template", f"s1={tmp_path}/scenes/{{scene}}/s1_{{date}}.tif", "--scenes",
                 str(tmp_path / "ids.csv"), "--out-dir", str(tmp_path / "maps")]) == 0
    with rasterio.open(tmp_path / "maps" / "a.tif") as a, rasterio.open(result.class_map) as b:
        assert (a.read(1) == b.read(1)).all()

    # a series given without {date}: a clear error naming the flag and the fix
    try:
        predict_scene(exported, {"s2": tmp_path / "aside.tif"}, tmp_path / "bad.tif",
                      progress=False)
    except DataError as err:
        assert "--sensor s2=" in str(err) and "{date}" in str(err)
    else:
        raise AssertionError("a time series without {date} was accepted")

    # read level, against the {date} files: one band-group file for a model trained on band
    # groups, a mask raster per date (only that date's masked pixels change), bad CSV dates
    folder = info.task_path.parent
    shutil.move(tmp_path / "aside.tif", folder / "s2_2021-05-10.tif")
    days = task["sensors"]["s2"]["dates"]
    values, valid = open_inputs(exported.card, paths).read(0, 0, 48, 48)
    stack = np.concatenate([rasterio.open(folder / f"s2_{d}.tif").read() for d in days])
    with rasterio.open(folder / f"s2_{days[0]}.tif") as src:
        profile = src.profile | {"count": stack.shape[0]}
    with rasterio.open(tmp_path / "stack.tif", "w", **profile) as dst:
        dst.write(stack)
    grouped = open_inputs(_with_read(exported.card, bands_per_date=4),
                          paths | {"s2": tmp_path / "stack.tif"})
    got, ok = grouped.read(0, 0, 48, 48)
    assert np.array_equal(got["s2"], values["s2"]) and np.array_equal(ok["s2"], valid["s2"])
    for t, d in enumerate(days):
        cloud = np.zeros((1, 48, 48), np.uint8)
        cloud[0, 5:9, 5:12] = 1 if t == 2 else 0
        with rasterio.open(tmp_path / f"cloud_{d}.tif", "w", **(profile | {
                "count": 1, "dtype": "uint8", "nodata": None})) as dst:
            dst.write(cloud)
    rule = _with_read(exported.card, mask=MaskRule(invalid_values=[1]))
    _, ok = open_inputs(rule, paths, masks={"s2": tmp_path / "cloud_{date}.tif"}).read(
        0, 0, 48, 48)
    expect = np.zeros_like(valid["s2"])
    expect[2, 5:9, 5:12] = valid["s2"][2, 5:9, 5:12]
    assert expect.any() and ((ok["s2"] != valid["s2"]) == expect).all()
    with pytest.raises(DataError, match=r"trained with a mask raster per date; give them "
                                        r"with --mask s2=PATH holding \{date\}"):
        open_inputs(rule, paths)
    listing.write_text("date,path\n2021-02-02,s2.tif\n")
    with pytest.raises(DataError, match=r"date\(s\) 2021-02-02 are not among the model's 4 "
                                        r"dates"):
        open_inputs(exported.card, paths | {"s2": listing})


def _with_read(card: ModelCard, **read) -> ModelCard:
    """`card` with sensor s2 read otherwise (band groups, a mask rule), for read checks."""
    sensors = [s.model_copy(update={"read": s.read.model_copy(update=read)})
               if s.name == "s2" else s for s in card.sensors]
    return card.model_copy(update={"sensors": sensors})
