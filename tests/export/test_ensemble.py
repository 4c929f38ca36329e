"""Ensembles (`autors export --ensemble`): the final phase's seeds packed into one model folder
whose prediction averages their calibrated probabilities; its own metrics on the members'
pixels; TorchScript / ONNX of the averaging graph; predict's entropy and mutual information
bands on the fully convolutional path.

The search folder is written by hand around real `autors train --test` runs (two seeds of a
centre-head arch with branch dropout, and the session's patch-head run as rank 2), as
`autors search`'s final phase would have kept them."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from autors.cli import main
from autors.config import TaskSpec
from autors.data import prepare
from autors.errors import DataError, ModelFolderError
from autors.export.ensemble import EnsembleModel, choose_members, member_files
from autors.export.loader import load_exported
from autors.export.predict import PredictOptions, predict_scene
from autors.search.records import TrialRecord
from autors.training.evaluate import predict_split
from autors.training.metrics import confusion_matrix, overall_accuracy
from autors.training.result import TrialResult
from autors.training.train_folder import read_train_folder

from .conftest import TINY_ARCH

pytestmark = [
    pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export"),
    pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning"),
]

# centre head, local fusion, channel dropout in the branches: fully convolutional, MC-able
DROP_ARCH = dict(
    TINY_ARCH,
    branches={s: dict(b, dropout=0.1) for s, b in TINY_ARCH["branches"].items()},
    head={"kind": "centre", "hidden": 16, "dropout": 0.2})
SEEDS = (11, 12)


def _record(trial_id: int, score: float, arch: dict) -> dict:
    result = TrialResult(trial_id=trial_id, arch=arch, seed=trial_id, status="ok",
                         metrics={"val_oa": score})
    return TrialRecord(trial_id=trial_id, session=0, sample={}, score=score, feasible=True,
                       violations={}, reason="", submitted_at=time.time(),
                       finished_at=time.time(), elapsed_s=1.0, result=result).to_dict()


@pytest.fixture(scope="session")
def ens_search(scene, train_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A search folder: trial 7 (DROP_ARCH, seeds 11 and 12) ranked first, trial 3 (the
    session's patch-head run) second."""
    root = tmp_path_factory.mktemp("ens") / "search"
    (root / "final").mkdir(parents=True)
    arch = root.parent / "drop_arch.json"
    arch.write_text(json.dumps(DROP_ARCH))
    rows = []
    for seed in SEEDS:
        name = f"final/trial7_seed{seed}"
        assert main(["train", str(scene.task), "--arch", str(arch), "--seed",
                     str(seed), "--epochs", "10", "--test", "--out", str(root / name),
                     "--quiet"]) == 0
        rows.append({"trial_id": 7, "seed": seed, "status": "ok", "run_dir": name})
    # the session's patch-head run, linked under final/ as a search keeps its models
    (root / "final" / "trial3_seed0").symlink_to(train_run)
    rows.append({"trial_id": 3, "seed": 0, "status": "ok", "run_dir": "final/trial3_seed0"})
    (root / "run.json").write_text(json.dumps({"format": 1}))
    (root / "task.yaml").write_text("# unused by export\n")
    arch3 = json.loads((train_run / "arch.json").read_text())
    (root / "trials.jsonl").write_text(json.dumps(_record(3, 0.5, arch3)) + "\n"
                                       + json.dumps(_record(7, 0.9, DROP_ARCH)) + "\n")
    (root / "final.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="session")
def ensemble(ens_search: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ens_export") / "ens"
    assert main(["export", str(ens_search), "--ensemble", "--out", str(out)]) == 0
    return out


def _members(ens_search: Path) -> list:
    return [read_train_folder(ens_search / f"final/trial7_seed{s}") for s in SEEDS]


def test_the_card_lists_members_and_the_ensembles_own_metrics(ensemble: Path,
                                                              ens_search: Path) -> None:
    loaded = load_exported(ensemble)
    card, ens = loaded.card, loaded.card.ensemble
    assert ens is not None and isinstance(loaded.model, EnsembleModel)
    names = {f.name for f in ensemble.iterdir()}
    assert {*member_files(1), *member_files(2), "model.ts", "model.onnx", "model.json"} == names
    runs = _members(ens_search)
    assert [(m.rank, m.seed) for m in ens.members] == [(1, 11), (1, 12)]
    for m, run in zip(ens.members, runs):
        assert m.temperature == pytest.approx(run.calibration.temperature)  # calibrated runs
        assert m.test.oa == run.metrics["test"]["oa"] and m.cost.params == \
            run.metrics["cost"]["params"]
    # cost: the sum over members; the single model is the better-validated seed
    assert card.cost.params == sum(r.metrics["cost"]["params"] for r in runs)
    assert card.cost.flops == sum(r.metrics["cost"]["flops"] for r in runs)
    best = max(runs, key=lambda r: r.metrics["val"]["oa"])
    assert ens.single.seed == int(best.run["seed"]) and ens.single.cost.params == \
        runs[0].metrics["cost"]["params"]
    assert card.metrics.seeds == list(SEEDS) and card.metrics.test["oa"].n == 1
    assert card.metrics.test["oa"].mean == ens.test.oa
    assert card.robustness is not None and card.robustness.accepted_subsets[0].condition == \
        "clean"
    # the test OA is that of the mean of the members' calibrated probabilities, on the same
    # pixels as each member's own test OA (recomputed here by hand)
    task = TaskSpec.from_dict(runs[0].run["task"]["spec"])
    data = prepare(task)
    probs, target = [], None
    for run in runs:
        logits = []
        y, *_ = predict_split(run.load_model(), data, "test",
                              on_logits=lambda z, t, out=logits: out.append(z))
        target = y
        z = torch.cat(logits).double() / run.calibration.temperature
        probs.append(torch.softmax(z, dim=1).numpy())
    assert len(target) == ens.test_pixels == runs[0].metrics["test"]["num_samples"]
    mean = np.mean(probs, axis=0)
    oa = overall_accuracy(confusion_matrix(target, mean.argmax(axis=1), card.num_classes))
    assert ens.test.oa == pytest.approx(oa, abs=1 / len(target))


def test_compiled_formats_average_the_members(ensemble: Path, ens_search: Path) -> None:
    loaded = load_exported(ensemble)
    card = loaded.card
    assert all(v <= 1e-4 for v in card.export.parity.values())
    size = card.task.input_size
    gen = torch.Generator().manual_seed(5)
    x = {s.name: torch.randn(3, s.in_channels, size, size, generator=gen)
         for s in card.used_sensors}
    x |= {s.name + "__mask": (torch.rand(3, size, size, generator=gen) > 0.2).float()
          for s in card.used_sensors}
    by_hand = 0
    for run in _members(ens_search):
        with torch.no_grad():
            by_hand = by_hand + torch.softmax(run.load_model()(x) / run.calibration.temperature,
                                              dim=1)
    by_hand = by_hand / 2
    with torch.no_grad():
        torch.testing.assert_close(torch.softmax(loaded.model(x), 1), by_hand, atol=1e-6,
                                   rtol=0)
        torch.testing.assert_close(torch.softmax(loaded.torchscript()(x), 1), by_hand,
                                   atol=1e-5, rtol=0)
    session = loaded.onnx_session()
    (got,) = session.run(["logits"], {i.name: x[i.name].numpy() for i in session.get_inputs()})
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(got), 1).numpy(), by_hand.numpy(),
                               atol=1e-5)


