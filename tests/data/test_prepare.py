"""prepare(): the picklable bundle a trial receives; task-file errors that concern the data."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from autors.config import load_task
from autors.data import NormStats, PatchDataset, TileDataset, load_scene, make_splits, prepare
from autors.errors import TaskFileError


def test_prepare_bundles_normalised_sensors_splits_and_stats(write_task):
    task = load_task(write_task())
    data = prepare(task)
    assert data.in_channels == {"optical": 4, "sar": 2, "lidar": 1}
    assert data.class_names == ["water", "trees", "urban"] and data.num_classes == 3
    # Same splits and statistics as computing them step by step.
    scene = load_scene(task)
    splits = make_splits(task, scene)
    for name in ("train", "val", "test"):
        assert np.array_equal(data.index.scenes[0].labels(name, 3), splits.get(name))
    stats = NormStats.compute(scene, splits.train >= 0)
    for name in stats.mean:  # blockwise float64 moments: equal to rounding
        np.testing.assert_allclose(data.stats.mean[name], stats.mean[name], rtol=1e-9)
        np.testing.assert_allclose(data.stats.std[name], stats.std[name], rtol=1e-9)
    expected = data.stats.apply(scene.sensors, scene.sensor_valid)
    for name, arr in data.arrays[0].items():
        np.testing.assert_array_equal(arr, expected[name])
    train = data.dataset("train", augment=True)
    assert isinstance(train, PatchDataset)
    assert len(train) == sum(data.splits.counts()["train"])
    item = data.dataset("val")[0]
    assert item["optical"].shape == (4, 5, 5) and item["lidar"].shape == (1, 5, 5)


def test_prepared_data_pickles_as_plain_arrays(write_task):
    data = prepare(load_task(write_task()))
    blob = pickle.dumps(data)
    arrays = sum(a.nbytes for a in data.arrays[0].values())
    assert len(blob) < arrays + 50_000  # arrays plus a little metadata, no file handles
    again = pickle.loads(blob)
    assert again.grid == data.grid
    np.testing.assert_array_equal(again.arrays[0]["sar"], data.arrays[0]["sar"])
    streamed = prepare(load_task(write_task()), in_memory=False)
    assert len(pickle.dumps(streamed)) < 50_000  # the index only: no pixel travels


def test_segmentation_gives_tiles(write_task):
    def edit(data):
        data["task"] = "segmentation"
        data["tile_size"] = 16

    data = prepare(load_task(write_task(edit)))
    ds = data.dataset("train")
    assert isinstance(ds, TileDataset)
    item = ds[0]
    assert item["optical"].shape == (4, 16, 16) and item["target"].shape == (16, 16)
    # Targets hold only training pixels.
    r0, c0 = data.index.scenes[0].tiles["train"][0]
    window = data.index.scenes[0].labels("train", 3)[r0 : r0 + 16, c0 : c0 + 16]
    np.testing.assert_array_equal(
        item["target"].numpy()[: window.shape[0], : window.shape[1]], window
    )


def test_even_patch_size_is_a_task_file_error(write_task):
    def edit(data):
        data["patch_size"] = 4

    with pytest.raises(TaskFileError, match=r"patch_size: must be odd .* use 5"):
        load_task(write_task(edit))


def test_unknown_key_names_the_dotted_field(write_task):
    def edit(data):
        data["sensors"]["optical"]["bandz"] = [1, 2]

    with pytest.raises(TaskFileError, match=r"sensors\.optical\.bandz: unknown key"):
        load_task(write_task(edit))


def test_wrong_type_names_the_dotted_field(write_task):
    def edit(data):
        data["split"]["block_size"] = "big"

    with pytest.raises(
        TaskFileError,
        match=r"split\.spatial_blocks\.block_size: Input should be "
        r"a valid integer.*'big'",
    ):
        load_task(write_task(edit))


def test_datasets_of_one_process_share_one_source(write_task):
    data = prepare(load_task(write_task()), in_memory=False)
    assert data.dataset("train").source is data.dataset("val").source  # one block cache
    again = pickle.loads(pickle.dumps(data))
    assert again.dataset("train").source is not data.dataset("train").source  # a new process
