"""Sentinel-2-like multispectral image with clouds and cloud shadows.

Clouds are a fractal optical-thickness field; a cloud's shadow falls `CLOUD_HEIGHT_M /
tan(sun elevation)` away from it, opposite the sun, so shadows come from clouds partly
outside the scene. Written as reflectance x 10000 in uint16 (0 = nodata, never produced).
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
