"""Patch and tile datasets: what each sample holds, border padding, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from array_datasets import patch_dataset as _patches  # tests/data is on sys.path
from array_datasets import tile_dataset as _tiles_ds
from torch.utils.data import DataLoader

from autors.errors import DataError


def _toy(h=12, w=15, seed=0):
    rng = np.random.default_rng(seed)
    sensors = {
        "a": rng.normal(size=(3, h, w)).astype(np.float32),
        "b": rng.normal(size=(1, h, w)).astype(np.float32),
    }
    labels = np.full((h, w), -1, np.int16)
    labels[0, 0] = 1  # corner: patch padded on two sides
    labels[5, 7] = 0  # interior
    labels[11, 14] = 2  # opposite corner
    return sensors, labels


def _dihedral(arr):
    """All 8 rotations/flips of the last two axes."""
    out = []
    for k in range(4):
        rot = np.rot90(arr, k, axes=(-2, -1))
        out += [rot, rot[..., ::-1]]
    return out


def test_patch_items_are_centred_on_labelled_pixels():
    sensors, labels = _toy()
    ds = _patches(sensors, labels, 5)
    assert len(ds) == 3
    targets = [int(ds[i]["target"]) for i in range(3)]
    assert targets == [1, 0, 2]  # row-major order of the labelled pixels
    item = ds[1]  # pixel (5, 7)
    assert set(item) == {"a", "b", "a__mask", "b__mask", "target", "scene"}
    assert item["a"].shape == (3, 5, 5) and item["a"].dtype == torch.float32
    assert item["b"].shape == (1, 5, 5)
    assert item["target"].dtype == torch.int64 and item["target"].shape == ()
    np.testing.assert_array_equal(item["a"].numpy(), sensors["a"][:, 3:8, 5:10])


def test_patch_border_is_zero_padded():
    sensors, labels = _toy()
    corner = _patches(sensors, labels, 5)[0]["a"].numpy()  # pixel (0, 0)
    assert (corner[:, :2, :] == 0).all() and (corner[:, :, :2] == 0).all()
    np.testing.assert_array_equal(corner[:, 2:, 2:], sensors["a"][:, :3, :3])
    far = _patches(sensors, labels, 5)[2]["b"].numpy()  # pixel (11, 14)
    assert (far[:, 3:, :] == 0).all() and (far[:, :, 3:] == 0).all()
    np.testing.assert_array_equal(far[:, :3, :3], sensors["b"][:, 9:, 12:])


def test_augmentation_is_a_seeded_dihedral_transform():
    sensors, labels = _toy()
    plain = _patches(sensors, labels, 5)
    aug = _patches(sensors, labels, 5, augment=True, seed=3)
    seen = set()
    for epoch in range(6):
        aug.set_epoch(epoch)
        a, b = aug[1]["a"].numpy(), aug[1]["b"].numpy()
        options = _dihedral(plain[1]["a"].numpy())
        hits = [i for i, o in enumerate(options) if np.array_equal(a, o)]
        assert hits, "augmented patch is not a rotation/flip of the patch"
        # Every sensor of a sample gets the same transform.
        assert any(np.array_equal(b, _dihedral(plain[1]["b"].numpy())[i]) for i in hits)
        seen.add(hits[0])
        again = _patches(sensors, labels, 5, augment=True, seed=3)
        again.set_epoch(epoch)
        np.testing.assert_array_equal(again[1]["a"].numpy(), a)  # reproducible
    assert len(seen) > 1  # varies across epochs


def test_even_patch_size_is_rejected():
    sensors, labels = _toy()
    with pytest.raises(DataError, match="patch_size must be odd .* got 4"):
        _patches(sensors, labels, 4)


def test_tiles_hold_dense_targets_and_only_labelled_tiles():
    sensors, _ = _toy(h=20, w=27)
    labels = np.full((20, 27), -1, np.int16)
    labels[2:5, 3:6] = 1  # tile (0, 0)
    labels[18, 25] = 2  # bottom-right edge tile (16..23, 24..31) -> padded
    ds = _tiles_ds(sensors, labels, 8)
    assert len(ds) == 2
    first, edge = ds[0], ds[1]
    assert first["a"].shape == (3, 8, 8) and first["target"].shape == (8, 8)
    assert first["target"].dtype == torch.int64
    np.testing.assert_array_equal(first["target"].numpy(), labels[:8, :8])
    np.testing.assert_array_equal(first["a"].numpy(), sensors["a"][:, :8, :8])
    # Edge tile: rows 16..19 and cols 24..26 exist; the rest is padding.
    assert (edge["target"].numpy()[4:, :] == -1).all() and (
        edge["target"].numpy()[:, 3:] == -1
    ).all()
    assert (edge["a"].numpy()[:, 4:, :] == 0).all()
    assert int(edge["target"][2, 1]) == 2


def test_tile_augmentation_moves_target_with_inputs():
    """Training tiles are shifted to random places and rotated/flipped; inputs and target
    always come from the same window, and every tile holds a labelled pixel."""
    h = w = 48
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    sensors = {"a": np.stack([rows + 1, cols + 1])}  # a pixel's value says where it is (0: pad)
    labels = np.full((h, w), -1, np.int16)
    labels[4:44, 4:44] = (np.arange(40 * 40).reshape(40, 40) % 3).astype(np.int16)
    plain, aug = _tiles_ds(sensors, labels, 16), _tiles_ds(sensors, labels, 16, augment=True)
    padded_labels = np.pad(labels, 16, constant_values=-1)
    padded = np.pad(sensors["a"], ((0, 0), (16, 16), (16, 16)))
    origins = set()
    for epoch in range(6):
        aug.set_epoch(epoch)
        for i in range(len(aug)):
            item = aug[i]
            window = item["a"].numpy()
            cand = []  # the shifts and rotations/flips of grid tile i that give this item
            for dr in range(-8, 9):
                for dc in range(-8, 9):
                    r, c = plain.index.scenes[0].tiles["train"][i] + np.array([dr, dc])
                    src = padded[:, r + 16:r + 32, c + 16:c + 32]
                    tgt = padded_labels[r + 16:r + 32, c + 16:c + 32]
                    for o_a, o_t in zip(_dihedral(src), _dihedral(tgt)):
                        if np.array_equal(o_a, window) and \
                                np.array_equal(o_t, item["target"].numpy()):
                            cand.append((int(r), int(c)))
            assert cand, (epoch, i)
            origins.add(cand[0])
            assert (item["target"].numpy() >= 0).any()
    # six epochs of 9 tiles: far more places than the fixed grid's 9
    assert len(origins) > 2 * len(plain)
    grid = {tuple(int(v) for v in o) for o in plain.index.scenes[0].tiles["train"]}
    assert not origins <= grid


def test_datasets_batch_with_a_dataloader():
    sensors, labels = _toy()
    batch = next(iter(DataLoader(_patches(sensors, labels, 3, augment=True), batch_size=3)))
    assert batch["a"].shape == (3, 3, 3, 3) and batch["target"].tolist() == [1, 0, 2]
