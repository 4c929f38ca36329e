"""`preview.png`: a quick look at a generated scene, read back from its GeoTIFFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure  # Agg canvas, no pyplot: no display or global state
from matplotlib.patches import Patch
from rasterio.plot import plotting_extent
from scipy.ndimage import uniform_filter

from autors.errors import RasterError

# label colours in catalogue order (water, road, roof, grass, oak, maple, soil_smooth,
# soil_rough, concrete, shrub)
COLOURS = (
    "#1f5fbf", "#404040", "#d62728", "#9be37a", "#1e7b1e", "#7fa51e",
    "#d9b38c", "#8c5a2b", "#b0b0b0", "#4fd1a5",
)


def _stretch(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(x[valid], [2, 98]) if valid.any() else (0.0, 1.0)
    return np.clip((x - lo) / max(hi - lo, 1e-9), 0, 1)


def _read(path: Path, bands: list[int]) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(data [C, H, W] float, valid [H, W], plotting extent)."""
    try:
        with rasterio.open(path) as src:
            data = src.read(bands).astype(np.float64)
            valid = np.ones(data.shape[1:], bool) if src.nodata is None else (
                data != src.nodata
            ).all(axis=0)
            return data, valid, plotting_extent(src)
    except rasterio.errors.RasterioError as err:
        raise RasterError(f"cannot read {path} for the preview: {err}") from None


def _slc_panel(path: Path) -> tuple:
    """The complex SAR sensor's HH-VV phase, arg of <VV HH*> over 5 x 5 pixels (its classes
    of one amplitude differ in it), NaN at nodata."""
    try:
        with rasterio.open(path) as src:
            z = src.read()  # complex [2, H, W], never cast to real
            ext = plotting_extent(src)
    except rasterio.errors.RasterioError as err:
        raise RasterError(f"cannot read {path} for the preview: {err}") from None
    cross = z[1] * np.conj(z[0])
    mean = uniform_filter(cross.real, 5) + 1j * uniform_filter(cross.imag, 5)
    phase = np.where(np.abs(z).sum(axis=0) > 0, np.degrees(np.angle(mean)), np.nan)
    return ("complex SAR: HH-VV phase, 5 x 5 mean (deg)", phase, ext,
            {"cmap": "twilight", "vmin": -180, "vmax": 180})


def write_preview(scene_dir: Path, class_names: tuple[str, ...]) -> Path:
    """Write `scene_dir/preview.png` from whichever sensor files exist there."""
    scene_dir = Path(scene_dir)
    panels = []
    if (scene_dir / "optical.tif").exists():
        d, v, ext = _read(scene_dir / "optical.tif", [8, 4, 3])  # NIR, red, green
        panels.append(("optical false colour (B8, B4, B3)", np.dstack([_stretch(b, v) for b in d]),
                       ext, {}))
    if (scene_dir / "sar.tif").exists():
        d, v, ext = _read(scene_dir / "sar.tif", [1])
        db = np.where(v, 10 * np.log10(np.maximum(d[0], 1e-6)), np.nan)
        panels.append(("SAR VV (dB)", db, ext, {"cmap": "gray", "vmin": -25, "vmax": 0}))
    if (scene_dir / "lidar.tif").exists():
        d, v, ext = _read(scene_dir / "lidar.tif", [1])
        panels.append(("LiDAR nDSM (m)", np.where(v, d[0], np.nan), ext,
                       {"cmap": "viridis", "vmin": 0, "vmax": 20}))
    if (scene_dir / "hsi.tif").exists():
        with rasterio.open(scene_dir / "hsi.tif") as src:
            names = src.descriptions
        band = min(range(len(names)), key=lambda i: abs(float(names[i].rstrip("nm")) - 720))
        d, v, ext = _read(scene_dir / "hsi.tif", [band + 1])
        panels.append((f"hyperspectral {names[band]}", _stretch(d[0], v), ext, {"cmap": "magma"}))
    if (scene_dir / "slc.tif").exists():
        panels.append(_slc_panel(scene_dir / "slc.tif"))
    d, _, ext = _read(scene_dir / "labels.tif", [1])
    k = len(class_names)
    cmap = ListedColormap(["white", *COLOURS[:k]])
    panels.append(("labels", d[0], ext, {"cmap": cmap, "vmin": -0.5, "vmax": k + 0.5,
                                         "interpolation": "nearest"}))
    tr, _, _ = _read(scene_dir / "train.tif", [1])
    te, _, _ = _read(scene_dir / "test.tif", [1])
    split = np.where(te[0] > 0, 1.0, np.nan)
    panels.append(("test (grey) and train pixels", split, ext, {"cmap": "gray", "vmin": 0,
                                                                "vmax": 2}))

    rows = max(2, -(-len(panels) // 3))
    fig = Figure(figsize=(15, 5.5 * rows), layout="constrained")
    axes = fig.subplots(rows, 3)
    for ax, (title, img, extent, kw) in zip(axes.flat, panels):
        ax.imshow(img, extent=extent, **kw)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    last = axes.flat[len(panels) - 1]
    ys, xs = np.nonzero(tr[0])
    x0, x1, y0, y1 = ext
    h, w = tr[0].shape
    last.scatter(x0 + (xs + 0.5) * (x1 - x0) / w, y1 - (ys + 0.5) * (y1 - y0) / h, s=4,
                 c=[COLOURS[int(c) - 1] for c in tr[0][ys, xs]])
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    handles = [Patch(color=COLOURS[i], label=f"{i + 1} {n}") for i, n in enumerate(class_names)]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(k, 5), fontsize=11)
    out = scene_dir / "preview.png"
    fig.savefig(out, dpi=80)
    return out
