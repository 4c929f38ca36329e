"""The ground truth world: a road grid, parcels with a land use each, buildings, tree crowns.

Parcels are painted one at a time; each takes the land use whose main class has the least area
so far, so the classes stay roughly balanced. Lengths are chosen in metres and converted to
pixels, so the layout looks the same at any `pixel_size_m`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from autors.synth.catalogue import CLASS_IDS, remap_table
from autors.synth.fields import smooth_noise

C = CLASS_IDS  # catalogue ids; remapped to the active classes at the end
# Blocks between roads are cut into parcels of at most this side squared: several land uses
# per block, so every class has several objects even in a 128 x 128 scene.
PARCEL_SIDE_M = 50.0


@dataclass(frozen=True)
class Layout:
    """The true scene on the label grid."""

    labels: np.ndarray  # [H, W] uint8, 1..K (no 0: every pixel has a class)
    objects: np.ndarray  # [H, W] int32, one id per field / building / crown / pond ...
    height: np.ndarray  # [H, W] float32, true height above ground (nDSM) in metres
    uses: tuple[str, ...]  # land use of each parcel, for the record


class _Canvas:
    """Mutable painting state."""

    def __init__(self, size: int, pixel_size_m: float, rng: np.random.Generator) -> None:
        self.labels = np.full((size, size), C["grass"], np.uint8)
        self.objects = np.zeros((size, size), np.int32)
        self.height = np.zeros((size, size), np.float32)
        self.rng = rng
        self.m = 1.0 / pixel_size_m  # pixels per metre
        self._next = [1]  # shared with views

    def view(self, rows: slice, cols: slice) -> _Canvas:
        """A canvas painting into a window of this one (arrays are views)."""
        sub = object.__new__(_Canvas)
        sub.labels, sub.objects = self.labels[rows, cols], self.objects[rows, cols]
        sub.height, sub.rng, sub.m, sub._next = self.height[rows, cols], self.rng, self.m, self._next
        return sub

    def new_object(self) -> int:
        self._next[0] += 1
        return self._next[0]

    def px(self, metres: float) -> int:
        return max(1, round(metres * self.m))

    def fill(self, where: np.ndarray, cls: str, height: float | np.ndarray = 0.0) -> int:
        """Paint `where` as one new object of class `cls`."""
        oid = self.new_object()
        self.labels[where] = C[cls]
        self.objects[where] = oid
        self.height[where] = height if np.isscalar(height) else height[where]
        return oid

    def crown(self, cy: float, cx: float, radius: float, top: float, cls: str) -> None:
        """A tree crown: paraboloid from `top` at the centre to top/2 at `radius` (pixels)."""
        h, w = self.labels.shape
        r = int(np.ceil(radius))
        y0, y1, x0, x1 = max(0, int(cy) - r), min(h, int(cy) + r + 2), max(0, int(cx) - r), min(
            w, int(cx) + r + 2
        )
        if y0 >= y1 or x0 >= x1:
            return
        dy = np.arange(y0, y1)[:, None] + 0.5 - cy  # broadcast: the values of a full mgrid
        dx = np.arange(x0, x1)[None, :] + 0.5 - cx
        d = np.hypot(dy, dx) / radius
        prof = np.where(d <= 1.0, top * (1.0 - 0.5 * d**2), -1.0)
        win = prof > self.height[y0:y1, x0:x1]
        oid = self.new_object()
        self.height[y0:y1, x0:x1][win] = prof[win]
        self.labels[y0:y1, x0:x1][win] = C[cls]
        self.objects[y0:y1, x0:x1][win] = oid


def _roads(cv: _Canvas, size: int) -> np.ndarray:
    """A jittered road grid, some segments missing (merged blocks); returns the road mask."""
    rng = cv.rng
    spacing = min(cv.px(80.0), size / 3.2)
    mask = np.zeros((size, size), bool)

    def lines() -> list[tuple[int, int]]:
        out, pos = [], rng.uniform(0.3, 0.9) * spacing
        while pos < size - 0.3 * spacing:
            w = cv.px(rng.uniform(7.0, 12.0))
            out.append((int(pos), w))
            pos += spacing * rng.uniform(0.8, 1.25)
        return out

    rows, cols = lines(), lines()
    for y, w in rows:
        mask[y : y + w, :] = True
    cuts = [0] + [y for y, _ in rows] + [size]
    for x, w in cols:
        for a, b in itertools.pairwise(cuts):
            if rng.random() > 0.2:  # a missing segment merges two blocks
                mask[a:b, x : x + w] = True
    cv.fill(mask, "road")
    return mask


Parcel = tuple[tuple[slice, slice], np.ndarray]  # window, mask inside the window


def _split(win: tuple[slice, slice], m: np.ndarray, max_area: int, rng: np.random.Generator,
           out: list[Parcel]) -> None:
    """Cut `m` across its long side until every piece is at most `max_area` pixels."""
    if m.sum() <= max_area:
        ys, xs = np.nonzero(m)
        if len(ys):  # shrink the window to the piece
            r0, c0 = win[0].start + ys.min(), win[1].start + xs.min()
            tight = (slice(r0, r0 + np.ptp(ys) + 1), slice(c0, c0 + np.ptp(xs) + 1))
            out.append((tight, m[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]))
        return
    ys, xs = np.nonzero(m)
    if np.ptp(ys) >= np.ptp(xs):
        cut, coord = np.quantile(ys, rng.uniform(0.35, 0.65)), np.arange(m.shape[0])[:, None]
    else:
        cut, coord = np.quantile(xs, rng.uniform(0.35, 0.65)), np.arange(m.shape[1])[None, :]
    _split(win, m & (coord < cut), max_area, rng, out)
    _split(win, m & (coord >= cut), max_area, rng, out)


def _parcels(road: np.ndarray, max_area: int, rng: np.random.Generator) -> list[Parcel]:
    """Connected non-road areas, cut into parcels of at most `max_area` pixels."""
    lab, _ = ndimage.label(~road)
    out: list[Parcel] = []
    for i, win in enumerate(ndimage.find_objects(lab)):
        if win is not None:
            _split(win, lab[win] == i + 1, max_area, rng, out)
    return [p for p in out if p[1].sum() >= 12]


# ---- land uses ---------------------------------------------------------------------------------


def _free_spots(cv: _Canvas, mask: np.ndarray, n: int) -> list[tuple[float, float]]:
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return []
    idx = cv.rng.choice(len(ys), size=min(n, len(ys)), replace=False)
    return [(ys[i] + 0.5, xs[i] + 0.5) for i in idx]


def _trees(cv: _Canvas, mask: np.ndarray, n: int, species: tuple[str, ...]) -> None:
    for cy, cx in _free_spots(cv, mask, n):
        cv.crown(cy, cx, cv.m * cv.rng.uniform(2.5, 5.0), cv.rng.uniform(8.0, 20.0),
                 str(cv.rng.choice(species)))


def _patches(
    cv: _Canvas, mask: np.ndarray, cover: float, scale_m: float, cls: str, hmin: float, hmax: float
) -> None:
    """Blobs over about `cover` of `mask`, each blob an object with its own height."""
    field = smooth_noise(mask.shape, cv.m * scale_m, cv.rng)
    vals = field[mask]
    if vals.size == 0:
        return
    lab, n = ndimage.label(mask & (field > np.quantile(vals, 1.0 - cover)))
    for i in range(1, n + 1):
        cv.fill(lab == i, cls, cv.rng.uniform(hmin, hmax))


def _pond(cv: _Canvas, mask: np.ndarray) -> None:
    inner = ndimage.distance_transform_edt(mask)
    shape = inner / max(float(inner.max()), 1.0) + 0.35 * smooth_noise(mask.shape, cv.m * 30, cv.rng)
    water = mask & (shape > 0.3) & (inner >= 1.5)
    if not water.any():
        water = mask & (inner >= inner.max())
    cv.fill(mask & ~water, "grass", 0.1)
    cv.fill(water, "water")


def _field(cls: str) -> Callable[[_Canvas, np.ndarray], None]:
    def paint(cv: _Canvas, mask: np.ndarray) -> None:
        edge = mask & ~ndimage.binary_erosion(mask)
        if cv.rng.random() < 0.5:  # a grass verge along the road
            cv.fill(edge, "grass", 0.1)
            mask = mask & ~edge
        cv.fill(mask, cls)

    return paint


def _forest(species: str) -> Callable[[_Canvas, np.ndarray], None]:
    def paint(cv: _Canvas, mask: np.ndarray) -> None:
        cv.fill(mask, "grass", 0.2)  # understory seen through canopy gaps
        area_per_crown = np.pi * (cv.m * 3.5) ** 2
        n = int(mask.sum() / area_per_crown * 2.5) + 1
        inner = ndimage.binary_erosion(mask)
        _trees(cv, inner if inner.any() else mask, n, (species,))

    return paint


def _residential(cv: _Canvas, mask: np.ndarray) -> None:
    ring = mask & ~ndimage.binary_erosion(mask)
    cv.fill(mask & ~ring, "grass", 0.1)
    cv.fill(ring, "concrete")  # sidewalk
    free = ndimage.binary_erosion(mask, iterations=cv.px(4.0))
    for _ in range(int(cv.rng.integers(2, 6))):
        hgt, wid = cv.px(cv.rng.uniform(10, 30)), cv.px(cv.rng.uniform(10, 30))
        ys, xs = np.nonzero(free)
        if len(ys) == 0:
            break
        for _try in range(20):
            i = int(cv.rng.integers(len(ys)))
            y, x = ys[i], xs[i]
            inside = y + hgt <= mask.shape[0] and x + wid <= mask.shape[1]
            if inside and free[y : y + hgt, x : x + wid].all():
                box = np.zeros_like(mask)
                box[y : y + hgt, x : x + wid] = True
                cv.fill(box, "roof", cv.rng.uniform(4.0, 16.0))
                free &= ~ndimage.binary_dilation(box, iterations=cv.px(4.0))
                break
    garden = mask & ~ring & (cv.labels == C["grass"])
    _patches(cv, garden, 0.2, 8.0, "concrete", 0.0, 0.0)  # yards and driveways
    garden &= cv.labels == C["grass"]
    _patches(cv, garden, 0.15, 6.0, "shrub", 0.8, 2.5)
    _trees(cv, garden, int(cv.rng.integers(1, 4)), ("oak", "maple"))


def _plaza(cv: _Canvas, mask: np.ndarray) -> None:
    cv.fill(mask, "concrete")
    _trees(cv, ndimage.binary_erosion(mask, iterations=2), max(1, int(mask.sum() / 250)),
           ("oak", "maple"))


def _shrubland(cv: _Canvas, mask: np.ndarray) -> None:
    cv.fill(mask, "grass", 0.15)
    _patches(cv, mask, 0.65, 12.0, "shrub", 0.8, 2.5)


def _park(cv: _Canvas, mask: np.ndarray) -> None:
    cv.fill(mask, "grass", 0.1)
    _trees(cv, mask, max(1, int(mask.sum() / 300)), ("oak", "maple"))


USES: dict[str, tuple[str, Callable[[_Canvas, np.ndarray], None]]] = {
    "pond": ("water", _pond),
    "residential": ("roof", _residential),
    "park": ("grass", _park),
    "forest_oak": ("oak", _forest("oak")),
    "forest_maple": ("maple", _forest("maple")),
    "field_smooth": ("soil_smooth", _field("soil_smooth")),
    "field_rough": ("soil_rough", _field("soil_rough")),
    "plaza": ("concrete", _plaza),
    "shrubland": ("shrub", _shrubland),
}


def make_layout(
    size: int,
    pixel_size_m: float,
    k: int,
    rng: np.random.Generator,
    weights: dict[str, float] | None = None,
) -> Layout:
    """Paint a `size` x `size` world with the first `k` catalogue classes.

    `weights` (land use -> relative share, default 1 each) skews the balancing: a use's main
    class then covers about its weight's share of the area (a use missing from it weighs 1).
    """
    cv = _Canvas(size, pixel_size_m, rng)
    road = _roads(cv, size)
    parcels = _parcels(road, cv.px(PARCEL_SIDE_M) ** 2, rng)
    uses = [u for u, (primary, _) in USES.items() if C[primary] <= k]
    chosen: list[str] = []
    counts = np.zeros(len(C) + 1, np.int64)
    for i in rng.permutation(len(parcels)):
        (rows, cols), mask = parcels[i]
        # least-painted main class first; the jitter breaks ties and varies the choice
        score = [counts[C[USES[u][0]]] * rng.uniform(0.9, 1.1) for u in uses]
        if weights is not None:
            score = [s / weights.get(u, 1.0) for s, u in zip(score, uses, strict=True)]
        use = uses[int(np.argmin(score))]
        sub = cv.view(rows, cols)
        USES[use][1](sub, mask)
        counts += np.bincount(sub.labels[mask], minlength=len(C) + 1)
        chosen.append(use)
    table = np.zeros(len(C) + 1, np.uint8)
    for cat, act in remap_table(k).items():
        table[cat] = act
    return Layout(
        labels=table[cv.labels],
        objects=cv.objects,
        height=cv.height,
        uses=tuple(chosen),
    )
