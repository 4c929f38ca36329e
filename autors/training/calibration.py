"""Calibrated probabilities and conformal prediction sets, fitted on the validation split.

    cal = calibrate(model, data, batch_size)    # -> Calibration (fits on validation only)
    check = CalibrationCheck(cal)               # streamed over the test split's logits:
    evaluate(model, data, "test", on_logits=check.add); check.result()

**Temperature scaling** (Guo et al. 2017): one scalar T > 0 divides every logit, so the class
ranking (and every accuracy figure) is unchanged and only the confidence moves. T minimises the
mean negative log-likelihood of the validation pixels' logits (cached once after training: no
retraining). The NLL is convex in 1/T, hence unimodal in log T: a golden-section search on
log T within TEMPERATURE_BOUNDS finds it to float precision. When the minimum sits at a bound
the validation pixels support no temperature (typically: not one of them is wrong, so the NLL
keeps falling as T -> 0 and any T would make the model overconfident); T is then 1, the raw
softmax, and `val.at_bound` says so. For dense tasks every labelled validation pixel counts (a
seeded subset of MAX_PIXELS when there are more).

**Split-conformal prediction sets** with the LAC score (least ambiguous set-valued classifier,
Sadinle et al. 2019): the score of a pixel is s = 1 - p_true, p the calibrated probabilities;
the set at error rate alpha holds every class k with 1 - p_k <= q(alpha), where q(alpha) is the
ceil((n + 1)(1 - alpha))-th smallest of the n validation scores (the finite-sample correction;
beyond n: every class). If validation and test pixels are exchangeable, a test pixel's true
class is in its set with probability >= 1 - alpha. LAC was chosen over APS because it gives the
smallest sets on average among sets with that marginal guarantee, and its set is a threshold on
the probabilities predict already computes (APS adds randomisation to be exact and gives larger
sets; its better class-conditional behaviour matters less for these few-class maps). LAC sets
can be empty (no class reaches 1 - q): that is how it keeps coverage near 1 - alpha when the
model is more accurate than that; the share of empty sets is reported. q is recorded for every
alpha of CONFORMAL_ALPHAS (0.01..0.30), so predict can use any of them.

Caveats that hold here: the validation split also chose the training epoch (early stopping),
so it is not perfectly independent of the model, and neighbouring pixels are correlated, so the
guarantee is marginal over pixels of scenes like the validation ones, not per scene. That is
why the test coverage is measured and reported beside it.

The test split is never used to fit anything here: `CalibrationCheck` only measures (ECE and
NLL before/after, reliability bins, coverage and set size at REPORTED_ALPHAS, the AUROC of the
predictive entropy for finding errors).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from autors.data import PreparedData
from autors.training.evaluate import predict_split

TEMPERATURE_BOUNDS = (0.05, 20.0)
GOLDEN_STEPS = 60  # the bracket shrinks by 0.618 per step: ~1e-12 of log T at the end
ECE_BINS = 15  # as `metrics.expected_calibration_error`
MAX_PIXELS = 1_000_000  # validation logits kept to fit T and the conformal quantiles
CONFORMAL_ALPHAS = tuple(round(0.01 * i, 2) for i in range(1, 31))  # 0.01 .. 0.30
REPORTED_ALPHAS = (0.05, 0.1, 0.2)  # test coverage measured and shown in the model card
SAMPLE_STREAM = 21  # seeds the validation subset when there are over MAX_PIXELS pixels


class TemperatureScaled(nn.Module):
    """`model` whose logits are divided by `temperature` (what export compiles and predict
    runs): softmax of its output is the calibrated probabilities. TorchScript and ONNX keep
    the division."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.model = model
        self.reduction = int(getattr(model, "reduction", 1))  # a dense model's output stride
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        return self.model(x) / self.temperature


