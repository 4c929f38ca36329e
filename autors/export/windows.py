"""Window planning and patch/tile extraction for streamed prediction.

The scene is cut into core windows (each output pixel in exactly one); each window is read
with a halo so that every core pixel sees the context it saw in training:

- patch classification: one patch of P x P per core pixel, centred on it; halo = P // 2.
- segmentation: tiles of T x T overlapping by T // 2 (stride s = T - 2m, margin m = T // 4);
  each tile contributes its central s x s pixels; halo = m, core windows are multiples of s.

Patches and tiles are strided views of the window array (`Tensor.unfold`); a batch copies only
the samples it holds, so memory is bounded by the window and batch sizes, not the scene.
Validity masks (`<sensor>__mask`) travel as one-band arrays [1, H, W] beside the values and
come out of a batch as the model takes them, [B, size, size].
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from torch import Tensor

from fusion import MASK_SUFFIX


@dataclass(frozen=True)
class Core:
    """Core window on the grid: rows [row, row + height), cols [col, col + width)."""

    row: int
    col: int
    height: int
    width: int


@dataclass(frozen=True)
class Tiling:
    """How one model input relates to output pixels (see the module docstring)."""

    size: int  # model input side (P or T)
    dense: bool

    @property
    def halo(self) -> int:
        return self.size // 4 if self.dense else self.size // 2

    @property
    def stride(self) -> int:
        """Output pixels per tile side (dense), 1 for patches."""
        return self.size - 2 * self.halo if self.dense else 1

    def read_shape(self, core: Core) -> tuple[int, int]:
        """(rows, cols) of the array read for `core`: core + halo, rounded up to whole tiles."""
        s, h = self.stride, self.halo
        return _ceil(core.height, s) * s + 2 * h, _ceil(core.width, s) * s + 2 * h


def plan(height: int, width: int, window: int, tiling: Tiling, align: int = 1) -> list[Core]:
    """Core windows covering a height x width grid, row-major.

    `window` is rounded down to a multiple of the tiling stride (at least one tile) and, when
    it is at least `align` and the stride divides `align`, to a multiple of `align` (the
    output file's tile side, so every window fills whole output tiles).
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
