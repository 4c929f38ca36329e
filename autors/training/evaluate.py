"""Evaluate a trained model on one split of the prepared data.

Validation is used for model selection (early stopping, the search); the test split is only
evaluated when a caller names it explicitly (`autors train --test`, the search's final
retraining), never as a side effect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from autors.data import PreparedData
from autors.data.conditions import Condition
from autors.errors import DataError
from autors.training.batches import eval_loader, to_device
from autors.training.metrics import confusion_matrix, expected_calibration_error, summarize
from autors.training.targets import evaluate_targets
from fusion import MASK_SUFFIX

EVAL_SPLITS = ("val", "test")
# receives the logits [n, K] (float32, CPU) and targets [n] of each batch's labelled pixels
LogitsHook = Callable[[Tensor, Tensor], None]


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _any_date(mask: torch.Tensor) -> torch.Tensor:
    """A sensor's validity `[B, P, P]`; a time series' `[B, T, P, P]` reduced over its dates."""
    return mask.amax(dim=1) if mask.dim() == 4 else mask


def predict_split(
    model: nn.Module, data: PreparedData, split: str, batch_size: int = 256,
    num_workers: int = 0, condition: Condition | None = None,
    on_logits: LogitsHook | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(target, prediction, confidence, loss, scene number, has input) for every labelled
    sample of `split`, each [N], under `condition` when given. `has input`: some sensor the
    model uses is valid at the pixel.

    Patch classification: one sample per labelled pixel. Segmentation: every labelled pixel of
    the split's non-overlapping tiles (each pixel once). Confidence = max softmax probability;
    loss = cross-entropy of the sample (unweighted). `on_logits`, when given, receives each
    batch's logits of the labelled pixels [n, K] and their targets [n] (CPU; a dense model's
    pixels in the order of its scored pixels), e.g. to fit or check a calibration
    (`autors.training.calibration`) in the same pass.
    """
    if split not in EVAL_SPLITS:
        raise ValueError(f"evaluate on 'val' or 'test', not '{split}'")
    loader = eval_loader(data.dataset(split, augment=False, condition=condition), batch_size,
                         num_workers)
    used = getattr(model, "sensors", None) or list(data.in_channels)
    device = _device_of(model)
    targets, preds, confs, losses, scenes, inputs = [], [], [], [], [], []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in loader:
                batch = to_device(batch, device)
                target = batch.pop("target")  # [B] or [B, H, W]
                scene = batch.pop("scene")  # [B]
                logits = model(batch).float()  # [B, K] or [B, K, H, W]
                conf, pred = torch.softmax(logits, dim=1).max(dim=1)  # [B] or [B, H, W]
                loss = nn.functional.cross_entropy(logits, target, ignore_index=-1,
                                                   reduction="none")
                keep = target >= 0
                if on_logits is not None:  # [n, K]: a dense model's classes moved last
                    per_pixel = logits if logits.dim() == 2 else logits.movedim(1, -1)
                    on_logits(per_pixel[keep].cpu(), target[keep].cpu())
                targets.append(target[keep].cpu())
                preds.append(pred[keep].cpu())
                confs.append(conf[keep].cpu())
                losses.append(loss[keep].cpu())
                # a sensor is present at a pixel when valid there (a time series: on any
                # date, as fusion sees it)
                masks = torch.stack([_any_date(batch[n + MASK_SUFFIX])
                                     for n in used]).amax(dim=0)
                if target.dim() > 1:  # one scene per tile: broadcast to its pixels
                    scene = scene.view(-1, 1, 1).expand_as(target)
                else:  # a patch's label is its centre pixel
                    masks = masks[:, masks.shape[1] // 2, masks.shape[2] // 2]
                scenes.append(scene[keep].cpu())
                inputs.append((masks > 0)[keep].cpu())
    finally:
        model.train(was_training)
    if not targets or sum(t.numel() for t in targets) == 0:
        raise DataError(f"the {split} split has no labelled pixel to evaluate on")
    return (
        torch.cat(targets).numpy(),
        torch.cat(preds).numpy(),
        torch.cat(confs).numpy(),
        torch.cat(losses).numpy(),
        torch.cat(scenes).numpy(),
        torch.cat(inputs).numpy(),
    )


def evaluate(
    model: nn.Module, data: PreparedData, split: str, batch_size: int = 256, *,
    num_workers: int = 0, breakdown: bool = False, condition: Condition | None = None,
    on_logits: LogitsHook | None = None,
) -> dict[str, Any]:
    """Metrics of `model` on `split` ('val' or 'test'): `metrics.summarize` keys plus `ece` and
    `loss` (mean cross-entropy: the second tie-break when candidates are ranked). With
    `breakdown` and more than one scene, also `per_scene` and `per_group` ({id: pixels, oa,
    kappa, miou}; pooled metrics stay the headline). `no_input` counts scored pixels where
    no sensor the model uses is valid (under `condition`, when given). `on_logits`: see
    `predict_split`.

    A task with `targets`: `autors.training.targets.evaluate_targets` (every target's
    metrics, `scalars`, `score`); `on_logits` and the breakdowns are for a `labels` task."""
    if data.targets is not None:
        return evaluate_targets(model, data, split, batch_size, num_workers)
    target, pred, conf, loss, scene, has_input = predict_split(
        model, data, split, batch_size, num_workers, condition, on_logits)
    cm = confusion_matrix(target, pred, data.num_classes)
    out = summarize(cm, data.class_names)
    out["ece"] = expected_calibration_error(conf, pred == target)
    out["loss"] = float(loss.mean())
    out["no_input"] = int((~has_input).sum())
    scenes = data.index.scenes
    if breakdown and len(scenes) > 1:
        out["per_scene"] = _breakdown(target, pred, scene, [s.id for s in scenes], data)
        groups = [s.files.group for s in scenes]
        if any(g is not None for g in groups):
            names = sorted({g for g in groups if g is not None})
            group_of = np.array([names.index(g) if g is not None else -1 for g in groups])
            out["per_group"] = _breakdown(target, pred, group_of[scene], names, data)
    return out


def _breakdown(target: np.ndarray, pred: np.ndarray, part: np.ndarray, names: list[str],
               data: PreparedData) -> dict[str, dict[str, float | int]]:
    """{name: {pixels, oa, kappa, miou}} for each part (scene or group) with scored pixels."""
    out = {}
    for i, name in enumerate(names):
        m = part == i
        if m.any():
            s = summarize(confusion_matrix(target[m], pred[m], data.num_classes),
                          data.class_names)
            out[name] = {"pixels": int(m.sum()), "oa": float(s["oa"]),
                         "kappa": float(s["kappa"]), "miou": float(s["miou"])}
    return out