def test_predict_writes_entropy_and_mutual_information_fully_convolutionally(
        ensemble: Path, scene, tmp_path: Path) -> None:
    loaded = load_exported(ensemble)
    maps = {}
    for fast in (True, False):
        result = predict_scene(loaded, scene.sensors(), tmp_path / f"{fast}.tif",
                               PredictOptions(window=24, fully_convolutional=fast),
                               progress=False)
        assert result.bands == ["confidence", "entropy", "mutual_information", "valid_sensors"]
        with rasterio.open(result.scores) as ds:
            maps[fast] = (result.method, ds.read())
    assert maps[True][0] == "fully convolutional" and maps[False][0] == "per patch"
    assert result.notes == [] and result.calibration.startswith("ensemble of 2: the mean of "
                                                                 "the members' probabilities")
    for bad, match in (({"conformal": 0.1}, "an ensemble has none of its own"),
                       ({"calibrated": False}, "averages its members' calibrated")):
        with pytest.raises(DataError, match=match):
            predict_scene(loaded, scene.sensors(), tmp_path / "bad.tif",
                          PredictOptions(**bad), progress=False)
    np.testing.assert_allclose(maps[True][1], maps[False][1], atol=1e-5)
    conf, entropy, mi, _ = maps[True][1]
    valid = ~np.isnan(conf)
    k = loaded.card.num_classes
    assert (entropy[valid] <= math.log(k) + 1e-5).all()
    assert (mi[valid] >= 0).all() and (mi[valid] <= entropy[valid] + 1e-6).all()
    assert mi[valid].max() > 1e-3  # the two seeds disagree somewhere


def test_top_k_packs_several_architectures(ens_search: Path, tmp_path: Path, scene) -> None:
    chosen = choose_members(ens_search, top=2)
    assert [(c.rank, c.seeds) for c in chosen] == [(1, list(SEEDS)), (2, [0])]
    assert main(["export", str(ens_search), "--ensemble-top", "2", "--out",
                 str(tmp_path / "top2")]) == 0
    loaded = load_exported(tmp_path / "top2")
    assert [m.rank for m in loaded.card.ensemble.members] == [1, 1, 2]
    assert len(loaded.archs) == 3 and loaded.archs[2].head.kind == "patch"
    result = predict_scene(loaded, scene.sensors(), tmp_path / "m.tif",
                           PredictOptions(window=32), progress=False)
    assert result.method == "per patch"  # member 3's patch head pools over the patch


def test_what_cannot_be_an_ensemble_says_why(ens_search: Path, train_run: Path,
                                             tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match="`autors train` run folder: it holds one model"):
        choose_members(train_run)
    with pytest.raises(ModelFolderError, match="rank 2 of .* has one seed"):
        choose_members(ens_search, rank=2)
    with pytest.raises(ModelFolderError, match="has 2 retrained architecture"):
        choose_members(ens_search, top=3)
