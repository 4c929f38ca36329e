"""`export_model`: turn one trained model of a run folder into a self-describing folder.

    DIR/arch.json    fusion.Arch.to_dict(): `fusion.build_model(arch, in_channels, K)` rebuilds
                     the network (in_channels and K are in model.json)
    DIR/weights.pt   its state_dict (CPU tensors), byte copy of the run's weights; load with
                     `torch.load(path, weights_only=True)`
    DIR/model.ts     TorchScript (`torch.jit.load`): takes {sensor: [B, C, S, S],
                     sensor__mask: [B, S, S]} -> logits (a mask left out: valid everywhere),
                     divided by the card's calibration temperature when the run has one
    DIR/model.onnx   ONNX: one input per used sensor (named after it), then one validity mask
                     per used sensor (`<sensor>__mask`, float32, 1 valid), dynamic batch
                     axis (dense models: dynamic height and width too), output "logits"
                     (calibrated as model.ts's)
    DIR/model.json   the model card (`autors.export.card`; `export.inputs` lists the tensors)

A run calibrated on validation (`autors.training.calibration`: every `autors train` and final
model since format 5) has its temperature T compiled into both formats (the network wrapped in
`TemperatureScaled`: logits / T, so their softmax is calibrated) and recorded in the card's
`calibration`, with the conformal quantiles and the run's test figures of both; weights.pt
stays the raw network's.

Both compiled formats are checked against the PyTorch model (calibrated as they are) on random
inputs and random masks (holes, a sensor missing from a whole sample, a pixel without any
sensor) before the folder is published (max |logit difference| <= PARITY_ATOL, recorded in the
card); dense models also on a second, non-square input (S + R) x (S + 2R), R the output
stride, as prediction tiles differ from the training size. For dense models the card records
the output stride (`model.reduction`) and the receptive radius measured on the model in eval
mode (`fusion.receptive_radius`, through the validity masks too): the halo of overlap-tile
prediction (`autors.export.windows`). The folder is written under a temporary name and renamed
when complete.
"""

from __future__ import annotations

import shutil
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from autors.config import TaskSpec
from autors.data.labels import layout
from autors.errors import AutorsError, ModelFolderError
from autors.export.card import (
    CARD_FILE,
    CARD_FORMAT,
    CalibrationCard,
    CalibrationFigures,
    ClassCard,
    CloudCard,
    ConformalCard,
    CostCard,
    CoverageCard,
    DateCard,
    ExportInfo,
    IntervalCard,
    MaskRule,
    Metrics,
    MetricSummary,
    ModelCard,
    PluginCard,
    Provenance,
    ReadSpec,
    RobustnessCard,
    SensorCard,
    SubsetCard,
    TargetCard,
    TaskCard,
    TensorCard,
    input_tensors,
)
from autors.export.source import Candidate, select
from autors.files import atomic_folder, file_sha256, versions
from autors.plugins import task_plugins
from autors.search.plots import plot_pareto
from autors.search.records import TrialRecord
from autors.search.report import pareto, picks_of, retrained
from autors.search.search_folder import SearchFolder
from autors.training.calibration import TemperatureScaled
from autors.training.cost import random_inputs
from autors.training.train_folder import TrainFolder
from fusion import CLOUDED_KINDS, DOY_SUFFIX, MASK_SUFFIX, receptive_radius

PARITY_ATOL = 1e-4
PARITY_BATCH = 3
PARITY_HOLES = 0.3  # share of invalid pixels in the parity check's random masks
# The receptive radius: inputs of up to RADIUS_MAX_SIZE px (a larger radius is recorded as
# None: prediction caps its halo well below), RADIUS_SAMPLES random inputs at once (memory of
# the backward pass: ~2.4 GB for a width-64 U-Net at 513 px).
RADIUS_MAX_SIZE, RADIUS_SAMPLES = 512, 2
CARD_METRICS = ("oa", "aa", "kappa", "miou", "ece")
TS_FILE, ONNX_FILE = "model.ts", "model.onnx"

