"""Dense prediction by overlap tiles (issue 20) on the real Sen1Floods11 chip (S1 + S2,
512 x 512): a tiny encoder-decoder (output stride 8) and a full-resolution dense model, trained
for one epoch on a few tiles and exported; their maps do not depend on the window or the tile
size and equal one pass of the model over the whole zero-padded scene; TorchScript and ONNX
run prediction tiles; a radius over the halo cap is blended; a card without the radius keeps
the former tiles. Skipped without the real rasters ($AUTORS_DATA or ../shared/data)."""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch import nn

from autors.cli import main
from autors.export import PredictOptions, load_exported, predict_scene
from autors.export.card import CARD_FILE
from autors.export.inputs import open_inputs
from autors.export.predict import _tile_probs, model_inputs
from autors.export.windows import Core, Tiling

UNET = {  # two encoders fused at every scale (8, 4, 2, 1 px), ASPP, skips: stride 8
    "version": 1,
    "branches": {"s1": {"kind": "conv", "width": 8, "depth": 3, "kernel": 3},
                 "s2": {"kind": "conv", "width": 8, "depth": 3, "kernel": 3}},
    "fusion": {"op": "concat", "position": "multi", "width": 8, "trunk": {"kind": "off"}},
    "head": {"kind": "segmentation", "hidden": 0, "dropout": 0.1},
    "decoder": {"width": 8, "skips": [0, 1, 2], "up": "bilinear", "context": "aspp"},
}
FULL = {  # no decoder: every layer at full resolution
    "version": 1,
    "branches": {"s1": {"kind": "conv", "width": 4, "depth": 1, "kernel": 3},
                 "s2": {"kind": "conv", "width": 8, "depth": 1, "kernel": 3}},
    "fusion": {"op": "concat", "position": "middle", "width": 8,
               "trunk": {"kind": "conv", "width": 8, "depth": 1, "kernel": 3}},
    "head": {"kind": "segmentation", "hidden": 8, "dropout": 0.1},
}
TRAIN = ["--set", "task=segmentation", "--set", "tile_size=64", "--set", "train.epochs=1",
         "--set", "train.max_train_samples=8", "--set", "train.batch_size=4", "--quiet"]
ATOL = 1e-5  # probabilities: float tolerance between tile sizes


