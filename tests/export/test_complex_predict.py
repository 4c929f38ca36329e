"""Complex SAR end to end through the CLI: a tiny real training run on the synthetic complex
scene (`slc`: complex64 HH, VV), export (TorchScript and ONNX parity, the card's complex read
spec), and `autors predict` on the complex GeoTIFF, on the same values as complex int16
(`--scale`, which the input checks ask for), and the refusal of a real raster."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
import yaml

from autors.cli import main
from autors.synth import SynthConfig, generate_scene

ARCH = {"version": 1,
        "branches": {"slc": {"kind": "complex_features", "width": 8, "depth": 1, "kernel": 3}},
        "fusion": {"op": "concat", "position": "middle", "width": 8, "trunk": {"kind": "off"}},
        "head": {"kind": "centre", "hidden": 0, "dropout": 0.0}}


def _run(argv: list[str]) -> None:
    assert main(argv) == 0, argv


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def _copy(src: Path, dst: Path, data: np.ndarray, dtype: str) -> Path:
    with rasterio.open(src) as ds:
        profile = dict(ds.profile, dtype=dtype, count=data.shape[0])
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
    return dst


def test_train_export_predict_complex(tmp_path: Path, capsys) -> None:
    info = generate_scene(tmp_path / "scene", SynthConfig(
        size=64, classes=4, sensors=("slc",), n_train_per_class=8, n_val_per_class=8,
        block_size=16, patch_size=5))
    task = yaml.safe_load(info.task_path.read_text())
    task["train"] = {"epochs": 2, "batch_size": 16, "lr": 0.01, "device": "cpu"}
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
    for name in ("slc.tif", "labels.tif", "train.tif", "test.tif", "val.tif"):
        (tmp_path / name).symlink_to(tmp_path / "scene" / name)
    (tmp_path / "arch.json").write_text(json.dumps(ARCH))
    _run(["train", str(tmp_path / "task.yaml"), "--arch", str(tmp_path / "arch.json"), "--test",
          "--out", str(tmp_path / "run"), "--quiet"])
    _run(["export", str(tmp_path / "run"), "--out", str(tmp_path / "model")])
    card = json.loads((tmp_path / "model" / "model.json").read_text())
    (sensor,) = card["sensors"]
    assert sensor["read"]["sar_units"] == "complex" and sensor["in_channels"] == 4
    assert sensor["bands"] == ["HH.re", "HH.im", "VV.re", "VV.im"]
    assert sensor["mean"] == [0.0] * 4 and sensor["std"][0] == sensor["std"][1]
    assert card["export"]["parity"]["onnx"] < 1e-4 and card["export"]["parity"]["torchscript"] < 1e-5
    values = next(i for i in card["export"]["inputs"] if i["name"] == "slc")
    assert values["shape"][1] == 4 and "real/imaginary channel pairs" in values["description"]

    slc = tmp_path / "slc.tif"
    _run(["predict", str(tmp_path / "model"), "--sensor", f"slc={slc}",
          "--out", str(tmp_path / "map.tif"), "--quiet"])
    class_map = _read(tmp_path / "map.tif")
    with rasterio.open(slc) as ds:
        z = ds.read()
    swath = np.abs(z).sum(axis=0) > 0
    assert ((class_map != 0) == swath).all()  # nodata exactly where the SLC has none

    # the same values as complex int16 (x 1000): the input checks stop it, --scale reads it
    cint = _copy(slc, tmp_path / "slc_cint16.tif", np.round(z * 1000), "complex_int16")
    code = main(["predict", str(tmp_path / "model"), "--sensor", f"slc={cint}",
                 "--out", str(tmp_path / "bad.tif"), "--quiet"])
    assert code == 2 and "--scale" in capsys.readouterr().err
    _run(["predict", str(tmp_path / "model"), "--sensor", f"slc={cint}", "--scale",
          "slc=0.001", "--out", str(tmp_path / "map16.tif"), "--quiet"])
    assert (_read(tmp_path / "map16.tif") == class_map).mean() > 0.98

    # a real (amplitude) raster for the complex input: an error naming sensor, file, field
    amp = _copy(slc, tmp_path / "amp.tif", np.abs(z).astype(np.float32), "float32")
    code = main(["predict", str(tmp_path / "model"), "--sensor", f"slc={amp}",
                 "--out", str(tmp_path / "amp_map.tif"), "--quiet"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "Traceback" not in err
    for words in (f"--sensor slc={amp}", "sensors.slc.sar_units is complex", "real values"):
        assert words in err, err
    assert not (tmp_path / "amp_map.tif").exists()