# torch 2.13 deprecates torch.jit.* and the TorchScript-based ONNX exporter; both still work
# and are what this format ships (the dynamo exporter needs onnxscript, not installed).
_EXPECTED_WARNINGS = (
    r"`torch\.jit\.\w+` is deprecated",
    "You are using the legacy TorchScript-based ONNX export",
    "The feature will be removed",
)


# `autors export --pick`: the final phase's reasons (final.jsonl `picked`, see
# autors.search.front.spread) a user can ask for by name.
PICKS = ("knee", "smallest", "most-accurate")


def _retrained_order(run: Path
                     ) -> tuple[list[TrialRecord], dict[int, list[str]], list[TrialRecord]]:
    """A search folder's retrained trials in rank order (rank r = item r-1, as
    `source.list_candidates` ranks them), why each was picked, and every trial record."""
    folder = SearchFolder(run)
    try:
        rows, _ = folder.read_final()
        records, _ = folder.read_trials()
    except AutorsError as err:
        raise ModelFolderError(f"search run {run}: {err}") from None
    rows = [r for r in rows if r.get("status") == "ok" and "run_dir" in r]
    return retrained(records, rows), picks_of(rows), records


def rank_picks(run: str | Path) -> dict[int, list[str]]:
    """rank -> why the search's final phase picked that model ({} for a train folder)."""
    run = Path(run)
    if not (run / "trials.jsonl").is_file():
        return {}
    order, picks, _ = _retrained_order(run)
    return {rank: picks.get(rec.trial_id, []) for rank, rec in enumerate(order, start=1)}


def pick_rank(run: str | Path, pick: str) -> int:
    """The rank of the final model the search picked as `pick` (knee, smallest,
    most-accurate); ModelFolderError saying what was picked otherwise."""
    run = Path(run)
    if not (run / "trials.jsonl").is_file():
        raise ModelFolderError(f"--pick {pick}: {run} is not an `autors search` run folder; a "
                               "train folder holds one model (no --pick, or --rank 1)")
    order, picks, _ = _retrained_order(run)
    for rank, rec in enumerate(order, start=1):
        if pick in picks.get(rec.trial_id, []):
            return rank
    known = "; ".join(f"rank {i}: {', '.join(picks.get(r.trial_id) or ['-'])}"
                      for i, r in enumerate(order, start=1))
    raise ModelFolderError(
        f"--pick {pick}: no final model of {run} was picked as {pick!r} (a search with "
        "search.objectives picks knee, most-accurate and smallest; a single-objective search "
        f"retrains its top-k by score). Its final models: {known or 'none'}; use --rank N")


def _trade_off_png(run: Path, rank: int, path: Path) -> None:
    """The search's pareto.png again, with the exported model starred (and the other picks).
    A search folder whose task copy cannot be read gets no plot (the model is still exported:
    the plot is an extra, the task is read from the model's own train folder)."""
    order, picks, records = _retrained_order(run)
    try:
        spec = SearchFolder(run).load_task().search
    except AutorsError:
        return
    marks = {t: "/".join(why) for t, why in picks.items() if why}
    exported = order[rank - 1].trial_id
    marks[exported] = "EXPORTED" + (f" ({marks[exported]})" if exported in marks else "")
    plot_pareto(records, pareto(records, spec), spec.front_objectives, path, marks=marks,
                explicit=bool(spec.objectives))