@dataclass(frozen=True)
class Calibration:
    """What `calibrate` fitted on the validation split (plain data: metrics.json
    `calibration`).

    temperature: T; val: {nll_before, nll_after, ece_before, ece_after, pixels, at_bound
    (the NLL's minimum lay at a bound of TEMPERATURE_BOUNDS: T = 1 instead)};
    conformal: {score: "lac", alphas, quantiles (q per alpha), n (validation pixels)}."""

    temperature: float
    val: dict[str, Any]
    conformal: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls(temperature=float(d["temperature"]), val=dict(d["val"]),
                   conformal=dict(d["conformal"]))

    def quantile(self, alpha: float) -> float:
        """q(alpha) of the recorded grid; ValueError naming the grid for another alpha."""
        return conformal_quantile(self.conformal["alphas"], self.conformal["quantiles"], alpha)


def conformal_quantile(alphas: list[float], quantiles: list[float], alpha: float) -> float:
    """The recorded q of `alpha` (matched to 1e-9); ValueError listing the grid otherwise."""
    for a, q in zip(alphas, quantiles):
        if abs(a - alpha) <= 1e-9:
            return float(q)
    raise ValueError(f"alpha {alpha:g} is not among the recorded conformal error rates "
                     f"{', '.join(f'{a:g}' for a in alphas)}: use one of them")


# ---- the numbers ------------------------------------------------------------------------
def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of `logits / temperature` [N, K], float64."""
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, target: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of `target` [N] under softmax(logits / T) [N, K]."""
    z = np.asarray(logits, np.float64) / temperature
    top = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(lse - z[np.arange(len(z)), target]))


