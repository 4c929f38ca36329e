"""The pipeline on real rasters from ../shared/data (skipped when that folder is absent):
the Sen1Floods11 S1 + S2 chip (EPSG:4326) as a two-sensor spatial-block task, and a Landsat-7
multispectral (30 m) + panchromatic (15 m) pair."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import yaml

from autors.config import load_task, shipped_task
from autors.data import footprint_leakage, load_scene, make_splits, prepare


@pytest.fixture
def floods(shared_data):
    return shipped_task("sen1floods11_chip", shared_data)


def test_sen1floods11_scene_is_read_on_its_own_grid(floods, shared_data):
    scene = load_scene(floods)
    folder = shared_data / "sen1floods11_sample"
    with rasterio.open(folder / "labels.tif") as ds:
        assert scene.grid.transform == ds.transform and scene.grid.crs == ds.crs
        raw_labels = ds.read(1)
    assert scene.grid.shape == (512, 512) and scene.grid.crs.to_epsg() == 4326
    with rasterio.open(folder / "s1.tif") as ds:
        np.testing.assert_array_equal(scene.sensors["s1"], ds.read())  # dB, used as is
    with rasterio.open(folder / "s2.tif") as ds:
        s2 = ds.read()
    valid = scene.sensor_valid["s2"]
    assert np.array_equal(valid, (s2 != 0).all(axis=0))
    np.testing.assert_allclose(scene.sensors["s2"][:, valid], s2[:, valid] * 1e-4, rtol=1e-6)
    assert scene.band_names["s1"] == ["S1 VV backscatter (dB)", "S1 VH backscatter (dB)"]
    assert len(scene.band_names["s2"]) == 13
    # Label raster values 1 (not water) and 2 (water) become indexes 0 and 1; 0 is unlabelled.
    np.testing.assert_array_equal(scene.labels["full"], raw_labels.astype(np.int16) - 1)


def test_sen1floods11_spatial_block_split(floods, shared_data):
    scene = load_scene(floods)
    splits = make_splits(floods, scene)
    with rasterio.open(shared_data / "sen1floods11_sample" / "labels.tif") as ds:
        raw = ds.read(1)
    counts = splits.counts()
    totals = [sum(counts[s][k] for s in counts) for k in range(2)]
    dropped = ((raw > 0) & ~scene.valid).sum()
    # the default buffer (the patch radius) drops training pixels next to held-out blocks
    assert splits.buffer == floods.patch_size // 2 and splits.dropped_buffer > 0
    assert sum(totals) + dropped + splits.dropped_buffer == (raw > 0).sum()
    assert all(counts[s][k] > 0 for s in counts for k in range(2))
    owner = np.full(raw.shape, -1)
    for i, name in enumerate(("train", "val", "test")):
        assert not (owner[splits.get(name) >= 0] >= 0).any()  # no pixel in two splits
        owner[splits.get(name) >= 0] = i
    b = floods.split.block_size
    for r in range(0, 512, b):
        for c in range(0, 512, b):
            present = np.unique(owner[r : r + b, c : c + b])
            assert (present >= 0).sum() <= 1
    leak = footprint_leakage(splits, floods.patch_size)
    assert leak["val"].touching_train == 0 and leak["test"].touching_train == 0
    # without the buffer, held-out patches at block edges see training pixels (the issue-12
    # finding: about 12 % of test pixels)
    unbuffered = make_splits(floods.model_copy(update={"split": floods.split.model_copy(
        update={"buffer": 0})}), scene)
    leak0 = footprint_leakage(unbuffered, floods.patch_size)
    assert 0.05 < leak0["test"].fraction < 0.3 and unbuffered.dropped_buffer == 0
    # the held-out splits are the same pixels with or without the buffer
    for name in ("val", "test"):
        np.testing.assert_array_equal(unbuffered.get(name), splits.get(name))


def test_sen1floods11_prepare_gives_two_sensor_patches(floods):
    data = prepare(floods)
    assert data.in_channels == {"s1": 2, "s2": 13}
    item = data.dataset("train")[0]
    assert item["s1"].shape == (2, 9, 9) and item["s2"].shape == (13, 9, 9)
    assert int(item["target"]) in (0, 1)


def _landsat_task(tmp_path, shared_data, grid: str) -> tuple:
    """MS + PAN of scene01 with a synthetic sparse label raster on the MS (30 m) grid."""
    folder = shared_data / "landsat7_ms_pan_fusebox" / "scene01"
    with rasterio.open(folder / "ms.tif") as ds:
        ms, profile = ds.read(), ds.profile
    # Two classes from the NIR band (above/below its median), every third pixel labelled.
    r, c = np.mgrid[0 : ms.shape[1], 0 : ms.shape[2]]
    classes = np.where(ms[3] > np.median(ms[3]), 2, 1)
    labels = np.where((r + c) % 3 == 0, classes, 0).astype(np.uint8)
    profile.update(count=1, dtype="uint8", nodata=None)
    with rasterio.open(tmp_path / "labels.tif", "w", **profile) as ds:
        ds.write(labels, 1)
    task = {
        "name": "landsat",
        "task": "patch_classification",
        "grid": grid,
        "sensors": {
            "ms": {"kind": "optical", "path": str(folder / "ms.tif")},
            "pan": {"kind": "optical", "path": str(folder / "pan.tif")},
        },
        "labels": {"path": "labels.tif", "classes": {1: "dark", 2: "bright"}},
        "split": {"kind": "spatial_blocks", "block_size": 32},
    }
    path = tmp_path / "landsat.yaml"
    path.write_text(yaml.safe_dump(task))
    with rasterio.open(folder / "pan.tif") as ds:
        pan = ds.read()
    return load_task(path), ms, pan, labels


def test_landsat_pan_downsampled_onto_ms_grid(tmp_path, shared_data):
    task, ms, pan, _labels = _landsat_task(tmp_path, shared_data, grid="labels")
    scene = load_scene(task)
    assert scene.grid.shape == (400, 400) and scene.grid.res == (30.0, 30.0)
    np.testing.assert_array_equal(scene.sensors["ms"], ms)  # same lattice: exact
    assert scene.valid.all()
    aligned = scene.sensors["pan"][0]  # [400, 400] from 800 x 800
    assert abs(aligned.mean() - pan.mean()) < 0.005 * pan.mean()
    block_mean = pan[0].reshape(400, 2, 400, 2).mean(axis=(1, 3))
    assert np.corrcoef(aligned.ravel(), block_mean.ravel())[0, 1] > 0.97


def test_landsat_ms_upsampled_onto_pan_grid(tmp_path, shared_data):
    task, ms, pan, labels = _landsat_task(tmp_path, shared_data, grid="pan")
    scene = load_scene(task)
    assert scene.grid.shape == (800, 800) and scene.grid.res == (15.0, 15.0)
    np.testing.assert_array_equal(scene.sensors["pan"], pan)
    up = scene.sensors["ms"]  # [6, 800, 800]
    for band in range(6):  # bilinear upsampling preserves each band's scene mean
        assert abs(up[band].mean() - ms[band].mean()) < 0.005 * ms[band].mean(), band
    # Nearest-neighbour labels: each 30 m label pixel becomes a 2 x 2 block of 15 m pixels.
    expected = np.where(labels > 0, labels.astype(np.int16) - 1, -1)
    got = scene.labels["full"]
    for dr in (0, 1):
        for dc in (0, 1):
            np.testing.assert_array_equal(got[dr::2, dc::2], expected)


def test_the_shipped_release_task_runs_on_the_real_chip_in_release_layout(shared_data, tmp_path):
    """The real chip, re-encoded as the release ships it (labels -1/0/1, int16), among
    synthetic chips in the release layout: the shipped `sen1floods11` task indexes it."""
    import shutil

    from release_fixture import CHIPS, HAND, SPLITS, write_release  # tests/data on sys.path

    root = write_release(tmp_path / "root")
    chip, src = "Spain_7370579", shared_data / "sen1floods11_sample"
    shutil.copyfile(src / "s1.tif", root / HAND / "S1Hand" / f"{chip}_S1Hand.tif")
    shutil.copyfile(src / "s2.tif", root / HAND / "S2Hand" / f"{chip}_S2Hand.tif")
    with rasterio.open(src / "labels.tif") as ds:
        profile = dict(ds.profile, dtype="int16", nodata=None)
        release_labels = ds.read().astype(np.int16) - 1  # 0 -> -1 no data, 1 -> 0, 2 -> 1
    with rasterio.open(root / HAND / "LabelHand" / f"{chip}_LabelHand.tif", "w", **profile) as dst:
        dst.write(release_labels)
    train_csv = root / SPLITS / "flood_train_data.csv"
    train_csv.write_text(train_csv.read_text() + f"{chip}_S1Hand.tif,{chip}_LabelHand.tif\n")
    task = shipped_task("sen1floods11", root, ["train.max_train_samples=64", "train.epochs=1"])
    data = prepare(task)
    entry = {e.id: e for e in data.index.scenes}[chip]
    assert entry.grid.shape == (512, 512) and entry.files.group == "Spain"
    # every labelled pixel where S1 and S2 are valid is a training pixel of this chip
    assert sum(entry.counts["train"]) + entry.dropped_invalid == int((release_labels >= 0).sum())
    assert entry.counts["train"][1] > 0.25 * sum(entry.counts["train"])  # ~27 % water
    assert len(data.index.scenes) == len(CHIPS) + 1
    assert not data.in_memory or data.index.nbytes() <= 2048 * 2**20


def test_native_scales_of_landsat_ms_on_the_pan_grid(tmp_path, shared_data):
    """On the 15 m panchromatic grid the 30 m multispectral bands are one scale coarser: an
    encoder-decoder may let them enter at scale 1."""
    from autors.data.index import build_index
    from autors.data.native import native_scales

    task, *_ = _landsat_task(tmp_path, shared_data, grid="pan")
    assert native_scales(build_index(task)[0]) == {"ms": 1, "pan": 0}
    task, *_ = _landsat_task(tmp_path, shared_data, grid="labels")  # the 30 m grid
    assert native_scales(build_index(task)[0]) == {"ms": 0, "pan": 0}