def export_model(run: str | Path, out: str | Path, rank: int = 1) -> Path:
    """Export the model of rank `rank` of run folder `run` into the new folder `out`; from a
    search folder also `pareto.png`, the trade-off with the exported model starred."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelFolderError(f"--out {out} already exists and is not empty: choose another "
                               "folder or remove it")
    candidate = select(run, rank)
    chosen = candidate.best
    task = _task_of(chosen)
    model = chosen.load_model()  # eval mode, CPU
    with atomic_folder(out) as tmp:
        shutil.copyfile(chosen.path / "arch.json", tmp / "arch.json")
        shutil.copyfile(chosen.path / "weights.pt", tmp / "weights.pt")
        calibration = chosen.calibration
        compiled = model if calibration is None else \
            TemperatureScaled(model, calibration.temperature).eval()
        parity = _write_compiled(compiled, chosen, task, tmp)
        if candidate.kind == "search":
            _trade_off_png(Path(run), rank, tmp / "pareto.png")
        context = dense_context(model, chosen) if chosen.arch.dense else (None, None)
        try:
            card = build_card(candidate, chosen, task, parity, tmp, context,
                              calibration_card(chosen, in_compiled=bool(parity)))
        except (KeyError, TypeError, ValidationError) as err:
            raise ModelFolderError(
                f"run folder {chosen.path}: its metrics.json / run.json lack what the model "
                f"card needs ({type(err).__name__}: {err}); was it written by `autors train`?"
            ) from None
        (tmp / CARD_FILE).write_text(card.to_json())
    return out


def _task_of(run: TrainFolder) -> TaskSpec:
    try:
        return TaskSpec.from_dict(run.run["task"]["spec"])
    except (KeyError, TypeError, ValidationError) as err:
        raise ModelFolderError(
            f"{run.path / 'run.json'}: task.spec cannot be read by this autors ({err}); "
            "the run was written by another version"
        ) from None


def _write_compiled(model: nn.Module, run: TrainFolder, task: TaskSpec, folder: Path
                    ) -> dict[str, float]:
    """Write model.ts / model.onnx as the task's `export.formats` asks; max |diff| per format."""
    size = task.sample_size
    # Arch order: the ONNX graph takes the used sensors, then their masks, in this order.
    in_channels = {s: run.in_channels[s] for s in run.arch.branches}
    steps = run.steps  # time series: {sensor: T}
    shapes = [(PARITY_BATCH, size, size)]
    if run.arch.dense:  # prediction tiles: other sizes, a multiple of the stride from it
        r = int(getattr(model, "reduction", 1))
        shapes.append((2, size + r, size + 2 * r))
    checks = []  # (inputs, PyTorch's logits) per shape
    for batch, h, w in shapes:
        drawn = random_inputs(in_channels, max(h, w), batch, seed=1, dates=steps)
        # [B, (T,) C, H, W], then the masks [B, (T,) H, W], then the days of year [B, T]
        x = {n: drawn[n][..., :h, :w] for n in in_channels}
        x |= {n: m[..., :h, :w] for n, m in parity_masks(run.arch.sensors, max(h, w), batch,
                                                          seed=1, dates=steps).items()}
        x |= {n: t for n, t in drawn.items() if n.endswith(DOY_SUFFIX)}
        x = {n: t.contiguous() for n, t in x.items()}
        with torch.no_grad():
            checks.append((x, model(x).numpy()))
    parity: dict[str, float] = {}
    with warnings.catch_warnings():
        for pattern in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        if "torchscript" in task.export.formats:
            torch.jit.save(torch.jit.script(model), folder / TS_FILE)
            loaded = torch.jit.load(folder / TS_FILE)
            with torch.no_grad():
                parity["torchscript"] = max(_check(loaded(x).numpy(), want, TS_FILE)
                                            for x, want in checks)
        if "onnx" in task.export.formats:
            parity["onnx"] = _write_onnx(model, checks, task.export.onnx_opset, folder,
                                         run.arch.sensors, run.arch.dense)
    return parity


def dense_context(model: nn.Module, run: TrainFolder) -> tuple[int, int | None]:
    """(output stride, receptive radius) of the dense model of `run`, in eval mode; the
    radius is None beyond RADIUS_MAX_SIZE. Measured through the validity masks too (as
    values in (0.5, 1.5), so no value is zeroed and every use of a mask has a gradient)."""
    used = run.arch.sensors
    steps = {s: t for s, t in run.steps.items() if s in used}
    probe = _WithMasks(model, used, steps)
    # a time series: its dates flat on the channel axis, its date masks T channels
    channels = {s: run.in_channels[s] * steps.get(s, 1) for s in used}
    channels |= {s + MASK_SUFFIX: steps.get(s, 1) for s in used}
    try:
        radius: int | None = receptive_radius(
            probe, channels, samples=RADIUS_SAMPLES, max_size=RADIUS_MAX_SIZE)
    except ValueError:
        radius = None
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()
    return probe.reduction, radius


