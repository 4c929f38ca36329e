"""Splits: disjoint, block-disjoint, deterministic, every class trained; patch leakage."""

from __future__ import annotations

import numpy as np
import pytest

from autors.config import load_task
from autors.data import Splits, footprint_leakage, load_scene, make_splits
from autors.errors import DataError

SPLITS = ("train", "val", "test")


def _split_and_scene(path):
    task = load_task(path)
    scene = load_scene(task)
    return task, scene, make_splits(task, scene)


def _labelled(splits: Splits) -> dict[str, np.ndarray]:
    return {name: splits.get(name) >= 0 for name in SPLITS}


def _require_all(data):
    data["require_sensors"] = "all"


def test_no_labelled_pixel_is_in_two_splits(write_task):
    _task, scene, splits = _split_and_scene(write_task(_require_all))
    masks = _labelled(splits)
    stacked = sum(m.astype(int) for m in masks.values())
    assert stacked.max() == 1
    # Every valid labelled pixel is in exactly one split, with its class; invalid ones in none.
    # (training pixels within the default buffer of a held-out pixel are in none)
    full = scene.labels["full"]
    assert splits.dropped_buffer > 0
    assert int((stacked == 1).sum()) + splits.dropped_buffer == int(((full >= 0) & scene.valid).sum())
    assert not ((stacked == 1) & ~((full >= 0) & scene.valid)).any()
    for name in SPLITS:
        assert np.array_equal(splits.get(name)[masks[name]], full[masks[name]])
    assert splits.dropped_invalid == int(((full >= 0) & ~scene.valid).sum()) > 0
    assert all(m.any() for m in masks.values())


def test_splits_are_spatially_block_disjoint(write_task):
    task, scene, splits = _split_and_scene(write_task())
    block = task.split.block_size
    h, w = scene.grid.shape
    owner = np.full(scene.grid.shape, -1)
    for i, name in enumerate(SPLITS):
        owner[splits.get(name) >= 0] = i
    for r in range(0, h, block):
        for c in range(0, w, block):
            present = np.unique(owner[r : r + block, c : c + block])
            assert len(present[present >= 0]) <= 1, (r, c, present)


def test_fractions_count_labelled_pixels(write_task):
    _task, _scene, splits = _split_and_scene(write_task())
    counts = {name: sum(n) for name, n in splits.counts().items()}
    total = sum(counts.values())
    # Whole 10 x 10 blocks hold ~30 labelled pixels of ~1600: the targets are met closely.
    assert abs(counts["test"] / total - 0.3) < 0.04
    assert abs(counts["val"] / total - 0.2) < 0.03


def test_splits_are_deterministic(write_task):
    _, _, a = _split_and_scene(write_task())
    _, _, b = _split_and_scene(write_task())
    for name in SPLITS:
        assert np.array_equal(a.get(name), b.get(name))
    assert a.sha256() == b.sha256()


def test_val_max_samples_keeps_a_fixed_subset_of_validation_only(write_task):
    _, _, full = _split_and_scene(write_task())

    def cap(data):
        data["train"] = {"val_max_samples": 50}

    _, _, a = _split_and_scene(write_task(cap, name="cap.yaml"))
    _, _, b = _split_and_scene(write_task(cap, name="cap2.yaml"))
    assert sum(a.counts()["val"]) == 50 < sum(full.counts()["val"])
    assert np.array_equal(a.val, b.val)  # the same pixels every time (model selection)
    kept = a.val >= 0
    assert np.array_equal(a.val[kept], full.val[kept])  # a subset of the carved split
    # the dropped validation pixels do not leak into training; train and test are unchanged
    assert np.array_equal(a.train, full.train) and np.array_equal(a.test, full.test)


def test_counts_per_split_and_class(write_task):
    _, _, splits = _split_and_scene(write_task())
    counts = splits.counts()
    for name in SPLITS:
        labels = splits.get(name)
        assert counts[name] == [int((labels == k).sum()) for k in range(3)]


def test_rare_class_keeps_a_training_pixel(write_task, tmp_path, fx):
    labels = fx.label_values()
    labels[labels == 3] = 0
    labels[32:34, 61:63] = 3  # class 3 only inside one 10 x 10 block
    fx.write_raster(tmp_path / "rare.tif", labels, fx.UTM, fx.LABEL_TRANSFORM)
    for seed in range(8):

        def edit(data, seed=seed):
            data["labels"]["path"] = "rare.tif"
            data["seed"] = seed

        _, _, splits = _split_and_scene(write_task(edit, name=f"rare{seed}.yaml"))
        assert splits.counts()["train"][2] == 4, seed


