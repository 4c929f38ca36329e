"""Airborne hyperspectral cube, 400-1000 nm, flown below the clouds.

Sub-pixel mixing comes from a wider PSF than the optical sensor's; a few bands (detector
edges, the 940 nm water-vapour absorption) are noisy and one of them is striped. Written as
reflectance x 10000 in int16 (negative values occur in the noisy bands; -32768 = nodata).
"""

from __future__ import annotations

import numpy as np

from autors.synth.bands import BandSet, noisy_hsi_bands
from autors.synth.surface import Surface, render

NOISE = 0.004
NOISY_BAND_NOISE = 0.04
STRIPE_NOISE = 0.02
PSF_SIGMA_PX = 0.7
SCALE = 10000.0
NODATA = -32768


def simulate(surface: Surface, bands: BandSet, rng: np.random.Generator) -> np.ndarray:
    """[B, H, W] int16 reflectance x 10000."""
    refl = render(surface, bands.srf, bands.centres, PSF_SIGMA_PX)  # [B, H, W]
    sigma = np.full(len(bands.names), NOISE, np.float32)
    noisy = noisy_hsi_bands(bands)
    sigma[noisy] = NOISY_BAND_NOISE
    refl += sigma[:, None, None] * rng.standard_normal(refl.shape).astype(np.float32)
    if len(noisy):
        # push-broom detector: one noisy band gets a per-column offset (stripes along track)
        refl[noisy[-1]] += STRIPE_NOISE * rng.standard_normal(refl.shape[2]).astype(np.float32)
    return np.clip(np.round(refl * SCALE), NODATA + 1, 32767).astype(np.int16)