class _WithMasks(nn.Module):
    """`model` taking its masks as one-channel inputs `[B, 1, H, W]` of any value (mapped
    into (0.5, 1.5)), so `fusion.receptive_radius` measures through them. A time series
    (`steps`): values `[B, T * C, H, W]` and date masks `[B, T, H, W]`, days of year spread
    over the year."""

    def __init__(self, model: nn.Module, used: list[str], steps: dict[str, int]) -> None:
        super().__init__()
        self.model, self.used, self.steps = model, used, steps
        self.reduction = int(getattr(model, "reduction", 1))

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        masks = [x[s + MASK_SUFFIX] for s in self.used]
        inputs = {s: x[s] for s in self.used}
        inputs |= {s + MASK_SUFFIX: 0.5 + torch.sigmoid(m if s in self.steps else m[:, 0])
                   for s, m in zip(self.used, masks)}
        for s, t in self.steps.items():
            v = inputs[s]
            inputs[s] = v.reshape(v.shape[0], t, -1, *v.shape[-2:])
            inputs[s + DOY_SUFFIX] = torch.linspace(30.0, 330.0, t).expand(v.shape[0], t)
        # + 0 x every mask: a mask the model never uses arithmetically gets a zero gradient
        # (no reach) rather than none
        return self.model(inputs) + 0.0 * sum(m.sum() for m in masks)


def parity_masks(used: list[str], size: int, batch: int, seed: int,
                 dates: dict[str, int] | None = None) -> dict[str, torch.Tensor]:
    """Random validity masks {s__mask: [batch, size, size]} of the used sensors: about
    PARITY_HOLES of each invalid, the first sensor missing from the whole first sample, and no
    sensor valid at the last sample's first pixel (every case the model distinguishes). A
    time series (`dates`: {s: T}) gets [batch, T, size, size]: holes per date, and its
    first date missing from the whole second sample too (a date without a raster)."""
    gen = torch.Generator().manual_seed(seed)
    dates = dates or {}
    masks = {}
    for i, name in enumerate(used):
        lead = (batch, dates[name]) if name in dates else (batch,)
        m = (torch.rand(*lead, size, size, generator=gen) >= PARITY_HOLES).float()
        if i == 0 and len(used) > 1:
            m[0] = 0.0
        m[-1, ..., 0, 0] = 0.0
        if name in dates and batch > 1:
            m[1, 0] = 0.0
        masks[name + MASK_SUFFIX] = m
    return masks


def _write_onnx(model: nn.Module, checks: list[tuple[dict[str, torch.Tensor], np.ndarray]],
                opset: int, folder: Path, used: list[str], dense: bool) -> float:
    """Export with the first check's inputs; max |diff| over every check."""
    import onnx  # the export's only users of onnx / onnxruntime
    import onnxruntime as ort

    x = checks[0][0]
    names = list(x)
    # Dense models run on tiles of any size: height and width are dynamic axes too (the
    # last two of every input but a time series' days of year).
    axes = {n: {0: "batch", x[n].dim() - 2: "height", x[n].dim() - 1: "width"}
            if dense and not n.endswith(DOY_SUFFIX) else {0: "batch"} for n in names}
    axes["logits"] = {0: "batch", 2: "height", 3: "width"} if dense else {0: "batch"}
    # The dict is passed as (inputs, {}): a trailing dict in `args` would be read as kwargs.
    # Sensors whose branch is "off" are dropped from the graph's inputs by the exporter; the
    # masks follow the sensors.
    torch.onnx.export(
        model, (x, {}), str(folder / ONNX_FILE), dynamo=False, opset_version=opset,
        input_names=names, output_names=["logits"], dynamic_axes=axes,
    )
    onnx.checker.check_model(str(folder / ONNX_FILE))
    session = ort.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])
    taken = [i.name for i in session.get_inputs()]
    # A time series' days of year are inputs only where its branch reads dates (a temporal
    # branch); a branch on the dates stacked as channels ignores them, so the exporter drops
    # them.
    doys = [s + DOY_SUFFIX for s in used if s + DOY_SUFFIX in taken]
    expected = used + [s + MASK_SUFFIX for s in used] + doys
    if taken != expected:
        raise RuntimeError(f"{ONNX_FILE}: inputs {taken} are not the used sensors, their masks "
                           f"and days of year {expected} in order; please report this arch")
    diffs = []
    for inputs, want in checks:
        (got,) = session.run(["logits"], {name: inputs[name].numpy() for name in expected})
        diffs.append(_check(got, want, ONNX_FILE))
    return max(diffs)


