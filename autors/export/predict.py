"""`predict_scene`: apply an exported model to GeoTIFFs, window by window, into a class map
and a confidence map (layouts in `autors.export.writer`).

Before the first window, a few windows of each given raster are compared with what the model
was trained on (`autors.export.input_check`: pixel size, units and scale, value ranges, band
order): an error raises InputMismatchError and nothing is written; warnings and figures go to
the result and the maps' tags.

Per core window (see `autors.export.windows`): read the given sensors with their halo on the
reference grid (`autors.export.inputs`, the training reader: values and validity masks, the
sensors not given absent; zeros outside the scene, as training pads), normalise with the
card's statistics, cut patches (patch classification: one per labelled pixel) or tiles (dense
models) as strided views of the values and the masks (`<sensor>__mask`, as in training), run
batches through the PyTorch model rebuilt from arch.json + weights, write the window. Peak
memory depends on --window, --batch-size and the tile memory budget, not on the scene size.

Dense models run overlap-tile: each tile's core is a power-of-two multiple of the model's
output stride (`export.reduction` in the card), on the scene's lattice of that multiple, read
with a halo of the measured receptive radius (`export.receptive_radius`), and only the core is
written. An output pixel then sees exactly what one pass over the whole scene would show it,
so the tiles need no blending and the map is the same whatever the window or tile size,
within float tolerance. The tile core is chosen for a compute overhead (core + 2 halo)^2 /
core^2 of at most 2 and at least 128 px, then bounded by the window, the scene and the
activation memory of one tile (`tile_memory_mb`, measured on the model); tiles per forward
pass fill the same budget (at most 16, one input shape for the whole scene). A radius beyond
`max_halo` (256 px by default) is capped and the tiles' borders are blended instead (see
`autors.export.windows`); a card without the radius (exported before it) gets the former
scheme: training-size tiles overlapping by half, with a note.

A pixel is labelled where a given sensor is valid and, among the given sensors, every one the
card's `require_sensors` requires is (`SceneInputs.labelled`; with the default `any`: nodata
only where no given sensor is valid). The model's confidence there comes from the masks it is
given, so it drops where sensors are missing; the confidence file also counts, per pixel, the
given sensors that are valid (`valid_sensors`).

Patch classifiers whose output is local to the patch (a `centre` head, local fusion, a
receptive field inside the patch) run fully convolutionally instead: one pass per strip of the
window gives every pixel's logits, identical to the per-patch ones (`autors.export.fullconv`;
checked against per-patch inference on the first window, with a fallback).

With `mc_dropout=N` the model's dropout layers stay active (BatchNorm stays in eval mode) and
the N softmax outputs are averaged; an ensemble model (`autors.export.ensemble`) averages its
members' (times the passes). Either way the confidence file adds the predictive entropy of the
mean and the mutual information (entropy of the mean minus the mean entropy of the samples:
the epistemic part, where passes or members disagree), streamed like the rest: each window
carries the mean probabilities and the samples' mean entropy. The fully convolutional path
runs both (one dropout mask per pass over a window, see `autors.export.fullconv`; its parity
check on the first window runs with dropout off).

Calibration (model card `calibration`, format 5): by default every path runs the network
wrapped in `TemperatureScaled` (logits / T, T fitted on validation), so the confidence and
probability bands are calibrated, as model.ts / model.onnx are; `calibrated=False` (CLI
`--uncalibrated`) writes the raw softmax. With `conformal=alpha` (an alpha of the card's
grid, 0.01..0.30) the confidence file adds `set_size` (classes in the split-conformal LAC set
{k: 1 - p_k <= q(alpha)}) and `set_mask` (bit i set where class index i is in the set), from
the calibrated probabilities the quantiles were computed on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor, nn

from autors.data import Grid
from autors.errors import DataError, ModelFolderError
from autors.export.card import CARD_FILE, ModelCard, SubsetCard
from autors.export.ensemble import is_ensemble, sample_log_probs
from autors.export.fullconv import window_logits, window_model, window_probs
from autors.export.input_check import CheckOptions, InputReport, check_prediction
from autors.export.inputs import ReadOverride, SceneInputs, apply_reads, open_inputs
from autors.export.loader import ExportedModel
from autors.export.series import date_masks, refuse_series, series_model
from autors.export.target_maps import predict_targets
from autors.export.windows import (
    MAX_HALO,
    Core,
    Tiling,
    dense_tiling,
    gather_batches,
    plan,
    strided,
)
from autors.export.writer import (
    BLOCK,
    SET_MASK_MAX_CLASSES,
    check_out,
    map_tags,
    map_writer,
    score_bands,
)
from autors.training.calibration import TemperatureScaled
from fusion import DOY_SUFFIX, MASK_SUFFIX

GDAL_CACHE_MB = 64  # bounds GDAL's block cache for the output files (default: 5% of RAM)
# Samples per forward pass when not given: a batch of tiles holds ~T*T/P*P times the pixels.
# Overlap tiles: as many as `tile_memory_mb` holds, at most TILE_BATCH.
PATCH_BATCH, TILE_BATCH = 512, 16
PARITY_PIXELS, PARITY_TOL = 64, 1e-4  # the fully convolutional path's check on its first window


@dataclass(frozen=True)
class PredictOptions:
    window: int = 512  # core window side in pixels
    batch_size: int | None = None  # patches or tiles per forward pass; None: the defaults
    probabilities: bool = False  # add one probability band per class
    mc_dropout: int = 0  # MC-dropout passes; 0 = a single deterministic pass
    grid: str | None = None  # reference grid sensor; None = `inputs.default_grid_sensor`
    seed: int = 0  # seeds the dropout masks of MC dropout
    # patch classifiers: run fully convolutionally when the model allows it (see fullconv.py);
    # False: one forward pass per patch
    fully_convolutional: bool = True
    # dense models: activation memory of one forward pass of tiles (bounds the tile core and
    # the tiles per batch), and the largest halo before tiles are blended instead
    tile_memory_mb: int = 1024
    max_halo: int = MAX_HALO
    # input checks against the model card (autors.export.input_check), and how this scene's
    # rasters store their values where they differ from training (--scale, --sar-units)
    checks: CheckOptions | None = None  # None: the defaults
    reads: tuple[ReadOverride, ...] = ()
    # the card's temperature applied (calibrated confidence; False: the raw softmax), and
    # the error rate of split-conformal prediction sets (an alpha of the card's grid)
    calibrated: bool = True
    conformal: float | None = None

    def __post_init__(self) -> None:
        if self.window < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise ValueError(f"window and batch_size must be >= 1, got {self.window} and "
                             f"{self.batch_size}")
        if self.tile_memory_mb < 1 or self.max_halo < 1:
            raise ValueError(f"tile_memory_mb and max_halo must be >= 1, got "
                             f"{self.tile_memory_mb} and {self.max_halo}")
        if self.mc_dropout < 0 or self.mc_dropout == 1:
            raise ValueError(f"mc_dropout must be 0 (off) or >= 2 passes, got {self.mc_dropout}")
        if self.conformal is not None and not 0 < self.conformal < 1:
            raise ValueError(f"conformal must be an error rate in (0, 1), got {self.conformal}")


@dataclass(frozen=True)
class PredictResult:
    class_map: Path
    scores: Path
    bands: list[str]  # band descriptions of `scores`
    grid: Grid
    grid_sensor: str
    valid_pixels: int  # labelled pixels
    seconds: float
    ignored_sensors: list[str]
    notes: list[str]  # e.g. band names that differ from training (see inputs.SensorSource)
    method: str  # "overlap-tile ...", "per tile", "per patch" or "fully convolutional"
    sensors: list[str]  # the model inputs given, input order
    absent: list[str]  # the model inputs not given (absent: values and masks 0)
    measured: SubsetCard | None  # the card's measured accuracy of `sensors` (None: not)
    checks: InputReport | None = None  # the input checks (passed, warnings, skipped)
    calibration: str = ""  # how the confidence was made (temperature, or raw and why)
    conformal_quantile: float | None = None  # q(alpha) of the set bands, when asked


def subset_accuracy(card: ModelCard, given: list[str]) -> SubsetCard | None:
    """The card's measured test accuracy with exactly the inputs `given`; None when not
    measured (no robustness table, or a subset its rows do not cover)."""
    return None if card.robustness is None else card.robustness.subset(given)


def predict_scene(
    exported: ExportedModel,
    sensors: dict[str, Path],
    out: Path,
    options: PredictOptions = PredictOptions(),
    progress: bool = True,
    masks: dict[str, Path] | None = None,
) -> PredictResult:
    """Predict the scene given by `sensors` ({name: raster}; any non-empty subset of the
    model's inputs) and `masks` ({name: mask raster} of the sensors whose card has a mask
    rule) into `out` (+ `_confidence`)."""
    if exported.card.targets is not None:  # several or continuous targets: their own map
        refuse_series(exported.card, "a map of targets")
        return predict_targets(exported, sensors, out, options, progress, masks)
    t0 = time.perf_counter()
    check_out(out)
    card = apply_reads(exported.card, options.reads)
    inputs = open_inputs(card, sensors, options.grid, masks)
    # time series: window arrays -> dated inputs, with the given dates' days of year
    model = series_model(exported.model.eval(), card, inputs.doys)
    # before any window: InputMismatchError when the scene does not look like training's
    checks, check_tags = check_prediction(exported.path, card, inputs, sensors, masks,
                                          options.reads, options.checks)
    calib = calibration_plan(card, options, exported.path, inputs.absent)
    tiling, batch, method, tile_notes = choose_tiling(exported, inputs, options)
    cores = plan(inputs.grid.height, inputs.grid.width, options.window, tiling, BLOCK)
    uncertain = _uncertain(model, options)  # entropy and mutual information bands
    if card.task.dense and options.batch_size is None:  # no batch padded past a window
        batch = min(batch, max(tiling.tiles(c.height) * tiling.tiles(c.width) for c in cores))
    bands = score_bands(card, uncertain, options.probabilities,
                        conformal=calib.quantile is not None)
    values = np.asarray(card.class_values)
    n_valid = 0
    fast = _FastPath(exported, options, inputs.doys)
    model, fast.model = calib.wrap(model), calib.wrap(fast.model)  # logits / T
    if options.mc_dropout:
        _enable_dropout(model, exported.path)
        if fast.model is not None:  # one mask per pass over a window (autors.export.fullconv)
            _enable_dropout(fast.model, exported.path)
    try:
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), torch.random.fork_rng(), \
                _progress(progress, inputs.grid) as bar, \
                map_writer(out, inputs.grid, card, bands,
                           map_tags(card, inputs.given, inputs.required) | check_tags
                           | calib.tags) as writer:
            torch.manual_seed(options.seed)
            task = bar.add_task("predicting", total=inputs.grid.height * inputs.grid.width)
            for core in cores:
                # [K, h, w], NaN where not labelled; the samples' mean entropy [h, w] (MC
                # dropout, ensembles; else None); given sensors valid per pixel [h, w]
                probs, expected, count = _window_probs(model, inputs, core, tiling, card,
                                                       options, fast, batch)
                valid = ~np.isnan(probs[0])
                n_valid += int(valid.sum())
                classes = np.full(valid.shape, card.ignore_value, dtype=np.int64)
                classes[valid] = values[np.argmax(probs[:, valid], axis=0)]
                scores = _scores(probs, valid, count, options, expected)
                if calib.quantile is not None:  # set_size, set_mask last
                    scores = np.concatenate([scores, conformal_bands(probs, valid,
                                                                     calib.quantile)])
                writer.write(core.row, core.col, classes, scores)
                bar.advance(task, core.height * core.width)
    finally:
        model.eval()  # MC dropout switched dropout layers to training mode
    return PredictResult(
        class_map=writer.paths[0], scores=writer.paths[1], bands=bands, grid=inputs.grid,
        grid_sensor=inputs.grid_sensor, valid_pixels=n_valid,
        seconds=time.perf_counter() - t0, ignored_sensors=inputs.ignored,
        notes=inputs.notes + tile_notes + fast.notes + calib.notes,
        method=method if card.task.dense else fast.method,
        sensors=inputs.given, absent=inputs.absent,
        measured=subset_accuracy(card, inputs.given), checks=checks,
        calibration=calib.text, conformal_quantile=calib.quantile,
    )


# ---- calibration and conformal sets (issue 21) ------------------------------------------
@dataclass(frozen=True)
class CalibrationPlan:
    """How predict turns logits into the confidence file: the temperature applied (None:
    the raw softmax), the conformal quantile of the set bands (None: no set bands), the
    maps' tags, notes and a line saying it."""

    temperature: float | None
    quantile: float | None
    tags: dict[str, str]
    notes: list[str]
    text: str

    def wrap(self, model: nn.Module | None) -> nn.Module | None:
        """`model` with its logits divided by the temperature (unchanged without one)."""
        if model is None or self.temperature is None:
            return model
        return TemperatureScaled(model, self.temperature).eval()


