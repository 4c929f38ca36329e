"""Several targets at once (a task with `targets:`): the loss, the metrics, the evaluation.

The model returns one tensor whose channels are the targets' outputs concatenated
(`model.output_slices()`): a class target's K logits; a continuous target's value and, with
the Gaussian NLL, its log-variance, both in the target's normalised units (training mean /
std, `TargetInfo`). Each target has its own mask (NaN in the batch's `targets`), so a pixel
is a sample where any target is, and each loss / metric counts only its own pixels.

Losses: cross-entropy (classes); L1, Huber (delta 1 normalised unit) or Gaussian NLL
0.5 * (log s2 + (y - mu)^2 / s2) (continuous). Weights are fixed numbers or learned
(uncertainty weighting, Kendall, Gal & Cipolla 2018, in the simplified form of their
eq. 7 used by most implementations: exp(-s_t) * L_t + s_t, s_t a learned log-variance).

Metrics are in physical units: RMSE, MAE, R2 (1 - SSE / SST on the evaluated pixels), bias
(mean prediction - mean reference); with a predictive std, the coverage of the nominal 68.27 %
and 95 % central intervals (|y - mu| <= z * std, z = 1 and 1.96) and the mean std.
`val_score` = the targets' weighted mean of their score (a class target's OA, mIoU for a
dense task; a continuous target's R2 clipped at -1), so it is within [-1, 1] as every other
objective.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from autors.data.labels import TargetInfo
from autors.training.batches import eval_loader, to_device
from autors.training.metrics import confusion_matrix, expected_calibration_error, summarize

LOGVAR_RANGE = (-10.0, 10.0)  # the head's log-variance is clamped: a finite, stable NLL
Z68, Z95 = 1.0, 1.959964  # central intervals of a normal: 68.27 % and 95 %
NOMINAL = {"coverage68": 0.6827, "coverage95": 0.95}


class TargetLoss(nn.Module):
    """The weighted sum of each target's loss on its own valid pixels; learned weights are
    this module's parameters (the optimiser must get them)."""

    def __init__(self, targets: list[TargetInfo], slices: dict[str, tuple[int, int]],
                 class_weight: Tensor | None = None) -> None:
        super().__init__()
        self.targets = list(targets)
        self.slices = [slices[t.name] for t in targets]
        self.class_weight = class_weight
        learned = [t.name for t in targets if t.weight == "learned"]
        self.learned = learned
        self.log_vars = nn.Parameter(torch.zeros(len(learned))) if learned else None
        self.last: dict[str, float] = {}  # each target's unweighted loss of the last batch

    def forward(self, out: Tensor, targets: Tensor) -> Tensor:
        total = out.new_zeros(())
        for i, (t, (a, b)) in enumerate(zip(self.targets, self.slices)):
            loss = target_loss(t, out[:, a:b], targets[:, i], self.class_weight)
            if loss is None:
                continue
            self.last[t.name] = float(loss.detach())
            if t.weight == "learned":
                s = self.log_vars[self.learned.index(t.name)]
                total = total + torch.exp(-s) * loss + s
            else:
                total = total + float(t.weight) * loss
        return total


def target_loss(t: TargetInfo, out: Tensor, y: Tensor, class_weight: Tensor | None = None
                ) -> Tensor | None:
    """One target's mean loss over its valid pixels (None when the batch has none).
    `out`: its channels [B, C(, H, W)]; `y`: [B(, H, W)], NaN where no value."""
    valid = ~torch.isnan(y)
    if not bool(valid.any()):
        return None
    if t.kind == "classes":
        idx = torch.where(valid, y, torch.full_like(y, -1.0)).long()
        return F.cross_entropy(out, idx, weight=class_weight, ignore_index=-1)
    mu = out[:, 0][valid]
    ref = y[valid]
    if t.loss == "l1":
        return (mu - ref).abs().mean()
    if t.loss == "huber":
        return F.huber_loss(mu, ref, delta=1.0)
    logvar = out[:, 1][valid].clamp(*LOGVAR_RANGE)
    return 0.5 * (logvar + (ref - mu) ** 2 * torch.exp(-logvar)).mean()


