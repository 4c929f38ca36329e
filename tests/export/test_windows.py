"""Window planning and strided patch/tile extraction against the training datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from array_datasets import patch_dataset, tile_dataset  # tests/data is on sys.path

from autors.export.windows import (
    MIN_CORE,
    Core,
    Tiling,
    dense_tiling,
    gather_batches,
    plan,
    strided,
)

TILINGS = [Tiling.patches(7), Tiling.legacy(16), Tiling.legacy(11), Tiling.overlap(8, 4),
           Tiling.overlap(16, 8, blend=4)]


@pytest.mark.parametrize("tiling", TILINGS)
@pytest.mark.parametrize("window", [1, 5, 24, 300])
def test_plan_covers_every_pixel_once(tiling: Tiling, window: int) -> None:
    h, w = 45, 70
    count = np.zeros((h, w), int)
    for core in plan(h, w, window, tiling, align=256):
        count[core.row:core.row + core.height, core.col:core.col + core.width] += 1
        # a window starts on the tiling's lattice, so tiles sit at the same place for any window
        assert core.row % tiling.stride == 0 and core.col % tiling.stride == 0
    assert (count == 1).all()


@pytest.mark.parametrize("tiling", TILINGS[1:])
def test_a_windows_tiles_cover_it_and_nothing_more(tiling: Tiling) -> None:
    """The tiles read for a window are those whose (blended) output reaches it, first one
    included; their inputs are the array `read_shape` gives from `read_margin` before it."""
    s, b, off = tiling.stride, tiling.blend, tiling.offset
    assert -off + b <= 0  # the tile before the first one ends before the window
    for n in (1, s - 1, s, 3 * s + 1):
        k = tiling.tiles(n)
        # tile i's output covers window pixels [i*s - off - b, (i+1)*s - off + b)
        assert k * s - off + b >= n  # the last one reaches the window's end...
        assert (k - 1) * s - off - b < n  # ...and starts inside the window
        assert tiling.read_shape(Core(0, 0, n, n)) == (k * s + 2 * tiling.halo,) * 2
    assert tiling.read_margin == off + tiling.halo


@pytest.mark.parametrize("core,blend", [(8, 0), (16, 4), (32, 3), (64, 16)])
def test_tile_weights_sum_to_one(core: int, blend: int) -> None:
    tiling = Tiling.overlap(core, 16, blend)
    w = tiling.weights()
    assert w.shape == (core + 2 * blend,) and (w > 0).all() and (w <= 1).all()
    total = np.zeros(5 * core + 2 * blend)
    for i in range(5):  # tiles at the stride, each output from `blend` before its core
        total[i * core:i * core + core + 2 * blend] += w
    np.testing.assert_allclose(total[2 * blend:5 * core], 1.0, rtol=0, atol=1e-6)
    if blend:
        assert w[0] < 0.5 < w[-blend - 1] and np.all(np.diff(w[:2 * blend]) > 0)
    with pytest.raises(ValueError, match="at most a quarter of the core"):
        Tiling.overlap(16, 16, blend=5)


def _bytes(per_pixel: float):
    return lambda side: per_pixel * side * side


def test_dense_tiling_bounds_overhead_window_scene_and_memory() -> None:
    big = 2.0**40
    # radius 80 at stride 16: overhead <= 2 needs a core of 4.83 x 80 px -> 512
    t = dense_tiling(16, 80, window=4096, scene=(5000, 5000), tile_bytes=_bytes(1), budget=big)
    assert (t.stride, t.halo, t.blend, t.size) == (512, 80, 0, 672) and t.overhead <= 2
    # small radius: at least MIN_CORE; the window and the scene bound the core
    assert dense_tiling(1, 5, 4096, (5000, 5000), _bytes(1), big).stride == MIN_CORE
    assert dense_tiling(16, 80, 300, (5000, 5000), _bytes(1), big).stride == 256
    assert dense_tiling(16, 80, 5, (5000, 5000), _bytes(1), big).stride == 16
    assert dense_tiling(16, 80, 4096, (100, 200), _bytes(1), big).stride == 256
    # memory: the core halves until one tile fits the budget
    t = dense_tiling(16, 80, 4096, (5000, 5000), _bytes(1000), budget=1000 * 416**2)
    assert t.stride == 256
    assert dense_tiling(16, 80, 4096, (5000, 5000), _bytes(1000), budget=1).stride == 16
    # every core is a power-of-two multiple of the stride, every halo a multiple of it
    for window in (17, 100, 1000):
        t = dense_tiling(8, 24, window, (999, 77), _bytes(10), 2.0**24)
        assert t.stride % 8 == 0 and (t.stride // 8) & (t.stride // 8 - 1) == 0


def test_dense_tiling_caps_a_large_radius_and_blends() -> None:
    big = 2.0**40
    for radius in (None, 300):
        t = dense_tiling(16, radius, 4096, (5000, 5000), _bytes(1), big, max_halo=100)
        assert t.halo == 96 and t.blend == 48 and t.offset == t.stride // 2
        # the lattice does not follow the window (so the map does not either)
        assert dense_tiling(16, radius, 64, (5000, 5000), _bytes(1), big,
                            max_halo=100) == t
    assert dense_tiling(16, 96, 4096, (5000, 5000), _bytes(1), big, max_halo=100).blend == 0


def test_plan_aligns_large_windows_to_output_tiles() -> None:
    cores = plan(1000, 1000, 600, Tiling.patches(11), align=256)
    assert {c.row for c in cores} == {0, 512} and cores[0].height == 512
    assert plan(100, 100, 100, Tiling.patches(11), align=256)[0].height == 100
    # overlap tiles of 512 px: windows stay multiples of the output's 256 px tiles
    assert {c.row for c in plan(2000, 10, 1500, Tiling.overlap(512, 80), 256)} == {0, 1024}
    assert {c.row for c in plan(300, 10, 300, Tiling.overlap(64, 8), 256)} == {0, 256}


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
