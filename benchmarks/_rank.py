"""How well one ranking of architectures agrees with another: Kendall's tau-b (ties counted as
scipy does) with a bootstrap confidence interval over the architectures. Used by
`benchmarks/rank_correlation.py` to judge cheap estimators (the supernet's inherited-weight
accuracy, a first rung's accuracy) against stand-alone training."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import kendalltau


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of the paired values (NaN when either side is constant or n < 2)."""
    if len(x) != len(y):
        raise ValueError(f"paired values differ in length: {len(x)} and {len(y)}")
    if len(x) < 2:
        return math.nan
    return float(kendalltau(np.asarray(x, float), np.asarray(y, float), variant="b").statistic)


def bootstrap_tau(x: Sequence[float], y: Sequence[float], seed: int = 0, reps: int = 2000,
                  level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of `kendall_tau` (architectures resampled in pairs with
    replacement; resamples where tau is undefined are left out)."""
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(reps):
        i = rng.integers(len(xs), size=len(xs))
        t = kendall_tau(xs[i], ys[i])
        if not math.isnan(t):
            taus.append(t)
    if not taus:
        return math.nan, math.nan
    lo, hi = np.quantile(taus, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