def fit_temperature(logits: np.ndarray, target: np.ndarray,
                    bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> tuple[float, bool]:
    """(T minimising `nll(logits, target, T)` within `bounds`, whether T sits at a bound):
    golden-section search on log T (the NLL is convex in 1/T, so unimodal in log T)."""
    if len(target) == 0:
        raise ValueError("no labelled pixel to fit the temperature on")
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = (nll(logits, target, math.exp(u)) for u in (a, b))
    for _ in range(GOLDEN_STEPS):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(logits, target, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(logits, target, math.exp(b))
    t = math.exp((lo + hi) / 2)
    # the end points: a minimum at a bound is where the search converges
    at_bound = min(abs(math.log(t) - math.log(x)) for x in bounds) < 1e-6
    return t, at_bound


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, confidence sum, correct sum) per equal-width bin on (0, 1], the binning of
    `metrics.expected_calibration_error` (bin b holds (b/n, (b+1)/n]; 0 goes to bin 0)."""
    confidence = np.asarray(confidence, np.float64).reshape(-1)
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    return (np.bincount(bins, minlength=n_bins).astype(np.float64),
            np.bincount(bins, weights=confidence, minlength=n_bins),
            np.bincount(bins, weights=np.asarray(correct, np.float64).reshape(-1),
                        minlength=n_bins))


def ece_of_bins(count: np.ndarray, conf_sum: np.ndarray, acc_sum: np.ndarray) -> float:
    """ECE from `reliability_bins` sums (the same figure as `expected_calibration_error`)."""
    total = count.sum()
    return float(np.abs(acc_sum - conf_sum).sum() / total) if total else 0.0


def lac_scores(probs: np.ndarray, target: np.ndarray) -> np.ndarray:
    """LAC nonconformity scores 1 - p_true [N]."""
    return 1.0 - probs[np.arange(len(target)), target]


def split_conformal_quantiles(scores: np.ndarray, alphas: tuple[float, ...] = CONFORMAL_ALPHAS
                              ) -> list[float]:
    """q(alpha) per alpha: the ceil((n + 1)(1 - alpha))-th smallest score, 1.0 (every class)
    when that rank exceeds n."""
    s = np.sort(np.asarray(scores, np.float64))
    n = len(s)
    out = []
    for alpha in alphas:
        rank = math.ceil((n + 1) * (1 - alpha) - 1e-9)  # 1-based; guard 900.0000000001
        out.append(float(s[rank - 1]) if 1 <= rank <= n else 1.0)
    return out


def prediction_sets(probs: np.ndarray, quantile: float) -> np.ndarray:
    """[N, K] bool: class k is in the LAC set where 1 - p_k <= q (probabilities [N, K])."""
    return (1.0 - probs) <= quantile


def auroc(score: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve of `score` ranking `positive` samples first (ties count
    half: the Mann-Whitney statistic with mid-ranks); None without both kinds."""
    score = np.asarray(score, np.float64).reshape(-1)
    positive = np.asarray(positive, bool).reshape(-1)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return None
    order = np.argsort(score, kind="stable")
    _, inverse, counts = np.unique(score[order], return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    mid = (ends - (counts - 1) / 2.0)[inverse]  # 1-based mid-rank of each sorted sample
    ranks = np.empty_like(mid)
    ranks[order] = mid
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def entropy(probs: np.ndarray) -> np.ndarray:
    """Predictive entropy (nats) per row of probabilities [N, K]."""
    return -(probs * np.log(np.clip(probs, 1e-12, None))).sum(axis=1)


# ---- fitting on validation --------------------------------------------------------------
class LogitCache:
    """Keeps the logits [n, K] and targets of the labelled pixels `predict_split` hands it:
    all of them, or a seeded uniform subset of about `cap` when `expected` is larger."""

    def __init__(self, expected: int, cap: int = MAX_PIXELS, seed: int = 0) -> None:
        self.rate = min(1.0, cap / max(expected, 1))
        self.rng = np.random.default_rng([seed, SAMPLE_STREAM])
        self.logits: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []

    def add(self, logits: Tensor, target: Tensor) -> None:
        z, y = logits.float().numpy(), target.numpy()
        if self.rate < 1.0:
            keep = self.rng.random(len(y)) < self.rate
            z, y = z[keep], y[keep]
        self.logits.append(z)
        self.targets.append(y)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self.logits), np.concatenate(self.targets).astype(np.int64)


def fit(logits: np.ndarray, target: np.ndarray) -> Calibration:
    """Temperature and conformal quantiles of validation `logits` [N, K] / `target` [N]."""
    t, at_bound = fit_temperature(logits, target)
    if at_bound:  # no interior minimum (e.g. not one validation error): no T is supported
        t = 1.0
    raw, cal = softmax(logits), softmax(logits, t)
    correct = raw.argmax(axis=1) == target
    val = {"nll_before": nll(logits, target), "nll_after": nll(logits, target, t),
           "ece_before": ece_of_bins(*reliability_bins(raw.max(axis=1), correct)),
           "ece_after": ece_of_bins(*reliability_bins(cal.max(axis=1), correct)),
           "pixels": len(target), "at_bound": bool(at_bound)}
    quantiles = split_conformal_quantiles(lac_scores(cal, target))
    conformal = {"score": "lac", "alphas": list(CONFORMAL_ALPHAS), "quantiles": quantiles,
                 "n": len(target)}
    return Calibration(temperature=t, val=val, conformal=conformal)


def calibrate(model: nn.Module, data: PreparedData, batch_size: int = 256,
              num_workers: int = 0, seed: int = 0) -> Calibration:
    """Fit the temperature and the conformal quantiles of `model` on the validation split
    (one inference pass; the logits of every labelled pixel, or a seeded MAX_PIXELS)."""
    cache = LogitCache(sum(data.index.counts()["val"]), seed=seed)
    predict_split(model, data, "val", batch_size, num_workers, on_logits=cache.add)
    return fit(*cache.arrays())


# ---- measuring on test ------------------------------------------------------------------
class CalibrationCheck:
    """Streams a split's logits (`predict_split(..., on_logits=check.add)`) and measures the
    calibration fitted on validation: nothing is fitted here."""

    def __init__(self, calibration: Calibration, alphas: tuple[float, ...] = REPORTED_ALPHAS
                 ) -> None:
        self.cal = calibration
        self.alphas = alphas
        self.q = [calibration.quantile(a) for a in alphas]
        zeros = np.zeros(ECE_BINS)
        self.bins = {"before": [zeros.copy() for _ in range(3)],
                     "after": [zeros.copy() for _ in range(3)]}
        self.nll = {"before": 0.0, "after": 0.0}
        self.n = 0
        self.covered = np.zeros(len(alphas))
        self.size = np.zeros(len(alphas))
        self.empty = np.zeros(len(alphas))
        self.entropy: list[np.ndarray] = []
        self.wrong: list[np.ndarray] = []

    def add(self, logits: Tensor, target: Tensor) -> None:
        z, y = logits.double().numpy(), target.numpy().astype(np.int64)
        if not len(y):
            return
        t = self.cal.temperature
        raw, cal = softmax(z), softmax(z, t)
        correct = raw.argmax(axis=1) == y
        for key, p in (("before", raw), ("after", cal)):
            for acc, part in zip(self.bins[key], reliability_bins(p.max(axis=1), correct)):
                acc += part
        self.nll["before"] += nll(z, y) * len(y)
        self.nll["after"] += nll(z, y, t) * len(y)
        for i, q in enumerate(self.q):
            sets = prediction_sets(cal, q)
            self.covered[i] += sets[np.arange(len(y)), y].sum()
            size = sets.sum(axis=1)
            self.size[i] += size.sum()
            self.empty[i] += (size == 0).sum()
        self.entropy.append(entropy(cal).astype(np.float32))
        self.wrong.append(~correct)
        self.n += len(y)

    def result(self) -> dict[str, Any]:
        """{pixels, temperature, ece_before, ece_after, nll_before, nll_after, entropy_auroc
        (error detection; None without errors), reliability: {bins, before | after: {count,
        confidence, accuracy} per bin (None where empty)}, conformal: [{alpha, quantile,
        coverage, mean_set_size, empty}]} (JSON-able)."""
        n = max(self.n, 1)

        def curve(count: np.ndarray, conf: np.ndarray, acc: np.ndarray) -> dict[str, list]:
            with np.errstate(invalid="ignore", divide="ignore"):
                mean_c, mean_a = conf / count, acc / count
            return {"count": [int(c) for c in count],
                    "confidence": [float(v) if c else None for v, c in zip(mean_c, count)],
                    "accuracy": [float(v) if c else None for v, c in zip(mean_a, count)]}

        wrong = np.concatenate(self.wrong) if self.wrong else np.zeros(0, bool)
        ent = np.concatenate(self.entropy) if self.entropy else np.zeros(0, np.float32)
        return {
            "pixels": self.n, "temperature": self.cal.temperature,
            "ece_before": ece_of_bins(*self.bins["before"]),
            "ece_after": ece_of_bins(*self.bins["after"]),
            "nll_before": self.nll["before"] / n, "nll_after": self.nll["after"] / n,
            "entropy_auroc": auroc(ent, wrong),
            "reliability": {"bins": ECE_BINS, "before": curve(*self.bins["before"]),
                            "after": curve(*self.bins["after"])},
            "conformal": [{"alpha": a, "quantile": q, "coverage": float(c / n),
                           "mean_set_size": float(s / n), "empty": float(e / n)}
                          for a, q, c, s, e in zip(self.alphas, self.q, self.covered,
                                                   self.size, self.empty)],
        }


# ---- the reliability diagram ------------------------------------------------------------
def draw_reliability(ax: Any, reliability: dict[str, Any], title: str = "") -> None:
    """Accuracy against confidence per bin, before and after temperature scaling, on `ax`
    (a matplotlib Axes); the diagonal is perfect calibration."""
    n = reliability["bins"]
    centres = (np.arange(n) + 0.5) / n
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect")
    for key, colour in (("before", "tab:red"), ("after", "tab:blue")):
        curve = reliability[key]
        pts = [(c, a) for c, a in zip(curve["confidence"], curve["accuracy"]) if c is not None]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", ms=3, color=colour,
                    label="raw" if key == "before" else "temperature-scaled")
    total = max(sum(reliability["after"]["count"]), 1)
    ax.bar(centres, [c / total for c in reliability["after"]["count"]], width=1 / n,
           color="tab:blue", alpha=0.15, label="share of pixels (scaled)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")


def write_reliability_png(test_calibration: dict[str, Any], path: Path, title: str) -> Path:
    """The test split's reliability diagram (before and after) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = test_calibration
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    draw_reliability(ax, c["reliability"], f"{title}\ntest ECE {c['ece_before']:.3f} raw, "
                     f"{c['ece_after']:.3f} at T = {c['temperature']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
