"""Fixtures of the export tests: a small synthetic scene (autors.synth), a tiny fusion network
trained on it with `autors train --test`, and that run exported with `autors export`.

Everything goes through the real CLI and real GeoTIFFs; sessions share one trained run
(training is the slow part). The scene is 64 x 64 px with 6 classes, 16 HSI bands, 7 x 7
patches; the optical image has clouds (rendered, not cut out), the SAR is on a coarser,
shifted grid, the LiDAR has gaps (nodata).

`cloudy` is the same scene with its clouds marked as the optical sensor's validity rules: a
cloud mask raster (optical_cloudmask.tif: 1 thick cloud and 3 shadow invalid) and a QA band
(the optical raster's last band "SCL": 3, 8, 9 invalid). `cloudy_model` is trained on it with
modality dropout and a centre head (so it predicts fully convolutionally), tested and
exported.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from autors.cli import main
from autors.synth import SynthConfig, generate_scene

SENSORS = ("optical", "sar", "lidar", "hsi")
TINY_ARCH = {
    "version": 1,
    "branches": {
        "optical": {"kind": "conv", "width": 8, "depth": 1, "kernel": 3},
        "sar": {"kind": "conv", "width": 4, "depth": 1, "kernel": 3},
        "lidar": {"kind": "conv", "width": 4, "depth": 1, "kernel": 3},
        "hsi": {"kind": "spectral", "width": 8, "depth": 1, "kernel": 3},
    },
    "fusion": {"op": "concat", "position": "middle", "width": 16, "trunk": {"kind": "off"}},
    "head": {"kind": "patch", "hidden": 16, "dropout": 0.2},
}
TRAIN = {"epochs": 20, "batch_size": 16, "lr": 0.01, "early_stopping_patience": 20,
         "device": "cpu"}


@dataclass(frozen=True)
class Scene:
    folder: Path
    task: Path  # patch classification task
    seg_task: Path  # the same scene as a segmentation task (16 x 16 tiles)
    mask_files: tuple[tuple[str, str], ...] = ()  # (sensor, mask raster name in folder)

    def sensors(self) -> dict[str, Path]:
        return {s: self.folder / f"{s}.tif" for s in SENSORS}

    def masks(self) -> dict[str, Path]:
        return {s: self.folder / name for s, name in self.mask_files}

    def sensor_args(self, skip: tuple[str, ...] = ()) -> list[str]:
        """--sensor (and --mask) arguments of every sensor but `skip`."""
        args = [a for s, p in self.sensors().items() if s not in skip
                for a in ("--sensor", f"{s}={p}")]
        return args + [a for s, p in self.masks().items() if s not in skip
                       for a in ("--mask", f"{s}={p}")]


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> object:
    """Tiny models on a shared 2-core box run fastest on one intra-op thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _run_cli(argv: list[str]) -> None:
    code = main(argv)
    assert code == 0, f"autors {' '.join(argv)} exited with {code}"


def _train_and_export(task: Path, root: Path, arch: dict, *train_args: str) -> Path:
    """`autors train` `arch` on `task` into root/run, `autors export` it to root/model."""
    (root / "arch.json").write_text(json.dumps(arch))
    _run_cli(["train", str(task), "--arch", str(root / "arch.json"), *train_args, "--out",
              str(root / "run"), "--quiet"])
    _run_cli(["export", str(root / "run"), "--out", str(root / "model")])
    return root / "model"


@pytest.fixture(scope="session")
def train_and_export() -> object:
    """`_train_and_export(task, root, arch, *train_args)`, for tests with their own arch."""
    return _train_and_export