def calibration_plan(card: ModelCard, options: PredictOptions, path: Path,
                     absent: list[str] | None = None) -> CalibrationPlan:
    """The calibration and conformal sets `options` ask of the model of `card` (at `path`);
    DataError or ModelFolderError with the fix when they cannot be had."""
    if card.ensemble is not None:
        return ensemble_calibration(card, options)
    cal, alpha = card.calibration, options.conformal
    if alpha is not None:
        if cal is None:
            raise ModelFolderError(
                f"{path / CARD_FILE} records no conformal quantiles (the model was trained "
                "before calibration): retrain it (`autors train` or a search) and re-export "
                "it, or predict without --conformal")
        if not options.calibrated:
            raise DataError("--conformal sets come from the calibrated probabilities the "
                            "quantiles were computed on: leave out --uncalibrated")
        if options.mc_dropout:
            raise DataError("--conformal quantiles were computed on single deterministic "
                            "passes, so they do not hold for the mean of --mc-dropout passes: "
                            "use one of the two")
        if cal.conformal.quantile(alpha) is None:
            grid = ", ".join(f"{a:g}" for a in cal.conformal.alphas)
            raise DataError(f"--conformal {alpha:g} is not among the error rates the model "
                            f"card records ({grid}): use one of them")
    notes: list[str] = []
    if cal is None:
        text = "raw softmax: the model card records no calibration (trained before it)"
        notes.append(f"{path / CARD_FILE} records no temperature (the model was trained "
                     "before calibration): the confidence is the raw softmax; retrain and "
                     "re-export for a calibrated one")
        tags = {"calibration": "none (raw softmax; the card records no temperature)"}
        return CalibrationPlan(None, None, tags, notes, text)
    if not options.calibrated:
        tags = {"calibration": f"none (raw softmax, --uncalibrated; the card's temperature "
                f"is {cal.temperature:.4g})"}
        return CalibrationPlan(None, None, tags, notes,
                               f"raw softmax (--uncalibrated; card temperature "
                               f"{cal.temperature:.4g})")
    t = cal.temperature
    tags = {"calibration": f"temperature {t:.6g} (fitted on validation): softmax(logits / T)"}
    text = f"calibrated: softmax(logits / {t:.4g}), temperature fitted on validation"
    q = None
    if alpha is not None:
        q = cal.conformal.quantile(alpha)
        tags |= {"conformal_alpha": f"{alpha:g}", "conformal_quantile": f"{q:.9g}",
                 "conformal_score": "lac: class k in the set where 1 - p_k <= quantile"}
        if absent:
            notes.append(f"the conformal quantiles were computed with every input; without "
                         f"{', '.join(absent)} the {1 - alpha:.0%} coverage is not guaranteed")
    return CalibrationPlan(t, q, tags, notes, text)


