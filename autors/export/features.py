"""A searched network's layers, reused: its feature maps as GeoTIFFs and as ONNX graphs.

    autors predict MODEL --sensor ... --out MAP.tif --features STAGE   # + MAP_<stage>_features.tif
    autors export RUN --out DIR --features STAGE                       # + DIR/features_<stage>.onnx

The stages are the model's own (`fusion.FusionModel.feature_stages()`): "fused" (what the
fusion operator outputs: the map the trunk reads), "trunk" (after the shared trunk, when the
model has one), "decoder" (the decoder's output, what a dense head reads, in encoder-decoders).
Late fusion fuses logits and has none; an ensemble has one map per member and none of its own.

`predict_features` streams the scene window by window like `autors predict` (the same inputs,
validity rules and input checks) into a float16 GeoTIFF on the map's grid, one band per
channel (`<stage>_<i>`), NaN where the map has no class:
- patch classifiers: a pixel's features are the stage's feature vector at the centre of its
  patch (the pixel itself). Where the stage is local to the patch (local fusion operators, a
  measured receptive field inside the patch) one pass per strip of the window gives them all,
  checked against per-patch passes on the first window (falling back, with a note, on any
  difference); otherwise one pass per patch.
- dense models: overlap tiles as `autors predict` runs them (the model's receptive radius
  bounds the stage's); a stage coarser than the input (an encoder-decoder's fused or trunk
  map at 1/r) is repeated over its r x r cells, so the file stays on the map's grid (every
  block of r x r pixels on the scene's lattice holds one feature vector).
The file is Float32 with GDAL's NBITS=16 (IEEE half floats on disk; GDAL reads them back as
Float32), tiled, DEFLATE-compressed, published under its final name only when complete.

`add_feature_onnx` writes `features_<stage>.onnx` into an exported folder: the model's inputs
(as model.onnx), output "features" `[B, C, H / r, W / r]` with dynamic batch, height and
width, checked against PyTorch on two input sizes (max |diff| <= PARITY_ATOL, recorded in the
card's `export.features` with the channels and r).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window
from torch import Tensor, nn

import fusion
from autors.data import Grid
from autors.errors import DataError, ModelFolderError
from autors.export.card import CARD_FILE, FeatureCard, ModelCard, read_card
from autors.export.export import _EXPECTED_WARNINGS, PARITY_ATOL, parity_masks
from autors.export.fullconv import _strips, receptive_radius
from autors.export.input_check import check_prediction
from autors.export.inputs import apply_reads, open_inputs
from autors.export.loader import ExportedModel, load_exported
from autors.export.predict import (
    GDAL_CACHE_MB,
    PARITY_PIXELS,
    PARITY_TOL,
    PredictOptions,
    _tile_probs,
    choose_tiling,
    model_inputs,
)
from autors.export.series import refuse_series
from autors.export.windows import Core, Tiling, gather_batches, plan, strided
from autors.export.writer import BLOCK, check_out, map_tags
from autors.files import file_sha256, write_atomic
from autors.training.cost import random_inputs
from fusion import MASK_SUFFIX

ONNX_NAME = "features_{stage}.onnx"


def feature_model(exported: ExportedModel, stage: str) -> fusion.FeatureExtractor:
    """The exported model's feature map `stage` as a model (eval mode); ModelFolderError
    naming the stages the model has."""
    if exported.is_ensemble:
        raise ModelFolderError(
            f"{exported.path} is an ensemble: each member has its own feature maps and the "
            "ensemble none of its own; export one of its members' runs without --ensemble "
            "for --features")
    return stage_model(exported.model, stage, str(exported.path / "arch.json"))


def stage_model(model: nn.Module, stage: str, where: str) -> fusion.FeatureExtractor:
    """`FeatureExtractor(model, stage)` in eval mode; a ModelFolderError naming `where` and
    the stages `model` has when it has no `stage`."""
    stages = getattr(model, "feature_stages", list)()
    if stage not in stages:
        have = f"its stages are {', '.join(stages)}" if stages else \
            "it has no feature stage (late fusion fuses the sensors' logits)"
        raise ModelFolderError(f"--features {stage}: the model of {where} has no stage "
                               f"{stage!r}; {have}")
    return fusion.FeatureExtractor(model, stage).eval()


def stage_shape(extractor: nn.Module, in_channels: dict[str, int], masks: bool
                ) -> tuple[int, int]:
    """(channels, reduction) of a feature extractor, measured on a probe."""
    side = 4 * int(getattr(extractor.model, "reduction", 1)) * 4
    x = {n: torch.zeros(1, c, side, side) for n, c in in_channels.items()}
    if masks:
        x |= {n + MASK_SUFFIX: torch.ones(1, side, side) for n in in_channels}
    with torch.inference_mode():
        y = extractor(x)
    return int(y.shape[1]), side // int(y.shape[-1])


# ---- the feature-extractor ONNX graph ----------------------------------------------------------
def add_feature_onnx(folder: str | Path, stages: list[str]) -> list[FeatureCard]:
    """Write `features_<stage>.onnx` for each of `stages` into the exported folder `folder`
    and record them in its card (`export.features`, `files`); see the module docstring."""
    import onnx
    import onnxruntime as ort

    folder = Path(folder)
    exported = load_exported(folder)
    card = exported.card
    if card.export.onnx_opset is None:
        raise ModelFolderError(f"{folder} was exported without ONNX (the task's export."
                               "formats): feature graphs are ONNX; export with onnx")
    extractors = {s: feature_model(exported, s) for s in stages}  # every stage checked first
    used = card.inputs
    in_channels = {s: card.in_channels[s] for s in used}
    size, r = card.task.input_size, int(getattr(exported.model, "reduction", 1))
    checks = []
    for batch, h, w in ((3, size, size), (2, size + r, size + 2 * r)):
        x = {n: t[..., :h, :w].contiguous()
             for n, t in random_inputs(in_channels, max(h, w), batch, seed=1).items()}
        if card.export.takes_masks:
            x |= {n: m[..., :h, :w].contiguous()
                  for n, m in parity_masks(used, max(h, w), batch, seed=1).items()}
        checks.append(x)
    names = list(checks[0])
    axes = {n: ({0: "batch", 1: "height", 2: "width"} if n.endswith(MASK_SUFFIX)
                else {0: "batch", 2: "height", 3: "width"}) for n in names}
    axes["features"] = {0: "batch", 2: "height", 3: "width"}
    cards = []
    for stage, extractor in extractors.items():
        name = ONNX_NAME.format(stage=stage)
        tmp = folder / f".{name}.partial-{os.getpid()}"
        try:
            with warnings.catch_warnings():
                for pattern in _EXPECTED_WARNINGS:
                    warnings.filterwarnings("ignore", message=pattern)
                torch.onnx.export(extractor, (checks[0], {}), str(tmp), dynamo=False,
                                  opset_version=card.export.onnx_opset, input_names=names,
                                  output_names=["features"], dynamic_axes=axes)
            onnx.checker.check_model(str(tmp))
            session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
            got_names = [i.name for i in session.get_inputs()]
            diff = 0.0
            for x in checks:
                with torch.no_grad():
                    want = extractor(x).numpy()
                (got,) = session.run(["features"], {n: x[n].numpy() for n in got_names})
                d = float(np.abs(got - want).max()) if got.shape == want.shape else np.inf
                if not d <= PARITY_ATOL:
                    raise RuntimeError(
                        f"{name}: features differ from the PyTorch model (shape {got.shape} "
                        f"vs {want.shape}, max |diff| {d:.3g} > {PARITY_ATOL}); please report "
                        "this arch")
                diff = max(diff, d)
            os.replace(tmp, folder / name)
        finally:
            tmp.unlink(missing_ok=True)
        channels, reduction = stage_shape(extractor, in_channels, card.export.takes_masks)
        cards.append(FeatureCard(stage=stage, file=name, channels=channels,
                                 reduction=reduction, parity=diff))
    kept = [f for f in card.export.features if f.stage not in extractors]
    export = card.export.model_copy(update={"features": kept + cards})
    files = dict(card.files) | {c.file: file_sha256(folder / c.file) for c in cards}
    new = ModelCard.model_validate(card.model_copy(update={"export": export, "files": files})
                                   .model_dump())
    write_atomic(folder / CARD_FILE, new.to_json())
    read_card(folder)  # what was written reads back
    return cards


# ---- the feature GeoTIFF -----------------------------------------------------------------------
def features_path(out: Path, stage: str) -> Path:
    """MAP.tif -> MAP_<stage>_features.tif (same folder)."""
    return out.with_name(f"{out.stem}_{stage}_features{out.suffix}")


@dataclass(frozen=True)
class FeaturesResult:
    path: Path
    stage: str
    channels: int
    reduction: int  # the stage's map is this many times coarser (repeated over r x r cells)
    method: str  # "fully convolutional", "per patch" or the overlap-tile line
    seconds: float
    notes: list[str]


def predict_features(exported: ExportedModel, sensors: dict[str, Path], out: Path,
                     stage: str, options: PredictOptions | None = None,
                     masks: dict[str, Path] | None = None) -> FeaturesResult:
    """Write the features of `stage` for the scene `sensors` (as `predict_scene` reads it) to
    `features_path(out, stage)`; see the module docstring."""
    t0 = time.perf_counter()
    refuse_series(exported.card, "--features")
    options = options or PredictOptions()
    out = check_out(out)
    card = apply_reads(exported.card, options.reads)
    extractor = feature_model(exported, stage)
    inputs = open_inputs(card, sensors, options.grid, masks)
    _, check_tags = check_prediction(exported.path, card, inputs, sensors, masks,
                                     options.reads, options.checks)
    channels, reduction = stage_shape(extractor, card.in_channels, card.export.takes_masks)
    tiling, batch, method, notes = choose_tiling(exported, inputs, options)
    cores = plan(inputs.grid.height, inputs.grid.width, options.window, tiling, BLOCK)
    fast = None
    if not card.task.dense and options.fully_convolutional:
        fast, why = _window_extractor(extractor, exported, card)
        if fast is None and why:
            notes = notes + [f"features per patch: {why}"]
    if not card.task.dense:
        method = "fully convolutional" if fast is not None else "per patch"
    tags = map_tags(card, inputs.given, inputs.required) | check_tags | {
        "feature_stage": stage, "feature_reduction": str(reduction),
        "feature_source": f"{exported.path / CARD_FILE}: {stage} map of "
                          f"{exported.arch.summary()}"}
    path = features_path(out, stage)
    verified = False
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), \
            _FeatureWriter(path, inputs.grid, stage, channels, tags) as writer:
        for core in cores:
            m = tiling.read_margin
            read_h, read_w = tiling.read_shape(core)
            arrays, valid = inputs.read(core.row - m, core.col - m, read_h, read_w)
            tensors = model_inputs(card, arrays, valid)
            inner = (slice(m, m + core.height), slice(m, m + core.width))
            core_valid = inputs.labelled(valid)[inner]
            if card.task.dense:
                feats = _tile_probs(extractor, tensors, core_valid, core, tiling, channels,
                                    options, batch, sample=_Upsampled(extractor, reduction))
            else:
                feats, fast, verified, note = _patch_features(
                    extractor, fast, verified, tensors, core_valid, core, tiling, channels,
                    batch)
                if note:
                    notes = notes + [note]
                    method = "per patch"
            writer.write(core, feats)
    return FeaturesResult(path=path, stage=stage, channels=channels, reduction=reduction,
                          method=method, seconds=time.perf_counter() - t0, notes=notes)


class _Upsampled(nn.Module):
    """A dense stage map repeated over its r x r cells, `[B, C, H, W]` (cropped to the input)."""

    def __init__(self, extractor: nn.Module, r: int) -> None:
        super().__init__()
        self.extractor, self.r = extractor, r

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        with torch.inference_mode():
            y = self.extractor(x).float()
        h, w = next(t for n, t in x.items() if not n.endswith(MASK_SUFFIX)).shape[-2:]
        if self.r > 1:
            y = y.repeat_interleave(self.r, dim=2).repeat_interleave(self.r, dim=3)
        return y[:, :, :h, :w]


def _window_extractor(extractor: fusion.FeatureExtractor, exported: ExportedModel,
                      card: ModelCard) -> tuple[nn.Module | None, str]:
    """The extractor when the stage is local to the patch (run on whole strips), else (None,
    why)."""
    ops = [op for op in extractor.modules() if isinstance(op, fusion.FusionOp)]
    if not all(op.local for op in ops):
        return None, (f"the '{exported.arch.fusion.op}' fusion operator pools over the patch "
                      "or mixes positions")
    size = card.task.input_size
    channels = {s.name: s.in_channels for s in card.used_sensors}
    before = [(p, p.requires_grad) for p in extractor.parameters()]
    for p, _ in before:
        p.requires_grad_(True)
    try:
        radius = receptive_radius(extractor, channels, 3 * size, card.export.takes_masks)
    finally:
        extractor.zero_grad(set_to_none=True)
        for p, flag in before:
            p.requires_grad_(flag)
    if radius > size // 2:
        return None, (f"the {extractor.stage} map's receptive field reaches {radius} px, "
                      f"beyond the patch's {size // 2}")
    return extractor, ""


def _patch_features(extractor: nn.Module, fast: nn.Module | None, verified: bool,
                    tensors: dict[str, Tensor], core_valid: np.ndarray, core: Core,
                    tiling: Tiling, channels: int, batch: int
                    ) -> tuple[np.ndarray, nn.Module | None, bool, str]:
    """Patch classifiers: (features [C, h, w] of the core's labelled pixels, NaN elsewhere,
    the window extractor still trusted, verified, a note when it was dropped)."""
    rows, cols = np.nonzero(core_valid)
    if fast is not None and rows.size:
        feats = _strip_features(fast, tensors, tiling.halo, core.height, core.width)
        feats[:, ~core_valid] = np.nan
        if verified:
            return feats, fast, True, ""
        pick = np.random.default_rng(0).permutation(rows.size)[:PARITY_PIXELS]
        sample = _centre_features(extractor, tensors, rows[pick], cols[pick], core,
                                  tiling.size, channels, batch)
        diff = float(np.nanmax(np.abs(feats[:, rows[pick], cols[pick]]
                                      - sample[:, rows[pick], cols[pick]])))
        if diff <= PARITY_TOL:
            return feats, fast, True, ""
        note = (f"fully convolutional features differed from per-patch ones by {diff:.2g} on "
                f"sampled pixels of the window at row {core.row}, column {core.col} (limit "
                f"{PARITY_TOL:g}): computed per patch")
        return (_centre_features(extractor, tensors, rows, cols, core, tiling.size, channels,
                                 batch), None, False, note)
    return (_centre_features(extractor, tensors, rows, cols, core, tiling.size, channels,
                             batch), fast, verified, "")


def _strip_features(extractor: nn.Module, tensors: dict[str, Tensor], halo: int, height: int,
                    width: int) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for _, rows, strip in _strips(tensors, halo, height):
            y = extractor(strip)[0].float()  # [C, STRIP + 2 halo, cols]
            out.append(y[:, halo:halo + rows, halo:halo + width])
    return torch.cat(out, dim=1).numpy()


def _centre_features(extractor: nn.Module, tensors: dict[str, Tensor], rows: np.ndarray,
                     cols: np.ndarray, core: Core, size: int, channels: int, batch: int
                     ) -> np.ndarray:
    """[C, h, w]: the stage's vector at the centre of each pixel's own patch; NaN elsewhere."""
    feats = np.full((channels, core.height, core.width), np.nan, np.float32)
    views = strided(tensors, size, 1)
    c = size // 2
    with torch.inference_mode():
        for sl, patches in gather_batches(views, torch.from_numpy(rows),
                                          torch.from_numpy(cols), batch):
            r, k = rows[sl], cols[sl]
            y = extractor(patches)[: len(r), :, c, c].float()  # [n, C]
            feats[:, r, k] = y.T.numpy()
    return feats


class _FeatureWriter:
    """The feature GeoTIFF (see the module docstring), renamed into place when complete."""

    def __init__(self, path: Path, grid: Grid, stage: str, channels: int,
                 tags: dict[str, str]) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
        self.grid, self.stage, self.channels, self.tags = grid, stage, channels, tags

    def __enter__(self) -> _FeatureWriter:  # noqa: PYI034 - a final class
        g = self.grid
        if self.channels > 65535:
            raise DataError(f"{self.channels} feature channels: more than a GeoTIFF holds")
        self.ds = rasterio.open(
            self.tmp, "w", driver="GTiff", width=g.width, height=g.height,
            count=self.channels, dtype="float32", nbits=16, nodata=float("nan"), crs=g.crs,
            transform=g.transform, tiled=True, blockxsize=BLOCK, blockysize=BLOCK,
            compress="deflate", predictor=3, BIGTIFF="IF_SAFER",
            interleave="pixel" if self.channels <= 64 else "band")
        for i in range(1, self.channels + 1):
            self.ds.set_band_description(i, f"{self.stage}_{i - 1}")
        self.ds.update_tags(**self.tags)
        return self

    def write(self, core: Core, feats: np.ndarray) -> None:
        window = Window(core.col, core.row, core.width, core.height)
        self.ds.write(feats.astype(np.float32, copy=False), window=window)

    def __exit__(self, kind: object, *rest: object) -> None:
        self.ds.close()
        if kind is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
