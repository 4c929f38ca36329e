"""Sun illumination of the surface: cast shadows and sunlit/shaded sides of tree crowns.

The observed reflectance-equivalent of a surface with reflectance R is
`R * (f_dir(l) * direct + f_diff(l))`: `direct` is 0 in cast shadow and cos(i)/cos(z) on a
sloped canopy (1 on flat ground); `f_diff` is the skylight fraction, larger in the blue, so
shadows are dark and bluish, which makes shadowed asphalt look like water in the optical and
hyperspectral images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SUN_AZIMUTH_DEG = 150.0  # clockwise from north: the sun is in the south-south-east
SUN_ELEVATION_DEG = 40.0


@dataclass(frozen=True)
class Sun:
    azimuth_deg: float = SUN_AZIMUTH_DEG
    elevation_deg: float = SUN_ELEVATION_DEG

    @property
    def toward(self) -> tuple[float, float]:
        """Unit step toward the sun in (row, col) image coordinates (rows run south)."""
        az = np.radians(self.azimuth_deg)
        return -float(np.cos(az)), float(np.sin(az))


def cast_shadow(height: np.ndarray, pixel_size_m: float, sun: Sun) -> np.ndarray:
    """[H, W] bool: pixels whose line toward the sun is blocked by something taller."""
    dr, dc = sun.toward
    rise = pixel_size_m * np.tan(np.radians(sun.elevation_deg))  # metres per pixel step
    steps = int(np.ceil(float(height.max()) / rise)) + 1
    h, w = height.shape
    pad = steps + 1
    hp = np.pad(height, pad)
    shadow = np.zeros((h, w), bool)
    for k in range(1, steps + 1):
        r0, c0 = pad + round(k * dr), pad + round(k * dc)
        ahead = hp[r0 : r0 + h, c0 : c0 + w]
        shadow |= ahead - k * rise > height + 0.3
    return shadow


def canopy_direct(height: np.ndarray, canopy: np.ndarray, pixel_size_m: float, sun: Sun) -> np.ndarray:
    """[H, W] cos(i)/cos(z) on canopy pixels (crown slopes facing or turned from the sun), else 1."""
    smooth = ndimage.gaussian_filter(height.astype(np.float64), 0.7)
    d_row, d_col = np.gradient(smooth, pixel_size_m)
    # surface normal (east, north, up) = (-dh/dx, -dh/dy, 1); image rows run south
    nx, ny = -d_col, d_row
    az, el = np.radians(sun.azimuth_deg), np.radians(sun.elevation_deg)
    sx, sy, sz = np.sin(az) * np.cos(el), np.cos(az) * np.cos(el), np.sin(el)
    cos_i = (nx * sx + ny * sy + sz) / np.sqrt(nx**2 + ny**2 + 1)
    ratio = np.clip(cos_i / sz, 0.0, 1.6)
    return np.where(canopy, ratio, 1.0).astype(np.float32)


def diffuse_fraction(centres_nm: np.ndarray) -> np.ndarray:
    """[B] skylight share of the irradiance (Rayleigh-like, ~lambda^-2): 0.28 at 450, 0.07 at 900."""
    return np.clip(0.19 * (550.0 / np.asarray(centres_nm)) ** 2, 0.02, 0.5)