@pytest.fixture(scope="session")
def chip() -> Path:
    env = os.environ.get("AUTORS_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"
    if not (root / "sen1floods11_sample").is_dir():
        pytest.skip("real rasters not found: set AUTORS_DATA or put them in ../shared/data")
    return root


def _sensors(root: Path) -> dict[str, Path]:
    return {s: root / "sen1floods11_sample" / f"{s}.tif" for s in ("s1", "s2")}


def _train_export(root: Path, folder: Path, arch: dict) -> Path:
    (folder / "arch.json").write_text(json.dumps(arch))
    assert main(["train", "sen1floods11_chip", "--data-root", str(root), "--arch",
                 str(folder / "arch.json"), *TRAIN, "--out", str(folder / "run")]) == 0
    assert main(["export", str(folder / "run"), "--out", str(folder / "model")]) == 0
    return folder / "model"


@pytest.fixture(scope="session")
def unet(chip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train_export(chip, tmp_path_factory.mktemp("chip_unet"), UNET)


@pytest.fixture(scope="session")
def full(chip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train_export(chip, tmp_path_factory.mktemp("chip_full"), FULL)


@dataclass
class Map:
    classes: np.ndarray  # [H, W]
    probs: np.ndarray  # [K, H, W]
    method: str
    notes: list[str]


def _predict(model: Path, root: Path, out: Path, **options: object) -> Map:
    loaded = load_exported(model)
    result = predict_scene(loaded, _sensors(root), out,
                           PredictOptions(probabilities=True, **options), progress=False)
    with rasterio.open(result.class_map) as ds, rasterio.open(result.scores) as sc:
        k = loaded.card.num_classes
        return Map(ds.read(1), sc.read()[-k:], result.method, result.notes)


def _whole_scene(model: Path, root: Path) -> np.ndarray:
    """Probabilities [K, H, W] of one pass of the PyTorch model over the whole chip,
    zero-padded by the receptive radius (a multiple of the stride, so the pooling grid is
    the scene's)."""
    loaded = load_exported(model)
    card, r = loaded.card, loaded.card.export.receptive_radius
    inputs = open_inputs(card, _sensors(root))
    h, w = inputs.grid.height, inputs.grid.width
    arrays, valid = inputs.read(-r, -r, h + 2 * r, w + 2 * r)
    x = {n: t[None] if not n.endswith("__mask") else t
         for n, t in model_inputs(card, arrays, valid).items()}
    t = card.calibration.temperature if card.calibration else 1.0  # predict's calibration
    with torch.inference_mode():
        return torch.softmax(loaded.model(x) / t, dim=1)[0, :, r:r + h, r:r + w].numpy()


@pytest.mark.parametrize("name,windows,cores", [
    ("unet", (256, 1024), (256, 512)),
    ("full", (256, 1024, 48), (128, 128, 32)),
])
def test_maps_do_not_depend_on_the_window(name: str, windows: tuple[int, ...],
                                          cores: tuple[int, ...], chip: Path,
                                          request: pytest.FixtureRequest, tmp_path: Path
                                          ) -> None:
    """Windows of 256 and 1024 px (and tile cores of 512, 256, 128 or 32 px) give the same
    class map and probabilities, equal to one pass over the whole scene: no seams."""
    model = request.getfixturevalue(name)
    card = load_exported(model).card
    reduction, radius = card.export.reduction, card.export.receptive_radius
    assert (reduction, card.task.dense) == ((8, True) if name == "unet" else (1, True))
    assert radius is not None and radius % reduction == 0 and radius > 2 * reduction
    maps = [_predict(model, chip, tmp_path / f"w{w}.tif", window=w) for w in windows]
    assert [m.method for m in maps] == [
        f"overlap-tile: {c} px cores, {radius} px halo" for c in cores]
    whole = _whole_scene(model, chip)
    valid = maps[0].classes != card.ignore_value
    assert valid.all()  # the chip has no nodata: every pixel labelled
    for m in maps:
        assert m.notes == []
        np.testing.assert_array_equal(m.classes, maps[0].classes)
        np.testing.assert_allclose(m.probs, maps[0].probs, rtol=0, atol=ATOL)
        np.testing.assert_allclose(m.probs, whole, rtol=0, atol=ATOL)
    values = np.asarray(card.class_values)
    np.testing.assert_array_equal(maps[0].classes, values[whole.argmax(axis=0)])
    print(f"{name}: max |prob difference| between windows "
          f"{max(float(np.abs(m.probs - maps[0].probs).max()) for m in maps):.2g}, to the "
          f"whole scene {float(np.abs(maps[0].probs - whole).max()):.2g}")


@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")
def test_compiled_formats_run_prediction_tiles(unet: Path, chip: Path, tmp_path: Path
                                               ) -> None:
    """model.ts and model.onnx (dynamic height and width) give the map's probabilities on
    the tile of a 256 px core read with its halo, as a client without autors would."""
    loaded = load_exported(unet)
    card = loaded.card
    assert set(card.export.parity) == {"torchscript", "onnx"}
    assert all(d <= 1e-4 for d in card.export.parity.values())
    shapes = {t.name: t.shape for t in card.export.inputs}
    assert shapes["s2"] == ["batch", 13, "height", "width"]
    assert shapes["s2__mask"] == ["batch", "height", "width"]
    session = loaded.onnx_session()
    assert [d for d in session.get_outputs()[0].shape[2:]] == ["height", "width"]
    mapped = _predict(unet, chip, tmp_path / "map.tif", window=256)
    r, core = card.export.receptive_radius, Core(256, 0, 256, 256)
    inputs = open_inputs(card, _sensors(chip))
    arrays, valid = inputs.read(core.row - r, core.col - r, 256 + 2 * r, 256 + 2 * r)
    x = {n: (t if n.endswith("__mask") else t[None])
         for n, t in model_inputs(card, arrays, valid).items()}  # batch of one
    names = [t.name for t in card.export.inputs]
    (logits,) = session.run(["logits"], {n: x[n].numpy() for n in names})
    with torch.no_grad():
        ts = loaded.torchscript()(x).numpy()
    want = mapped.probs[:, 256:512, 0:256]
    for got in (logits, ts):
        probs = torch.softmax(torch.from_numpy(got), dim=1)[0, :, r:r + 256, r:r + 256]
        np.testing.assert_allclose(probs.numpy(), want, rtol=0, atol=1e-4)


def test_a_radius_over_the_cap_is_blended(unet: Path, chip: Path, tmp_path: Path) -> None:
    """max_halo below the radius: tiles on a lattice that ignores the window, borders
    blended; the same map for any window, close to (not equal to) the exact one."""
    exact = _predict(unet, chip, tmp_path / "exact.tif", window=512)
    maps = [_predict(unet, chip, tmp_path / f"b{w}.tif", window=w, max_halo=16)
            for w in (256, 1024)]
    for m in maps:
        assert m.method == "overlap-tile: 128 px cores, 16 px halo, borders blended over 16 px"
        assert len(m.notes) == 1 and "exceeds the 16 px halo cap" in m.notes[0]
        np.testing.assert_array_equal(m.classes, maps[0].classes)
        # the same tiles (batched differently: float rounding only)
        np.testing.assert_allclose(m.probs, maps[0].probs, rtol=0, atol=1e-6)
    diff = np.abs(maps[0].probs - exact.probs)
    assert 0 < diff.max() < 0.1 and diff.mean() < 1e-2
    print(f"blended (16 px halo) vs exact: max |prob difference| {diff.max():.2g}, mean "
          f"{diff.mean():.2g}, {int((maps[0].classes != exact.classes).sum())} pixels differ")


class _Pixelwise(nn.Module):
    """A dense model whose output at a pixel depends on that pixel only (1 x 1 conv)."""

    def __init__(self, channels: int, k: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(channels, k, 1)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.conv(x["a"])


@pytest.mark.parametrize("tiling", [Tiling.overlap(16, 8, blend=4), Tiling.overlap(8, 4),
                                    Tiling.overlap(32, 16, blend=8)])
@pytest.mark.parametrize("shape", [(40, 50), (16, 16), (5, 70)])
def test_tiles_assemble_to_the_whole_window(tiling: Tiling, shape: tuple[int, int]) -> None:
    """A pixelwise model gives every tile the same value at a pixel, so the assembled window
    (blended or not) must be that value everywhere: tiles in place, weights summing to one."""
    k, (h, w) = 3, shape
    model = _Pixelwise(2, k).eval()
    core = Core(32, 64, h, w)
    rows, cols = tiling.read_shape(core)
    gen = torch.Generator().manual_seed(1)
    x = {"a": torch.randn(2, rows, cols, generator=gen)}
    valid = np.ones((h, w), bool)
    valid[0, 0] = False
    got = _tile_probs(model, x, valid, core, tiling, k, PredictOptions(), batch=4)
    m = tiling.read_margin
    with torch.no_grad():
        want = torch.softmax(model({"a": x["a"][None, :, m:m + h, m:m + w]}), 1)[0].numpy()
    assert np.isnan(got[:, 0, 0]).all()
    want[:, 0, 0] = np.nan
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_a_card_without_the_radius_keeps_the_former_tiles(full: Path, chip: Path,
                                                           tmp_path: Path) -> None:
    old = Path(shutil.copytree(full, tmp_path / "old"))
    card = json.loads((old / CARD_FILE).read_text())
    del card["export"]["reduction"], card["export"]["receptive_radius"]
    (old / CARD_FILE).write_text(json.dumps(card))  # model.json has no checksum
    m = _predict(old, chip, tmp_path / "old.tif", window=256)
    assert m.method == "per tile"
    assert len(m.notes) == 1 and "records no receptive radius" in m.notes[0]
    new = _predict(full, chip, tmp_path / "new.tif", window=256)
    # the same model: half-overlapping 64 px tiles see 16 px of context, the radius is less
    assert (m.classes == new.classes).mean() > 0.99



def test_mc_dropout_and_a_sensor_subset_with_overlap_tiles(unet: Path, chip: Path,
                                                          tmp_path: Path) -> None:
    """S1 only (S2 absent: values and masks 0) with MC dropout: every pixel labelled from
    its one valid sensor, an entropy band, the same map again for the same seed."""
    loaded = load_exported(unet)
    sensors = {"s1": _sensors(chip)["s1"]}
    runs = [predict_scene(loaded, sensors, tmp_path / f"mc{i}.tif",
                          PredictOptions(window=256, mc_dropout=2), progress=False)
            for i in range(2)]
    assert runs[0].bands == ["confidence", "entropy", "mutual_information", "valid_sensors"]
    assert runs[0].absent == ["s2"] and runs[0].method.startswith("overlap-tile")
    scores = []
    for r in runs:
        with rasterio.open(r.scores) as sc:
            scores.append(sc.read())
    conf, entropy, mi, count = scores[0]
    assert (count == 1).all() and not np.isnan(conf).any() and (entropy >= 0).all()
    assert (mi >= 0).all() and (mi <= entropy + 1e-6).all()
    np.testing.assert_array_equal(scores[0], scores[1])
    assert not any(m.training for m in loaded.model.modules())


def test_the_tile_memory_budget_sets_the_core_size_not_the_map(unet: Path, chip: Path,
                                                               tmp_path: Path, capfd) -> None:
    """`autors predict --tile-memory-mb`: a small budget gives smaller tile cores (more halo
    overhead), never another map."""
    sensors = [a for n, p in _sensors(chip).items() for a in ("--sensor", f"{n}={p}")]
    maps = {}
    for budget in ("1", "4096"):
        out = tmp_path / f"m{budget}.tif"
        assert main(["predict", str(unet), *sensors, "--tile-memory-mb", budget,
                     "--out", str(out)]) == 0
        with rasterio.open(out) as ds:
            maps[budget] = ds.read(1)
        maps[budget + "_log"] = capfd.readouterr().err
    cores = [int(re.search(r"overlap-tile:\s+(\d+)\s+px\s+cores", maps[b + "_log"]).group(1))
             for b in ("1", "4096")]
    assert cores[0] < cores[1]
    np.testing.assert_array_equal(maps["1"], maps["4096"])