def _check(got: np.ndarray, want: np.ndarray, name: str) -> float:
    diff = float(np.abs(got - want).max())
    if got.shape != want.shape or not diff <= PARITY_ATOL:
        # Not a user error: the compiled model computes something else than PyTorch.
        raise RuntimeError(
            f"{name}: outputs differ from the PyTorch model (shape {got.shape} vs "
            f"{want.shape}, max |diff| {diff:.3g} > {PARITY_ATOL}); please report this arch"
        )
    return diff


def _summary(values: list[float]) -> MetricSummary:
    arr = np.asarray(values, dtype=np.float64)
    # Sample standard deviation over seeds; undefined for a single seed.
    std = float(arr.std(ddof=1)) if arr.size > 1 else None
    return MetricSummary(mean=float(arr.mean()), std=std, n=int(arr.size), values=list(values))


def summarize_metrics(runs: list[TrainFolder], split: str) -> dict[str, MetricSummary] | None:
    """Scalar metrics of `split` over the runs (seeds); None unless every run has them. A
    task with targets: every target's (`<metric>__<target>`, interval coverage included) and
    `score`."""
    if not all(split in r.metrics for r in runs):
        return None
    if "scalars" in runs[0].metrics[split]:
        return {k: _summary([float(r.metrics[split]["scalars"][k]) for r in runs])
                for k in runs[0].metrics[split]["scalars"]}
    return {k: _summary([float(r.metrics[split][k]) for r in runs]) for k in CARD_METRICS}


def target_cards(run: TrainFolder) -> list[TargetCard] | None:
    """The card's `targets` of a task with targets (None otherwise)."""
    targets = run.targets
    if targets is None:
        return None
    fitted = run.metrics.get("val", {}).get("intervals") or {}
    out = []
    for t, (a, b) in zip(targets, layout(targets).values()):
        intervals = fitted.get(t.name)
        out.append(TargetCard(name=t.name, kind=t.kind, start=a, stop=b, units=t.units,
                              loss=t.loss, has_std=t.has_std, mean=t.mean, std=t.std,
                              intervals=None if intervals is None else IntervalCard(**intervals)))
    return out


def summarize_parts(runs: list[TrainFolder], key: str
                    ) -> dict[str, dict[str, MetricSummary]] | None:
    """Test `per_group` / `per_scene` (`key`) metrics over the runs (seeds): {part: {pixels,
    oa, kappa, miou}}; None unless every run has them."""
    tables = [r.metrics.get("test", {}).get(key) for r in runs]
    if not tables or any(t is None for t in tables):
        return None
    return {part: {m: _summary([float(t[part][m]) for t in tables])
                   for m in ("pixels", "oa", "kappa", "miou")}
            for part in tables[0] if all(part in t for t in tables)}