def ensemble_calibration(card: ModelCard, options: PredictOptions) -> CalibrationPlan:
    """An ensemble (`autors.export.ensemble`) averages its members' temperature-scaled
    probabilities inside the model: nothing to apply here; it has no conformal quantiles of
    its own."""
    assert card.ensemble is not None
    if options.conformal is not None:
        raise DataError("--conformal: the conformal quantiles are computed per model, and an "
                        "ensemble has none of its own; predict without --conformal, or with "
                        "one of its members' exports")
    if not options.calibrated:
        raise DataError("--uncalibrated: an ensemble averages its members' calibrated "
                        "probabilities (their temperatures are part of the model); predict "
                        "without --uncalibrated")
    temps = [m.temperature for m in card.ensemble.members]
    raw = sum(t is None for t in temps)
    text = (f"ensemble of {len(temps)}: the mean of the members' probabilities, "
            + ("each calibrated (its own temperature)" if not raw else
               f"{raw} of them uncalibrated (trained before calibration)"))
    note = (f"{raw} of the ensemble's members have no calibration temperature: their raw "
            "softmax enters the mean")
    notes = [note] if raw else []
    return CalibrationPlan(None, None, {"calibration": text}, notes, text)


def conformal_bands(probs: np.ndarray, valid: np.ndarray, quantile: float) -> np.ndarray:
    """[bands, h, w] float32, NaN where the map has no class: `set_size` (classes with
    1 - p_k <= quantile) and, up to SET_MASK_MAX_CLASSES classes, `set_mask` (sum of 2^k over
    the class indexes k in the set)."""
    k = probs.shape[0]
    inside = (1.0 - probs[:, valid].astype(np.float64)) <= quantile  # [K, n]
    rows = [inside.sum(axis=0)]
    if k <= SET_MASK_MAX_CLASSES:
        rows.append((inside * (2.0 ** np.arange(k))[:, None]).sum(axis=0))
    out = np.full((len(rows), *valid.shape), np.nan, np.float32)
    out[:, valid] = np.stack(rows)
    return out