def regression_metrics(y: np.ndarray, pred: np.ndarray, std: np.ndarray | None = None
                       ) -> dict[str, float]:
    """RMSE, MAE, R2, bias (and with `std`: interval coverage and mean std) of physical
    values [N]."""
    y = np.asarray(y, np.float64)
    pred = np.asarray(pred, np.float64)
    err = pred - y
    sst = float(((y - y.mean()) ** 2).sum()) if y.size else 0.0
    out = {
        "rmse": float(np.sqrt(np.mean(err**2))) if y.size else float("nan"),
        "mae": float(np.mean(np.abs(err))) if y.size else float("nan"),
        "r2": 1.0 - float((err**2).sum()) / sst if sst > 0 else 0.0,
        "bias": float(err.mean()) if y.size else float("nan"),
        "n": int(y.size),
    }
    if std is not None:
        std = np.asarray(std, np.float64)
        out["coverage68"] = float(np.mean(np.abs(err) <= Z68 * std)) if y.size else float("nan")
        out["coverage95"] = float(np.mean(np.abs(err) <= Z95 * std)) if y.size else float("nan")
        out["mean_std"] = float(std.mean()) if y.size else float("nan")
    return out


def target_score(t: TargetInfo, metrics: dict[str, Any], dense: bool) -> float:
    """A target's part of `val_score`: OA (mIoU when dense) of a class target, R2 clipped at
    -1 of a continuous one."""
    if t.kind == "classes":
        return float(metrics["miou" if dense else "oa"])
    return max(float(metrics["r2"]), -1.0)