def test_class_without_labelled_pixel_is_an_error(write_task, tmp_path, fx):
    labels = fx.label_values()
    labels[labels == 2] = 0
    fx.write_raster(tmp_path / "no_trees.tif", labels, fx.UTM, fx.LABEL_TRANSFORM)

    def edit(data):
        data["labels"]["path"] = "no_trees.tif"

    task = load_task(write_task(edit))
    with pytest.raises(
        DataError,
        match=r"class 'trees' \(value 2\) has no training pixel in "
        r"the label raster .*no_trees\.tif",
    ):
        make_splits(task, load_scene(task))


def _given_split_files(tmp_path, fx, drop_class_from_train=None):
    """Train/test label rasters: alternate 20 px column stripes of the fixture labels."""
    labels = fx.label_values()
    cols = np.arange(fx.COLS)[None, :]
    train = np.where((cols // 20) % 2 == 0, labels, 0).astype(np.uint8)
    test = np.where((cols // 20) % 2 == 1, labels, 0).astype(np.uint8)
    if drop_class_from_train is not None:
        train[train == drop_class_from_train] = 0
    fx.write_raster(tmp_path / "train.tif", train, fx.UTM, fx.LABEL_TRANSFORM)
    fx.write_raster(tmp_path / "test.tif", test, fx.UTM, fx.LABEL_TRANSFORM)
    return train, test


def _given(data):
    del data["labels"]["path"]
    data["split"] = {
        "kind": "given",
        "train": "train.tif",
        "test": "test.tif",
        "val_fraction": 0.25,
        "val_block_size": 8,
    }


def test_given_split_carves_val_from_train_by_blocks(write_task, tmp_path, fx):
    train_raw, test_raw = _given_split_files(tmp_path, fx)
    _task, scene, splits = _split_and_scene(write_task(_given))
    assert set(scene.labels) == {"train", "test"}
    # Test is the given raster (on valid pixels); train + val + the training pixels inside the
    # buffer is exactly the given train.
    assert np.array_equal(splits.test >= 0, (test_raw > 0) & scene.valid)
    kept = (splits.train >= 0) | (splits.val >= 0)
    assert not (kept & ~((train_raw > 0) & scene.valid)).any()
    assert int(kept.sum()) + splits.dropped_buffer == int(((train_raw > 0) & scene.valid).sum())
    assert not ((splits.train >= 0) & (splits.val >= 0)).any()
    # Val and train never share an 8 x 8 block.
    h, w = scene.grid.shape
    for r in range(0, h, 8):
        for c in range(0, w, 8):
            blk = (slice(r, r + 8), slice(c, c + 8))
            assert not ((splits.train[blk] >= 0).any() and (splits.val[blk] >= 0).any())
    val_share = (splits.val >= 0).sum() / ((train_raw > 0) & scene.valid).sum()
    assert 0.18 < val_share < 0.32


def test_given_split_class_missing_from_train_raster_is_an_error(write_task, tmp_path, fx):
    _given_split_files(tmp_path, fx, drop_class_from_train=3)
    task = load_task(write_task(_given))
    with pytest.raises(
        DataError,
        match=r"class 'urban' \(value 3\) has no training pixel in "
        r"the train raster .*train\.tif",
    ):
        make_splits(task, load_scene(task))


def test_given_splits_must_not_overlap(write_task, tmp_path, fx):
    labels = fx.label_values()
    fx.write_raster(tmp_path / "train.tif", labels, fx.UTM, fx.LABEL_TRANSFORM)
    fx.write_raster(tmp_path / "test.tif", labels, fx.UTM, fx.LABEL_TRANSFORM)
    with pytest.raises(DataError, match=r"labelled in both the train raster"):
        load_scene(load_task(write_task(_given)))


def test_footprint_leakage_matches_brute_force():
    rng = np.random.default_rng(3)
    h, w, k = 23, 31, 3
    owner = rng.integers(-1, 3, size=(h, w))  # -1 unlabelled, 0 train, 1 val, 2 test
    cls = rng.integers(0, k, size=(h, w)).astype(np.int16)
    arrays = [np.where(owner == i, cls, np.int16(-1)) for i in range(3)]
    splits = Splits(*arrays, num_classes=k)
    for patch in (1, 3, 7):
        leak = footprint_leakage(splits, patch)
        r = patch // 2
        for i, name in ((1, "val"), (2, "test")):
            touching = 0
            for y, x in zip(*np.nonzero(owner == i)):
                window = owner[max(y - r, 0) : y + r + 1, max(x - r, 0) : x + r + 1]
                touching += bool((window == 0).any())
            assert leak[name].pixels == int((owner == i).sum())
            assert leak[name].touching_train == touching, (patch, name)
    assert footprint_leakage(splits, 1)["val"].touching_train == 0


def _edit_split(**fields):
    def edit(data):
        data["split"].update(fields)
    return edit


def test_split_seed_is_independent_of_the_task_seed(write_task):
    base = _split_and_scene(write_task())[2]
    other_task_seed = _split_and_scene(write_task(lambda d: d.update(seed=7), name="t7.yaml"))[2]
    other_split_seed = _split_and_scene(write_task(_edit_split(seed=7), name="s7.yaml"))[2]
    assert other_task_seed.sha256() == base.sha256()
    for name in SPLITS:
        np.testing.assert_array_equal(other_task_seed.get(name), base.get(name))
    assert other_split_seed.sha256() != base.sha256()
    assert not np.array_equal(other_split_seed.test, base.test)


def test_buffer_leaves_no_held_out_footprint_touching_training(write_task):
    task, _scene, splits = _split_and_scene(write_task())
    assert task.split_buffer == task.patch_size // 2 == splits.buffer == 2
    leak = footprint_leakage(splits, task.patch_size)
    assert leak["val"].touching_train == 0 and leak["test"].touching_train == 0
    _t0, _s0, unbuffered = _split_and_scene(write_task(_edit_split(buffer=0), name="b0.yaml"))
    assert unbuffered.buffer == 0 and unbuffered.dropped_buffer == 0
    assert footprint_leakage(unbuffered, task.patch_size)["test"].touching_train > 0
    # The buffer only removes training pixels: exactly those within 2 px (Chebyshev) of a
    # held-out pixel, checked by brute force against the unbuffered split.
    for name in ("val", "test"):
        np.testing.assert_array_equal(unbuffered.get(name), splits.get(name))
    held = np.argwhere((splits.val >= 0) | (splits.test >= 0))
    removed = np.argwhere((unbuffered.train >= 0) & (splits.train < 0))
    assert len(removed) == splits.dropped_buffer > 0
    for y, x in np.argwhere(unbuffered.train >= 0):
        near = bool((np.abs(held - (y, x)).max(axis=1) <= 2).any())
        assert near == (splits.train[y, x] < 0), (y, x)
    # A wider buffer removes more; the hash records which pixels were used.
    _t4, _s4, wide = _split_and_scene(write_task(_edit_split(buffer=4), name="b4.yaml"))
    assert wide.dropped_buffer > splits.dropped_buffer and wide.sha256() != splits.sha256()


def test_buffer_that_empties_a_class_is_an_error(write_task):
    task = load_task(write_task(_edit_split(buffer=40)))
    with pytest.raises(DataError, match=r"farther than split.buffer = 40 px.*larger blocks than the 5 px model input"):
        make_splits(task, load_scene(task))


def test_given_val_raster_is_used_as_validation(write_task, tmp_path, fx):
    labels = fx.label_values()
    cols = np.arange(fx.COLS)[None, :]
    stripe = (cols // 20) % 4  # 0, 2: train; 1: val; 3: test
    for name, keep in (("train", (stripe == 0) | (stripe == 2)), ("val", stripe == 1),
                       ("test", stripe == 3)):
        fx.write_raster(tmp_path / f"{name}.tif", np.where(keep, labels, 0).astype(np.uint8),
                        fx.UTM, fx.LABEL_TRANSFORM)
    def edit(data):
        _given(data)
        data["split"]["val"] = "val.tif"
    task, scene, splits = _split_and_scene(write_task(edit))
    assert set(scene.labels) == {"train", "val", "test"}
    val_raw = np.where(stripe == 1, labels, 0)
    assert np.array_equal(splits.val >= 0, (val_raw > 0) & scene.valid)
    assert footprint_leakage(splits, task.patch_size)["val"].touching_train == 0
    # overlapping given rasters name both files
    fx.write_raster(tmp_path / "val.tif", labels, fx.UTM, fx.LABEL_TRANSFORM)
    with pytest.raises(DataError, match=r"labelled in both the train raster .* val raster"):
        load_scene(task)
