"""`autors export`: folder contents, model card, format parity, exact rebuild, search runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import fusion
from autors.cli import main
from autors.errors import ModelFolderError
from autors.export.export import export_model
from autors.export.loader import load_exported
from autors.export.source import list_candidates, select
from autors.search.records import TrialRecord
from autors.training.result import TrialResult
from autors.training.train_folder import read_train_folder

FILES = {"arch.json", "weights.pt", "model.ts", "model.onnx", "model.json"}


def _inputs(card_in_channels: dict[str, int], batch: int, size: int, seed: int,
            masks: bool = False) -> dict[str, torch.Tensor]:
    """Random sensor tensors; `masks`: also validity masks with holes (about 1 in 4), the
    first sensor missing from the whole first sample and no sensor at the last sample's
    corner pixel, values zeroed where invalid (as predict feeds them)."""
    gen = torch.Generator().manual_seed(seed)
    x = {s: torch.randn(batch, c, size, size, generator=gen)
         for s, c in card_in_channels.items()}
    if not masks:
        return x
    for i, s in enumerate(card_in_channels):
        m = (torch.rand(batch, size, size, generator=gen) > 0.25).float()
        if i == 0:
            m[0] = 0.0
        m[-1, 0, 0] = 0.0
        x[s] = x[s] * m[:, None]
        x[f"{s}__mask"] = m
    return x


def test_folder_and_model_card(exported: Path, train_run: Path) -> None:
    assert {p.name for p in exported.iterdir()} == FILES
    card = load_exported(exported).card
    run = read_train_folder(train_run)
    metrics = json.loads((train_run / "metrics.json").read_text())
    assert card.format == 6 and card.targets is None  # one class target: as before
    # what the training inputs looked like, from run.json (autors.data.profile)
    assert card.input_profile is not None and card.input_profile == run.profile
    assert {n: len(p.bands) for n, p in card.input_profile.sensors.items()} == \
        card.in_channels
    assert card.inputs == ["optical", "sar", "lidar", "hsi"]
    assert [s.name for s in card.sensors] == card.inputs
    # the compiled inputs: values, then masks, with shapes and dtypes
    tensors = card.export.inputs
    assert [t.name for t in tensors] == card.inputs + [f"{s}__mask" for s in card.inputs]
    assert tensors[3].shape == ["batch", 16, 7, 7] and tensors[7].shape == ["batch", 7, 7]
    assert {t.dtype for t in tensors} == {"float32"} and card.export.takes_masks
    # validity: no mask or QA rule in this task, the data layer's default pixel rule
    assert all(s.read.mask is None and s.read.qa is None for s in card.sensors)
    assert card.require_sensors == "any"
    # robustness: the source run's test table, as measured sensor subsets and cloud rows
    table = metrics["test"]["robustness"]
    subsets = card.robustness.accepted_subsets
    assert [r.condition for r in subsets] == ["clean"] + [f"without_{s}" for s in card.inputs]
    assert subsets[0].sensors == card.inputs and subsets[2].sensors == ["optical", "lidar",
                                                                        "hsi"]
    for row in subsets + card.robustness.clouds:
        want = table[row.condition]
        assert row.num_samples == want["num_samples"] and row.no_input == want["no_input"]
        for key in ("oa", "aa", "kappa", "miou", "ece"):
            assert row.test[key].mean == want[key] and row.test[key].n == 1
    assert [(c.condition, c.cover) for c in card.robustness.clouds] == [
        ("cloud_10", 0.1), ("cloud_30", 0.3), ("cloud_60", 0.6)]
    assert card.robustness.clouds[0].clouded == ["optical", "hsi"]
    assert card.robustness.subset(["hsi", "lidar", "optical"]).condition == "without_sar"
    assert card.robustness.subset(["hsi"]) is None
    hsi = card.sensor("hsi")
    assert hsi.kind == "hyperspectral" and hsi.in_channels == 16 and len(hsi.bands) == 16
    assert hsi.read.scale == pytest.approx(1e-4) and hsi.read.nodata == -32768
    assert card.sensor("sar").read.sar_units == "linear"
    assert hsi.mean == run.norm_stats.mean["hsi"] and hsi.std == run.norm_stats.std["hsi"]
    assert card.class_values == [1, 2, 3, 4, 5, 6] and card.ignore_value == 0
    assert card.class_names == run.run["inputs"]["class_names"]
    assert card.task.kind == "patch_classification" and card.task.input_size == 7
    # metrics: one seed -> std undefined; the test ECE is the training layer's value
    assert card.metrics.seeds == [0]
    assert card.metrics.test is not None
    for key in ("oa", "aa", "kappa", "miou", "ece"):
        assert card.metrics.test[key].mean == metrics["test"][key]
        assert card.metrics.test[key].std is None and card.metrics.test[key].n == 1
        assert card.metrics.val[key].mean == metrics["val"][key]
    assert card.cost.params == metrics["cost"]["params"] == fusion.count_params(
        load_exported(exported).model)
    assert card.cost.flops > 0 and card.cost.latency_ms_b1 > 0
    prov = card.provenance
    assert prov.task_digest == run.run["task"]["digest"]
    assert prov.split.sha256 == run.run["split"]["sha256"] and prov.seed == 0
    assert prov.split.buffer == 3 and prov.split.leakage["test"].touching_train == 0
    assert prov.source_kind == "train" and Path(prov.source_run) == train_run.resolve()
    assert prov.trained_with["torch"] == torch.__version__
    assert "onnxruntime" in prov.exported_with
    assert card.export.onnx_opset == 17
    assert set(card.files) == FILES - {"model.json"}
    assert all(v <= 1e-4 for v in card.export.parity.values())
    # calibration: the run's temperature, quantiles and test figures (autors train --test)
    fitted, checked = metrics["calibration"], metrics["test"]["calibration"]
    cal = card.calibration
    assert cal.temperature == fitted["temperature"] > 0 and cal.in_compiled and cal.fitted
    assert cal.val.ece_after == fitted["val"]["ece_after"]
    assert cal.conformal.quantiles == fitted["conformal"]["quantiles"]
    assert cal.conformal.quantile(0.1) == fitted["conformal"]["quantiles"][9]
    assert cal.conformal.n == fitted["val"]["pixels"] == metrics["val"]["num_samples"]
    assert cal.test.ece_before == checked["ece_before"] == pytest.approx(metrics["test"]["ece"])
    assert cal.test.entropy_auroc == checked["entropy_auroc"]
    assert [(c.alpha, c.coverage) for c in cal.conformal.test] == [
        (c["alpha"], c["coverage"]) for c in checked["conformal"]]


def test_rebuild_from_arch_and_weights_is_exact(exported: Path, train_run: Path) -> None:
    card = load_exported(exported).card
    arch = json.loads((exported / "arch.json").read_text())
    model = fusion.build_model(arch, card.in_channels, card.num_classes).eval()
    model.load_state_dict(torch.load(exported / "weights.pt", weights_only=True))
    original = read_train_folder(train_run).load_model()
    for (k, a), (k2, b) in zip(model.state_dict().items(), original.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    x = _inputs(card.in_channels, 4, card.task.input_size, seed=3)
    with torch.no_grad():
        assert torch.equal(model(x), original(x))


@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")
def test_torchscript_and_onnx_match_pytorch(exported: Path) -> None:
    loaded = load_exported(exported)
    ts, session = loaded.torchscript(), loaded.onnx_session()
    names = [t.name for t in loaded.card.export.inputs]
    assert [i.name for i in session.get_inputs()] == names
    assert [i.type for i in session.get_inputs()] == ["tensor(float)"] * len(names)
    for batch in (1, 5, 64):  # the batch axis is dynamic in both formats
        x = _inputs(loaded.card.in_channels, batch, loaded.card.task.input_size, seed=batch,
                    masks=True)
        assert all((x[n] == 0).any() for n in names if n.endswith("__mask"))
        with torch.no_grad():  # the compiled formats output logits / T (calibrated)
            want = loaded.model(x).numpy() / loaded.card.calibration.temperature
            got_ts = ts(x).numpy()
        (got_onnx,) = session.run(["logits"], {n: x[n].numpy() for n in names})
        assert want.shape == (batch, loaded.card.num_classes)
        np.testing.assert_allclose(got_ts, want, rtol=0, atol=1e-4)
        np.testing.assert_allclose(got_onnx, want, rtol=0, atol=1e-4)
    # masks change the output, and a mask left out of model.ts means valid everywhere
    x = _inputs(loaded.card.in_channels, 4, loaded.card.task.input_size, seed=9, masks=True)
    ones = {k: torch.ones_like(v) if k.endswith("__mask") else v for k, v in x.items()}
    values = {k: v for k, v in x.items() if not k.endswith("__mask")}
    with torch.no_grad():
        assert not torch.allclose(loaded.model(x), loaded.model(ones))
        torch.testing.assert_close(ts(values) * loaded.card.calibration.temperature,
                                   loaded.model(ones), rtol=0, atol=1e-5)


def test_formats_load_without_autors(exported: Path, tmp_path: Path) -> None:
    """model.ts needs only torch and model.onnx only onnxruntime (checked in a fresh process)."""
    loaded = load_exported(exported)
    x = _inputs(loaded.card.in_channels, 3, loaded.card.task.input_size, seed=7, masks=True)
    np.savez(tmp_path / "x.npz", **{k: v.numpy() for k, v in x.items()})
    with torch.no_grad():  # calibrated: logits / T
        np.save(tmp_path / "want.npy",
                loaded.model(x).numpy() / loaded.card.calibration.temperature)
    script = textwrap.dedent(f"""
        import json, sys, warnings
        import numpy as np
        warnings.simplefilter("ignore")
        folder = {str(exported)!r}
        x = dict(np.load({str(tmp_path / "x.npz")!r}))
        want = np.load({str(tmp_path / "want.npy")!r})
        import onnxruntime as ort
        sess = ort.InferenceSession(folder + "/model.onnx", providers=["CPUExecutionProvider"])
        inputs = [t["name"] for t in json.load(open(folder + "/model.json"))["export"]["inputs"]]
        assert any(n.endswith("__mask") for n in inputs)
        (got,) = sess.run(["logits"], {{s: x[s] for s in inputs}})
        assert np.abs(got - want).max() <= 1e-4
        import torch
        ts = torch.jit.load(folder + "/model.ts")
        got = ts({{k: torch.from_numpy(v) for k, v in x.items()}}).detach().numpy()
        assert np.abs(got - want).max() <= 1e-4
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("autors", "fusion"))
        assert not leaked, leaked
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # Run outside the repo so `fusion` / `autors` cannot even be imported from the cwd.
    done = subprocess.run([sys.executable, "-c", script], check=False, cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


def test_export_refuses_a_non_empty_out(train_run: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(ModelFolderError, match="already exists and is not empty"):
        export_model(train_run, tmp_path / "taken")


def test_export_of_a_folder_that_is_no_run(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    with pytest.raises(ModelFolderError, match="neither an `autors train` run folder"):
        export_model(tmp_path / "junk", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_export_respects_task_formats(train_run: Path, tmp_path: Path) -> None:
    run = Path(shutil.copytree(train_run, tmp_path / "run"))
    meta = json.loads((run / "run.json").read_text())
    meta["task"]["spec"]["export"]["formats"] = ["torchscript"]
    (run / "run.json").write_text(json.dumps(meta))
    out = export_model(run, tmp_path / "model")
    assert not (out / "model.onnx").exists()
    loaded = load_exported(out)
    assert loaded.card.export.formats == ["torchscript"] and loaded.card.export.onnx_opset is None
    with pytest.raises(ModelFolderError, match="exported without ONNX"):
        loaded.onnx_session()


# ---- search run folders -------------------------------------------------------------------
def _seed_copy(train_run: Path, dest: Path, seed: int, val_oa: float, test_oa: float) -> Path:
    """A copy of the train run standing for another seed's retraining (edited metrics)."""
    run = Path(shutil.copytree(train_run, dest))
    meta = json.loads((run / "run.json").read_text())
    meta["seed"] = seed
    (run / "run.json").write_text(json.dumps(meta))
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["val"]["oa"], metrics["test"]["oa"] = val_oa, test_oa
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def _record(trial_id: int, score: float, arch: dict) -> dict:
    result = TrialResult(trial_id=trial_id, arch=arch, seed=trial_id, status="ok",
                         metrics={"val_oa": score})
    return TrialRecord(trial_id=trial_id, session=0, sample={}, score=score, feasible=True,
                       violations={}, reason="", submitted_at=time.time(),
                       finished_at=time.time(), elapsed_s=1.0, result=result).to_dict()


@pytest.fixture
def search_run(train_run: Path, tmp_path: Path) -> Path:
    """A search run folder whose final phase kept train-run folders (rows with run_dir).
    Trial 7 scored best in the search (rank 1, two seeds), trial 3 second (rank 2)."""
    root = tmp_path / "search"
    (root / "final").mkdir(parents=True)
    arch = json.loads((train_run / "arch.json").read_text())
    (root / "run.json").write_text(json.dumps({"format": 1}))
    (root / "task.yaml").write_text("# unused by export\n")
    (root / "trials.jsonl").write_text(
        "".join(json.dumps(_record(t, s, arch)) + "\n" for t, s in ((3, 0.5), (7, 0.9))))
    rows = []
    for trial, seed, val, test in ((7, 101, 0.6, 0.80), (7, 102, 0.7, 0.70), (3, 101, 0.9, 0.5)):
        name = f"final/trial{trial}_seed{seed}"
        _seed_copy(train_run, root / name, seed, val, test)
        rows.append({"trial_id": trial, "seed": seed, "status": "ok", "run_dir": name})
    rows.append({"trial_id": 3, "seed": 102, "status": "failed", "error": "boom"})
    (root / "final.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_search_run_candidates_rank_and_seed_statistics(search_run: Path, tmp_path: Path
                                                        ) -> None:
    candidates = list_candidates(search_run)
    assert [c.rank for c in candidates] == [1, 2]
    assert candidates[0].seeds == [101, 102] and candidates[1].seeds == [101]
    out = export_model(search_run, tmp_path / "best", rank=1)
    card = load_exported(out).card
    assert card.provenance.source_kind == "search" and card.provenance.rank == 1
    assert card.provenance.seed == 102  # the better validation score of the two seeds
    assert card.metrics.seeds == [101, 102]
    oa = card.metrics.test["oa"]
    assert oa.n == 2 and oa.values == [0.80, 0.70]
    assert oa.mean == pytest.approx(0.75) and oa.std == pytest.approx(np.std([0.8, 0.7], ddof=1))
    with pytest.raises(ModelFolderError, match=r"no model of rank 3: valid ranks are \[1, 2\]"):
        select(search_run, 3)


def test_export_list_cli(search_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export", "--list", str(search_run)]) == 0
    out = capsys.readouterr().out
    assert "0.7500 ± 0.0707" in out  # rank 1 test OA over its two seeds
    assert "101,102" in out


def test_search_run_without_kept_weights(search_run: Path) -> None:
    rows = [json.loads(line) for line in (search_run / "final.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("run_dir", None)
    (search_run / "final.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ModelFolderError, match="did not keep the weights"):
        list_candidates(search_run)


def test_search_run_without_final_models(search_run: Path) -> None:
    (search_run / "final.jsonl").unlink()
    with pytest.raises(ModelFolderError, match="no successfully retrained final model yet"):
        list_candidates(search_run)
