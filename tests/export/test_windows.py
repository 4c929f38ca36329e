"""Window planning and strided patch/tile extraction against the training datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from array_datasets import patch_dataset, tile_dataset  # tests/data is on sys.path

from autors.export.windows import Tiling, gather_batches, plan, strided


@pytest.mark.parametrize("tiling", [Tiling(7, False), Tiling(16, True), Tiling(11, True)])
@pytest.mark.parametrize("window", [1, 5, 24, 300])
def test_plan_covers_every_pixel_once(tiling: Tiling, window: int) -> None:
    h, w = 45, 70
    count = np.zeros((h, w), int)
    for core in plan(h, w, window, tiling, align=256):
        count[core.row:core.row + core.height, core.col:core.col + core.width] += 1
        # a window starts on the tiling's lattice, so tiles sit at the same place for any window
        assert core.row % tiling.stride == 0 and core.col % tiling.stride == 0
    assert (count == 1).all()


def test_plan_aligns_large_windows_to_output_tiles() -> None:
    cores = plan(1000, 1000, 600, Tiling(11, False), align=256)
    assert {c.row for c in cores} == {0, 512} and cores[0].height == 512
    assert plan(100, 100, 100, Tiling(11, False), align=256)[0].height == 100


def test_patches_equal_the_training_dataset_patches() -> None:
    """A patch cut from the window read with its halo (zeros outside the scene) equals what
    PatchDataset gives for the same pixel, borders included."""
    rng = np.random.default_rng(0)
    h, w, p = 13, 17, 5
    sensors = {"a": rng.normal(size=(3, h, w)).astype(np.float32),
               "b": rng.normal(size=(1, h, w)).astype(np.float32)}
    labels = np.full((h, w), -1, np.int16)
    pixels = [(0, 0), (0, 16), (12, 3), (6, 8), (12, 16), (1, 2)]
    for r, c in pixels:
        labels[r, c] = 1
    dataset = patch_dataset(sensors, labels, p)
    halo = p // 2
    padded = {n: torch.from_numpy(np.pad(a, ((0, 0), (halo, halo), (halo, halo))))
              for n, a in sensors.items()}
    rows, cols = (torch.from_numpy(i) for i in np.nonzero(labels >= 0))
    batches = list(gather_batches(strided(padded, p, 1), rows, cols, batch_size=4))
    assert [sl.start for sl, _ in batches] == [0, 4]
    assert [b["a"].shape[0] for _, b in batches] == [4, 4]  # the last one padded
    got = {n: torch.cat([b[n][: sl.stop - sl.start] for sl, b in batches])
           for n in sensors}  # [N, C, P, P]
    for i in range(len(dataset)):
        item = dataset[i]
        for n in sensors:
            torch.testing.assert_close(got[n][i], item[n], rtol=0, atol=0)


def test_tiles_equal_the_training_dataset_tiles() -> None:
    """With stride = tile size (no halo) the strided tiles are TileDataset's tiles."""
    rng = np.random.default_rng(1)
    t = 8
    sensors = {"a": rng.normal(size=(2, 16, 24)).astype(np.float32)}
    labels = np.zeros((16, 24), np.int16)
    dataset = tile_dataset(sensors, labels, t)
    views = strided({"a": torch.from_numpy(sensors["a"])}, t, t)  # [C, 2, 3, T, T]
    rows, cols = (torch.from_numpy((o // t).astype(np.int64))
                  for o in dataset.index.scenes[0].tiles['train'].T)
    (_, batch), = gather_batches(views, rows, cols, batch_size=100)
    for i in range(len(dataset)):
        torch.testing.assert_close(batch["a"][i], dataset[i]["a"], rtol=0, atol=0)


def test_strided_views_share_memory() -> None:
    x = torch.zeros(2, 40, 40)
    view = strided({"x": x}, 11, 1)["x"]
    assert view.shape == (2, 30, 30, 11, 11) and view.data_ptr() == x.data_ptr()


def test_short_batches_are_padded_to_one_shape() -> None:
    x = {"x": torch.arange(2 * 20 * 20, dtype=torch.float32).reshape(2, 20, 20)}
    views = strided(x, 3, 1)  # [2, 18, 18, 3, 3]
    rows, cols = torch.arange(18).repeat(2), torch.arange(36) % 18  # 36 samples
    shapes, real = [], []
    for sl, batch in gather_batches(views, rows, cols, batch_size=16):
        shapes.append(batch["x"].shape[0])
        n = len(rows[sl])
        real.append(n)
        torch.testing.assert_close(batch["x"][:n], views["x"][:, rows[sl], cols[sl]]
                                   .permute(1, 0, 2, 3))
        assert (batch["x"][n:] == 0).all()
    assert shapes == [16, 16, 16] and real == [16, 16, 4]
