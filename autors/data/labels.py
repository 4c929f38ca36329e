"""Label rasters: raster values -> class indexes 0..K-1 (-1 = unlabelled), on the reference grid;
target rasters of a task with `targets` (class indexes or continuous values, NaN = none)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rasterio.warp import Resampling

from autors.config import LabelSpec, TargetSpec
from autors.data.grid import Grid, read_onto
from autors.data.raster import RasterInfo
from autors.errors import DataError, RasterError

UNLABELLED = -1


def read_labels(info: RasterInfo, spec: LabelSpec, grid: Grid) -> np.ndarray:
    """Class indexes of a label raster on `grid`: int16 [H, W], -1 where unlabelled.

    Nearest-neighbour resampling when the raster is on another grid; grid pixels outside the
    raster are unlabelled. Values that are neither a declared class, the `ignore` value nor the
    file's nodata are a DataError listing them.
    """
    if info.count != 1:
        raise RasterError(
            f"{info.path}: a label raster must have one band, this one has {info.count}"
        )
    convert = _to_index(spec, info)
    return read_onto(info, [1], grid, convert, UNLABELLED, Resampling.nearest)[0]


def _to_index(spec: LabelSpec, info: RasterInfo) -> Callable[[np.ndarray], np.ndarray]:
    values = np.asarray(spec.class_values, dtype=np.float64)  # sorted; position = class index
    file_nodata = info.nodata[0]

    def convert(raw: np.ndarray) -> np.ndarray:  # [1, h, w] float32 -> [1, h, w] int16
        unlabelled = np.isnan(raw) | (raw == spec.ignore)
        if file_nodata is not None and file_nodata not in spec.classes:
            unlabelled |= raw == file_nodata
        pos = np.clip(np.searchsorted(values, raw), 0, len(values) - 1)
        is_class = values[pos] == raw
        unexpected = ~(is_class | unlabelled)
        if unexpected.any():
            vals, counts = np.unique(raw[unexpected], return_counts=True)
            listed = ", ".join(f"{_num(v)} ({n} px)" for v, n in zip(vals[:10], counts[:10]))
            more = f" and {len(vals) - 10} more" if len(vals) > 10 else ""
            raise DataError(
                f"{info.path}: label values {listed}{more} are not declared classes "
                f"(classes: {dict(spec.classes)}, ignore: {spec.ignore}); add them to "
                "'labels.classes' or recode them to the ignore value"
            )
        out = pos.astype(np.int16)
        out[unlabelled] = UNLABELLED
        return out

    return convert


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


# ---- targets (a task with `targets:`) -----------------------------------------------------------
@dataclass(frozen=True)
class TargetInfo:
    """One target as training, evaluation and export see it: its kind, the model output
    channels it owns (`channels`: K logits; a continuous value, and its log-variance with the
    Gaussian NLL), and for a continuous target the training mean/std its values are
    normalised with (the model predicts normalised values; metrics are in `units`)."""

    name: str
    kind: str  # classes | continuous
    loss: str
    weight: float | str  # a number, or "learned"
    score_weight: float
    units: str = ""
    classes: tuple[str, ...] = ()
    class_values: tuple[int, ...] = ()
    mean: float = 0.0
    std: float = 1.0

    @property
    def channels(self) -> int:
        if self.kind == "classes":
            return len(self.classes)
        return 2 if self.loss == "gaussian_nll" else 1

    @property
    def has_std(self) -> bool:
        """A heteroscedastic head: the second channel is the log-variance."""
        return self.kind == "continuous" and self.loss == "gaussian_nll"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"classes": list(self.classes),
                                           "class_values": list(self.class_values)}

    @classmethod
    def from_dict(cls, d: dict) -> TargetInfo:
        return cls(**(d | {"classes": tuple(d.get("classes", ())),
                           "class_values": tuple(d.get("class_values", ()))}))


def layout(targets: list[TargetInfo]) -> dict[str, tuple[int, int]]:
    """Each target's channel slice [start, stop) of the model's one output tensor."""
    out, start = {}, 0
    for t in targets:
        out[t.name] = (start, start + t.channels)
        start += t.channels
    return out


def read_target(info: RasterInfo, name: str, spec: TargetSpec, grid: Grid) -> np.ndarray:
    """A target raster on `grid`, float32 [H, W], NaN where it has no value: a class
    target's class index (nearest neighbour), a continuous target's value in its units
    (bilinear when resampled; nodata, NaN and values outside `range` have none).

    A continuous target whose kind was not given and whose raster holds integers is refused:
    class codes and counts look alike, so the task must say which it is."""
    field = f"targets.{name}"
    if info.count != 1:
        raise RasterError(f"{info.path} ({field}): a target raster must have one band, this "
                          f"one has {info.count}")
    if spec.resolved_kind == "classes":
        idx = read_labels(info, spec.as_labels(), grid).astype(np.float32)
        idx[idx < 0] = np.nan
        return idx
    if spec.kind is None and np.issubdtype(np.dtype(info.dtype), np.integer):
        raise DataError(
            f"{field}.kind: {info.path} holds integers ({info.dtype}), which look like class "
            f"codes; say which it is: 'kind: classes' with 'classes' (value -> name), or "
            f"'kind: continuous' for a quantity (counts, heights in whole units)")
    nodata = spec.nodata if spec.nodata is not None else info.nodata[0]
    low, high = spec.range if spec.range is not None else (-np.inf, np.inf)

    def convert(raw: np.ndarray) -> np.ndarray:
        out = raw.astype(np.float32)
        bad = ~np.isfinite(out) | (out < low) | (out > high)
        if nodata is not None:
            bad |= out == np.float32(nodata)
        out[bad] = np.nan
        return out

    resampling = Resampling.bilinear
    return read_onto(info, [1], grid, convert, np.nan, resampling)[0]
