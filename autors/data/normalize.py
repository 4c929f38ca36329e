"""Per-band normalisation statistics, computed from training pixels only.

They are plain data (`to_dict`/`from_dict`) because they travel with exported models: a model
applied to new GeoTIFFs must see its inputs normalised exactly as in training.

A complex sensor (real/imaginary channel pairs) gets mean 0 and one scale per pair
(`pair_scales`): subtracting per-channel means or scaling the two parts apart would change
every phase.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autors.data.scene import Scene
from autors.errors import DataError

# Bands per chunk when gathering training pixels: bounds the float64 copy to 8 x N values.
_BAND_CHUNK = 8


@dataclass
class NormStats:
    """Mean and standard deviation per sensor and band (a constant band gets std 1)."""

    mean: dict[str, list[float]]
    std: dict[str, list[float]]

    @classmethod
    def compute(cls, scene: Scene, mask: np.ndarray) -> NormStats:
        """Statistics over pixels in `mask` (bool [H, W], the training pixels) where the
        sensor is valid."""
        mean, std = {}, {}
        for name, stack in scene.sensors.items():  # [C, H, W]
            use = mask & scene.sensor_valid[name]
            if not use.any():
                raise DataError(
                    f"sensor '{name}' has no valid pixel among the training pixels, so it "
                    "cannot be normalised; check its nodata value and coverage"
                )
            m, s = [], []
            for c0 in range(0, stack.shape[0], _BAND_CHUNK):
                values = stack[c0 : c0 + _BAND_CHUNK][:, use].astype(np.float64)  # [c, N]
                m.extend(values.mean(axis=1).tolist())
                s.extend(values.std(axis=1).tolist())
            mean[name] = m
            # A constant band carries no information; std 1 keeps it finite (it becomes 0).
            std[name] = [v if np.isfinite(v) and v > 0 else 1.0 for v in s]
        return cls(mean=mean, std=std)

    def apply(
        self, sensors: dict[str, np.ndarray], valid: dict[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """Normalised float32 copies of `sensors` ([C, H, W] each); pixels where `valid[name]`
        is False become 0 (the training mean). A time series ([T * C, H, W], `valid[name]`
        [T, H, W]: `autors.data.timeseries`) is normalised date by date with its bands'
        statistics."""
        out = {}
        for name, stack in sensors.items():
            if name not in self.mean:
                raise DataError(
                    f"no normalisation statistics for sensor '{name}' (have: {sorted(self.mean)})"
                )
            if valid is not None and valid[name].ndim == 3:
                steps = valid[name].shape[0]
                dated = stack.reshape(steps, -1, *stack.shape[1:])
                parts = [self.apply({name: dated[t]}, {name: valid[name][t]})[name]
                         for t in range(steps)]
                out[name] = np.concatenate(parts, axis=0) if parts else stack.copy()
                continue
            if stack.shape[0] != len(self.mean[name]):
                raise DataError(
                    f"sensor '{name}' has {stack.shape[0]} bands but its statistics have "
                    f"{len(self.mean[name])}; give the same bands as in training"
                )
            mean = np.asarray(self.mean[name], np.float32)[:, None, None]
            std = np.asarray(self.std[name], np.float32)[:, None, None]
            norm = stack - mean  # new float32 array [C, H, W]
            norm /= std
            if valid is not None:
                np.copyto(norm, np.float32(0.0), where=~valid[name][None])
            out[name] = norm
        return out

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, data: dict) -> NormStats:
        return cls(
            mean={k: [float(v) for v in vs] for k, vs in data["mean"].items()},
            std={k: [float(v) for v in vs] for k, vs in data["std"].items()},
        )


def pair_scales(mean: Sequence[float], std: Sequence[float]) -> list[float]:
    """One scale per complex pair from per-channel moments: the root mean square of the two
    parts, sqrt((E[re^2] + E[im^2]) / 2) = sqrt(|z|^2 / 2) over training pixels (1 for a pair
    that is always 0). With offset 0 and the same scale for both parts, normalisation
    multiplies every complex value by one positive real number: phases (and phase differences
    between pairs) are untouched, and a circular complex Gaussian gets unit-variance parts."""
    out = []
    for k in range(0, len(mean), 2):
        ms = (mean[k] ** 2 + std[k] ** 2 + mean[k + 1] ** 2 + std[k + 1] ** 2) / 2
        s = float(np.sqrt(ms))
        out.extend([s, s] if np.isfinite(s) and s > 0 else [1.0, 1.0])
    return out
