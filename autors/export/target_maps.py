"""Prediction maps of a model with several (or continuous) targets (card `targets`).

The model's one output holds every target's channels (`TargetCard.start:stop`). Predict runs
it through the same windows, overlap tiles and MC dropout passes as a class map
(`autors.export.predict`), wrapped in `TargetMoments`: per sample, a class target's softmax
probabilities and a continuous target's value, its square and its variance (physical units),
so that averaging over passes, tiles or blended borders gives the mixture's moments:

    value = E[mu],   std = sqrt(E[sigma^2] + E[mu^2] - E[mu]^2)

(the heteroscedastic head's variance plus, with `--mc-dropout N`, the spread of the passes'
values). One float32 GeoTIFF, NaN where no given sensor is valid, bands named:
`<target>` (a class target's class value, a continuous target's value) and
`<target>__confidence` (class) or `<target>__std` (continuous, with a std head or MC dropout),
then `valid_sensors`. A std band is calibrated by default when the card has the target's
`intervals` (value +- std is then the validation-fitted 68.27 % interval; a tag per band says
which, and the 95 % factor); `--uncalibrated` (or MC dropout) writes the raw std.
Temperature scaling, conformal sets, probability bands and ensembles are for one class target
and are refused here; the fully convolutional shortcut is not used
(per patch or overlap tiles, the same values).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window
from torch import Tensor, nn

from autors.errors import ModelFolderError
from autors.export.card import TargetCard
from autors.export.ensemble import is_ensemble
from autors.export.input_check import check_prediction
from autors.export.inputs import apply_reads, open_inputs
from autors.export.loader import ExportedModel
from autors.export.windows import plan
from autors.export.writer import BLOCK, check_out, map_tags

LOGVAR_RANGE = (-10.0, 10.0)  # as in training (autors.training.targets)


class TargetMoments(nn.Module):
    """Per sample: each target's probabilities (classes) or value, value^2, variance."""

    moments = True  # predict averages its outputs as they are (no softmax)

    def __init__(self, model: nn.Module, targets: list[TargetCard]) -> None:
        super().__init__()
        self.model = model
        self.targets = targets
        self.channels = sum(t.stop - t.start if t.kind == "classes" else 3 for t in targets)

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        out = self.model(inputs).float()
        parts = []
        for t in self.targets:
            o = out[:, t.start:t.stop]
            if t.kind == "classes":
                parts.append(torch.softmax(o, dim=1))
                continue
            mu = o[:, :1] * t.std + t.mean
            var = torch.exp(o[:, 1:2].clamp(*LOGVAR_RANGE)) * t.std**2 if t.has_std \
                else torch.zeros_like(mu)
            parts += [mu, mu * mu, var]
        return torch.cat(parts, dim=1)


def band_names(targets: list[TargetCard], mc: bool) -> list[str]:
    """The map's bands, in order."""
    names = []
    for t in targets:
        names.append(t.name)
        if t.kind == "classes":
            names.append(f"{t.name}__confidence")
        elif t.has_std or mc:
            names.append(f"{t.name}__std")
    return names + ["valid_sensors"]


def std_scales(targets: list[TargetCard], calibrated: bool, mc: bool) -> dict[str, float]:
    """The factor on each continuous target's written std: its card's z68 when the map is
    calibrated (then value +- std is the validated 68.27 % interval), else 1 (the head's
    std). MC dropout's std adds the passes' spread, which the factors were not fitted on:
    raw."""
    return {t.name: t.intervals.z68 if calibrated and not mc and t.intervals is not None
            else 1.0 for t in targets if t.kind == "continuous"}


def std_tags(targets: list[TargetCard], scales: dict[str, float], mc: bool) -> dict[str, str]:
    """A GeoTIFF tag per std band saying what it is (calibrated interval or raw std)."""
    tags = {}
    for t in targets:
        if t.kind != "continuous" or not (t.has_std or mc):
            continue
        if t.intervals is not None and scales[t.name] != 1.0:
            ratio = t.intervals.z95 / t.intervals.z68
            tags[f"{t.name}__std"] = (
                f"calibrated on validation: value +- std is the 68.27 % interval, value +- "
                f"{ratio:.3g} x std the 95 % interval (the head's std x {t.intervals.z68:.4g})")
        else:
            tags[f"{t.name}__std"] = "the predictive std, not calibrated" + (
                " (with MC dropout's spread)" if mc else "")
    return tags


