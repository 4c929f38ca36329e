"""`autors synth OUT --scenes N`: a multi-scene dataset in the Sen1Floods11 v1.1 layout."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from autors.cli import main
from autors.errors import SynthConfigError, TaskFileError
from autors.synth.dataset import (
    EVENTS,
    HAND_DIR,
    HELD_OUT_EVENT,
    HOME_EPSG,
    NEIGHBOUR_EPSG,
    ORIGIN_BOX,
    SPLIT_DIR,
    SPLIT_FILES,
    DatasetConfig,
    DatasetInfo,
    generate_dataset,
    plan_dataset,
)

N = 8
SIZE = 48
K = 6
CFG = DatasetConfig(scenes=N, size=SIZE, classes=K, seed=5)
NAME = re.compile(r"^(?P<event>[A-Za-z-]+)_(?P<id>[0-9]{6})_(?P<kind>S1Hand|S2Hand|LabelHand)\.tif$")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> DatasetInfo:
    return generate_dataset(tmp_path_factory.mktemp("ds"), CFG)


def _rows(info: DatasetInfo) -> dict[str, list[list[str]]]:
    out = {}
    for key, file in SPLIT_FILES.items():
        with open(info.out_dir / SPLIT_DIR / file, newline="") as f:
            out[key] = list(csv.reader(f))
    return out


def _read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        return src.read(), src.profile


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_names(dataset: DatasetInfo) -> None:
    root = dataset.out_dir
    hand = root / HAND_DIR
    assert sorted(p.name for p in hand.iterdir()) == ["LabelHand", "S1Hand", "S2Hand"]
    ids = set()
    for kind in ("S1Hand", "S2Hand", "LabelHand"):
        files = sorted(p.name for p in (hand / kind).iterdir())
        assert len(files) == N
        for name in files:
            m = NAME.match(name)
            assert m and m["kind"] == kind, name
            assert m["event"] in (HELD_OUT_EVENT, *EVENTS)
            ids.add(m["id"])
    assert len(ids) == N  # unique 6-digit chip ids, the same for every kind
    assert sorted(p.name for p in (root / SPLIT_DIR).iterdir()) == sorted(SPLIT_FILES.values())
    assert (root / "task.yaml").is_file()
    assert root / "v1.1/splits/flood_handlabeled/flood_bolivia_data.csv" \
        == root / SPLIT_DIR / SPLIT_FILES["bolivia"]


def test_csv_rows_point_to_existing_files(dataset: DatasetInfo) -> None:
    hand = dataset.out_dir / HAND_DIR
    seen = []
    for key, rows in _rows(dataset).items():
        assert [tuple(r) for r in rows] == [
            (f"{n}_S1Hand.tif", f"{n}_LabelHand.tif") for n in dataset.splits[key]
        ]
        for s1, label in rows:  # no header: every row is a chip
            chip = s1.removesuffix("_S1Hand.tif")
            assert label == f"{chip}_LabelHand.tif"
            assert (hand / "S1Hand" / s1).is_file() and (hand / "LabelHand" / label).is_file()
            assert (hand / "S2Hand" / f"{chip}_S2Hand.tif").is_file()
            seen.append(chip)
    assert sorted(seen) == sorted(c.plan.name for c in dataset.chips)


def test_bolivia_is_held_out_and_no_chip_is_in_two_csvs(dataset: DatasetInfo) -> None:
    rows = _rows(dataset)
    chips = {key: [r[0].removesuffix("_S1Hand.tif") for r in v] for key, v in rows.items()}
    assert chips["bolivia"] and all(c.startswith(f"{HELD_OUT_EVENT}_") for c in chips["bolivia"])
    for key in ("train", "val", "test"):
        assert chips[key], key
        assert not any(c.startswith(f"{HELD_OUT_EVENT}_") for c in chips[key])
    everything = [c for v in chips.values() for c in v]
    assert len(everything) == len(set(everything)) == N


def test_plan_of_a_large_dataset() -> None:
    plans = plan_dataset(DatasetConfig(scenes=200, seed=1))
    assert len({p.chip_id for p in plans}) == 200
    assert all(100_000 <= p.chip_id <= 999_999 for p in plans)
    assert {p.event for p in plans} == {HELD_OUT_EVENT, *EVENTS}
    assert all((p.split == "bolivia") == (p.event == HELD_OUT_EVENT) for p in plans)
    others = [p for p in plans if p.event != HELD_OUT_EVENT]
    share = {s: sum(p.split == s for p in others) / len(others) for s in ("train", "val", "test")}
    assert share["train"] == pytest.approx(0.6, abs=0.03)
    assert share["val"] == pytest.approx(0.2, abs=0.03)
    assert share["test"] == pytest.approx(0.2, abs=0.03)
    neighbour = sum(p.epsg == NEIGHBOUR_EPSG for p in plans)
    assert 40 <= neighbour <= 60  # about one in four
    assert len({p.seed for p in plans}) == 200
    for n in (2, 3, 4):  # small datasets: some chips in each zone, never all in the other
        small = plan_dataset(DatasetConfig(scenes=n, seed=0))
        assert 1 <= sum(p.epsg == NEIGHBOUR_EPSG for p in small) < n
        assert sum(p.split == "bolivia" for p in small) >= 1
        assert sum(p.split == "train" for p in small) >= 1


def test_scenes_differ(dataset: DatasetInfo) -> None:
    means, shares, crss = [], [], []
    for chip in dataset.chips:
        s2, prof = _read(chip.files["optical"])
        means.append(float(s2[:, s2[0] > 0].mean()))
        crss.append(prof["crs"].to_epsg())
        assert crss[-1] == chip.plan.epsg
        (x0, x1), (y0, y1) = ORIGIN_BOX[chip.plan.epsg]  # the origin is in the chip's own zone
        assert x0 <= prof["transform"].c <= x1 and y0 <= prof["transform"].f <= y1
        counts = np.array(chip.label_counts, float)
        shares.append(counts / counts.sum())
    assert len({round(m, 1) for m in means}) == N  # per-scene mean reflectance differs
    assert NEIGHBOUR_EPSG in crss and HOME_EPSG in crss
    shares_arr = np.array(shares)
    assert shares_arr.std(axis=0).max() > 0.03  # class mixes differ
    plans = [c.plan for c in dataset.chips]
    for attr in ("seed", "sun_azimuth_deg", "sun_elevation_deg", "looks", "optical_noise"):
        assert len({getattr(p, attr) for p in plans}) == N, attr
    assert len({p.cloud_cover for p in plans}) >= 2


def test_labels_are_hand_labelled_chips(dataset: DatasetInfo) -> None:
    any_gap = False
    for chip in dataset.chips:
        labels, prof = _read(chip.files["labels"])
        assert labels.dtype == np.int16 and prof["nodata"] == -1
        assert labels.shape == (1, SIZE, SIZE)
        values = set(np.unique(labels).tolist())
        assert values <= set(range(-1, K)), values
        assert len(values - {-1}) >= 2
        any_gap |= -1 in values
        assert int((labels == -1).sum()) == chip.nodata_labels
        assert prof["transform"] == rasterio.open(chip.files["optical"]).transform
    assert any_gap


def test_sar_is_db_with_nan_nodata(dataset: DatasetInfo) -> None:
    cut = [c for c in dataset.chips if c.plan.swath is not None]
    assert cut
    for chip in dataset.chips:
        sar, prof = _read(chip.files["sar"])
        assert sar.dtype == np.float32 and sar.shape[0] == 2 and np.isnan(prof["nodata"])
        with rasterio.open(chip.files["sar"]) as src:
            assert src.descriptions == ("VV", "VH")
            assert src.res[0] > rasterio.open(chip.files["labels"]).res[0]  # its own grid
        valid = sar[:, ~np.isnan(sar).any(axis=0)]
        assert -45.0 < float(valid.min()) and float(valid.max()) < 20.0  # dB, not linear
        assert float(np.median(valid[0])) > float(np.median(valid[1]))  # VV above VH
        assert np.isnan(sar).any() == (chip.plan.swath is not None), chip.plan.name


def test_s2_is_uint16_with_nodata_0(dataset: DatasetInfo) -> None:
    masked = 0
    for chip in dataset.chips:
        s2, prof = _read(chip.files["optical"])
        assert s2.dtype == np.uint16 and prof["nodata"] == 0 and s2.shape == (10, SIZE, SIZE)
        zeros = (s2 == 0).all(axis=0)
        if not chip.plan.cloud_masked:
            assert not (s2 == 0).any()  # 0 is nodata only: never a measured value
        masked += int(zeros.sum())
        assert prof["compress"] == "deflate"
    assert masked > 0 or not any(c.plan.cloud_masked for c in dataset.chips)


def test_same_seed_same_bytes_other_seed_other_dataset(
    dataset: DatasetInfo, tmp_path: Path
) -> None:
    again = generate_dataset(tmp_path / "again", CFG, jobs=2)  # processes: the same bytes
    first, second = _tree_bytes(dataset.out_dir), _tree_bytes(again.out_dir)
    assert first.keys() == second.keys()
    for key in first:
        assert first[key] == second[key], key
    other = generate_dataset(tmp_path / "other", DatasetConfig(scenes=N, size=SIZE, classes=K,
                                                               seed=6))
    assert {c.plan.name for c in other.chips}.isdisjoint(c.plan.name for c in dataset.chips)
    a, _ = _read(dataset.chips[1].files["labels"])
    b, _ = _read(other.chips[1].files["labels"])
    assert not np.array_equal(a, b)


def test_task_file(dataset: DatasetInfo) -> None:
    task = yaml.safe_load((dataset.out_dir / "task.yaml").read_text())
    assert task["name"] == f"synth_scenes_{N}_s5"
    assert task["sensors"] == {"sar": {"kind": "sar", "sar_units": "db"},
                               "optical": {"kind": "optical", "nodata": 0, "scale": 0.0001}}
    assert task["labels"] == {"classes": dict(enumerate(dataset.class_names)), "ignore": -1}
    assert len(dataset.class_names) == K
    template = task["scenes"]["template"]
    for chip in dataset.chips:
        for role, path in chip.files.items():
            pattern = template["labels"] if role == "labels" else template["sensors"][role]
            assert dataset.out_dir / pattern.format(scene=chip.plan.name) == path
    for name in dataset.splits["train"]:
        assert re.match(task["scenes"]["group"], name)[1] in EVENTS
    split = task["split"]
    assert split["kind"] == "scenes"
    for path in [split["train"], split["val"], *split["test"]]:
        assert (dataset.out_dir / path).is_file()
    assert split["test"][1].endswith("flood_bolivia_data.csv")
    assert task["patch_size"] == 9 and task["train"]["max_train_samples"] == 20000


def test_task_file_loads(dataset: DatasetInfo) -> None:
    from autors.config import load_task

    try:
        task = load_task(dataset.out_dir / "task.yaml")
    except TaskFileError as err:
        if "scenes" in str(err) and "unknown key" in str(err):
            pytest.skip("autors.config does not read 'scenes' task files yet (the data-layer "
                        f"rewrite adds them): {err}")
        raise
    assert task.num_classes == K and task.labels.ignore == -1
    assert set(task.sensors) == {"sar", "optical"}
    assert task.scenes is not None and task.split.kind == "scenes"


def test_cli_all_sensors_uncompressed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "ds"
    rc = main(["synth", str(out), "--scenes", "3", "--size", "32", "--classes", "4",
               "--sensors", "optical,sar,lidar,hsi", "--hsi-bands", "12", "--compress", "none",
               "--seed", "2"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "scene 1/3 " in text and "scene 3/3 " in text and "ETA" in text
    hand = out / HAND_DIR
    assert sorted(p.name for p in hand.iterdir()) == \
        ["HSIHand", "LabelHand", "LidarHand", "S1Hand", "S2Hand"]
    hsi = sorted((hand / "HSIHand").iterdir())
    assert len(hsi) == 3 and all(p.name.endswith("_HSIHand.tif") for p in hsi)
    cube, prof = _read(hsi[0])
    assert cube.shape == (12, 32, 32) and "compress" not in prof
    lidar, prof = _read(next((hand / "LidarHand").iterdir()))
    assert lidar.shape == (2, 32, 32) and prof["nodata"] == -9999.0
    task = yaml.safe_load((out / "task.yaml").read_text())
    assert list(task["sensors"]) == ["sar", "optical", "lidar", "hsi"]
    assert task["scenes"]["template"]["sensors"]["hsi"].endswith("HSIHand/{scene}_HSIHand.tif")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--scenes", "1"], "scenes=1 is out of range"),
        (["--scenes", "3", "--looks", "2"], "--looks applies to one scene only"),
        (["--scenes", "3", "--preview"], "--preview applies to one scene only"),
        (["--jobs", "2"], "--compress and --jobs apply to a dataset: add --scenes N"),
        (["--scenes", "3", "--sensors", "optical,radar"], "unknown name.*radar"),
        (["--scenes", "3", "--jobs", "0"], "--jobs 0 must be >= 1"),
    ],
)
def test_bad_dataset_flags(tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str],
                           message: str) -> None:
    rc = main(["synth", str(tmp_path / "x"), *flags])
    assert rc == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and re.search(message, err), err


def test_refuses_to_mix_two_datasets(dataset: DatasetInfo) -> None:
    with pytest.raises(SynthConfigError, match="chip file.*of another dataset"):
        generate_dataset(dataset.out_dir, DatasetConfig(scenes=2, size=SIZE, seed=99))