def choose_tiling(exported: ExportedModel, inputs: SceneInputs, options: PredictOptions
                  ) -> tuple[Tiling, int, str, list[str]]:
    """(tiling, samples per forward pass, method, notes) for predicting `inputs` with
    `exported` (see the module docstring); the caller may lower the batch to the tiles of
    its largest window."""
    card = exported.card
    if not card.task.dense:
        return Tiling.patches(card.task.input_size), options.batch_size or PATCH_BATCH, "", []
    reduction, radius = card.export.reduction, card.export.receptive_radius
    if reduction is None:
        t = card.task.input_size
        note = (f"{exported.path / CARD_FILE} records no receptive radius (exported before "
                f"overlap-tile prediction): tiles of {t} px overlapping by half, as then, so "
                "the map may change with --window; re-export the model for seam-free maps")
        return Tiling.legacy(t), options.batch_size or TILE_BATCH, "per tile", [note]
    per_pixel = activation_bytes(exported.model, card, reduction)
    budget = options.tile_memory_mb * 2**20
    tiling = dense_tiling(reduction, radius, options.window,
                          (inputs.grid.height, inputs.grid.width),
                          lambda side: per_pixel * side * side, budget, options.max_halo)
    fit = int(budget // (per_pixel * tiling.size**2))
    batch = options.batch_size or min(TILE_BATCH, max(1, fit))
    method = f"overlap-tile: {tiling.stride} px cores, {tiling.halo} px halo"
    if not tiling.blend:
        return tiling, batch, method, []
    reach = "beyond what export measured" if radius is None else f"{radius} px"
    note = (f"the model's receptive radius ({reach}) exceeds the {options.max_halo} px halo "
            f"cap: tiles read {tiling.halo} px of context and their borders are blended over "
            f"{2 * tiling.blend} px; the map does not depend on --window and has no seams, "
            "but pixels do not see all the context the model could use")
    return tiling, batch, method + f", borders blended over {2 * tiling.blend} px", [note]


def activation_bytes(model: nn.Module, card: ModelCard, reduction: int) -> float:
    """Bytes of activations per input pixel of a forward pass of `model` (batch one): the
    outputs of all its leaf modules on a probe of side max(64, 4 x reduction), an upper
    bound of what is alive at once (measured peak RSS of a U-Net tile: ~0.8 of it)."""
    side = max(64, 4 * reduction)
    lead = {s.name: (1,) if s.steps is None else (1, s.steps) for s in card.used_sensors}
    x = {s.name: torch.zeros(*lead[s.name], s.in_channels, side, side)
         for s in card.used_sensors}
    if card.export.takes_masks:
        x |= {s.name + MASK_SUFFIX: torch.ones(*lead[s.name], side, side)
              for s in card.used_sensors}
    x |= {s.name + DOY_SUFFIX: torch.linspace(30.0, 330.0, s.steps)[None]
          for s in card.used_sensors if s.steps is not None}
    total = 0

    def count(module: nn.Module, args: object, out: object) -> None:
        nonlocal total
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, Tensor):
                total += t.numel() * t.element_size()

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if not any(True for _ in m.children())]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return max(total, 1) / side**2


