"""Class colours: one palette for the report's pictures and `autors predict --preview`, so a
class has the same colour wherever it is drawn. Colours follow the class index (the order of
the task's `labels.classes`), never the class name."""

from __future__ import annotations

import numpy as np

# 20 distinguishable colours (Tableau 10, then its lighter companions); more classes cycle.
_HEX = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#1f77b4", "#aec7e8", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#dbdb8d", "#9edae5", "#393b79",
)
NO_CLASS = (255, 255, 255)  # pixels with no class (unlabelled, nodata)


def class_hex(index: int) -> str:
    """`#rrggbb` of class `index`."""
    return _HEX[index % len(_HEX)]


def class_rgb(n: int) -> np.ndarray:
    """uint8 [n, 3]: the colour of each of `n` classes."""
    return np.array([hex_rgb(class_hex(i)) for i in range(n)], np.uint8).reshape(n, 3)


def hex_rgb(colour: str) -> tuple[int, int, int]:
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def paint(classes: np.ndarray, n: int) -> np.ndarray:
    """uint8 [H, W, 3] of a class index map (values outside 0..n-1: NO_CLASS, white)."""
    out = np.empty(classes.shape + (3,), np.uint8)
    out[:] = NO_CLASS
    inside = (classes >= 0) & (classes < n)
    out[inside] = class_rgb(n)[classes[inside]]
    return out
