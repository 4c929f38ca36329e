"""Trained models in detail, from their train folders (`read_train_folder`): metrics per
class, the confusion matrix, the reliability diagram (ECE) and the robustness table. A search's
finalist has one train folder per seed; the seeds share the test pixels, so their confusion
matrices and reliability bins are summed and their figures averaged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autors.report.page import Cell, esc, fmt, note, table
from autors.report.palette import class_hex
from autors.report.svg import confusion, reliability
from autors.report.task import swatch
from autors.training.train_folder import TrainFolder

SCALARS = ("oa", "aa", "kappa", "miou", "ece")


def _mean(values: Sequence[float | None]) -> float | int | None:
    """Mean of the numbers among `values` (counts that agree stay integers)."""
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if nums and all(isinstance(v, int) for v in nums) and len(set(nums)) == 1:
        return nums[0]
    return sum(map(float, nums)) / len(nums) if nums else None


def _pooled_bins(curves: list[dict]) -> dict[str, list]:
    """Reliability bins of several models on the same pixels: counts summed, confidence and
    accuracy averaged with the counts as weights."""
    n = max(len(c.get("count", [])) for c in curves)
    count, conf, acc = [0] * n, [0.0] * n, [0.0] * n
    for c in curves:
        for i, (k, x, y) in enumerate(zip(c["count"], c["confidence"], c["accuracy"])):
            if k and x is not None and y is not None:
                count[i] += k
                conf[i] += k * x
                acc[i] += k * y
    return {"count": count,
            "confidence": [conf[i] / count[i] if count[i] else None for i in range(n)],
            "accuracy": [acc[i] / count[i] if count[i] else None for i in range(n)]}


def metrics_detail(folders: list[TrainFolder], split: str) -> str:
    """Per-class table, confusion matrix, reliability and robustness of `split` ('test' or
    'val') over `folders` (one model's seeds); a model of several targets: each target's
    figures (its class details, or a continuous target's errors and interval coverage)."""
    blocks = [f.metrics[split] for f in folders if isinstance(f.metrics.get(split), dict)]
    if not blocks:
        return note(f"no {split} metrics recorded")
    targets = blocks[0].get("targets")
    if not isinstance(targets, dict):
        return _detail(blocks, split)
    out = []
    for name in targets:
        per = [b["targets"][name] for b in blocks if name in (b.get("targets") or {})]
        units = per[0].get("units")
        out.append(f"<h3>target {esc(name)}{f' ({esc(units)})' if units else ''}</h3>")
        out.append(_detail(per, split))
    rest = [{k: v for k, v in b.items() if k not in ("targets", "scalars")} for b in blocks]
    robust = _robustness(rest, split, "")
    return "".join(out) + robust


def _detail(blocks: list[dict], split: str) -> str:
    names = list(blocks[0].get("class_names") or [])
    seeds = len(blocks)
    over = f" (mean over {seeds} seeds)" if seeds > 1 else ""
    # every scalar the blocks hold: the class metrics first, then any other (a continuous
    # target's rmse__<target>, ...)
    numeric = [k for k, v in blocks[0].items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)]
    keys = [k for k in SCALARS if k in numeric] + [k for k in numeric if k not in SCALARS]
    out = [table([f"{split} metric", "value" + over],
                 [[Cell(k, left=True), _mean([b.get(k) for b in blocks])] for k in keys])]
    if names:
        rows = []
        for i, name in enumerate(names):
            acc = _mean([(b.get("per_class_accuracy") or {}).get(name) for b in blocks])
            iou = _mean([(b.get("per_class_iou") or {}).get(name) for b in blocks])
            support = blocks[0].get("support", {}).get(name)
            rows.append([swatch(i, name), acc, iou, support])
        out.append(f"<h3>per class ({split}{over})</h3>")
        out.append(table(["class", "accuracy (recall)", "IoU", "pixels"], rows))
    parts = []
    matrices = [b["confusion_matrix"] for b in blocks if b.get("confusion_matrix")]
    if matrices and names:
        summed = [[sum(m[i][j] for m in matrices) for j in range(len(names))]
                  for i in range(len(names))]
        parts.append(confusion(summed, names, [class_hex(i) for i in range(len(names))],
                               f"{split} confusion matrix" + (
                                   f", summed over {len(matrices)} seeds" if len(matrices) > 1
                                   else "") + "; shade = share of the reference class"))
    cal = [b["calibration"] for b in blocks if isinstance(b.get("calibration"), dict)]
    if cal and all("reliability" in c for c in cal):
        curves = {"raw softmax": _pooled_bins([c["reliability"]["before"] for c in cal]),
                  "temperature-scaled": _pooled_bins([c["reliability"]["after"] for c in cal])}
        ece_b, ece_a = _mean([c.get("ece_before") for c in cal]), _mean(
            [c.get("ece_after") for c in cal])
        parts.append(reliability(curves, {"raw softmax": "#f28e2b",
                                          "temperature-scaled": "#4e79a7"},
                                 f"{split} reliability: ECE {fmt(ece_b)} raw, {fmt(ece_a)} "
                                 f"after temperature scaling{over}"))
    if parts:
        out.append(f'<div class="row">{"".join(parts)}</div>')
    out.append(_robustness(blocks, split, over))
    return "".join(out)


def _robustness(blocks: list[dict], split: str, over: str) -> str:
    robust = [b["robustness"] for b in blocks if isinstance(b.get("robustness"), dict)]
    if not robust:
        return ""
    conditions = list(robust[0])
    rows = [[Cell(c, left=True)] + [_mean([r.get(c, {}).get(k) for r in robust])
                                    for k in SCALARS] for c in conditions]
    return (f"<h3>robustness ({split}, same pixels{over})</h3>"
            + table(["condition", *SCALARS], rows))


def calibration_line(folders: list[TrainFolder]) -> str:
    """The validation calibration (temperature, ECE before and after) of `folders`."""
    cals = [f.metrics.get("calibration") for f in folders if f.metrics.get("calibration")]
    if not cals:
        return note("no calibration recorded (a folder written before calibration, or a "
                    "model this version does not calibrate)")
    temps = ", ".join(f"{c['temperature']:.3f}" for c in cals)
    val: list[dict[str, Any]] = [c.get("val", {}) for c in cals]
    return (f"<p>calibrated on validation: temperature {temps}; validation ECE "
            f"{fmt(_mean([v.get('ece_before') for v in val]))} raw -> "
            f"{fmt(_mean([v.get('ece_after') for v in val]))} scaled</p>")