class _FastPath:
    """The fully convolutional model of a patch classifier, while it is trusted."""

    def __init__(self, exported: ExportedModel, options: PredictOptions,
                 doys: dict[str, list[int]] | None = None) -> None:
        self.model: nn.Module | None = None
        self.verified = False
        self.notes: list[str] = []
        card = exported.card
        self.seed = options.seed
        if card.task.dense or not options.fully_convolutional:
            return  # tiles, or the caller's choice
        self.model, _ = window_model(exported.model, exported.arch, card.in_channels,
                                     card.task.input_size, card.export.takes_masks,
                                     card.steps)
        if self.model is not None and card.steps:  # window arrays -> dated inputs
            self.model = series_model(self.model, card, doys or {})

    def seeds(self, core: Core, passes: int) -> list[int] | None:
        """MC dropout: a torch seed per pass over the window `core`, from the options' seed
        and the window's place (None without passes)."""
        if not passes:
            return None
        rng = np.random.default_rng([self.seed, core.row, core.col])
        return [int(s) for s in rng.integers(0, 2**62, size=passes)]

    @property
    def method(self) -> str:
        return "fully convolutional" if self.model is not None else "per patch"

    def verify(self, probs: np.ndarray, patch_probs: np.ndarray, where: str) -> bool:
        """Keep the path only if it matches per-patch inference on the sampled pixels."""
        diff = float(np.nanmax(np.abs(probs - patch_probs))) if patch_probs.size else 0.0
        self.verified = diff <= PARITY_TOL
        if not self.verified:
            self.model = None
            self.notes.append(
                f"fully convolutional inference differed from per-patch inference by {diff:.2g} "
                f"on sampled pixels of {where} (limit {PARITY_TOL:g}): predicted per patch")
        return self.verified


