"""`autors predict --preview`: a PNG quicklook of a written map, next to it: the class map in
the report's class colours with a legend of class names, and the confidence map with a colour
bar. Both are read decimated (`out_shape`: GDAL reads the overviews when the file has them,
else samples block by block), so a large scene never sits in memory at full resolution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure  # Agg canvas, no pyplot: no display or global state
from matplotlib.patches import Patch
from rasterio.enums import Resampling

from autors.errors import DataError, RasterError
from autors.report.palette import class_hex

MAX_SIDE = 1000  # pixels a side of each panel's image


def preview_path(class_map: Path) -> Path:
    """`MAP.tif` -> `MAP_preview.png`."""
    return class_map.with_name(class_map.stem + "_preview.png")


def _decimated(path: Path, band: int) -> tuple[np.ndarray, float | None, tuple[int, int]]:
    """Band `band` of `path` at most MAX_SIDE a side, its nodata, the full size (h, w)."""
    try:
        with rasterio.open(path) as src:
            f = max(1, math.ceil(max(src.height, src.width) / MAX_SIDE))
            shape = (max(1, src.height // f), max(1, src.width // f))
            data = src.read(band, out_shape=shape, resampling=Resampling.nearest)
            return data, src.nodata, (src.height, src.width)
    except (rasterio.errors.RasterioError, OSError) as err:
        raise RasterError(f"{path}: cannot read it for the preview ({err})") from None


def write_preview(class_map: Path, scores: Path, class_values: Sequence[int],
                  class_names: Sequence[str], out: Path | None = None) -> Path:
    """Write the quicklook of `class_map` (class values) and `scores` (band 1: confidence)
    to `out` (default `MAP_preview.png`); classes are coloured by their index in
    `class_values` (the model card's order, as in the report)."""
    if not class_values:
        raise DataError(f"{class_map}: --preview draws a class map, and this model has no "
                        "class target")
    out = preview_path(class_map) if out is None else out
    values, nodata, (h, w) = _decimated(class_map, 1)
    index = np.full(values.shape, -1, np.int64)
    for i, v in enumerate(class_values):
        index[values == v] = i
    if nodata is not None:
        index[values == nodata] = -1
    conf, _, _ = _decimated(scores, 1)
    conf = conf.astype(np.float32)
    k = len(class_values)
    fig = Figure(figsize=(13, 6.2), layout="constrained")
    ax_map, ax_conf = fig.subplots(1, 2)
    cmap = ListedColormap([class_hex(i) for i in range(k)])
    cmap.set_bad("white")
    ax_map.imshow(np.ma.masked_less(index, 0), cmap=cmap, vmin=-0.5, vmax=k - 0.5,
                  interpolation="nearest")
    ax_map.set_title(f"{class_map.name}: classes")
    handles = [Patch(facecolor=class_hex(i), edgecolor="#666", label=f"{name} ({v})")
               for i, (name, v) in enumerate(zip(class_names, class_values))]
    handles.append(Patch(facecolor="white", edgecolor="#666", label="no class (nodata)"))
    ax_map.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  fontsize=9, frameon=False)
    im = ax_conf.imshow(np.ma.masked_invalid(conf), cmap="viridis", vmin=0.0, vmax=1.0,
                        interpolation="nearest")
    ax_conf.set_title(f"{scores.name}: confidence")
    fig.colorbar(im, ax=ax_conf, fraction=0.046, pad=0.02, label="confidence (max probability)")
    for ax in (ax_map, ax_conf):
        ax.set_xticks([])
        ax.set_yticks([])
    step = max(1, math.ceil(max(h, w) / MAX_SIDE))
    fig.suptitle(f"{w} x {h} px" + (f", shown 1:{step}" if step > 1 else ""), fontsize=10)
    fig.savefig(out, dpi=100)
    return out
