"""A train folder: the run folder of one trained architecture (`autors train`, and each model
the search's final phase retrains), and how to read it back. (The other kind of run folder is
a search's, `autors.search.search_folder`.)

    train_and_write(task, arch, data, seed, out, test=...)   # train_evaluate + the folder
    folder = read_train_folder(path)                         # -> TrainFolder

Layout of `results/runs/<name>/` (or `<search run>/final/trial<id>_seed<s>/`; all JSON is
UTF-8, indented):

    task.yaml        byte-for-byte copy of the task file used (relative paths in it are
                     relative to the ORIGINAL file's folder: run.json task.path); when the
                     task has --set overrides, or no file (rebuilt from a dict in a Ray
                     worker; run.json task.path is then null), the task as run written by
                     `autors.config.task_yaml` (absolute paths, the overrides listed in a
                     header comment)
    arch.json        the resolved architecture, `fusion.Arch.to_dict()` (a baseline name is
                     stored as its full arch); rebuilds the model with `fusion.build_model`
    weights.pt       the model's state_dict, CPU tensors; load with
                     `torch.load(path, weights_only=True)`
    metrics.json     {"val": <metrics>, "test": <metrics> (ONLY when --test was given),
                      "cost": {params, flops, latency_ms_b1, latency_ms_per_sample_b256,
                               throughput_batch, threads},
                      "epochs": n run, "best_epoch": n, "monitor": search.objective,
                      "history": [{epoch, train_loss, lr, val_oa, val_aa, val_kappa,
                                   val_miou, seconds}, ...],
                      "calibration": fitted on the validation split after training
                                     (`autors.training.calibration`): {"temperature": T,
                                     "val": {nll_before, nll_after, ece_before, ece_after,
                                     pixels, at_bound}, "conformal": {"score": "lac",
                                     "alphas": [0.01 .. 0.3], "quantiles": [q per alpha],
                                     "n"}} (absent in folders written before it)}
                     where <metrics> = oa, aa, kappa, miou, ece, per_class_accuracy,
                     per_class_iou, support ({class: ...}), confusion_matrix (rows =
                     reference, columns = prediction), class_names, num_samples; the test
                     metrics of a calibrated model add "calibration": {pixels, temperature,
                     ece_before, ece_after, nll_before, nll_after, entropy_auroc,
                     reliability: {bins, before | after: {count, confidence, accuracy}},
                     conformal: [{alpha, quantile, coverage, mean_set_size, empty}]}
                     (measured only: nothing is fitted on test). ECE and accuracy figures
                     without "calibration" are of the raw softmax.
    reliability.png  the test split's reliability diagram, raw and temperature-scaled (only
                     when calibrated and evaluated on test)
    norm_stats.json  {"mean": {sensor: [per band]}, "std": {...}}, training pixels only;
                     model inputs are (raw - mean) / std, invalid pixels set to 0
    run.json         provenance and model inputs:
                     {"format": 2, "kind": "train", "seed": s,
                      "task": {"name", "kind", "path", "sha256" (of task.yaml's bytes),
                               "digest" (TaskSpec.digest()), "spec" (TaskSpec.to_dict())},
                      "split": {"sha256" (of the train/val/test class-index rasters), "seed",
                                "buffer", "dropped_buffer", "dropped_invalid", "counts",
                                "footprint", "leakage": {"val"|"test": {"pixels",
                                "touching_train"}}} (autors.data.split_record),
                      "grid": the training reference grid {"crs" (WKT), "transform",
                              "height", "width"},
                      "inputs": {"sensors": [{"name", "kind", "bands": [names],
                                              "in_channels"}, ...] (model input order),
                                 "class_names", "class_values" (raster value per class
                                 index), "num_classes", "patch_size", "tile_size",
                                 "dense" (segmentation output),
                                 "profile": what the training inputs looked like
                                 (`autors.data.profile.InputProfile`: value percentiles
                                 and invalid share per sensor and band, pixel sizes in
                                 metres; absent in folders written before it)},
                      "device", "torch_threads", "host", "started" (ISO 8601 UTC),
                      "wall_s", "versions": `autors.files.versions()`,
                      "argv"}

The folder is written under a temporary name and renamed when complete
(`autors.files.atomic_folder`), so a folder with the final name is never half-written.
"""

from __future__ import annotations

import json
import pickle
import shutil
import socket
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

import fusion
from autors.config import TaskSpec, task_yaml
from autors.data import NormStats, PreparedData
from autors.data.labels import TargetInfo
from autors.data.profile import InputProfile
from autors.errors import ModelFolderError, TaskFileError
from autors.files import atomic_folder, file_sha256, versions
from autors.training.calibration import Calibration, write_reliability_png
from autors.training.trial import TrainedModel, train_evaluate