def robustness_card(runs: list[TrainFolder], sensors: list[SensorCard]
                    ) -> RobustnessCard | None:
    """The test robustness table of the runs (seeds) as measured subsets and cloud rows; None
    unless every run has one (`autors train --test`, a search's final models)."""
    tables = [r.metrics.get("test", {}).get("robustness") for r in runs]
    if not tables or any(t is None for t in tables):
        return None
    used = [s.name for s in sensors if s.used]
    clouded = [s.name for s in sensors if s.used and s.kind in CLOUDED_KINDS]
    subsets, clouds = [], []
    for condition in tables[0]:  # the table's order: clean, without_*, cloud_*
        rows = [t[condition] for t in tables if condition in t]
        if len(rows) != len(tables):
            continue  # not measured for every seed: no summary over seeds
        common = {"condition": condition,
                  "test": {k: _summary([float(r[k]) for r in rows]) for k in CARD_METRICS},
                  # the same pixels for every seed; no_input depends on the data only
                  "num_samples": int(rows[0]["num_samples"]), "no_input": int(rows[0]["no_input"])}
        if condition == "clean":
            subsets.append(SubsetCard(sensors=used, **common))
        elif condition.startswith("without_"):
            gone = condition.removeprefix("without_")
            if gone not in used:
                raise ModelFolderError(f"{runs[0].path / 'metrics.json'}: test robustness row "
                                       f"'{condition}' removes a sensor the model does not use "
                                       f"({used}); the run folder was edited or is damaged")
            subsets.append(SubsetCard(sensors=[s for s in used if s != gone], **common))
        elif condition.startswith("cloud_"):
            cover = int(condition.removeprefix("cloud_")) / 100
            clouds.append(CloudCard(cover=cover, clouded=clouded, **common))
        else:
            raise ModelFolderError(f"{runs[0].path / 'metrics.json'}: unknown test robustness "
                                   f"condition '{condition}'; re-run with this autors")
    return RobustnessCard(accepted_subsets=subsets, clouds=clouds)


def read_spec(task: TaskSpec, name: str) -> ReadSpec:
    """How sensor `name` was read in training: the task's entry without its paths (a mask
    raster belongs to a scene; its rule travels)."""
    spec = task.sensors[name]
    return ReadSpec(
        **spec.model_dump(mode="json", exclude={"path", "kind", "mask", "qa", "dates"}),
        mask=None if spec.mask is None else MaskRule(invalid_values=spec.mask.invalid_values),
        qa=spec.qa,
    )


MISSING_DATES = ("a date whose raster is not given (a missing file, a date absent from the "
                 "CSV) is invalid everywhere: its values 0 and its date mask 0, as a date a "
                 "training scene did not acquire; each given date's nodata, QA band and mask "
                 "raster apply to that date only")


def date_cards(task: TaskSpec, name: str) -> list[DateCard] | None:
    """The card's dates of sensor `name` (None unless a time series with task-wide dates):
    date and day of year, the model's `<name>__doy`."""
    dates = task.sensors[name].listed_dates
    return None if dates is None else [DateCard(date=d.date, doy=d.doy) for d in dates]


def calibration_card(run: TrainFolder, in_compiled: bool) -> CalibrationCard | None:
    """The card's `calibration` of `run` (its temperature, validation and test figures, the
    conformal quantiles and test coverage); None for a run trained before calibration."""
    cal = run.calibration
    if cal is None:
        return None
    keys = ("nll_before", "nll_after", "ece_before", "ece_after", "pixels")
    checked = run.metrics.get("test", {}).get("calibration")
    test = None if checked is None else CalibrationFigures(
        **{k: checked[k] for k in keys}, entropy_auroc=checked["entropy_auroc"])
    coverage = None if checked is None else [CoverageCard(**row)
                                             for row in checked["conformal"]]
    c = cal.conformal
    return CalibrationCard(
        temperature=cal.temperature, fitted=not cal.val.get("at_bound", False),
        in_compiled=in_compiled,
        val=CalibrationFigures(**{k: cal.val[k] for k in keys}), test=test,
        conformal=ConformalCard(score=c["score"], alphas=c["alphas"], quantiles=c["quantiles"],
                                n=c["n"], test=coverage))


