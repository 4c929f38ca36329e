"""Spatially disjoint sparse train labels and a dense test set.

The scene is cut into square blocks. A checkerboard of blocks is tried first (both parities);
when a class is then missing from either side, random block assignments (about half each,
seeded) are tried and the one leaving the most pixels of the rarest class on both sides wins.
Pixels closer than patch_size // 2 to a boundary between blocks are left out of both sides, so
no training patch overlaps a test patch. As in the benchmark ground truths, only pixels inside
homogeneous areas (their 3 x 3 neighbourhood is one class) are labelled in train and test:
one-pixel sidewalks, verges and canopy gaps are mixtures that no sensor can classify. train.tif holds `n_per_class` random pixels per class
from the train blocks, spread over the objects (fields, buildings, crowns) rather than
proportional to their area, so one large object does not hold a class's whole training set;
test.tif holds every remaining labelled pixel of the test blocks. With `n_val_per_class`, about
a third of the train blocks become validation blocks (seeded; the assignment that leaves the
most pixels of the rarest class in validation wins) and val.tif holds up to that many pixels per
class from them, sampled like the training pixels: validation large enough to tell candidates
apart, without touching the training set's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

RANDOM_TRIES = 64


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # [H, W] uint8, 0 = unlabelled
    test: np.ndarray  # [H, W] uint8, 0 = unlabelled
    val: np.ndarray | None  # [H, W] uint8, 0 = unlabelled; None: validation is carved later
    train_blocks: np.ndarray  # [nby, nbx] bool
    description: str


def _interior(size: int, block: int, margin: int) -> np.ndarray:
    """[size] bool: positions at least `margin` from a boundary between two blocks."""
    pos = np.arange(size)
    local = pos % block
    first = pos < block
    last = (pos // block + 1) * block >= size
    return ((local >= margin) | first) & ((block - 1 - local >= margin) | last)


def _pure(labels: np.ndarray, k: int) -> np.ndarray:
    """[H, W] bool: the pixel and its 8 neighbours share one class."""
    out = np.zeros(labels.shape, bool)
    box = np.ones((3, 3), bool)
    for c in range(1, k + 1):
        out |= ndimage.binary_erosion(labels == c, structure=box, border_value=1)
    return out


def _counts(labels: np.ndarray, side: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(labels[side], minlength=k + 1)[1:]


def make_split(
    labels: np.ndarray,
    objects: np.ndarray,
    k: int,
    block: int,
    margin: int,
    n_per_class: int,
    rng: np.random.Generator,
    n_val_per_class: int | None = None,
) -> Split:
    """Assign blocks to train/test, then sample the sparse train pixels."""
    h, w = labels.shape
    nby, nbx = -(-h // block), -(-w // block)
    interior = _interior(h, block, margin)[:, None] & _interior(w, block, margin)[None, :]
    interior &= _pure(labels, k)
    by, bx = np.arange(h)[:, None] // block, np.arange(w)[None, :] // block

    def sides(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        train_px = blocks[by, bx]
        return interior & train_px, interior & ~train_px

    def score(blocks: np.ndarray) -> tuple[bool, int]:
        tr, te = sides(blocks)
        ctr, cte = _counts(labels, tr, k), _counts(labels, te, k)
        enough = bool((ctr >= n_per_class).all() and (cte >= n_per_class).all())
        return enough, int(min(ctr.min(), cte.min()))

    board = (np.arange(nby)[:, None] + np.arange(nbx)[None, :]) % 2 == 0
    candidates = [("a checkerboard", board), ("a checkerboard", ~board)]
    best_name, best = max(candidates, key=lambda c: score(c[1]))
    if not score(best)[0]:
        for _ in range(RANDOM_TRIES):
            blocks = rng.random((nby, nbx)) < 0.5
            if blocks.all() or not blocks.any():
                continue
            if score(blocks) > score(best):
                best_name, best = "a random assignment", blocks
    tr_side, te_side = sides(best)
    val, val_note = None, ""
    if n_val_per_class:
        val_blocks = _val_blocks(best, labels, tr_side, by, bx, k, n_per_class, rng)
        va_side = tr_side & val_blocks[by, bx]
        tr_side = tr_side & ~val_blocks[by, bx]
        val = _sample(labels, objects, va_side, k, n_val_per_class, rng)
        val_note = f", {int(val_blocks.sum())} of the train blocks for validation"
    train = _sample(labels, objects, tr_side, k, n_per_class, rng)
    test = np.where(te_side, labels, 0).astype(labels.dtype)
    desc = (
        f"{best_name} of {block}x{block}-pixel blocks ({int(best.sum())} train, "
        f"{int((~best).sum())} test{val_note}); pixels within {margin} of a block boundary or on "
        "a class boundary (3x3 not one class) are in neither"
    )
    return Split(train=train, test=test, val=val, train_blocks=best, description=desc)


def _sample(labels: np.ndarray, objects: np.ndarray, side: np.ndarray, k: int, n: int,
            rng: np.random.Generator) -> np.ndarray:
    """Up to `n` pixels per class of `side`, spread over the objects (each object equally
    likely, then a pixel within it)."""
    out = np.zeros_like(labels)
    for c in range(1, k + 1):
        idx = np.flatnonzero((labels == c) & side)
        if idx.size == 0:
            continue  # reported by the caller (SceneInfo counts)
        _, inverse, sizes = np.unique(objects.flat[idx], return_inverse=True, return_counts=True)
        weight = 1.0 / sizes[inverse]
        pick = rng.choice(idx, size=min(n, len(idx)), replace=False, p=weight / weight.sum())
        out.flat[pick] = c
    return out


def _val_blocks(train_blocks: np.ndarray, labels: np.ndarray, tr_side: np.ndarray,
                by: np.ndarray, bx: np.ndarray, k: int, n_train: int,
                rng: np.random.Generator) -> np.ndarray:
    """[nby, nbx] bool: about a third of the train blocks, chosen so that training keeps
    `n_train` pixels of every class where it can and validation holds the most pixels of its
    rarest class."""
    ids = np.argwhere(train_blocks)
    n_val = max(1, len(ids) // 3)
    best, best_score = None, None
    for _ in range(RANDOM_TRIES):
        blocks = np.zeros_like(train_blocks)
        chosen = ids[rng.permutation(len(ids))[:n_val]]
        blocks[chosen[:, 0], chosen[:, 1]] = True
        in_val = blocks[by, bx]
        ctr = _counts(labels, tr_side & ~in_val, k)
        cva = _counts(labels, tr_side & in_val, k)
        score = (bool((ctr >= n_train).all()), int(cva.min()), int(cva.sum()))
        if best_score is None or score > best_score:
            best, best_score = blocks, score
    return best