class _Collect:
    """Per target: the valid pixels' reference, prediction (and std / confidence)."""

    def __init__(self, targets: list[TargetInfo], slices: dict[str, tuple[int, int]]) -> None:
        self.targets = targets
        self.slices = slices
        self.parts: dict[str, list[list[np.ndarray]]] = {t.name: [[], [], []] for t in targets}

    def add(self, out: Tensor, y: Tensor, second: Tensor | None = None) -> None:
        """`out` [B, C(, H, W)] (mean over MC samples), `y` [B, T(, H, W)]; `second`: the MC
        samples' variance of the continuous means (else None)."""
        for i, t in enumerate(self.targets):
            a, b = self.slices[t.name]
            ref = y[:, i]
            valid = ~torch.isnan(ref)
            if not bool(valid.any()):
                continue
            part = out[:, a:b]
            parts = self.parts[t.name]
            if t.kind == "classes":
                conf, pred = torch.softmax(part, dim=1).max(dim=1)
                parts[0].append(ref[valid].long().cpu().numpy())
                parts[1].append(pred[valid].cpu().numpy())
                parts[2].append(conf[valid].cpu().numpy())
                continue
            mu = part[:, 0][valid] * t.std + t.mean
            parts[0].append((ref[valid] * t.std + t.mean).cpu().numpy())
            parts[1].append(mu.cpu().numpy())
            var = torch.zeros_like(mu)
            if t.has_std:
                var = var + torch.exp(part[:, 1][valid].clamp(*LOGVAR_RANGE)) * t.std**2
            if second is not None:
                var = var + second[:, a][valid] * t.std**2
            if t.has_std or second is not None:
                parts[2].append(var.sqrt().cpu().numpy())

    def arrays(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Target `name`'s reference, prediction and std / confidence (empty when none)."""
        ref, pred, third = (np.concatenate(p) if p else np.zeros(0) for p in self.parts[name])
        return ref, pred, third

    def result(self, dense: bool, intervals: dict[str, dict[str, float]] | None = None
               ) -> dict[str, dict[str, Any]]:
        out = {}
        for t in self.targets:
            ref, pred, third = self.arrays(t.name)
            if t.kind == "classes":
                k = len(t.classes)
                m = summarize(confusion_matrix(ref, pred, k), list(t.classes))
                m["ece"] = expected_calibration_error(third, pred == ref)
            else:
                m = regression_metrics(ref, pred, third if third.size else None)
                fitted = (intervals or {}).get(t.name)
                if fitted is not None and third.size:
                    m.update(calibrated_coverage(ref, pred, third, fitted))
                m["units"] = t.units
            out[t.name] = m
        return out


def evaluate_targets(model: nn.Module, data: Any, split: str, batch_size: int = 256,
                     num_workers: int = 0, mc_passes: int = 0, seed: int = 0,
                     intervals: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """Every target's metrics on `split` ('val' or 'test') of a task with `targets`:
    {"targets": {name: metrics}, "scalars": {"score", "<metric>__<target>", and the class
    target's oa / aa / kappa / miou / ece unprefixed}, "score", "loss"}. With `mc_passes` > 0
    the dropout layers stay on and the continuous targets' std adds the variance of the
    passes' means (MC dropout) to the heads' own. With `intervals` (`fit_intervals`, on
    validation) the continuous targets' metrics add the calibrated intervals' coverage."""
    collect, loss = _collect_split(model, data, split, batch_size, num_workers, mc_passes, seed)
    targets = data.targets
    dense = data.task_kind == "segmentation"
    per = collect.result(dense, intervals)
    weights = {t.name: t.score_weight for t in targets}
    total_w = sum(weights.values()) or 1.0
    score = sum(weights[t.name] * target_score(t, per[t.name], dense) for t in targets) / total_w
    scalars: dict[str, float] = {"score": float(score)}
    for t in targets:
        keys = ("oa", "aa", "kappa", "miou", "ece") if t.kind == "classes" else \
            ("rmse", "mae", "r2", "bias", "coverage68", "coverage95", "mean_std",
             "coverage68_calibrated", "coverage95_calibrated")
        for key in keys:
            if key in per[t.name]:
                scalars[f"{key}__{t.name}"] = float(per[t.name][key])
                if t.kind == "classes":  # the class target also under the plain names
                    scalars[key] = float(per[t.name][key])
    return {"targets": per, "scalars": scalars, "score": float(score), "loss": loss,
            **{k: v for k, v in scalars.items() if "__" not in k}}


def _collect_split(model: nn.Module, data: Any, split: str, batch_size: int,
                   num_workers: int, mc_passes: int, seed: int) -> tuple[_Collect, float]:
    """Every target's valid pixels of `split` (`_Collect`) and the mean unweighted loss."""
    loader = eval_loader(data.dataset(split, augment=False), batch_size, num_workers)
    targets = data.targets
    slices = model.output_slices()
    collect = _Collect(targets, slices)
    loss_fn = TargetLoss([t for t in targets], slices)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    drops = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    losses, n = 0.0, 0
    try:
        with torch.inference_mode(), torch.random.fork_rng():
            torch.manual_seed(seed)
            for batch in loader:
                batch = to_device(batch, device)
                y = batch.pop("targets")
                del batch["scene"]
                if mc_passes > 0:
                    for m in drops:
                        m.train()
                    outs = torch.stack([model(batch).float() for _ in range(mc_passes)])
                    out, second = outs.mean(0), outs.var(0, unbiased=False)
                else:
                    out, second = model(batch).float(), None
                losses += float(_unweighted(loss_fn, out, y)) * y.shape[0]
                n += y.shape[0]
                collect.add(out, y, second)
    finally:
        model.train(was_training)
    return collect, losses / max(n, 1)


def interval_factor(z: np.ndarray, level: float) -> float:
    """The split-conformal half-width, in stds, of a central interval at `level`: the
    ceil((n + 1) level)-th smallest |standardised residual| of n validation pixels (inf when
    that rank is beyond n: too few pixels to promise the level)."""
    z = np.sort(np.abs(np.asarray(z, np.float64)))
    rank = int(np.ceil((z.size + 1) * level))
    return float(z[rank - 1]) if 1 <= rank <= z.size else float("inf")


def fit_intervals(model: nn.Module, data: Any, batch_size: int = 256, num_workers: int = 0
                  ) -> dict[str, dict[str, float]]:
    """Per continuous target with a std head, fitted on the validation split:
    {"z68", "z95": half-widths in predicted stds of the 68.27 % and 95 % intervals, "n"}.
    A Gaussian std is rarely right in its tails (heavy-tailed residuals make the nominal
    1-std interval cover far more than 68 %); the factors are split-conformal quantiles of
    |y - mu| / std, so the test coverage holds if validation and test pixels are
    exchangeable (the same caveats as the class target's conformal sets)."""
    collect, _ = _collect_split(model, data, "val", batch_size, num_workers, 0, 0)
    out = {}
    for t in data.targets:
        if t.kind != "continuous" or not t.has_std:
            continue
        ref, pred, std = collect.arrays(t.name)
        if not std.size:
            continue
        z = (pred - ref) / np.maximum(std, 1e-12)
        out[t.name] = {"z68": interval_factor(z, NOMINAL["coverage68"]),
                       "z95": interval_factor(z, NOMINAL["coverage95"]), "n": int(z.size)}
    return out


def calibrated_coverage(ref: np.ndarray, pred: np.ndarray, std: np.ndarray,
                        fitted: dict[str, float]) -> dict[str, float]:
    """The coverage of the calibrated intervals mu +- z * std (`fit_intervals`)."""
    err = np.abs(np.asarray(pred, np.float64) - ref)
    return {f"coverage{level}_calibrated": float(np.mean(err <= fitted[f"z{level}"] * std))
            for level in ("68", "95")}


def _unweighted(loss_fn: TargetLoss, out: Tensor, y: Tensor) -> float:
    """The sum of the targets' unweighted losses (validation loss: a tie-break)."""
    total = 0.0
    for i, (t, (a, b)) in enumerate(zip(loss_fn.targets, loss_fn.slices)):
        loss = target_loss(t, out[:, a:b], y[:, i])
        if loss is not None:
            total += float(loss)
    return total
