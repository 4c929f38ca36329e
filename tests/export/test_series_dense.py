"""Dense (segmentation) time-series models exported and predicted (issue 15 items 1 and 4), for
real: the synthetic series of two scenes with their own dates (`autors synth --time-series
--scenes 2`, 48 px, 3 and 2 dates) trained one epoch as a segmentation task, `autors export`
(card inputs `[B, T, C, H, W]`, date masks, doy, how a missing date is handled; TorchScript and
ONNX parity), then `predict_scene` by overlap tiles, dates given by a {date} path or a CSV with
one date's raster missing: georeferenced maps equal to one pass of the run's model over the
training pipeline's windows of the whole scenes (that date masked), and the compiled formats
agree with PyTorch on those real dated inputs."""

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
from autors.export import PredictOptions, load_exported, predict_scene
from autors.synth.timeseries import TimeSeriesConfig, generate_time_series
from autors.training.train_folder import read_train_folder

ARCH = {"version": 1,
        "branches": {"s2": {"kind": "time_ltae_first", "width": 8, "depth": 1, "kernel": 3},
                     "s1": {"kind": "conv", "width": 4, "depth": 1, "kernel": 3}},
        "fusion": {"op": "concat", "position": "middle", "width": 8, "trunk": {"kind": "off"}},
        "head": {"kind": "segmentation", "hidden": 0, "dropout": 0.0}}


def _window(data, scene: int, radius: int, size: int) -> dict[str, torch.Tensor]:
    """The training pipeline's window of a whole scene, zero-padded by `radius`, as the
    model takes it (each series `[1, T, C, h, w]`, date masks, the scene's own doy)."""
    window = data.source().window(scene, -radius, -radius, size + 2 * radius)
    doys = data.index.scenes[scene].doys
    x = {}
    for name, t in data.index.steps.items():
        x[name] = torch.from_numpy(window[name]).reshape(1, t, -1, *window[name].shape[-2:])
        x[name + "__mask"] = torch.from_numpy(window[name + "__mask"])[None]
        x[name + "__doy"] = torch.tensor(doys[name], dtype=torch.float32)[None]
    return x


