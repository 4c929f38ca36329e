"""Datasets of many scenes: listing (template, CSV, inline), split by scene and group, the
streamed and in-memory paths, per-scene results, and the errors a user can cause."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from release_fixture import CHIPS, HAND, SPLITS, write_release  # tests/data on sys.path

from autors.config import load_task, shipped_task
from autors.data import prepare
from autors.data.index import build_index
from autors.data.scenes import list_scenes, scene_splits
from autors.errors import DataError, RasterError
from autors.training.trial import train_evaluate

# no loader processes unless a test asks (each one costs a process start per pass)
QUICK = ["train.epochs=2", "train.batch_size=16", "train.max_train_samples=256",
         "train.augment=true", "data.block_size=16", "search.max_trials=2",
         "train.num_workers=0", "train.val_max_samples=300"]


# a small network: these tests are about data, not capacity
TINY = {"version": 1,
        "branches": {s: {"kind": "conv", "width": 8, "depth": 1, "kernel": 3} for s in ("s1", "s2")},
        "fusion": {"op": "sum", "position": "middle", "width": 8, "trunk": {"kind": "off"}},
        "head": {"kind": "centre", "hidden": 0, "dropout": 0.0}}


@pytest.fixture
def release(tmp_path: Path) -> Path:
    return write_release(tmp_path / "root")


def _task(root: Path, extra: list[str] = ()):
    return shipped_task("sen1floods11", root, [*QUICK, *extra])


def test_the_shipped_task_reads_the_release_split_and_groups(release: Path) -> None:
    task = _task(release)
    scenes = list_scenes(task)
    assert [s.id for s in scenes] == sorted(CHIPS)  # the glob of the label files
    assert {s.id: s.group for s in scenes}["Bolivia_3001"] == "Bolivia"
    split = scene_splits(task, scenes)
    expected = {"train": "train", "valid": "val", "test": "test", "bolivia": "test"}
    assert split == {chip: expected[s] for chip, s in CHIPS.items()}
    data = prepare(task)
    per_split = data.index.split_record()["scenes"]["per_split"]
    assert per_split == {"train": 4, "val": 2, "test": 4}
    # each scene is on its own grid: the UTM chip keeps its CRS and pixel size
    grids = {e.id: e.grid for e in data.index.scenes}
    assert grids["Ghana_103273"].crs.to_epsg() == 32630 and grids["Ghana_103273"].res[0] == 20.0
    assert grids["Ghana_103272"].crs.to_epsg() == 4326


def test_test_metrics_are_pooled_per_scene_and_per_event(release: Path) -> None:
    task = _task(release)
    data = prepare(task)
    trained = train_evaluate(task, TINY, data, seed=0, test=True)
    test = trained.test_metrics
    per_scene, per_group = test["per_scene"], test["per_group"]
    test_chips = [c for c, s in CHIPS.items() if s in ("test", "bolivia")]
    assert sorted(per_scene) == sorted(test_chips)
    assert set(per_group) == {"Bolivia", "Ghana", "USA"}
    assert sum(v["pixels"] for v in per_scene.values()) == test["num_samples"]
    assert per_group["Bolivia"]["pixels"] == \
        per_scene["Bolivia_3001"]["pixels"] + per_scene["Bolivia_3002"]["pixels"]
    assert trained.metrics()["test_per_group"] == per_group


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_and_in_memory_paths_give_identical_models(release: Path, workers: int) -> None:
    # a cache smaller than one block forces a disk read for every window
    task = _task(release, [f"train.num_workers={workers}", "data.cache_mb=0.001",
                           "train.epochs=1"])
    in_memory = prepare(task, in_memory=True)
    streamed = prepare(task, in_memory=False)
    assert in_memory.in_memory and not streamed.in_memory
    # only the index travels: a few kB per scene (headers, compressed split map), no pixel
    assert len(pickle.dumps(streamed)) < 4_000 * len(CHIPS) < len(pickle.dumps(in_memory))
    assert streamed.index.sha256() == in_memory.index.sha256()
    assert streamed.stats == in_memory.stats
    a = train_evaluate(task, TINY, in_memory, seed=3)
    b = train_evaluate(task, TINY, streamed, seed=3)
    assert a.outcome.history == [
        {**h, "seconds": g["seconds"]} for h, g in zip(b.outcome.history, a.outcome.history)]
    for key, value in a.outcome.model.state_dict().items():
        assert np.array_equal(value.numpy(), b.outcome.model.state_dict()[key].numpy()), key


def test_the_in_memory_limit_chooses_the_path(release: Path) -> None:
    assert prepare(_task(release)).in_memory
    assert not prepare(_task(release, ["data.in_memory_max_mb=0"])).in_memory


def test_fractions_by_group_never_straddle_splits(release: Path) -> None:
    task = _task(release, ["split={kind: scenes, test_fraction: 0.3, val_fraction: 0.2, seed: 4}"])
    split = scene_splits(task, list_scenes(task))
    by_group: dict[str, set[str]] = {}
    for chip, name in split.items():
        by_group.setdefault(chip.rsplit("_", 1)[0], set()).add(name)
    assert all(len(names) == 1 for names in by_group.values())
    assert set(split.values()) == {"train", "val", "test"}
    again = scene_splits(task, list_scenes(task))
    assert again == split  # the split's own seed
    other = _task(release, ["split={kind: scenes, test_fraction: 0.3, val_fraction: 0.2, seed: 5}"])
    assert any(scene_splits(other, list_scenes(other)) != split for _ in [0])


def test_spatial_blocks_work_inside_every_scene(release: Path) -> None:
    task = _task(release, [("split={kind: spatial_blocks, block_size: 8, test_fraction: 0.3, "
                           "val_fraction: 0.2}")])
    index, _ = build_index(task)
    record = index.split_record()
    assert record["leakage"]["test"]["touching_train"] == 0
    assert record["scenes"]["n"] == len(CHIPS)
    assert sum(1 for e in index.scenes if e.n("test")) > 1  # held-out blocks in several scenes


def test_inline_scenes_and_csv_of_ids(release: Path, tmp_path: Path) -> None:
    hand = release / HAND
    items = [{"id": c, "sensors": {"s1": str(hand / "S1Hand" / f"{c}_S1Hand.tif"),
                                   "s2": str(hand / "S2Hand" / f"{c}_S2Hand.tif")},
              "labels": str(hand / "LabelHand" / f"{c}_LabelHand.tif")} for c in CHIPS]
    ids = tmp_path / "ids.csv"
    ids.write_text("id\nGhana_103272\nUSA_2001\nBolivia_3001\n")
    task = _task(release, [(f"scenes={{items: {yaml.safe_dump(items, default_flow_style=True)}, "
                           "group: '^(.+)_[0-9]+$'}")])
    assert [s.id for s in list_scenes(task)] == list(CHIPS)
    by_csv = _task(release, [f"scenes.csv={ids}"])
    assert [s.id for s in list_scenes(by_csv)] == ["Ghana_103272", "USA_2001", "Bolivia_3001"]


# ---- errors ---------------------------------------------------------------------------------
def test_a_template_matching_nothing_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"labels template .*LabelHand/\{scene\}.* matches no "
                       r"file .*data root"):
        list_scenes(_task(tmp_path))


def test_a_csv_naming_a_missing_file(release: Path) -> None:
    csv = release / SPLITS / "flood_test_data.csv"
    csv.write_text(csv.read_text() + "Ghana_999_S1Hand.tif,Ghana_999_LabelHand.tif\n")
    task = _task(release)
    with pytest.raises(DataError, match=r"flood_test_data.csv row 3 names Ghana_999_S1Hand.tif, "
                       r"which does not exist"):
        scene_splits(task, list_scenes(task))


def test_a_scene_in_two_splits(release: Path) -> None:
    csv = release / SPLITS / "flood_valid_data.csv"
    csv.write_text(csv.read_text() + "Ghana_103272_S1Hand.tif,Ghana_103272_LabelHand.tif\n")
    task = _task(release)
    with pytest.raises(DataError, match=r"scene 'Ghana_103272' is in both split.train and "
                       r"split.val \(.*flood_valid_data.csv, row 3\)"):
        scene_splits(task, list_scenes(task))


def test_duplicate_scene_ids_in_a_csv(release: Path, tmp_path: Path) -> None:
    ids = tmp_path / "ids.csv"
    ids.write_text("USA_2001\nUSA_2001\n")
    with pytest.raises(DataError, match=r"lists scene\(s\) \['USA_2001'\] more than once"):
        list_scenes(_task(release, [f"scenes.csv={ids}"]))


def test_different_band_counts_across_scenes(release: Path) -> None:
    from rasterio.crs import CRS
    from release_fixture import write_chip

    write_chip(release, "USA_2002", 24, 99, CRS.from_epsg(4326), (0.0, 0.0), 1e-4, s2_bands=12)
    with pytest.raises(DataError, match=r"sensor 's2' has 12 band\(s\) in scene 'USA_2002' "
                       r".* but 13 in scene .*sensors.s2.bands"):
        build_index(_task(release))


def test_a_scene_without_labelled_pixels_is_skipped_and_listed(release: Path) -> None:
    import rasterio

    path = release / HAND / "LabelHand" / "USA_2001_LabelHand.tif"
    with rasterio.open(path, "r+") as dst:
        dst.write(np.full((1, 24, 24), -1, np.int16))
    index, _ = build_index(_task(release))
    assert index.skipped == ["USA_2001"]
    assert "USA_2001" not in [e.id for e in index.scenes]
    assert index.split_record()["scenes"]["skipped"] == ["USA_2001"]


def test_an_unreadable_scene_file_names_scene_and_file(release: Path) -> None:
    path = release / HAND / "S2Hand" / "USA_2003_S2Hand.tif"
    path.write_bytes(b"not a tiff")
    with pytest.raises(RasterError, match=r"scene 'USA_2003', sensor 's2': .*USA_2003_S2Hand"):
        build_index(_task(release))


def test_a_scene_without_a_sensor_file_has_that_sensor_absent(release: Path) -> None:
    (release / HAND / "S1Hand" / "USA_2003_S1Hand.tif").unlink()
    csv = release / SPLITS / "flood_test_data.csv"  # the split CSV names its label file only
    csv.write_text(csv.read_text().replace("USA_2003_S1Hand.tif,", ""))
    task = _task(release)
    scene = {s.id: s for s in list_scenes(task)}["USA_2003"]
    assert set(scene.sensors) == {"s2"}
    data = prepare(task, in_memory=False)
    entry = {e.id: e for e in data.index.scenes}["USA_2003"]
    assert entry.sensor_valid["s1"] == 0 and entry.sensor_valid["s2"] > 0.9
    assert sum(entry.counts["test"]) > 0  # labels used: S2 is there (require_sensors: any)
    ds = data.dataset("test")
    item = ds[int(ds.starts[data.index.scenes.index(entry)])]
    assert item["s1"].abs().sum() == 0 and item["s1__mask"].sum() == 0
    assert item["s2__mask"].sum() > 0
    # requiring every sensor leaves that scene without a usable pixel: skipped and listed
    index, _ = build_index(_task(release, ["require_sensors=all"]))
    assert index.skipped == ["USA_2003"]


def test_a_sensor_missing_from_every_scene_is_an_error(release: Path) -> None:
    for path in (release / HAND / "S1Hand").glob("*.tif"):
        path.unlink()
    with pytest.raises(DataError, match=r"sensor 's1' has no file in any of the 10 scene"):
        list_scenes(_task(release))


def test_a_template_without_placeholder_is_a_task_file_error(release: Path) -> None:
    from autors.errors import TaskFileError

    with pytest.raises(TaskFileError, match=r"scenes.template.*no \{scene\} placeholder"):
        _task(release, ["scenes.template.labels=labels.tif"])


def test_single_scene_tasks_are_a_dataset_of_one(write_task) -> None:
    task = load_task(write_task())
    scenes = list_scenes(task)
    assert len(scenes) == 1 and scenes[0].id == task.name
    data = prepare(task)
    assert len(data.index.scenes) == 1 and data.in_memory


def test_copying_the_dataset_elsewhere_keeps_the_split(release: Path, tmp_path: Path) -> None:
    other = tmp_path / "copy"
    shutil.copytree(release, other)
    assert build_index(_task(release))[0].sha256() == build_index(_task(other))[0].sha256()


def test_the_model_card_reports_test_metrics_per_event_and_scene(release: Path,
                                                                 tmp_path: Path) -> None:
    from autors.export.card import read_card
    from autors.export.export import export_model
    from autors.training.train_folder import train_and_write

    task = _task(release, ["train.epochs=1", "export.formats=[torchscript]"])
    data = prepare(task)
    train_and_write(task, TINY, data, 0, tmp_path / "run", test=True)
    card = read_card(export_model(tmp_path / "run", tmp_path / "model"))
    groups = card.metrics.test_per_group
    assert set(groups) == {"Bolivia", "Ghana", "USA"}
    assert groups["Bolivia"]["oa"].n == 1 and 0 <= groups["Bolivia"]["oa"].mean <= 1
    assert sum(v["pixels"].mean for v in card.metrics.test_per_scene.values()) == \
        sum(data.index.counts()["test"])
    assert card.provenance.split.scenes.per_split == {"train": 4, "val": 2, "test": 4}