def build_card(candidate: Candidate, chosen: TrainFolder, task: TaskSpec,
               parity: dict[str, float], folder: Path,
               context: tuple[int | None, int | None] = (None, None),
               calibration: CalibrationCard | None = None) -> ModelCard:
    """The model card of `chosen` (one seed of `candidate`) for the files now in `folder`;
    `context`: a dense model's (output stride, receptive radius), `dense_context`;
    `calibration`: `calibration_card(chosen, ...)`."""
    inputs = chosen.run["inputs"]
    arch = chosen.arch
    by_name = {s["name"]: s for s in inputs["sensors"]}
    sensors = []
    for name in arch.branches:  # arch order = the model's fusion order
        sensors.append(SensorCard(
            name=name, kind=task.sensors[name].kind, used=arch.branches[name].on,
            in_channels=int(by_name[name]["in_channels"]), bands=list(by_name[name]["bands"]),
            read=read_spec(task, name),
            mean=chosen.norm_stats.mean[name], std=chosen.norm_stats.std[name],
            dates=date_cards(task, name),
            dates_per_scene=chosen.steps.get(name) if task.sensors[name].per_scene_dates
            else None,
            missing_dates=None if task.sensors[name].dates is None else MISSING_DATES,
        ))
    classes = [ClassCard(index=i, value=int(v), name=n) for i, (v, n) in
               enumerate(zip(inputs["class_values"], inputs["class_names"]))]
    val = summarize_metrics(candidate.runs, "val")
    assert val is not None  # every run folder has validation metrics
    exported_with = versions()
    if "onnx" in parity:
        import onnx
        import onnxruntime as ort

        exported_with |= {"onnx": onnx.__version__, "onnxruntime": ort.__version__}
    provenance = chosen.run["task"]
    return ModelCard(
        format=CARD_FORMAT,
        task=TaskCard(name=task.name, kind=task.task, patch_size=task.patch_size,
                      tile_size=task.tile_size, input_size=task.sample_size, dense=arch.dense,
                      grid=task.grid),
        inputs=arch.sensors,
        sensors=sensors,
        require_sensors=task.require_sensors,
        classes=classes,
        ignore_value=task.class_labels.ignore if task.class_labels is not None else 0,
        metrics=Metrics(val=val, test=summarize_metrics(candidate.runs, "test"),
                        seeds=candidate.seeds,
                        test_per_group=summarize_parts(candidate.runs, "per_group"),
                        test_per_scene=summarize_parts(candidate.runs, "per_scene")),
        robustness=robustness_card(candidate.runs, sensors),
        cost=CostCard(**chosen.metrics["cost"]),
        provenance=Provenance(
            task_digest=provenance["digest"], task_sha256=provenance["sha256"],
            split=chosen.run["split"], seed=int(chosen.run["seed"]),
            source_run=str(candidate.source.resolve()), source_kind=candidate.kind,
            rank=candidate.rank, trained_with=chosen.run["versions"],
            exported_with=exported_with,
            exported_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        ),
        export=ExportInfo(formats=list(task.export.formats),
                          onnx_opset=task.export.onnx_opset if "onnx" in parity else None,
                          parity=parity,
                          inputs=_spatial(input_tensors([s for s in sensors if s.used],
                                                        task.sample_size), arch.dense),
                          reduction=context[0], receptive_radius=context[1]),
        files={f.name: file_sha256(f) for f in sorted(folder.iterdir()) if f.name != CARD_FILE},
        plugins=[PluginCard(**p.to_dict()) for p in task_plugins(task)],
        input_profile=chosen.profile,
        calibration=calibration,
        targets=target_cards(chosen),
    )


def _spatial(tensors: list[TensorCard], dense: bool) -> list[TensorCard]:
    """A dense model's compiled inputs take any height and width (the ONNX axes' names)."""
    if not dense:
        return tensors
    return [t if t.kind == "doy" else
            t.model_copy(update={"shape": [*t.shape[:-2], "height", "width"]}) for t in tensors]
