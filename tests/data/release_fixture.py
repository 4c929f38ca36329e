"""A tiny dataset laid out like the Sen1Floods11 v1.1 release (see ../shared/NOTES.md):
`v1.1/data/flood_events/HandLabeled/{S1Hand,S2Hand,LabelHand}/<Event>_<id>_<Layer>.tif` and
`v1.1/splits/flood_handlabeled/flood_{train,valid,test,bolivia}_data.csv` (no header, one chip
a row: `<chip>_S1Hand.tif,<chip>_LabelHand.tif`). Values follow the release: S1 float32 dB
(VV, VH; NaN nodata), S2 int16 TOA reflectance x 10000 (13 bands; 0 nodata), labels int16
(-1 no data, 0 not water, 1 water). Water is darker in SAR and in the near infrared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

HAND = Path("v1.1/data/flood_events/HandLabeled")
SPLITS = Path("v1.1/splits/flood_handlabeled")
# chip -> split CSV; Bolivia is the held-out event
CHIPS = {
    "Ghana_103272": "train", "Ghana_103273": "train", "Spain_1001": "train",
    "USA_2001": "train", "USA_2002": "valid", "Spain_1002": "valid",
    "Ghana_103274": "test", "USA_2003": "test", "Bolivia_3001": "bolivia",
    "Bolivia_3002": "bolivia",
}


def write_chip(root: Path, chip: str, size: int, seed: int, crs: CRS, origin: tuple,
               pixel: float, s2_bands: int = 13) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    cx, cy, r = rng.uniform(0.3, 0.7, 2).tolist() + [rng.uniform(0.2, 0.35)]
    water = ((xx / size - cx) ** 2 + (yy / size - cy) ** 2) < r**2
    labels = water.astype(np.int16)
    labels[: 2, :] = -1  # an unlabelled strip
    vv = np.where(water, -20.0, -8.0) + rng.normal(0, 1.5, (size, size))
    vh = vv - 7.0 + rng.normal(0, 1.0, (size, size))
    s1 = np.stack([vv, vh]).astype(np.float32)
    s1[:, -1, :3] = np.nan  # a few nodata pixels
    base = rng.uniform(600, 1400, s2_bands)[:, None, None]
    nir = np.zeros((s2_bands, 1, 1))
    nir[7] = 1.0
    s2 = base * (1 - 0.8 * water * nir) + rng.normal(0, 60, (s2_bands, size, size))
    s2 = np.clip(s2, 1, 10000).astype(np.int16)
    s2[:, 0, :4] = 0  # nodata
    transform = from_origin(origin[0], origin[1], pixel, pixel)
    for layer, arr, nodata in (("S1Hand", s1, np.nan), ("S2Hand", s2, 0),
                               ("LabelHand", labels[None], None)):
        path = root / HAND / layer / f"{chip}_{layer}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(path, "w", driver="GTiff", width=size, height=size,
                           count=arr.shape[0], dtype=arr.dtype.name, crs=crs,
                           transform=transform, nodata=nodata) as dst:
            dst.write(arr)


def write_release(root: Path, size: int = 24, chips: dict[str, str] | None = None) -> Path:
    """Write the chips (all EPSG:4326 but one chip in UTM) and the split CSVs; returns root."""
    chips = CHIPS if chips is None else chips
    for i, chip in enumerate(chips):
        if i == 1:  # another CRS and pixel size: each scene has its own grid
            write_chip(root, chip, size, i, CRS.from_epsg(32630), (500_000.0, 4_200_000.0), 20.0)
        else:
            write_chip(root, chip, size, i, CRS.from_epsg(4326), (-0.78 + i, 38.1),
                       8.983152841195e-05)
    (root / SPLITS).mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test", "bolivia"):
        rows = [f"{c}_S1Hand.tif,{c}_LabelHand.tif\n" for c, s in chips.items() if s == split]
        (root / SPLITS / f"flood_{split}_data.csv").write_text("".join(rows))
    return root