def test_a_dense_series_model_of_scenes_with_own_dates_exports_and_predicts(tmp_path: Path
                                                                             ) -> None:
    """Two scenes with their own dates (3 and 2: T = 3, `dates: per_scene`) train a
    segmentation model end to end; its export takes up to 3 dates per scene; scene_1 given by
    its {date} path, and scene_0 by a CSV whose middle date's file is missing, predict the
    maps one pass of the run's model gives over the training pipeline's windows (that date
    masked), and the compiled formats agree on those real dated inputs."""
    info = generate_time_series(tmp_path / "ds", TimeSeriesConfig(size=48, dates=3, scenes=2))
    task = yaml.safe_load(info.task_path.read_text())
    task.update(task="segmentation", tile_size=16)
    task["train"] = {"epochs": 1, "batch_size": 4, "max_train_samples": 8, "device": "cpu"}
    info.task_path.write_text(yaml.safe_dump(task))
    (tmp_path / "arch.json").write_text(json.dumps(ARCH))
    run, out = tmp_path / "run", tmp_path / "model"
    assert main(["train", str(info.task_path), "--arch", str(tmp_path / "arch.json"),
                 "--out", str(run), "--quiet"]) == 0
    assert read_train_folder(run).steps == {"s2": 3, "s1": 3}
    assert main(["export", str(run), "--out", str(out)]) == 0

    card = json.loads((out / "model.json").read_text())
    shapes = {t["name"]: t["shape"] for t in card["export"]["inputs"]}
    assert shapes["s2"] == ["batch", 3, 4, "height", "width"]
    assert shapes["s2__mask"] == ["batch", 3, "height", "width"]
    assert shapes["s2__doy"] == ["batch", 3]
    s2 = next(s for s in card["sensors"] if s["name"] == "s2")
    assert s2["dates"] is None and s2["dates_per_scene"] == 3
    assert "invalid everywhere" in s2["missing_dates"]
    assert max(card["export"]["parity"].values()) <= 1e-4
    radius = card["export"]["receptive_radius"]
    assert radius is not None and radius >= 2  # the 3 x 3 kernels
    exported = load_exported(out)
    data = prepare(load_task(info.task_path), in_memory=True)
    ids = [e.id for e in data.index.scenes]
    model = read_train_folder(run).load_model()
    temperature = card["calibration"]["temperature"] if card.get("calibration") else 1.0
    values = np.asarray([c["value"] for c in card["classes"]])

    def check(result, x: dict[str, torch.Tensor], raster: Path) -> torch.Tensor:
        with torch.no_grad():
            logits = model(x)
        probs = torch.softmax(logits / temperature, dim=1)[0, :, radius:-radius,
                                                          radius:-radius]
        with rasterio.open(result.class_map) as m, rasterio.open(raster) as r:
            assert m.transform == r.transform and m.crs == r.crs  # georeferenced
            assert (m.read(1) == values[probs.argmax(dim=0).numpy()]).all()
        with rasterio.open(result.scores) as src:
            assert np.abs(src.read(1) - probs.max(dim=0).values.numpy()).max() <= 1e-4
        return logits

    # scene_1: its own 2 dates found from its {date} path, padded to 3; small windows
    folder = info.out_dir / "scenes" / "scene_1"
    result = predict_scene(exported, {"s2": folder / "s2_{date}.tif",
                                      "s1": folder / "s1_{date}.tif"},
                           tmp_path / "one.tif", PredictOptions(window=16), progress=False)
    assert result.method == f"overlap-tile: 16 px cores, {radius} px halo"
    assert len(result.checks.figures) == 4  # input checks per date: 2 sensors x 2 dates
    check(result, _window(data, ids.index("scene_1"), radius, 48), folder / "labels.tif")

    # scene_0 by a CSV listing its 3 dates, the middle date's file missing: that date masked
    folder = info.out_dir / "scenes" / "scene_0"
    days = sorted(p.name[3:13] for p in folder.glob("s2_*.tif"))
    gone = folder / f"s2_{days[1]}.tif"
    shutil.move(gone, tmp_path / "aside.tif")
    listing = tmp_path / "s2.csv"
    listing.write_text("date,path\n" + "".join(f"{d},{folder}/s2_{d}.tif\n" for d in days))
    result = predict_scene(exported, {"s2": listing, "s1": folder / "s1_{date}.tif"},
                           tmp_path / "zero.tif", progress=False)
    assert any(f"no raster for date(s) {days[1]}" in n for n in result.notes)
    x = _window(data, ids.index("scene_0"), radius, 48)
    with torch.no_grad():
        every_date = model(x).argmax(dim=1)
    x["s2"][:, 1] = 0.0
    x["s2__mask"][:, 1] = 0.0
    logits = check(result, x, folder / "labels.tif")
    assert (logits.argmax(dim=1) != every_date).any()  # the date matters: the check can fail

    # TorchScript and ONNX on these real dated inputs (a date missing, another tile size)
    with torch.no_grad():
        assert np.abs(exported.torchscript()(x).numpy() - logits.numpy()).max() <= 1e-4
    session = exported.onnx_session()
    feed = {i.name: x[i.name].numpy() for i in session.get_inputs()}
    assert np.abs(session.run(["logits"], feed)[0] - logits.numpy()).max() <= 1e-4

    # bad input: more dates than the model takes; a CSV without its columns
    listing.write_text("date,path\n" + "".join(f"2021-0{m}-01,{folder}/s1_{days[0]}.tif\n"
                                                for m in range(1, 5)))
    with pytest.raises(DataError, match=r"--sensor s2=.*s2\.csv: 4 dates given .* at most 3"):
        predict_scene(exported, {"s2": listing}, tmp_path / "bad.tif", progress=False)
    listing.write_text("when,file\n2021-01-01,x.tif\n")
    with pytest.raises(DataError, match=r"the CSV's header is \['when', 'file'\]; it needs "
                                        r"the columns date, path"):
        predict_scene(exported, {"s2": listing}, tmp_path / "bad.tif", progress=False)
