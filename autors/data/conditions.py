"""Imaging conditions for robustness evaluation: a sensor removed, or seeded cloud cover over
the passive optical sensors. A condition wraps a source, so the same samples (same pixels,
same ids) are evaluated under every condition and rows compare on identical pixels.

Clouds are regions, not scattered pixels: per scene, a smooth seeded random field thresholded
at its (1 - cover) quantile, so exactly `cover` of the scene is clouded; clouded pixels of an
optical sensor read as invalid (values 0, mask 0), as a real cloud mask would make them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from autors.config import SensorKind
from autors.data.sources import crop
from fusion import CLOUDED_KINDS, MASK_SUFFIX

_CLOUD_CELL = 16  # px: the correlation length of the cloud field


@dataclass(frozen=True)
class Condition:
    """`removed`: sensors absent everywhere; `cloud_cover` (0..1) over `clouded` sensors."""

    name: str
    removed: tuple[str, ...] = ()
    cloud_cover: float = 0.0
    clouded: tuple[str, ...] = ()
    seed: int = 0


def standard_conditions(sensors: dict[str, SensorKind], covers=(0.1, 0.3, 0.6),
                        seed: int = 0) -> list[Condition]:
    """Clean; each sensor removed (when there are several); cloud cover of `covers` over the
    optical sensors (when there are some)."""
    out = [Condition("clean")]
    if len(sensors) > 1:
        out += [Condition(f"without_{name}", removed=(name,)) for name in sensors]
    optical = tuple(n for n, kind in sensors.items() if kind in CLOUDED_KINDS)
    if optical:
        out += [Condition(f"cloud_{round(c * 100)}", cloud_cover=c, clouded=optical, seed=seed)
                for c in covers]
    return out


class ConditionedSource:
    """A source whose windows are seen under `condition`."""

    def __init__(self, source, condition: Condition, shapes: list[tuple[int, int]]) -> None:
        self.source = source
        self.condition = condition
        self.shapes = shapes  # per scene (H, W): cloud fields are made on the scene's grid
        self._fields: dict[int, np.ndarray] = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fields"] = {}
        return state

    def window(self, scene: int, r0: int, c0: int, size: int) -> dict[str, np.ndarray]:
        out = self.source.window(scene, r0, c0, size)
        c = self.condition
        for name in c.removed:
            out[name] = np.zeros_like(out[name])
            out[name + MASK_SUFFIX] = np.zeros_like(out[name + MASK_SUFFIX])
        if c.cloud_cover > 0:
            clear = ~crop(self._clouds(scene), r0, c0, size, False)
            for name in c.clouded:
                out[name] = out[name] * clear
                out[name + MASK_SUFFIX] = out[name + MASK_SUFFIX] * clear
        return out

    def _clouds(self, scene: int) -> np.ndarray:
        if scene not in self._fields:
            self._fields[scene] = cloud_field(self.shapes[scene], self.condition.cloud_cover,
                                              self.condition.seed, scene)
        return self._fields[scene]


def cloud_field(shape: tuple[int, int], cover: float, seed: int, scene: int) -> np.ndarray:
    """Bool [H, W], True on `cover` of the pixels, in smooth blobs; seeded per (seed, scene),
    and nested: a larger cover clouds a superset of a smaller one's pixels."""
    h, w = shape
    rng = np.random.default_rng([seed, scene, 17])
    coarse = rng.standard_normal((h // _CLOUD_CELL + 2, w // _CLOUD_CELL + 2)).astype(np.float32)
    field = torch.nn.functional.interpolate(
        torch.from_numpy(coarse)[None, None], scale_factor=_CLOUD_CELL, mode="bicubic",
        align_corners=False)[0, 0, :h, :w].numpy()
    threshold = np.quantile(field, 1.0 - cover)
    return field > threshold
