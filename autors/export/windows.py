"""Window planning and patch/tile extraction for streamed prediction.

The scene is cut into core windows (each output pixel in exactly one); each window is read
with a margin so that every core pixel sees the context the model needs:

- patch classification (`Tiling.patches`): one patch of P x P per core pixel, centred on it;
  halo = P // 2.
- dense models with a recorded receptive radius (`Tiling.overlap`, chosen by `dense_tiling`):
  overlap-tile. Tiles have a core of C x C output pixels (C a power-of-two multiple of the
  model's output stride R) on the scene's lattice of multiples of C, and are read with a halo
  h = the receptive radius (a multiple of R): the model runs on (C + 2h)^2 pixels and only
  the core is kept. Every tile is read from a multiple of R on the scene grid, so its pooling
  grid is the scene's; with h >= the radius, an output pixel sees exactly what it would see
  in one pass over the whole (zero-padded) scene, so overlapping tiles would agree and no
  blending is needed: the map is the same for any window and tile size, within float
  tolerance (bit-identical for the same tile size).
- dense models whose radius exceeds the cap (`max_halo`; or was beyond what export measures):
  the halo is capped, tiles sit on a fixed lattice offset by C / 2 from the windows, and each
  tile's output reaches `blend` pixels past its core, linearly blended with its neighbours'
  (weights summing to one). The map then still does not depend on the window (the lattice and
  C do not), and shows no seams, but it is not the unbounded-context map. A window's tiles
  straddle its edges, so the tiles along window edges are run twice (cost ((n + 1) / n)^2 for
  n tiles per window side).
- dense models whose card records no radius (exported before it): tiles of T x T (the
  training size) overlapping by T // 2 (`Tiling.legacy`: stride T - 2m, margin m = T // 4);
  the map may depend on the window.

Patches and tiles are strided views of the window array (`Tensor.unfold`); a batch copies only
the samples it holds, so memory is bounded by the window and batch sizes, not the scene.
Validity masks (`<sensor>__mask`) travel as one-band arrays [1, H, W] beside the values and
come out of a batch as the model takes them, [B, size, size].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from fusion import MASK_SUFFIX

# Overlap-tile sizing (`dense_tiling`). The core C is the smallest power-of-two multiple of
# the output stride with compute overhead (C + 2h)^2 / C^2 <= MAX_OVERHEAD and C >= MIN_CORE
# (one forward pass per few pixels costs more than the overhead), then halved while a tile
# of batch one does not fit the activation memory budget, exceeds the window (exact tiles
# only: the window bounds memory) or twice covers the scene.
MAX_OVERHEAD = 2.0
MIN_CORE = 128
MAX_HALO = 256  # default cap of the halo; a larger receptive radius is blended (see above)


@dataclass(frozen=True)
class Core:
    """Core window on the grid: rows [row, row + height), cols [col, col + width)."""

    row: int
    col: int
    height: int
    width: int


@dataclass(frozen=True)
class Tiling:
    """How model inputs relate to output pixels (see the module docstring)."""

    size: int  # model input side: P, or a tile's core + 2 * halo
    stride: int  # output pixels per tile side (the tile core), 1 for patches
    halo: int  # input pixels read around a tile core (patch: around its pixel)
    dense: bool
    blend: int = 0  # pixels a tile's output reaches past its core, blended (capped halo)
    offset: int = 0  # from a window's first tile core to the window (blend: stride // 2)

    @classmethod
    def patches(cls, size: int) -> Tiling:
        return cls(size, 1, size // 2, False)

    @classmethod
    def legacy(cls, size: int) -> Tiling:
        """Training-size tiles overlapping by half (cards without a receptive radius)."""
        m = size // 4
        return cls(size, size - 2 * m, m, True)

    @classmethod
    def overlap(cls, core: int, halo: int, blend: int = 0) -> Tiling:
        """Tiles of `core` output pixels read with `halo`; `blend` > 0: a capped halo."""
        if blend and not (0 < 2 * blend <= core // 2 and blend <= halo and core % 2 == 0):
            raise ValueError(f"blend {blend} must be at most a quarter of the core {core} "
                             f"and at most the halo {halo}")
        return cls(core + 2 * halo, core, halo, True, blend, core // 2 if blend else 0)

    @property
    def overhead(self) -> float:
        """Input pixels run per output pixel kept, for whole tiles ((C + 2h)^2 / C^2)."""
        return (self.size / self.stride) ** 2

    def tiles(self, n: int) -> int:
        """Tiles along a window side of n pixels: those whose (blended) output reaches it."""
        return _ceil(self.offset + n + self.blend, self.stride)

    def read_shape(self, core: Core) -> tuple[int, int]:
        """(rows, cols) of the array read for `core`, from (core.row, core.col) -
        `read_margin`: its tiles' inputs."""
        s, h = self.stride, self.halo
        return self.tiles(core.height) * s + 2 * h, self.tiles(core.width) * s + 2 * h

    @property
    def read_margin(self) -> int:
        """Pixels read before a window's first row and column."""
        return self.offset + self.halo

    def weights(self) -> np.ndarray:
        """float32 [stride + 2 blend]: the 1-D weight of a tile's output pixels, from `blend`
        before its core to `blend` after; ramps of 2 * blend centred on the core's edges, so
        the weights of neighbouring tiles sum to one (ones without blending)."""
        s, b = self.stride, self.blend
        if not b:
            return np.ones(s, np.float32)
        x = np.arange(-b, s + b) + 0.5
        return np.clip(np.minimum(x + b, s + b - x) / (2 * b), 0.0, 1.0).astype(np.float32)


