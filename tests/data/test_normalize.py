"""Normalisation statistics come from training pixels only and travel as plain data."""

from __future__ import annotations

import json

import numpy as np

from autors.config import load_task
from autors.data import NormStats, load_scene, make_splits


def _scene_and_train(write_task):
    task = load_task(write_task())
    scene = load_scene(task)
    return scene, make_splits(task, scene).train >= 0


def test_stats_are_those_of_training_pixels(write_task):
    scene, train = _scene_and_train(write_task)
    stats = NormStats.compute(scene, train)
    for name, stack in scene.sensors.items():
        use = train & scene.sensor_valid[name]
        np.testing.assert_allclose(stats.mean[name], stack[:, use].mean(axis=1), rtol=1e-5)
        np.testing.assert_allclose(stats.std[name], stack[:, use].std(axis=1), rtol=1e-4)


def test_stats_ignore_pixels_outside_training(write_task):
    scene, train = _scene_and_train(write_task)
    before = NormStats.compute(scene, train)
    scene.sensors["sar"][:, ~train] += 1000.0  # val/test/unlabelled pixels change
    assert NormStats.compute(scene, train).to_dict() == before.to_dict()
    r, c = np.argwhere(train)[0]
    scene.sensors["sar"][:, r, c] += 1000.0  # one training pixel changes
    assert NormStats.compute(scene, train).mean["sar"] != before.mean["sar"]


def test_apply_standardises_training_pixels_and_zeroes_invalid(write_task):
    scene, train = _scene_and_train(write_task)
    stats = NormStats.compute(scene, train)
    norm = stats.apply(scene.sensors, scene.sensor_valid)
    for name, stack in norm.items():
        assert stack.dtype == np.float32 and stack is not scene.sensors[name]
        use = train & scene.sensor_valid[name]
        np.testing.assert_allclose(stack[:, use].mean(axis=1), 0.0, atol=1e-4)
        np.testing.assert_allclose(stack[:, use].std(axis=1), 1.0, rtol=1e-3)
        assert (stack[:, ~scene.sensor_valid[name]] == 0).all()
    assert (~scene.sensor_valid["optical"]).any()


def test_constant_band_gets_unit_std(write_task):
    scene, train = _scene_and_train(write_task)
    scene.sensors["lidar"][:] = 5.0
    stats = NormStats.compute(scene, train)
    assert stats.std["lidar"] == [1.0] and stats.mean["lidar"] == [5.0]
    assert (stats.apply({"lidar": scene.sensors["lidar"]})["lidar"] == 0).all()


def test_round_trip_through_json(write_task):
    scene, train = _scene_and_train(write_task)
    stats = NormStats.compute(scene, train)
    again = NormStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert again == stats
    assert list(again.mean) == ["optical", "sar", "lidar"]
    assert len(again.mean["optical"]) == 4
