"""Write the scene: GeoTIFFs with band names, the task file and a provenance record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
import yaml
from rasterio.crs import CRS
from rasterio.transform import Affine

from autors.errors import RasterError


def write_geotiff(
    path: Path,
    data: np.ndarray,
    transform: Affine,
    crs: CRS,
    band_names: tuple[str, ...],
    nodata: float | None,
    tags: dict[str, str] | None = None,
    compress: str | None = "deflate",
) -> Path:
    """Write `data` [C, H, W] as a GeoTIFF with band descriptions, deflate-compressed unless
    `compress` is None ("none" also means uncompressed)."""
    if data.ndim != 3 or data.shape[0] != len(band_names):
        raise ValueError(f"{path.name}: {data.shape} does not match {len(band_names)} band names")
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "tiled": data.shape[1] >= 256 and data.shape[2] >= 256,
        "interleave": "band",
    }
    if compress is not None and compress != "none":
        profile["compress"] = compress
    try:
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
            for i, name in enumerate(band_names, start=1):
                dst.set_band_description(i, name)
            if tags:
                dst.update_tags(**tags)
    except (rasterio.errors.RasterioError, OSError) as err:
        raise RasterError(f"cannot write {path}: {err}") from None
    return path


def write_task(path: Path, task: dict, header: str) -> Path:
    """Write the task dict as YAML under a comment header."""
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    path.write_text(comment + yaml.safe_dump(task, sort_keys=False, default_flow_style=None))
    return path


def write_json(path: Path, record: dict) -> Path:
    path.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    return path