def _scores(probs: np.ndarray, valid: np.ndarray, count: np.ndarray, options: PredictOptions,
            expected: np.ndarray | None = None) -> np.ndarray:
    """[bands, h, w] float32 (`writer.score_bands` order): confidence, entropy and mutual
    information (when the samples' mean entropy `expected` is given: MC dropout, ensembles),
    valid_sensors (every pixel), the per-class probabilities (with `probabilities`); NaN where
    the map has no class, except valid_sensors."""
    p = probs[:, valid]  # [K, n]
    out = [p.max(axis=0)]
    if expected is not None:
        total = -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=0)  # entropy of the mean, nats
        out.append(total)
        out.append(np.clip(total - expected[valid], 0.0, None))  # mutual information, nats
    stack = np.full((len(out), *valid.shape), np.nan, np.float32)
    stack[:, valid] = np.stack(out)
    parts = [stack, count[None].astype(np.float32)]
    return np.concatenate(parts + [probs] if options.probabilities else parts)


def model_inputs(card: ModelCard, arrays: dict[str, np.ndarray],
                 valid: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Window tensors as the model takes them: values [C, H, W] and, when the model takes
    masks, `<sensor>__mask` [1, H, W] float32 (1 valid; `windows.gather_batches` makes them
    [B, P, P]). A sensor not given has values and mask 0, as in training. A time series:
    values [T * C, H, W] and its date masks `<sensor>__dates` [T, H, W]
    (`autors.export.series`)."""
    tensors = {n: torch.from_numpy(a) for n, a in arrays.items()}
    if card.export.takes_masks:
        tensors |= {n + MASK_SUFFIX: torch.from_numpy(v[None].astype(np.float32))
                    for n, v in valid.items() if n not in card.steps}
        tensors |= date_masks(card, valid)
    return tensors


def _window_probs(model: nn.Module, inputs: SceneInputs, core: Core, tiling: Tiling,
                  card: ModelCard, options: PredictOptions, fast: _FastPath, batch: int
                  ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Class probabilities of the core window, float32 [K, h, w] (NaN where the map has no
    class), the samples' mean entropy [h, w] (MC dropout or an ensemble; else None), and how
    many given sensors are valid at each pixel, int [h, w]."""
    m = tiling.read_margin
    read_h, read_w = tiling.read_shape(core)
    arrays, sensor_valid = inputs.read(core.row - m, core.col - m, read_h, read_w)
    tensors = model_inputs(card, arrays, sensor_valid)  # [C or 1, read_h, read_w]
    inner = (slice(m, m + core.height), slice(m, m + core.width))
    core_valid = inputs.labelled(sensor_valid)[inner]  # [h, w]
    count = inputs.valid_count(sensor_valid)[inner]  # [h, w]
    k = getattr(model, "channels", card.num_classes)  # targets: `TargetMoments` channels
    uncertain = _uncertain(model, options)
    channels = k + 1 if uncertain else k  # the samples' mean entropy rides as channel K
    if tiling.dense:
        probs = _tile_probs(model, tensors, core_valid, core, tiling, channels, options,
                            batch)
    else:
        probs = _core_probs(model, tensors, core_valid, core, tiling, channels, options,
                            fast, batch)
    return probs[:k], (probs[k] if uncertain else None), count


def _core_probs(model: nn.Module, tensors: dict[str, Tensor], core_valid: np.ndarray,
                core: Core, tiling: Tiling, k: int, options: PredictOptions, fast: _FastPath,
                batch: int) -> np.ndarray:
    """Patch classification: probabilities [K, h, w] of the core's labelled pixels
    (`core_valid`), NaN elsewhere (`k` channels: K, or K + 1 with the samples' mean
    entropy)."""
    halo, size = tiling.halo, tiling.size
    rows, cols = np.nonzero(core_valid)  # [N] each
    uncertain = _uncertain(model, options)
    if fast.model is not None and rows.size and not fast.verified:
        pick = np.random.default_rng(0).permutation(rows.size)[:PARITY_PIXELS]
        with dropout_off(fast.model, model):  # the check compares deterministic passes
            logits = window_logits(fast.model, tensors, halo, core.height, core.width)
            probs = torch.softmax(logits.float(), dim=0).numpy()
            sample = _patch_probs(model, tensors, rows[pick], cols[pick], k, core, size, 0,
                                  batch, uncertain)
        where = f"the window at row {core.row}, column {core.col}"
        fast.verify(probs[:, rows[pick], cols[pick]], sample[:probs.shape[0], rows[pick],
                                                             cols[pick]], where)
    if fast.model is not None and rows.size:
        probs = window_probs(fast.model, tensors, halo, core.height, core.width,
                             fast.seeds(core, options.mc_dropout), uncertain).numpy()
        probs[:, ~core_valid] = np.nan
        return probs
    return _patch_probs(model, tensors, rows, cols, k, core, size, options.mc_dropout, batch,
                        uncertain)


def _tile_probs(model: nn.Module, tensors: dict[str, Tensor], core_valid: np.ndarray,
                core: Core, tiling: Tiling, k: int, options: PredictOptions, batch: int,
                sample: Callable[[dict[str, Tensor]], Tensor] | None = None) -> np.ndarray:
    """Dense models: probabilities [K, h, w] of the core's labelled pixels (`core_valid`),
    NaN elsewhere, from the tiles of `tiling` (see `autors.export.windows`). `sample`: what a
    batch of tiles gives instead of the probabilities, `[B, k, size, size]` (e.g. a feature
    map, `autors.export.features`).

    In "output" coordinates (the read array without its halo) tile (i, j) has its core at
    rows i*s .. i*s + s and reads rows i*s .. i*s + size of the window array; the window
    starts at output row `offset`. Each tile adds its output pixels (the core, plus `blend`
    around it) times their weights to `acc`, which starts `blend` before output row 0; the
    weights sum to one where tiles overlap, so without blending every pixel is its one
    tile's output, unchanged. Tiles whose output holds no labelled pixel are skipped.
    """
    s, b, off = tiling.stride, tiling.blend, tiling.offset
    n_r, n_c = tiling.tiles(core.height), tiling.tiles(core.width)
    span = s + 2 * b  # output pixels of one tile
    labelled = np.zeros((n_r * s + 2 * b, n_c * s + 2 * b), bool)
    labelled[b + off:b + off + core.height, b + off:b + off + core.width] = core_valid
    total = np.pad(labelled.cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # integral image
    r0, c0 = np.arange(n_r) * s, np.arange(n_c) * s
    r1, c1 = r0 + span, c0 + span
    needed = (total[np.ix_(r1, c1)] - total[np.ix_(r0, c1)] - total[np.ix_(r1, c0)]
              + total[np.ix_(r0, c0)]) > 0  # [n_r, n_c]
    weight = np.outer(tiling.weights(), tiling.weights())  # [span, span]
    acc = np.zeros((k, *labelled.shape), np.float32)
    weights = np.zeros(labelled.shape, np.float32)
    rows, cols = (torch.from_numpy(i) for i in np.nonzero(needed))
    views = strided(tensors, tiling.size, s)  # [C, n_r, n_c, size, size]
    lo = tiling.halo - b
    uncertain = _uncertain(model, options)
    for sl, tiles in gather_batches(views, rows, cols, batch):
        p = (_probs(model, tiles, options.mc_dropout, uncertain) if sample is None
             else sample(tiles))[:, :, lo:lo + span, lo:lo + span]
        for t, (i, j) in enumerate(zip(rows[sl].tolist(), cols[sl].tolist())):
            out = (slice(i * s, i * s + span), slice(j * s, j * s + span))
            acc[(slice(None), *out)] += p[t].numpy() * weight
            weights[out] += weight
    inner = (slice(b + off, b + off + core.height), slice(b + off, b + off + core.width))
    with np.errstate(invalid="ignore", divide="ignore"):
        probs = acc[(slice(None), *inner)] / weights[inner]
    probs[:, ~core_valid] = np.nan
    return probs


def _patch_probs(model: nn.Module, tensors: dict[str, Tensor], rows: np.ndarray,
                 cols: np.ndarray, k: int, core: Core, size: int, passes: int, batch: int,
                 uncertain: bool = False) -> np.ndarray:
    """[k, h, w] probabilities of core pixels (rows, cols), one patch each (and, with
    `uncertain`, the samples' mean entropy as the last of the k channels); NaN elsewhere."""
    probs = np.full((k, core.height, core.width), np.nan, np.float32)
    views = strided(tensors, size, 1)  # [C, h, w, P, P]: patch of core pixel (r, c)
    for sl, patches in gather_batches(views, torch.from_numpy(rows), torch.from_numpy(cols),
                                      batch):
        r, c = rows[sl], cols[sl]  # numpy indexes: a 1-element tensor would act as a scalar
        probs[:, r, c] = _probs(model, patches, passes, uncertain)[: len(r)].T.numpy()
    return probs


def _uncertain(model: nn.Module, options: PredictOptions) -> bool:
    """Whether predictions have several samples (MC dropout passes, an ensemble's members),
    so the samples' mean entropy rides along as channel K."""
    return options.mc_dropout > 0 or is_ensemble(model)


def _probs(model: nn.Module, batch: dict[str, Tensor], passes: int, uncertain: bool = False
           ) -> Tensor:
    """Mean softmax probabilities [B, K, ...] over the samples: `passes` dropout passes (one
    if 0) times an ensemble's members; with `uncertain`, the samples' mean entropy (nats) as
    channel K: [B, K + 1, ...]."""
    with torch.inference_mode():
        total, n = None, 0
        for _ in range(max(passes, 1)):
            if getattr(model, "moments", False):  # targets: per-sample moments, averaged
                part = model(batch)
                if uncertain:  # no entropy of several targets: a zero channel keeps the shape
                    part = torch.cat([part, torch.zeros_like(part[:, :1])], dim=1)
                total = part if total is None else total + part
                n += 1
                continue
            logp = sample_log_probs(model, batch)  # [S, B, K, ...]
            p = logp.exp()
            part = p.sum(dim=0)
            if uncertain:
                part = torch.cat([part, -(p * logp).sum(dim=2).sum(dim=0).unsqueeze(1)], dim=1)
            total = part if total is None else total + part
            n += logp.shape[0]
        return total / n


def _dropout_layers(model: nn.Module) -> list[nn.Module]:
    """The model's dropout layers with a rate > 0 (the head's `nn.Dropout`, the branches' and
    trunk's `nn.Dropout2d`)."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]


class dropout_off:  # a context manager, named like torch.no_grad
    """Within the block, the dropout layers of `models` are in eval mode; restored after."""

    def __init__(self, *models: nn.Module | None) -> None:
        self.layers = [m for model in models if model is not None
                       for m in _dropout_layers(model)]

    def __enter__(self) -> None:
        self.modes = [m.training for m in self.layers]
        for m in self.layers:
            m.eval()

    def __exit__(self, *exc: object) -> None:
        for m, mode in zip(self.layers, self.modes):
            m.train(mode)


def _enable_dropout(model: nn.Module, path: Path) -> None:
    """Switch the dropout layers (only) to training mode for MC dropout."""
    layers = _dropout_layers(model)
    if not layers:
        raise ModelFolderError(
            f"{path}: the model has no active dropout layer (head.dropout is 0 in arch.json "
            "and no branch or trunk has a dropout), so --mc-dropout passes would all be "
            "identical; predict without --mc-dropout"
        )
    for m in layers:
        m.train()


def _progress(enabled: bool, grid: Grid) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(),
        TextColumn("{task.percentage:>5.1f}% of " + f"{grid.height} x {grid.width} px"),
        TimeElapsedColumn(), TimeRemainingColumn(), disable=not enabled, transient=False,
    )
