"""Accuracy metrics from a confusion matrix, and expected calibration error.

Conventions (the same for patch classification and segmentation):
- The confusion matrix `cm[i, j]` counts samples of TRUE class i PREDICTED as class j
  (rows = reference, columns = prediction), over class indices 0..K-1. Targets equal to
  `ignore_index` (-1: unlabelled) are dropped before counting.
- A class with no reference sample in the evaluated set is *absent*: its accuracy (recall) is
  undefined, reported as None, and left out of AA. Its IoU is 0 if the model predicted it
  (every such prediction is a false positive) and None if neither reference nor prediction
  contains it; None values are left out of mIoU.
- Cohen's kappa = (po - pe) / (1 - pe). When pe == 1 (reference and prediction both one single
  class) kappa is 0/0; it is reported as 1.0 for perfect agreement and 0.0 otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

METRIC_NAMES = ("oa", "aa", "kappa", "miou")  # the scalar metrics, prefixed val_/test_ outside


def confusion_matrix(
    target: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: int = -1
) -> np.ndarray:
    """Counts `cm[true, pred]` as int64 [K, K] over samples whose target is not `ignore_index`."""
    target = np.asarray(target).reshape(-1).astype(np.int64)
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    if target.shape != pred.shape:
        raise ValueError(f"target has {target.size} values but pred has {pred.size}")
    keep = target != ignore_index
    target, pred = target[keep], pred[keep]
    for name, arr in (("target", target), ("pred", pred)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} holds class indices outside 0..{num_classes - 1}")
    flat = np.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def overall_accuracy(cm: np.ndarray) -> float:
    """Fraction of correctly classified samples (trace / total)."""
    total = cm.sum()
    return float(np.trace(cm) / total) if total else 0.0


def per_class_accuracy(cm: np.ndarray) -> list[float | None]:
    """Recall of each class (diagonal / row sum); None for classes absent from the reference."""
    support = cm.sum(axis=1)
    return [float(cm[k, k] / support[k]) if support[k] else None for k in range(len(cm))]


def average_accuracy(cm: np.ndarray) -> float:
    """Mean per-class accuracy over the classes PRESENT in the reference (absent ones skipped)."""
    accs = [a for a in per_class_accuracy(cm) if a is not None]
    return float(np.mean(accs)) if accs else 0.0


def cohen_kappa(cm: np.ndarray) -> float:
    """Agreement beyond chance: (po - pe) / (1 - pe); see the module docstring for pe == 1."""
    total = cm.sum()
    if not total:
        return 0.0
    po = np.trace(cm) / total
    pe = float(np.dot(cm.sum(axis=1), cm.sum(axis=0))) / float(total) ** 2
    if np.isclose(pe, 1.0):
        return 1.0 if np.isclose(po, 1.0) else 0.0
    return float((po - pe) / (1.0 - pe))


def per_class_iou(cm: np.ndarray) -> list[float | None]:
    """TP / (TP + FP + FN) per class; None when the class is in neither reference nor prediction."""
    tp = np.diag(cm)
    union = cm.sum(axis=1) + cm.sum(axis=0) - tp
    return [float(tp[k] / union[k]) if union[k] else None for k in range(len(cm))]


def mean_iou(cm: np.ndarray) -> float:
    """Mean IoU over classes with a defined IoU (see `per_class_iou`)."""
    ious = [v for v in per_class_iou(cm) if v is not None]
    return float(np.mean(ious)) if ious else 0.0


def summarize(cm: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """All metrics of one evaluation as a JSON-able dict.

    Keys: oa, aa, kappa, miou (floats), per_class_accuracy and per_class_iou
    ({class name: float | None}), support ({class name: reference count}),
    confusion_matrix (list of rows, reference x prediction), class_names, num_samples.
    """
    if len(class_names) != len(cm):
        raise ValueError(f"{len(class_names)} class names for a {len(cm)}-class matrix")
    return {
        "oa": overall_accuracy(cm),
        "aa": average_accuracy(cm),
        "kappa": cohen_kappa(cm),
        "miou": mean_iou(cm),
        "per_class_accuracy": dict(zip(class_names, per_class_accuracy(cm))),
        "per_class_iou": dict(zip(class_names, per_class_iou(cm))),
        "support": dict(zip(class_names, (int(s) for s in cm.sum(axis=1)))),
        "confusion_matrix": cm.astype(int).tolist(),
        "class_names": list(class_names),
        "num_samples": int(cm.sum()),
    }


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15
) -> float:
    """ECE with `n_bins` equal-width confidence bins on (0, 1].

    sum over bins of (bin size / N) * |accuracy in bin - mean confidence in bin|. `confidence`
    is the max softmax probability per sample, `correct` whether the argmax was right.
    """
    confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
    correct = np.asarray(correct, dtype=np.float64).reshape(-1)
    if confidence.shape != correct.shape:
        raise ValueError(f"{confidence.size} confidences but {correct.size} correctness flags")
    if confidence.size == 0:
        return 0.0
    # Bin b holds confidences in (b/n, (b+1)/n]; a confidence of exactly 0 goes to bin 0.
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    conf_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    gap = np.abs(acc_sum - conf_sum)  # = count * |acc - conf| per bin
    return float(gap.sum() / confidence.size)
