"""Random spatial fields shared by the layout and the sensor models."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def smooth_noise(shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std random field [H, W] with features about `scale` pixels wide."""
    scale = max(scale, 1.0)
    low = (int(np.ceil(shape[0] / scale)) + 3, int(np.ceil(shape[1] / scale)) + 3)
    coarse = rng.standard_normal(low)
    field = ndimage.zoom(coarse, scale, order=3, mode="nearest")[: shape[0], : shape[1]]
    field = field - field.mean()
    return (field / (field.std() + 1e-12)).astype(np.float32)


def fractal_noise(
    shape: tuple[int, int], largest: float, rng: np.random.Generator, octaves: int = 4
) -> np.ndarray:
    """Sum of `octaves` smooth fields, halving the scale and the amplitude each time; unit std."""
    total = np.zeros(shape, np.float32)
    for i in range(octaves):
        total += 0.5**i * smooth_noise(shape, largest / 2**i, rng)
    return total / (total.std() + 1e-12)