def _scene(folder: Path, **config: object) -> Scene:
    """The fixture scene in `folder` (SynthConfig `config` on top of the common settings),
    with its patch and segmentation task files."""
    info = generate_scene(folder, SynthConfig(size=64, classes=6, n_train_per_class=30,
                                              hsi_bands=16, patch_size=7, seed=0, **config))
    task = yaml.safe_load(info.task_path.read_text())
    task["train"] = TRAIN
    (folder / "patch.yaml").write_text(yaml.safe_dump(task, sort_keys=False))
    # The synthetic split keeps train and test pixels patch_size // 2 = 3 px apart; the
    # default buffer for 16 px tiles (8 px) would leave class 'oak' without a training
    # pixel, so the segmentation task keeps the split's own margin (leakage is reported).
    seg = dict(task, name="synth_seg", task="segmentation", tile_size=16,
               split=dict(task["split"], buffer=3), train=dict(TRAIN, epochs=2))
    (folder / "seg.yaml").write_text(yaml.safe_dump(seg, sort_keys=False))
    masks = tuple((s, Path(spec["mask"]["path"]).name) for s, spec in task["sensors"].items()
                  if spec.get("mask"))
    return Scene(folder=folder, task=folder / "patch.yaml", seg_task=folder / "seg.yaml",
                 mask_files=masks)


@pytest.fixture(scope="session")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    return _scene(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="session")
def cloudy(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    """The scene with its optical clouds marked by a mask raster and a QA band (see the
    module docstring)."""
    return _scene(tmp_path_factory.mktemp("synth_cloudy"), cloud_nodata=True, cloud_qa=True)


@dataclass(frozen=True)
class Trained:
    run: Path  # the `autors train --test` run folder
    model: Path  # its export


@pytest.fixture(scope="session")
def cloudy_model(cloudy: Scene, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The tiny arch with a centre head trained on `cloudy` with modality dropout (so it
    has learnt to do without any one sensor), tested (robustness table) and exported."""
    root = tmp_path_factory.mktemp("cloudy_run")
    arch = dict(TINY_ARCH, head={"kind": "centre", "hidden": 16, "dropout": 0.2})
    model = _train_and_export(cloudy.task, root, arch, "--test", "--set",
                              "train.modality_dropout=0.3")
    return Trained(run=root / "run", model=model)


@pytest.fixture(scope="session")
def train_run(scene: Scene, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`autors train` run folder of the tiny arch, evaluated on test."""
    root = tmp_path_factory.mktemp("runs")
    arch = root / "tiny.json"
    arch.write_text(json.dumps(TINY_ARCH))
    out = root / "tiny_run"
    _run_cli(["train", str(scene.task), "--arch", str(arch), "--test", "--out", str(out),
              "--quiet"])
    return out


@pytest.fixture(scope="session")
def exported(train_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "tiny"
    _run_cli(["export", str(train_run), "--out", str(out)])
    return out


@pytest.fixture(scope="session")
def seg_exported(scene: Scene, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train_and_export(
        scene.seg_task, tmp_path_factory.mktemp("seg"),
        dict(TINY_ARCH, head={"kind": "segmentation", "hidden": 16, "dropout": 0.2}), "--test")


@pytest.fixture
def model_copy(exported: Path, tmp_path: Path) -> Path:
    """A private copy of the exported folder, free to be damaged by a test."""
    return Path(shutil.copytree(exported, tmp_path / "model"))


@pytest.fixture(scope="session")
def off_exported(scene: Scene, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny arch with the SAR branch 'off' (2 epochs), exported."""
    branches = dict(TINY_ARCH["branches"], sar={"kind": "off"})
    return _train_and_export(scene.task, tmp_path_factory.mktemp("off"),
                             dict(TINY_ARCH, branches=branches), "--epochs", "2")


@pytest.fixture(scope="session")
def centre_exported(scene: Scene, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny arch with a centre head (fully convolutional prediction applies), 2 epochs."""
    return _train_and_export(
        scene.task, tmp_path_factory.mktemp("centre"),
        dict(TINY_ARCH, head={"kind": "centre", "hidden": 16, "dropout": 0.2}), "--epochs", "2")


@pytest.fixture(scope="session")
def big_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another synthetic scene with the same sensors, 4x the pixels (128 x 128)."""
    folder = tmp_path_factory.mktemp("synth_big")
    generate_scene(folder, SynthConfig(size=128, classes=6, n_train_per_class=15,
                                       hsi_bands=16, patch_size=7, seed=1))
    return folder
