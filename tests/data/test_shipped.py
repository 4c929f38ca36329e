"""Task files shipped in the package resolve their rasters against a data root."""

from __future__ import annotations

import pytest

from autors.config import shipped_task, shipped_task_names
from autors.errors import TaskFileError


def test_shipped_task_resolves_paths_against_the_data_root(tmp_path):
    assert {"sen1floods11", "sen1floods11_chip"} <= set(shipped_task_names())
    task = shipped_task("sen1floods11_chip", tmp_path)  # parses without the data being there
    assert task.sensors["s1"].path == tmp_path / "sen1floods11_sample" / "s1.tif"
    assert task.labels.path == tmp_path / "sen1floods11_sample" / "labels.tif"
    assert task.source.name == "sen1floods11_chip.yaml" and task.source.is_file()
    assert task.split.kind == "spatial_blocks" and task.class_names == ["not_water", "water"]


def test_the_release_task_resolves_templates_and_split_csvs(tmp_path):
    task = shipped_task("sen1floods11", tmp_path)
    hand = tmp_path / "v1.1" / "data" / "flood_events" / "HandLabeled"
    assert task.scenes.template.sensors["s1"] == str(hand / "S1Hand" / "{scene}_S1Hand.tif")
    assert task.scenes.template.labels == str(hand / "LabelHand" / "{scene}_LabelHand.tif")
    splits = tmp_path / "v1.1" / "splits" / "flood_handlabeled"
    assert task.split.train == [str(splits / "flood_train_data.csv")]
    assert task.split.test == [str(splits / "flood_test_data.csv"),
                               str(splits / "flood_bolivia_data.csv")]
    assert task.labels.class_values == [0, 1] and task.labels.ignore == -1


def test_data_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTORS_DATA", str(tmp_path))
    assert shipped_task("sen1floods11_chip").sensors["s2"].path.parent.parent == tmp_path


def test_missing_data_root_says_how_to_give_one(monkeypatch):
    monkeypatch.delenv("AUTORS_DATA", raising=False)
    with pytest.raises(
        TaskFileError,
        match=r"needs a data root .*--data-root DIR or set "
        r"AUTORS_DATA=DIR",
    ):
        shipped_task("sen1floods11")


def test_unknown_shipped_task_lists_the_shipped_ones(tmp_path):
    with pytest.raises(TaskFileError, match=r"no shipped task named 'houston'.*sen1floods11"):
        shipped_task("houston", tmp_path)