def target_bands(moments: np.ndarray, valid: np.ndarray, count: np.ndarray,
                 targets: list[TargetCard], class_values: list[int], mc: bool,
                 scales: dict[str, float]) -> np.ndarray:
    """[bands, h, w] float32 from the window's averaged moments [M, h, w] (`band_names`);
    continuous stds times `scales` (`std_scales`)."""
    out, i = [], 0
    for t in targets:
        if t.kind == "classes":
            k = t.stop - t.start
            p = moments[i:i + k]
            cls = np.full(valid.shape, np.nan, np.float32)
            cls[valid] = np.asarray(class_values, np.float32)[np.argmax(p[:, valid], axis=0)]
            out += [cls, np.where(valid, p.max(axis=0), np.nan)]
            i += k
            continue
        mu, mu2, var = moments[i:i + 3]
        out.append(np.where(valid, mu, np.nan))
        if t.has_std or mc:
            std = np.sqrt(np.clip(var + mu2 - mu * mu, 0.0, None)) * scales[t.name]
            out.append(np.where(valid, std, np.nan))
        i += 3
    out.append(count.astype(np.float32))
    return np.stack(out).astype(np.float32)


def predict_targets(exported: ExportedModel, sensors: dict[str, Path], out: Path,
                    options, progress: bool = True, masks: dict[str, Path] | None = None):
    """`autors.export.predict.predict_scene` for a model with targets: one GeoTIFF `out`."""
    from autors.export.predict import (  # the windows and passes of a class map
        PredictResult,
        _enable_dropout,
        _FastPath,
        _progress,
        _window_probs,
        choose_tiling,
        subset_accuracy,
    )

    t0 = time.perf_counter()
    out = check_out(out)
    card = apply_reads(exported.card, options.reads)
    refused = [flag for flag, on in (("--conformal", options.conformal is not None),
                                     ("--probabilities", options.probabilities)) if on]
    if refused or is_ensemble(exported.model):
        what = ", ".join(refused) or "an ensemble"
        raise ModelFolderError(f"{exported.path}: {what} is for a model of one class target; "
                               f"this model has targets {[t.name for t in card.targets]}")
    model = TargetMoments(exported.model.eval(), card.targets)
    inputs = open_inputs(card, sensors, options.grid, masks)
    checks, check_tags = check_prediction(exported.path, card, inputs, sensors, masks,
                                          options.reads, options.checks)
    tiling, batch, method, tile_notes = choose_tiling(exported, inputs, options)
    cores = plan(inputs.grid.height, inputs.grid.width, options.window, tiling, BLOCK)
    if card.task.dense and options.batch_size is None:
        batch = min(batch, max(tiling.tiles(c.height) * tiling.tiles(c.width) for c in cores))
    mc = options.mc_dropout > 0
    names = band_names(card.targets, mc)
    scales = std_scales(card.targets, options.calibrated, mc)
    fast = _FastPath(exported, options)
    fast.model = None  # the shortcut's parity check compares class probabilities
    if mc:
        _enable_dropout(model, exported.path)
    g = inputs.grid
    profile = {"driver": "GTiff", "width": g.width, "height": g.height, "count": len(names),
               "dtype": "float32", "nodata": float("nan"), "crs": g.crs,
               "transform": g.transform, "tiled": True, "blockxsize": BLOCK,
               "blockysize": BLOCK, "compress": "deflate", "predictor": 3}
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    n_valid = 0
    try:
        with torch.random.fork_rng(), _progress(progress, g) as bar, \
                rasterio.open(tmp, "w", **profile) as dst:
            for i, name in enumerate(names, start=1):
                dst.set_band_description(i, name)
            dst.update_tags(**(map_tags(card, inputs.given, inputs.required) | check_tags
                               | std_tags(card.targets, scales, mc)),
                            targets=",".join(f"{t.name}:{t.kind}:{t.units}"
                                             for t in card.targets))
            torch.manual_seed(options.seed)
            task = bar.add_task("predicting", total=g.height * g.width)
            for core in cores:
                moments, _, count = _window_probs(model, inputs, core, tiling, card, options,
                                                  fast, batch)
                valid = ~np.isnan(moments[0])
                n_valid += int(valid.sum())
                bands = target_bands(moments, valid, count, card.targets, card.class_values,
                                     mc, scales)
                dst.write(bands, window=Window(core.col, core.row, core.width, core.height))
                bar.advance(task, core.height * core.width)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        model.eval()
    return PredictResult(
        class_map=out, scores=out, bands=names, grid=g, grid_sensor=inputs.grid_sensor,
        valid_pixels=n_valid, seconds=time.perf_counter() - t0, ignored_sensors=inputs.ignored,
        notes=inputs.notes + tile_notes, method=method if card.task.dense else "per patch",
        sensors=inputs.given, absent=inputs.absent,
        measured=subset_accuracy(card, inputs.given), checks=checks,
        calibration="; ".join(f"{k}: {v}" for k, v in std_tags(card.targets, scales, mc).items())
        or "none: a model with targets")
