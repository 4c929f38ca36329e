"""`autors train` end to end, and the train folder it leaves (read back as export will)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import rasterio
import torch
import yaml

import fusion
from autors.cli import main
from autors.config import TaskSpec, load_task
from autors.data import Grid, PreparedData, prepare
from autors.errors import ModelFolderError, TaskFileError
from autors.files import VERSIONED_PACKAGES
from autors.report import REPORT_FILE
from autors.training.cost import random_inputs
from autors.training.evaluate import evaluate
from autors.training.train_folder import FILES, read_train_folder, train_and_write


def _train(task: Path, out: Path, *extra: str, quiet: bool = True) -> int:
    return main(["train", str(task), "--arch", "late_cnn", "--out", str(out), "--epochs", "2",
                 *(["--quiet"] if quiet else []), *extra])


def _quick(d: dict) -> None:
    d["train"]["max_train_samples"] = 96


def test_train_writes_the_run_folder_without_test_metrics(
    write_task: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    task_path = write_task(edit=_quick)
    out = tmp_path / "runs" / "r1"
    assert _train(task_path, out, "--seed", "4") == 0
    # the train folder's files, and the page `autors train` writes of it (autors.report)
    assert sorted(p.name for p in out.iterdir()) == sorted((*FILES, REPORT_FILE))
    assert not list(out.parent.glob(".r1.partial-*"))  # the temporary folder is gone

    metrics = json.loads((out / "metrics.json").read_text())
    assert "test" not in metrics  # the test split is only touched with --test
    assert metrics["val"]["oa"] > 1 / 3
    assert metrics["monitor"] == "val_oa" and len(metrics["history"]) == metrics["epochs"]
    assert metrics["cost"]["params"] > 0 and metrics["cost"]["flops"] > 0

    run = json.loads((out / "run.json").read_text())
    assert run["seed"] == 4
    assert run["task"]["sha256"] == hashlib.sha256(task_path.read_bytes()).hexdigest()
    assert (out / "task.yaml").read_bytes() == task_path.read_bytes()
    assert set(run["versions"]) == {"autors", "python", *VERSIONED_PACKAGES}
    assert run["versions"]["torch"] == torch.__version__
    assert [s["name"] for s in run["inputs"]["sensors"]] == ["optical", "lidar"]
    assert run["inputs"]["sensors"][0]["in_channels"] == 4
    assert run["inputs"]["class_names"] == ["water", "grass", "trees"]
    assert run["wall_s"] > 0
    grid = Grid.from_dict(run["grid"])  # the training grid is recorded for predict's checks
    with rasterio.open(load_task(task_path).labels.path) as labels:
        assert (grid.height, grid.width) == labels.shape and grid.crs == labels.crs
    assert set(json.loads((out / "norm_stats.json").read_text())["mean"]) == {"optical", "lidar"}

    printed = capsys.readouterr().out
    assert "val    OA" in printed and "test" not in printed.replace(str(out), "")
    assert str(out) in printed
    # calibrated on validation (autors.training.calibration), said on one line
    assert re.search(r"calib  T \d+\.\d+ \(", printed) and "val ECE" in printed
    assert json.loads((out / "metrics.json").read_text())["calibration"]["temperature"] > 0


def test_test_flag_adds_test_metrics_once(
    write_task: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "r2"
    assert _train(write_task(edit=_quick), out, "--test", quiet=False) == 0
    printed = capsys.readouterr().out
    assert "preparing data" in printed and "epoch 2/2" in printed  # progress bars
    assert "test   OA" in printed
    assert "test ECE" in printed and "conformal 90 % sets: test coverage" in printed
    assert (out / "reliability.png").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    data = prepare(load_task(write_task(edit=_quick, name="again.yaml")))
    assert test["num_samples"] == sum(data.index.counts()["test"])
    # the saved weights reproduce the saved test numbers
    model = read_train_folder(out).load_model()
    assert evaluate(model, data, "test")["confusion_matrix"] == test["confusion_matrix"]


def test_arch_json_and_weights_rebuild_the_identical_model(
    write_task: Callable[..., Path], tmp_path: Path
) -> None:
    # an arch given as a file (not a baseline), with one sensor switched off
    arch = {"version": 1,
            "branches": {"optical": {"kind": "residual", "width": 8, "depth": 1, "kernel": 3},
                         "lidar": {"kind": "off"}},
            "fusion": {"op": "gate", "position": "middle", "width": 8},
            "head": {"kind": "patch", "hidden": 16, "dropout": 0.2}}
    arch_path = tmp_path / "mine.json"
    arch_path.write_text(json.dumps(arch))
    out = tmp_path / "r3"
    task_path = write_task(edit=_quick)
    assert main(["train", str(task_path), "--arch", str(arch_path), "--out", str(out),
                 "--quiet", "--epochs", "1"]) == 0
    run = read_train_folder(out)
    assert run.arch == fusion.Arch.from_dict(arch)
    model = run.load_model()
    # rebuilt independently: arch.json + state_dict loaded with weights_only=True
    again = fusion.build_model(json.loads((out / "arch.json").read_text()),
                               run.in_channels, run.num_classes)
    again.load_state_dict(torch.load(out / "weights.pt", weights_only=True))
    again.eval()
    x = random_inputs(run.in_channels, 5, batch=8, seed=3)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    # and they are the trained weights: validation metrics are reproduced exactly
    data = prepare(load_task(task_path))
    assert evaluate(model, data, "val")["confusion_matrix"] == \
        run.metrics["val"]["confusion_matrix"]


@pytest.mark.parametrize(("arch", "message"), [
    ("resnet", "'resnet' is neither an arch.json file nor a baseline: baselines are ['early"),
    ("{dir}/missing.json", "missing.json: file not found"),
    ("{dir}/broken.json", "broken.json: not a readable JSON arch"),
])
def test_bad_arch_argument_is_reported_without_traceback(
    write_task: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture,
    arch: str, message: str
) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    code = main(["train", str(write_task()), "--arch", arch.format(dir=tmp_path),
                 "--out", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_arch_file_for_other_sensors_is_reported(
    write_task: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": 1, "branches": {"hsi": {"kind": "spectral"}},
                               "fusion": {"op": "sum", "position": "late"},
                               "head": {"kind": "patch"}}))
    code = main(["train", str(write_task()), "--arch", str(bad), "--out", str(tmp_path / "y")])
    assert code == 2
    assert "branches.hsi" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_existing_run_folder_is_not_overwritten(
    write_task: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert _train(write_task(), out) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"


def test_reading_a_broken_run_folder_names_the_problem(
    write_task: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "r4"
    assert _train(write_task(edit=_quick), out, "--epochs", "1") == 0
    (out / "weights.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFolderError, match="weights.pt: cannot load"):
        read_train_folder(out).load_model()
    (out / "arch.json").unlink()
    with pytest.raises(ModelFolderError, match="incomplete: missing arch.json"):
        read_train_folder(out)


def test_train_and_write_from_a_task_dict_without_file(
    patch_task: TaskSpec, patch_data: PreparedData, tmp_path: Path
) -> None:
    """As in a Ray worker: the task comes from a dict, so there is no file to copy."""
    task = TaskSpec.from_dict(patch_task.to_dict())
    assert task.source is None
    d = task.to_dict()
    d["train"].update(epochs=1, max_train_samples=64)
    trained = train_and_write(TaskSpec.from_dict(d), "late_cnn", patch_data, 2, tmp_path / "w",
                              test=True)
    folder = read_train_folder(tmp_path / "w")
    assert folder.run["task"]["path"] is None
    written = yaml.safe_load((folder.path / "task.yaml").read_text())
    assert TaskSpec.from_dict(written) == TaskSpec.from_dict(d)
    assert folder.run["task"]["sha256"] == \
        hashlib.sha256((folder.path / "task.yaml").read_bytes()).hexdigest()
    assert folder.metrics["test"] == trained.test_metrics
    assert folder.metrics["cost"]["params"] == trained.cost.params


def test_a_task_whose_file_is_gone_is_refused_before_training(
    patch_task: TaskSpec, patch_data: PreparedData, tmp_path: Path
) -> None:
    """The run folder copies the task file: a file that vanished is an error up front, not a
    crash after the training."""
    gone = patch_task.model_copy(update={"source": tmp_path / "moved.yaml"})
    with pytest.raises(TaskFileError, match=r"moved\.yaml does not exist"):
        train_and_write(gone, "late_cnn", patch_data, 0, tmp_path / "r")
    assert not (tmp_path / "r").exists()