FORMAT = 2  # 2: "split" (hash, seed, buffer, leakage) replaced "split_sha256"
FILES = ("task.yaml", "arch.json", "weights.pt", "metrics.json", "norm_stats.json", "run.json")
RELIABILITY_PNG = "reliability.png"  # written when the test split checked a calibration


def check_new_run_dir(out: Path) -> None:
    """Refuse to reuse a folder that already holds something (checked before training)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelFolderError(
            f"run folder {out} already exists and is not empty: choose another --out or "
            "remove it"
        )


def check_task_copyable(task: TaskSpec) -> None:
    """Refuse a task whose file is gone (checked before training): a train folder keeps a
    byte-for-byte copy of it, which would otherwise fail only after the training."""
    if task.source is not None and not Path(task.source).is_file():
        raise TaskFileError(
            f"task file {task.source} does not exist (any more): the run folder keeps a copy "
            "of the task file it was trained with; restore it, or load the task from a file "
            "that exists"
        )


def _dump(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")


def write_train_folder(
    out: Path, task: TaskSpec, data: PreparedData, seed: int, trained: TrainedModel
) -> Path:
    """Write the train folder `out` (layout in the module docstring); returns its path."""
    out = Path(out)
    check_new_run_dir(out)
    outcome = trained.outcome
    with atomic_folder(out) as tmp:
        if task.source is not None and not task.overrides:
            shutil.copyfile(task.source, tmp / "task.yaml")
        else:  # the task as run: the file's copy would not hold the overrides
            (tmp / "task.yaml").write_text(task_yaml(task))
        _dump(tmp / "arch.json", outcome.arch.to_dict())
        state = {k: v.detach().cpu() for k, v in outcome.model.state_dict().items()}
        torch.save(state, tmp / "weights.pt")
        metrics: dict[str, Any] = {"val": outcome.val_metrics}
        if trained.test_metrics is not None:
            metrics["test"] = trained.test_metrics
        metrics.update(
            cost=asdict(trained.cost),
            epochs=outcome.epochs,
            best_epoch=outcome.best_epoch,
            monitor=outcome.monitor,
            history=outcome.history,
        )
        if trained.calibration is not None:
            metrics["calibration"] = trained.calibration.to_dict()
            checked = (trained.test_metrics or {}).get("calibration")
            if checked is not None:
                write_reliability_png(checked, tmp / RELIABILITY_PNG,
                                      f"{task.name}, seed {seed}")
        _dump(tmp / "metrics.json", metrics)
        _dump(tmp / "norm_stats.json", data.stats.to_dict())
        _dump(tmp / "run.json", {
            "format": FORMAT,
            "kind": "train",
            "seed": seed,
            "task": {
                "name": task.name,
                "kind": task.task,
                "path": None if task.source is None else str(task.source),
                "sha256": file_sha256(tmp / "task.yaml"),
                "digest": task.digest(),
                "spec": task.to_dict(),
            },
            "split": data.index.split_record(),
            "data": data.summary(),
            # the training reference grid (CRS as WKT); a dataset's first scene
            "grid": data.grid.to_dict(),
            "inputs": {
                "sensors": [
                    {"name": name, "kind": task.sensors[name].kind,
                     "bands": list(data.band_names[name]), "in_channels": c}
                    | ({"doy": data.index.dates[name]} if name in data.index.dates else {})
                    | ({"steps": data.index.series[name]} if name in data.index.series else {})
                    for name, c in data.in_channels.items()
                ],
                "class_names": list(data.class_names),
                "class_values": task.class_labels.class_values
                if task.class_labels is not None else [],
                "num_classes": data.num_classes,
                "patch_size": task.patch_size,
                "tile_size": task.tile_size,
                "dense": outcome.arch.dense,
                **({} if data.targets is None else
                   {"targets": [t.to_dict() for t in data.targets]}),
                "profile": None if data.index.profile is None
                else data.index.profile.model_dump(mode="json"),
            },
            "device": outcome.device,
            "torch_threads": torch.get_num_threads(),
            "host": socket.gethostname(),
            "started": trained.started,
            "wall_s": trained.wall_s,
            "versions": versions(),
            "argv": list(sys.argv),
        })
    return out


def train_and_write(
    task: TaskSpec,
    arch: fusion.Arch | dict | str,
    data: PreparedData,
    seed: int,
    out: Path,
    *,
    test: bool = False,
    progress: bool = False,
    max_epochs: int | None = None,
) -> TrainedModel:
    """`autors train`: `train_evaluate` (test once only if `test`), then write the train folder
    `out` (refused up front if it exists and is not empty, or if the task file is gone).
    The model is calibrated on validation (temperature, conformal quantiles; checked on test
    with `test`).

    run.json `wall_s` covers training, evaluation and cost (data preparation is the caller's).
    """
    check_new_run_dir(Path(out))  # before minutes of training, not after
    check_task_copyable(task)
    trained = train_evaluate(task, arch, data, seed, test=test, calibrate=True,
                             progress=progress, max_epochs=max_epochs)
    write_train_folder(Path(out), task, data, seed, trained)
    return trained


# ---- reading ----------------------------------------------------------------------------------
@dataclass
class TrainFolder:
    """A train folder read back (export and tests use it)."""

    path: Path
    arch: fusion.Arch
    metrics: dict[str, Any]
    norm_stats: NormStats
    run: dict[str, Any]

    @property
    def in_channels(self) -> dict[str, int]:
        return {s["name"]: int(s["in_channels"]) for s in self.run["inputs"]["sensors"]}

    @property
    def steps(self) -> dict[str, int]:
        """Time-series sensors: their date count T (`fusion.build_model(dates=)`)."""
        return {s["name"]: s["steps"] if "steps" in s else len(s["doy"])
                for s in self.run["inputs"]["sensors"] if "doy" in s or "steps" in s}

    @property
    def num_classes(self) -> int:
        return int(self.run["inputs"]["num_classes"])

    @property
    def targets(self) -> list[TargetInfo] | None:
        """A task with `targets`: each target (kind, channels, normalisation); else None."""
        data = self.run["inputs"].get("targets")
        return None if data is None else [TargetInfo.from_dict(t) for t in data]

    @property
    def model_outputs(self) -> int | dict[str, int]:
        """What `fusion.build_model` is asked for (see `PreparedData.model_outputs`)."""
        targets = self.targets
        return self.num_classes if targets is None else {t.name: t.channels for t in targets}

    @property
    def profile(self) -> InputProfile | None:
        """What the training inputs looked like; None for a folder written before
        profiles."""
        data = self.run["inputs"].get("profile")
        if data is None:
            return None
        try:
            return InputProfile.model_validate(data)
        except ValidationError as err:
            raise ModelFolderError(f"{self.path / 'run.json'}: inputs.profile is invalid "
                                   f"({err.errors()[0]['msg']}); the file was edited or is "
                                   "damaged") from None

    @property
    def calibration(self) -> Calibration | None:
        """The temperature and conformal quantiles fitted on validation; None for a folder
        written before calibration."""
        data = self.metrics.get("calibration")
        if data is None:
            return None
        try:
            return Calibration.from_dict(data)
        except (KeyError, TypeError, ValueError) as err:
            raise ModelFolderError(f"{self.path / 'metrics.json'}: calibration is invalid "
                                   f"({err}); the file was edited or is damaged") from None

    def load_model(self) -> nn.Module:
        """Rebuild the model from arch.json and load weights.pt (weights_only); eval mode."""
        model = fusion.build_model(self.arch, self.in_channels, self.model_outputs,
                                   dates=self.steps)
        weights = self.path / "weights.pt"
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as err:
            raise ModelFolderError(
                f"{weights}: cannot load the weights into the model of arch.json ({err}); "
                "the run folder is corrupted or its files come from different runs"
            ) from None
        return model.eval()


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelFolderError(f"{path}: unreadable or not valid JSON ({err})") from None


def read_train_folder(path: str | Path) -> TrainFolder:
    """Read a train folder written by `write_train_folder`; a missing or broken file is a
    ModelFolderError naming it."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFolderError(f"run folder {path} does not exist")
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise ModelFolderError(
            f"run folder {path} is incomplete: missing {', '.join(missing)} "
            "(was it written by `autors train`?)"
        )
    run = _load_json(path / "run.json")
    if not isinstance(run, dict) or run.get("format") != FORMAT:
        raise ModelFolderError(
            f"{path / 'run.json'}: unsupported run folder format {run.get('format')!r} "
            f"(this autors reads format {FORMAT})"
        )
    try:
        arch = fusion.Arch.from_dict(_load_json(path / "arch.json"))
        stats = NormStats.from_dict(_load_json(path / "norm_stats.json"))
    except (fusion.ArchError, KeyError, TypeError, AttributeError) as err:
        raise ModelFolderError(f"run folder {path}: invalid arch.json or norm_stats.json "
                               f"({err})") from None
    return TrainFolder(path=path, arch=arch, metrics=_load_json(path / "metrics.json"),
                       norm_stats=stats, run=run)
