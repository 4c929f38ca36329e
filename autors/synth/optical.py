"""Sentinel-2-like multispectral image with clouds and cloud shadows.

Clouds are a fractal optical-thickness field; a cloud's shadow falls `CLOUD_HEIGHT_M /
tan(sun elevation)` away from it, opposite the sun, so shadows come from clouds partly
outside the scene. Written as reflectance x 10000 in uint16 (0 = nodata, never produced).

`cloud_mask` classes the same fields for a cloud mask raster (0 clear, 1 thick cloud, 2 thin
cloud, 3 cloud shadow) and `scl_band` for a Sentinel-2 scene-classification-like QA band; both
leave the rendered image as it is (clouds bright, shadows dark).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from autors.synth.bands import OPTICAL
from autors.synth.fields import fractal_noise
from autors.synth.illumination import Sun
from autors.synth.surface import Surface, render

CLOUD_HEIGHT_M = 600.0
CLOUD_SCALE_M = 60.0  # largest cloud features (fair-weather cumulus, many per scene)
CLOUD_REFLECTANCE = 0.75
NOISE = 0.003  # reflectance units
PSF_SIGMA_PX = 0.5
SCALE = 10000.0

# Cloud mask classes (`cloud_mask`): thick cloud and cloud shadow hide the ground, thin cloud
# only veils it.
CLEAR, THICK_CLOUD, THIN_CLOUD, CLOUD_SHADOW = 0, 1, 2, 3
MASK_CLASSES = {CLEAR: "clear", THICK_CLOUD: "thick cloud", THIN_CLOUD: "thin cloud",
                CLOUD_SHADOW: "cloud shadow"}
MASK_INVALID = (THICK_CLOUD, CLOUD_SHADOW)
THIN_MIN = 0.05  # cloud opacity from which a pixel is (thin) cloud: a 5 % veil
THICK_MIN = 0.5  # cloud opacity from which it is thick cloud: more cloud than ground
SHADOW_MIN = 0.5  # share of the direct sun blocked from which a pixel is cloud shadow
HIGH_PROB_MIN = 0.9  # cloud opacity of SCL "cloud high probability" (below: medium)
# Sentinel-2 L2A scene classification (SCL) codes used by `scl_band`
SCL_SHADOW, SCL_VEGETATION, SCL_BARE, SCL_WATER = 3, 4, 5, 6
SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_CIRRUS = 8, 9, 10
SCL_CLASSES = {SCL_SHADOW: "cloud shadow", SCL_VEGETATION: "vegetation",
               SCL_BARE: "not vegetated", SCL_WATER: "water",
               SCL_CLOUD_MEDIUM: "cloud medium probability",
               SCL_CLOUD_HIGH: "cloud high probability", SCL_CIRRUS: "thin cirrus"}
SCL_INVALID = (SCL_SHADOW, SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH)


def cloud_fields(
    shape: tuple[int, int], cover: float, pixel_size_m: float, sun: Sun, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(cloud opacity [H, W] in 0..1, shadow transmission of the direct sun [H, W] in 0..1)."""
    h, w = shape
    if cover <= 0:
        return np.zeros(shape, np.float32), np.ones(shape, np.float32)
    shift = CLOUD_HEIGHT_M / np.tan(np.radians(sun.elevation_deg)) / pixel_size_m
    dr, dc = (round(shift * d) for d in sun.toward)
    canvas = fractal_noise((h + abs(dr), w + abs(dc)), CLOUD_SCALE_M / pixel_size_m, rng, octaves=4)
    r0, c0 = max(0, -dr), max(0, -dc)  # scene window in the canvas
    scene = canvas[r0 : r0 + h, c0 : c0 + w]
    # the cloud that shades pixel p hangs over p + shift * (toward the sun)
    over = canvas[r0 + dr : r0 + dr + h, c0 + dc : c0 + dc + w]
    thr = float(np.quantile(scene, 1.0 - cover))
    tau = 6.0 * np.clip(scene - thr, 0, None)  # optical thickness: thin edges, opaque cores
    tau_shadow = 6.0 * np.clip(over - thr, 0, None)
    return (1.0 - np.exp(-tau)).astype(np.float32), np.exp(-tau_shadow).astype(np.float32)


def simulate(
    surface: Surface,
    cover: float,
    pixel_size_m: float,
    sun: Sun,
    rng: np.random.Generator,
    noise: float = NOISE,
    clouds: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """[10, H, W] uint16 reflectance x 10000. `clouds`: (opacity, shadow transmission) already
    drawn from `rng` by `cloud_fields` (the same draws as when this function makes them)."""
    opacity, transmission = clouds if clouds is not None else cloud_fields(
        surface.labels.shape, cover, pixel_size_m, sun, rng
    )
    shaded = replace(surface, direct=surface.direct * transmission)
    refl = render(shaded, OPTICAL.srf, OPTICAL.centres, PSF_SIGMA_PX)  # [B, H, W]
    refl = (1.0 - opacity[None]) * refl + opacity[None] * CLOUD_REFLECTANCE
    refl += noise * rng.standard_normal(refl.shape).astype(np.float32)
    return np.clip(np.round(refl * SCALE), 1, 65535).astype(np.uint16)


def cloud_mask(opacity: np.ndarray, transmission: np.ndarray) -> np.ndarray:
    """[H, W] uint8 cloud mask of the fields of `cloud_fields`: THICK_CLOUD where the opacity
    is at least THICK_MIN, else CLOUD_SHADOW where at least SHADOW_MIN of the direct sun is
    blocked, else THIN_CLOUD from THIN_MIN opacity, else CLEAR."""
    out = np.full(opacity.shape, CLEAR, np.uint8)
    out[opacity >= THIN_MIN] = THIN_CLOUD
    out[1.0 - transmission >= SHADOW_MIN] = CLOUD_SHADOW
    out[opacity >= THICK_MIN] = THICK_CLOUD
    return out


def scl_band(image: np.ndarray, opacity: np.ndarray, transmission: np.ndarray) -> np.ndarray:
    """[H, W] uint16 Sentinel-2-SCL-like codes. Clouds and shadows as `cloud_mask` (thick cloud
    split into SCL_CLOUD_HIGH from HIGH_PROB_MIN opacity and SCL_CLOUD_MEDIUM below; thin cloud
    is SCL_CIRRUS); elsewhere the surface is classed from the rendered `image` ([10, H, W]
    reflectance x 10000, OPTICAL bands) the way a scene classifier would, not from the labels:
    water where B8 < 0.05 and NDVI < 0.1, vegetation where NDVI > 0.4, else not vegetated."""
    red = image[OPTICAL.names.index("B4")].astype(np.float32) / SCALE
    nir = image[OPTICAL.names.index("B8")].astype(np.float32) / SCALE
    ndvi = (nir - red) / np.maximum(nir + red, 1e-6)
    out = np.full(opacity.shape, SCL_BARE, np.uint16)
    out[ndvi > 0.4] = SCL_VEGETATION
    out[(nir < 0.05) & (ndvi < 0.1)] = SCL_WATER
    mask = cloud_mask(opacity, transmission)
    out[mask == THIN_CLOUD] = SCL_CIRRUS
    out[mask == CLOUD_SHADOW] = SCL_SHADOW
    out[mask == THICK_CLOUD] = SCL_CLOUD_MEDIUM
    out[opacity >= HIGH_PROB_MIN] = SCL_CLOUD_HIGH
    return out
