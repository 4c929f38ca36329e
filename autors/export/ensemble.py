"""Ensembles: several trained models packed into one model folder whose prediction averages
their probabilities.

    autors export RUN --ensemble [--rank N] --out DIR        # the final phase's seeds of rank N
    autors export RUN --ensemble-top K --out DIR             # every seed of ranks 1..K

`EnsembleModel` holds the members (each rebuilt from its arch.json + weights.pt) and their
temperatures: a member whose train folder was calibrated on validation
(`TrainFolder.calibration`, `autors.training.calibration`) contributes softmax(logits / T),
one trained before calibration softmax(logits). Its output is the log of the mean member
probability, `logsumexp_i log_softmax(z_i / T_i) - log M`: logits whose softmax is exactly
the mean, so everything that reads logits (evaluation, prediction, TorchScript, ONNX) gets the
ensemble's probabilities. `member_log_probs` gives the members' own log-probabilities, from
which `autors predict` computes the predictive entropy and the mutual information (the members'
disagreement).

`export_ensemble` chooses the members by rank only (the search's ranking of validation
scores; every seed of a chosen rank), never by test. It reads the task's rasters once to
evaluate the averaged probabilities on the same validation and test pixels as the members
(the split hash is checked), and writes:

    DIR/member<i>_arch.json, DIR/member<i>_weights.pt   member i (1-based), byte copies
    DIR/model.ts, DIR/model.onnx   one graph computing every member and the averaged
                                   log-probabilities (output "logits"), parity-checked as a
                                   single model's
    DIR/model.json                 the card: `ensemble` lists the members (rank, seed, source,
                                   temperature, their validation / test metrics and cost), the
                                   ensemble's own validation and test metrics and, beside them,
                                   the single model `autors export --rank 1` would give;
                                   `metrics` are the ensemble's (n = 1: measured once), `cost`
                                   the sum over members (params, FLOPs, latency)
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from pydantic import ValidationError
from torch import Tensor, nn

import fusion
from autors.config import TaskSpec
from autors.data import PreparedData, prepare
from autors.errors import AutorsError, ModelFolderError
from autors.export.card import (
    CARD_FILE,
    CostCard,
    EnsembleCard,
    EnsembleMember,
    Metrics,
    MetricSummary,
    ModelCard,
    SingleModelCard,
)
from autors.export.export import (
    CARD_METRICS,
    _task_of,
    _write_compiled,
    build_card,
    dense_context,
    robustness_card,
)
from autors.export.source import Candidate, list_candidates
from autors.files import atomic_folder, file_sha256
from autors.training.evaluate import evaluate
from autors.training.robustness import robustness
from autors.training.train_folder import TrainFolder

COMBINE = "mean_probability"


def member_files(i: int) -> tuple[str, str]:
    """(arch, weights) file names of member `i` (1-based) in an ensemble folder."""
    return f"member{i}_arch.json", f"member{i}_weights.pt"


class EnsembleModel(nn.Module):
    """Members' (temperature-scaled) probabilities averaged; see the module docstring.

    Takes the union of the members' inputs; `sensors` lists them in the members' arch order.
    `dense`, `reduction` (the largest member's output stride) and `num_classes` are the
    members' (they must agree on the task)."""

    def __init__(self, members: list[nn.Module], temperatures: list[float]) -> None:
        super().__init__()
        if len(members) < 1 or len(members) != len(temperatures):
            raise ValueError(f"{len(members)} members but {len(temperatures)} temperatures")
        if not all(t > 0 for t in temperatures):
            raise ValueError(f"temperatures must be > 0, got {temperatures}")
        self.members = nn.ModuleList(members)
        self.register_buffer("temperatures", torch.tensor([float(t) for t in temperatures]))
        self.log_m = math.log(len(members))
        self.dense = bool(getattr(members[0], "dense", False))
        self.reduction = max(int(getattr(m, "reduction", 1)) for m in members)
        self.num_classes = int(getattr(members[0], "num_classes", 0))
        sensors: list[str] = []
        for m in members:
            sensors += [s for s in getattr(m, "sensors", []) if s not in sensors]
        self.sensors = sensors

    def member_log_probs(self, inputs: dict[str, Tensor]) -> Tensor:
        """Each member's log-probabilities, `[M, B, K]` or `[M, B, K, H, W]`."""
        out: list[Tensor] = []
        for i, member in enumerate(self.members):
            out.append(torch.log_softmax(member(inputs).float() / self.temperatures[i], dim=1))
        return torch.stack(out, dim=0)

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        return torch.logsumexp(self.member_log_probs(inputs), dim=0) - self.log_m


def sample_log_probs(model: nn.Module, inputs: dict[str, Tensor]) -> Tensor:
    """The log-probabilities of the samples one forward pass of `model` gives: `[S, B, K, ...]`
    with S = the members of an ensemble (`EnsembleModel.member_log_probs`), else 1."""
    if isinstance(model, EnsembleModel):
        return model.member_log_probs(inputs)
    return torch.log_softmax(model(inputs).float(), dim=1)[None]


def is_ensemble(model: nn.Module) -> bool:
    return isinstance(model, EnsembleModel)


# ---- choosing the members -----------------------------------------------------------------
def choose_members(run: str | Path, rank: int = 1, top: int | None = None
                   ) -> list[Candidate]:
    """The candidates whose every seed joins the ensemble: rank `rank`, or ranks 1..`top`
    (the search's ranking by validation; the test split never chooses)."""
    candidates = list_candidates(run)
    if candidates[0].kind == "train":
        raise ModelFolderError(
            f"{run} is an `autors train` run folder: it holds one model. --ensemble packs the "
            "final phase's seeds of an `autors search` run folder (search.final_seeds >= 2, "
            "or --ensemble-top K >= 2 for several architectures)")
    ranks = [c.rank for c in candidates]
    if top is not None:
        if top > len(candidates):
            raise ModelFolderError(f"--ensemble-top {top}: {run} has {len(candidates)} "
                                   f"retrained architecture(s) (ranks {ranks})")
        chosen = candidates[:top]
    else:
        chosen = [c for c in candidates if c.rank == rank]
        if not chosen:
            raise ModelFolderError(f"{run} has no model of rank {rank}: valid ranks are "
                                   f"{ranks} (see `autors export --list {run}`)")
    if sum(len(c.runs) for c in chosen) < 2:
        raise ModelFolderError(
            f"an ensemble needs at least two models, and rank {chosen[0].rank} of {run} has "
            f"one seed ({chosen[0].seeds}): search with search.final_seeds >= 2, or use "
            "--ensemble-top K to pack several architectures")
    return chosen


def temperature_of(run: TrainFolder) -> float | None:
    """The temperature `run` was calibrated with on validation, None when it was not (a train
    folder written before calibration: its probabilities are used as they are)."""
    calibration = getattr(run, "calibration", None)
    return None if calibration is None else float(calibration.temperature)


def build_ensemble(runs: list[TrainFolder]) -> EnsembleModel:
    """The members of `runs` rebuilt (eval mode, CPU) with their temperatures."""
    temps = [temperature_of(r) or 1.0 for r in runs]
    return EnsembleModel([r.load_model() for r in runs], temps).eval()


# ---- exporting ------------------------------------------------------------------------------
def export_ensemble(run: str | Path, out: str | Path, rank: int = 1, top: int | None = None,
                    *, with_robustness: bool = True, data: PreparedData | None = None,
                    runs: list[TrainFolder] | None = None) -> Path:
    """Export the ensemble of `choose_members(run, rank, top)` into the new folder `out` (see
    the module docstring). `with_robustness`: also measure the ensemble's test robustness
    table (sensors removed, clouds; several evaluations). `data`: the prepared task, when the
    caller holds it (it must have the members' split). `runs`: the members' train folders
    given directly (then `run` names them in the card), e.g. models of `autors train` with
    several seeds."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelFolderError(f"--out {out} already exists and is not empty: choose another "
                               "folder or remove it")
    if runs is None:
        candidates = choose_members(run, rank, top)
    else:
        if len(runs) < 2:
            raise ModelFolderError("an ensemble needs at least two models")
        candidates = [Candidate(rank=1, runs=list(runs), source=Path(run), kind="train")]
    members = [(c, r) for c in candidates for r in c.runs]
    first = members[0][1]
    task = _task_of(first)
    series = [n for n, s in task.sensors.items() if s.dates is not None]
    if series:  # before anything is written
        raise ModelFolderError(f"sensor(s) {series} are time series (dates): an ensemble of "
                               "time-series models is not supported yet; export one model "
                               "(`autors export` without --ensemble-*)")
    _check_members(members, task)
    data = data if data is not None else _prepare(task, first)
    split = data.index.split_record()["sha256"]
    if split != first.run["split"]["sha256"]:
        raise ModelFolderError(
            f"the task's rasters now give another split ({split[:12]}...) than the members "
            f"were trained and tested on ({first.run['split']['sha256'][:12]}...): the data "
            "changed since; the ensemble's metrics would not be comparable")
    model = build_ensemble([r for _, r in members])
    val = evaluate(model, data, "val", task.train.batch_size,
                   num_workers=task.train.num_workers)
    tested = all("test" in r.metrics for _, r in members)
    test = None
    if tested:  # evaluated only: the members were chosen by rank before this
        test = evaluate(model, data, "test", task.train.batch_size,
                        num_workers=task.train.num_workers, breakdown=True)
        if with_robustness:
            test["robustness"] = robustness(model, data, task, "test", clean=test)
    union = _union_run(members)
    with atomic_folder(out) as tmp:
        for i, (_, r) in enumerate(members, start=1):
            arch_file, weights_file = member_files(i)
            shutil.copyfile(r.path / "arch.json", tmp / arch_file)
            shutil.copyfile(r.path / "weights.pt", tmp / weights_file)
        parity = _write_compiled(model, union, task, tmp)
        context = dense_context(model, union) if model.dense else (None, None)
        try:
            card = _card(candidates, members, union, task, parity, tmp, context, model,
                         val, test)
        except (KeyError, TypeError, ValidationError) as err:
            raise ModelFolderError(
                f"the members' metrics.json / run.json lack what the model card needs "
                f"({type(err).__name__}: {err}); were they written by `autors train`?"
            ) from None
        (tmp / CARD_FILE).write_text(card.to_json())
    return out


def _check_members(members: list[tuple[Candidate, TrainFolder]], task: TaskSpec) -> None:
    """Members of one task, split, normalisation and classes (or a ModelFolderError)."""
    first = members[0][1]
    for _, r in members[1:]:
        what = None
        if r.run["task"]["digest"] != first.run["task"]["digest"]:
            what = "were trained on different tasks"
        elif r.run["split"]["sha256"] != first.run["split"]["sha256"]:
            what = "were trained on different splits"
        elif r.norm_stats.to_dict() != first.norm_stats.to_dict():
            what = "normalise their inputs differently"
        elif r.in_channels != first.in_channels or \
                r.run["inputs"]["class_values"] != first.run["inputs"]["class_values"]:
            what = "have different inputs or classes"
        elif r.arch.dense != first.arch.dense:
            what = "mix patch classifiers and dense models"
        if what:
            raise ModelFolderError(f"{first.path} and {r.path} {what}: an ensemble averages "
                                   "models of one task")


def _prepare(task: TaskSpec, first: TrainFolder) -> PreparedData:
    try:
        return prepare(task)
    except AutorsError as err:
        raise ModelFolderError(
            f"an ensemble is evaluated on the members' validation and test pixels, so export "
            f"reads the task's rasters (the task of {first.path / 'run.json'}): {err}"
        ) from None


def _union_run(members: list[tuple[Candidate, TrainFolder]]) -> TrainFolder:
    """The first member's train folder with an arch whose used branches are the union of the
    members' (each sensor's first used branch): what the compiled inputs and the card's
    sensors are built from (bookkeeping only, never built as a network)."""
    first = members[0][1]
    branches = {}
    for name, branch in first.arch.branches.items():
        used = [r.arch.branches[name] for _, r in members if r.arch.branches[name].on]
        branches[name] = used[0] if used else branch
    return dataclasses.replace(first, arch=dataclasses.replace(first.arch, branches=branches))


def _scalars(m: dict[str, Any]) -> dict[str, float]:
    return {k: float(m[k]) for k in CARD_METRICS}


def _one(m: dict[str, Any]) -> dict[str, MetricSummary]:
    return {k: MetricSummary(mean=float(m[k]), std=None, n=1, values=[float(m[k])])
            for k in CARD_METRICS}


def _parts(test: dict[str, Any] | None, key: str) -> dict[str, dict[str, MetricSummary]] | None:
    table = None if test is None else test.get(key)
    if table is None:
        return None
    return {part: {m: MetricSummary(mean=float(v[m]), std=None, n=1, values=[float(v[m])])
                   for m in ("pixels", "oa", "kappa", "miou")} for part, v in table.items()}


def _card(candidates: list[Candidate], members: list[tuple[Candidate, TrainFolder]],
          union: TrainFolder, task: TaskSpec, parity: dict[str, float], folder: Path,
          context: tuple[int | None, int | None], model: EnsembleModel,
          val: dict[str, Any], test: dict[str, Any] | None) -> ModelCard:
    head = candidates[0]
    base = build_card(head, union, task, parity, folder, context)
    rows = []
    for i, (c, r) in enumerate(members, start=1):
        arch_file, weights_file = member_files(i)
        rows.append(EnsembleMember(
            arch_file=arch_file, weights_file=weights_file, rank=c.rank,
            seed=int(r.run["seed"]), source=str(r.path.resolve()), arch=r.arch.summary(),
            temperature=temperature_of(r), val=_scalars(r.metrics["val"]),
            test=_scalars(r.metrics["test"]) if "test" in r.metrics else None,
            cost=CostCard(**r.metrics["cost"])))
    costs = [m.cost for m in rows]
    total = CostCard(
        params=sum(c.params for c in costs), flops=sum(c.flops for c in costs),
        latency_ms_b1=sum(c.latency_ms_b1 for c in costs),
        latency_ms_per_sample_b256=sum(c.latency_ms_per_sample_b256 for c in costs),
        throughput_batch=costs[0].throughput_batch, threads=costs[0].threads)
    best = head.best  # what `autors export --rank <head.rank>` exports
    single = SingleModelCard(
        rank=head.rank, seed=int(best.run["seed"]), temperature=temperature_of(best),
        val=_scalars(best.metrics["val"]),
        test=_scalars(best.metrics["test"]) if "test" in best.metrics else None,
        cost=CostCard(**best.metrics["cost"]))
    ensemble = EnsembleCard(
        combine=COMBINE, members=rows, val=_scalars(val),
        test=None if test is None else _scalars(test), val_pixels=int(val["num_samples"]),
        test_pixels=None if test is None else int(test["num_samples"]), single=single)
    robust = None
    if test is not None and "robustness" in test:
        holder = SimpleNamespace(metrics={"test": {"robustness": test["robustness"]}},
                                 path=folder)
        robust = robustness_card([holder], base.sensors)
    update = {
        "metrics": Metrics(val=_one(val), test=None if test is None else _one(test),
                           seeds=[int(r.run["seed"]) for _, r in members],
                           test_per_group=_parts(test, "per_group"),
                           test_per_scene=_parts(test, "per_scene")),
        "robustness": robust, "cost": total, "ensemble": ensemble,
        "files": {f.name: file_sha256(f) for f in sorted(folder.iterdir())
                  if f.name != CARD_FILE},
    }
    return ModelCard.model_validate(base.model_copy(update=update).model_dump())


def ensemble_archs(folder: Path, card: ModelCard) -> list[fusion.Arch]:
    """The members' archs of an ensemble folder, in member order (files already verified)."""
    import json

    assert card.ensemble is not None
    return [fusion.Arch.from_dict(json.loads((folder / m.arch_file).read_text()))
            for m in card.ensemble.members]
