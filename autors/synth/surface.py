"""Per-pixel surface reflectance for any band set: endmembers, variability, mixing, illumination.

A pixel's reflectance in band b is
    illum_b(p) * sum_k a_k(p) * (mean_kb + sum_j c_j(p) * pc_kjb)
with a_k the abundance of class k (the label map blurred by the sensor's point spread, so
boundary pixels are sub-pixel mixtures), c_j the variability coefficients (one value per
object plus a smooth field plus per-pixel jitter, in units of the class's measured standard
deviation) and illum_b from `illumination`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from autors.synth.fields import smooth_noise
from autors.synth.illumination import diffuse_fraction
from autors.synth.spectra import N_PCS, SpectralLibrary

# A 2 m pixel averages many leaves / grains: objects vary by about this fraction of the spread
# between single ASD measurements.
OBJECT_SPREAD = 0.6
FIELD_SPREAD = 0.3
PIXEL_SPREAD = 0.3


@dataclass(frozen=True)
class Surface:
    """What every passive optical sensor sees, independent of its bands."""

    labels: np.ndarray  # [H, W] 1..K
    coefs: np.ndarray  # [N_PCS, H, W] variability coefficients
    direct: np.ndarray  # [H, W] direct-sun factor: 0 in shadow, cos ratio on crowns, else 1
    library: SpectralLibrary


def variability(objects: np.ndarray, rng: np.random.Generator, scale_px: float) -> np.ndarray:
    """[N_PCS, H, W] coefficients: per-object value + smooth field + pixel jitter."""
    per_object = rng.standard_normal((int(objects.max()) + 1, N_PCS)) * OBJECT_SPREAD
    out = np.empty((N_PCS,) + objects.shape, np.float32)
    for j in range(N_PCS):
        out[j] = (
            per_object[objects, j]
            + FIELD_SPREAD * smooth_noise(objects.shape, scale_px, rng)
            + PIXEL_SPREAD * rng.standard_normal(objects.shape)
        )
    return out


def abundances(labels: np.ndarray, k: int, psf_sigma_px: float) -> np.ndarray:
    """[K, H, W] class fractions per pixel: one-hot labels blurred by a Gaussian PSF."""
    out = np.empty((k,) + labels.shape, np.float32)
    for c in range(k):
        out[c] = ndimage.gaussian_filter((labels == c + 1).astype(np.float32), psf_sigma_px)
    return out / out.sum(axis=0, keepdims=True)


def render(
    surface: Surface, srf: np.ndarray, centres_nm: np.ndarray, psf_sigma_px: float
) -> np.ndarray:
    """[B, H, W] float32 observed reflectance for bands with response `srf` [B, L]."""
    lib = surface.library
    k = len(lib.classes)
    h, w = surface.labels.shape
    means = np.stack([c.mean for c in lib.classes])  # [K, L]
    pcs = np.stack([c.pcs for c in lib.classes])  # [K, J, L]
    e_mean = srf @ means.T  # [B, K]
    e_pc = np.einsum("bl,kjl->bkj", srf, pcs).reshape(len(srf), k * N_PCS)  # [B, K*J]
    a = abundances(surface.labels, k, psf_sigma_px).reshape(k, -1)  # [K, HW]
    c = surface.coefs.reshape(N_PCS, -1)  # [J, HW]
    z = np.concatenate([a, (a[:, None, :] * c[None]).reshape(k * N_PCS, -1)])  # [K(1+J), HW]
    refl = (np.concatenate([e_mean, e_pc], axis=1).astype(np.float32) @ z).reshape(-1, h, w)
    f_diff = diffuse_fraction(centres_nm).astype(np.float32)[:, None, None]
    refl *= (1.0 - f_diff) * surface.direct[None] + f_diff
    return np.clip(refl, 0.0, None)