def dense_tiling(reduction: int, radius: int | None, window: int, scene: tuple[int, int],
                 tile_bytes: Callable[[int], float], budget: float,
                 max_halo: int = MAX_HALO) -> Tiling:
    """The overlap-tile `Tiling` of a dense model with output stride `reduction` and receptive
    radius `radius` (None: beyond what export measured) for a scene of `scene` (rows, cols)
    and core windows of about `window` px, a tile of side x side taking `tile_bytes(side)` of
    activation memory within `budget` bytes (see the module docstring for the choice)."""
    r = reduction
    cap = max(r, max_halo // r * r)
    exact = radius is not None and radius <= cap
    halo = radius if exact else cap
    smallest = r if exact else max(2 * r, 4)  # blending: C / 2 on the lattice of r
    sizes = [smallest << k for k in range(32)]  # candidate cores, increasing
    target = max(MIN_CORE, 2 * halo / (math.sqrt(MAX_OVERHEAD) - 1))
    core = next(c for c in sizes if c >= target)
    core = min(core, next(c for c in sizes if c >= max(scene)))  # no tile twice the scene
    if exact:  # a capped halo keeps its lattice whatever the window
        core = min(core, max([c for c in sizes if c <= window], default=smallest))
    while core > smallest and tile_bytes(core + 2 * halo) > budget:
        core //= 2
    if exact:
        return Tiling.overlap(core, halo)
    return Tiling.overlap(core, halo, blend=max(1, min(halo // 2, core // 4)))


def plan(height: int, width: int, window: int, tiling: Tiling, align: int = 1) -> list[Core]:
    """Core windows covering a height x width grid, row-major.

    `window` is rounded down to a multiple of the tiling stride (at least one tile) and, when
    it is at least `align` and the stride divides `align`, to a multiple of `align` (the
    output file's tile side, so every window fills whole output tiles). A stride that is a
    multiple of `align` keeps windows on whole output tiles too.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1 pixel, got {window}")
    s = tiling.stride
    side = max(s, window // s * s)
    if side >= align and align % s == 0:
        side = side // align * align
    return [
        Core(r, c, min(side, height - r), min(side, width - c))
        for r in range(0, height, side)
        for c in range(0, width, side)
    ]


def _ceil(n: int, d: int) -> int:
    return -(-n // d)
def strided(arrays: dict[str, Tensor], size: int, step: int) -> dict[str, Tensor]:
    """Every size x size sample of each window array at `step`, as a strided view sharing the
    array's memory: {sensor: [C, C_h, C_w] -> [C, n_r, n_c, size, size]}.

    Patches: step 1 over the window read with its halo, so sample (r, c) is the patch centred
    on core pixel (r, c). Tiles: step = the tiling stride.
    """
    return {n: a.unfold(1, size, step).unfold(2, size, step) for n, a in arrays.items()}


def gather_batches(
    views: dict[str, Tensor], rows: Tensor, cols: Tensor, batch_size: int
) -> Iterator[tuple[slice, dict[str, Tensor]]]:
    """Batches of the samples (rows[i], cols[i]) of `strided` views: yields (slice into
    rows/cols, {sensor: [batch_size, C, size, size], sensor__mask: [batch_size, size,
    size]}); only the batch is copied.

    A short batch (the last of a window) is zero-padded to `batch_size`; callers keep the
    first `len(slice)` outputs. The CPU convolution backend (oneDNN) caches compiled kernels
    and their buffers per input shape, so an odd batch size per window made memory grow with
    the number of windows, i.e. with the scene (measured: benchmarks/predict_memory.py).
    """
    for start in range(0, int(rows.numel()), batch_size):
        sl = slice(start, start + batch_size)
        r, c = rows[sl], cols[sl]
        batch = {}
        for name, v in views.items():
            x = v[:, r, c].permute(1, 0, 2, 3)  # [n, C, size, size]
            out = x.new_zeros((batch_size, *x.shape[1:]))
            out[: x.shape[0]] = x
            batch[name] = out[:, 0] if name.endswith(MASK_SUFFIX) else out
        yield sl, batch
