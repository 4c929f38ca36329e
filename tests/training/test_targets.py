"""Several targets and continuous targets (issue 16): the task file, bad input, the losses and
metrics against hand computation, and real training on GeoTIFFs with a class and a continuous
target (patch and dense forms)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from affine import Affine

import fusion
from autors.config import TaskSpec, load_task
from autors.data import prepare
from autors.data.labels import TargetInfo
from autors.errors import DataError, ModelFolderError, TaskFileError
from autors.export.card import ModelCard, upgrade_card
from autors.export.export import export_model
from autors.export.loader import load_exported
from autors.export.predict import PredictOptions, predict_scene
from autors.training.targets import (
    TargetLoss,
    calibrated_coverage,
    evaluate_targets,
    interval_factor,
    regression_metrics,
    target_loss,
)
from autors.training.train_folder import train_and_write
from autors.training.trial import train_evaluate

from .conftest import SIZE, TRANSFORM, _write, make_scene, task_dict

CLASSES = ["water", "grass", "trees"]
# small enough for CI: two narrow branches, a centre head (patch) or a per-pixel head (dense)
TINY = {"version": 1,
        "branches": {"optical": {"kind": "conv", "width": 8, "depth": 1, "kernel": 3},
                     "lidar": {"kind": "conv", "width": 8, "depth": 1, "kernel": 3}},
        "fusion": {"op": "concat", "position": "middle", "width": 16,
                   "trunk": {"kind": "off"}},
        "head": {"kind": "centre", "hidden": 16, "dropout": 0.0}}


def _height(files: dict[str, Path], folder: Path, dtype: str = "float32") -> Path:
    """A continuous target that needs the LiDAR: its height (plus noise), a strip without a
    value (NaN) where the class labels still are."""
    with rasterio.open(files["lidar"]) as f:
        lidar = f.read(1)
    h = 0.5 * lidar + 2 + np.random.default_rng(1).normal(0, 0.2, lidar.shape)
    if dtype != "float32":
        return _write(folder / "height_int.tif", np.clip(h, 0, 50).astype(dtype))
    h = h.astype(np.float32)
    h[:4] = np.nan
    return _write(folder / "height.tif", h)


def multi_dict(files: dict[str, Path], height: Path, task_kind: str = "patch_classification",
               **height_spec) -> dict:
    d = task_dict(files, task_kind)
    del d["labels"]
    d["targets"] = {"landcover": {"path": str(files["labels"]), "classes": CLASSES},
                    "height": {"path": str(height), "units": "m", **height_spec}}
    d["search"] = {"objective": "val_score"}
    return d


def _load(tmp_path: Path, d: dict) -> TaskSpec:
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return load_task(path)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> tuple[dict[str, Path], Path]:
    folder = tmp_path_factory.mktemp("targets_scene")
    files = make_scene(folder)
    return files, _height(files, folder)


# ---- the task file ---------------------------------------------------------------------------
def test_targets_parse_and_one_class_target_is_the_labels_task(scene, tmp_path):
    files, height = scene
    task = _load(tmp_path, multi_dict(files, height, weight="learned"))
    assert task.multi_target and task.labels is None
    assert list(task.target_specs) == ["landcover", "height"]  # the file's order
    h = task.target_specs["height"]
    assert (h.resolved_kind, h.resolved_loss, h.weight, h.units) == \
        ("continuous", "gaussian_nll", "learned", "m")
    assert task.class_target == "landcover" and task.num_classes == 3
    # one class target alone is the labels task: same task, same digest
    d = task_dict(files)
    labels = TaskSpec.from_dict(d)
    del d["labels"]
    d["targets"] = {"lc": {"path": str(files["labels"]), "classes": CLASSES}}
    one = TaskSpec.from_dict(d)
    assert not one.multi_target and one.labels == labels.labels
    assert one.digest() == labels.digest()


@pytest.mark.parametrize("spec, field, words", [
    ({"loss": "cross_entropy"}, "targets.height", "does not fit a continuous target"),
    ({"kind": "classes", "classes": CLASSES, "loss": "l1"}, "targets.height",
     "does not fit a class target"),
    ({"classes": CLASSES, "kind": "continuous"}, "targets.height", "use kind: classes"),
    ({"range": [5, 1]}, "targets.height", "low must be below high"),
    ({"weight": 0}, "targets.height.weight", "> 0 or 'learned'"),
])
def test_bad_target_fields_name_the_field(scene, tmp_path, spec, field, words):
    files, height = scene
    with pytest.raises(TaskFileError) as err:
        _load(tmp_path, multi_dict(files, height, **spec))
    assert field in str(err.value) and words in str(err.value)


def test_bad_targets_in_the_task(scene, tmp_path):
    files, height = scene
    d = multi_dict(files, height)
    d["search"] = {"objective": "val_oa"}
    del d["targets"]["landcover"]
    with pytest.raises(TaskFileError, match="search.objective 'val_oa' scores a class target"):
        _load(tmp_path, d)
    d = multi_dict(files, height)
    d["labels"] = {"path": str(files["labels"]), "classes": CLASSES}
    with pytest.raises(TaskFileError, match="not both"):
        _load(tmp_path, d)


def test_integer_raster_without_kind_asks_which(scene, tmp_path):
    files, _ = scene
    counts = _height(files, tmp_path, dtype="uint8")
    task = _load(tmp_path, multi_dict(files, counts))
    with pytest.raises(DataError, match=r"targets\.height\.kind: .*uint8.*kind: classes.*"
                                        r"kind: continuous"):
        prepare(task)
    # said plainly, it is a continuous target
    assert prepare(_load(tmp_path, multi_dict(files, counts, kind="continuous"))).targets


def test_target_without_overlap_names_it(scene, tmp_path):
    files, height = scene
    with rasterio.open(height) as f:
        values = f.read(1)
    far = tmp_path / "far.tif"
    with rasterio.open(far, "w", driver="GTiff", count=1, height=SIZE, width=SIZE,
                       dtype="float32", crs="EPSG:32632",
                       transform=Affine(10.0, 0.0, TRANSFORM.c + 100.0 * SIZE, 0.0, -10.0,
                                        TRANSFORM.f)) as f:
        f.write(values[None])
    d = multi_dict(files, height)
    d["targets"]["height"]["path"] = str(far)
    with pytest.raises(DataError, match=r"targets\.height raster .*does not overlap"):
        prepare(_load(tmp_path, d))


# ---- losses and metrics by hand ----------------------------------------------------------------
def _info(name: str, kind: str, loss: str, weight: float | str = 1.0) -> TargetInfo:
    classes = ("a", "b") if kind == "classes" else ()
    return TargetInfo(name=name, kind=kind, loss=loss, weight=weight, score_weight=1.0,
                      classes=classes)


def test_losses_by_hand():
    y = torch.tensor([1.0, float("nan"), -1.0])  # the middle pixel has no value
    mu, logvar = torch.tensor([0.5, 9.0, -2.0]), torch.tensor([0.0, 3.0, math.log(4.0)])
    out = torch.stack([mu, logvar], dim=1)  # [3, 2]
    l1 = target_loss(_info("h", "continuous", "l1"), out[:, :1], y)
    assert l1.item() == pytest.approx((0.5 + 1.0) / 2)
    huber = target_loss(_info("h", "continuous", "huber"), out[:, :1], y)
    assert huber.item() == pytest.approx((0.5 * 0.25 + (1.0 - 0.5)) / 2)
    nll = target_loss(_info("h", "continuous", "gaussian_nll"), out, y)
    assert nll.item() == pytest.approx((0.5 * (0 + 0.25) + 0.5 * (math.log(4) + 1 / 4)) / 2)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    cls = torch.tensor([0.0, 1.0, float("nan")])
    ce = target_loss(_info("c", "classes", "cross_entropy"), logits, cls)
    want = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    assert ce.item() == pytest.approx(want)
    assert target_loss(_info("h", "continuous", "l1"), out[:, :1],
                       torch.full((3,), float("nan"))) is None
    # weights: fixed multiplies; learned is exp(-s) * L + s, s = 0 at the start
    both = torch.cat([logits, out[:, :1]], dim=1)  # [3, 3]
    ys = torch.stack([cls, y], dim=1)
    loss = TargetLoss([_info("c", "classes", "cross_entropy", 2.0),
                       _info("h", "continuous", "l1", "learned")],
                      {"c": (0, 2), "h": (2, 3)})
    assert loss(both, ys).item() == pytest.approx(2 * want + 0.75)
    assert [p.shape for p in loss.parameters()] == [torch.Size([1])]


def test_regression_metrics_by_hand():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([1.5, 2.0, 2.0, 5.0])
    std = np.array([1.0, 0.1, 0.5, 0.6])
    m = regression_metrics(y, pred, std)
    err = pred - y  # 0.5, 0, -1, 1
    assert m["rmse"] == pytest.approx(math.sqrt((0.25 + 0 + 1 + 1) / 4))
    assert m["mae"] == pytest.approx(2.5 / 4)
    assert m["bias"] == pytest.approx(err.mean())
    assert m["r2"] == pytest.approx(1 - 2.25 / 5.0)
    assert m["coverage68"] == pytest.approx(2 / 4)  # |err| <= std: 0.5<=1, 0<=0.1
    assert m["coverage95"] == pytest.approx(3 / 4)  # 1.96 * 0.6 = 1.18 covers the last one


def test_interval_factors_are_conformal_ranks_and_fix_heavy_tails():
    # rank ceil((n + 1) * level) of the sorted |z|: n = 9, 68.27 % -> 7th, 95 % -> 10th > n
    z = np.array([-0.1, 0.2, -0.3, 0.4, 0.5, -0.6, 0.7, 0.8, -5.0])
    assert interval_factor(z, 0.6827) == pytest.approx(0.7)
    assert interval_factor(z, 0.95) == float("inf")
    # heavy-tailed residuals (Student t, 3 dof) under their true std (sqrt 3, what a Gaussian
    # NLL learns): the nominal 1-std interval covers ~82 %; the validation-fitted factors
    # bring fresh pixels back to 68 % and 95 %
    rng = np.random.default_rng(0)
    val, test = rng.standard_t(3, 4000), rng.standard_t(3, 4000)
    std = np.full(4000, np.sqrt(3.0))
    raw = regression_metrics(np.zeros(4000), test, std)
    assert raw["coverage68"] > 0.78
    fitted = {"z68": interval_factor(val / std, 0.6827), "z95": interval_factor(val / std, 0.95)}
    cal = calibrated_coverage(np.zeros(4000), test, std, fitted)
    assert cal["coverage68_calibrated"] == pytest.approx(0.6827, abs=0.025)
    assert cal["coverage95_calibrated"] == pytest.approx(0.95, abs=0.015)


# ---- training -----------------------------------------------------------------------------------
def test_train_export_predict_a_class_and_a_continuous_target(scene, tmp_path):
    """`autors train --test` of a class + continuous target on GeoTIFFs, export (TorchScript
    and ONNX parity, card targets), predict (value and std bands), old cards still load."""
    files, height = scene
    d = multi_dict(files, height, weight="learned")
    d["targets"]["height"]["nodata"] = -1.0  # (none in the file: NaN is always no value)
    task = _load(tmp_path, d)
    data = prepare(task)
    assert data.model_outputs == {"landcover": 3, "height": 2}
    h = data.targets[1]
    with rasterio.open(height) as f:
        ref = f.read(1)
    assert h.mean == pytest.approx(float(np.nanmean(ref)), abs=0.3)  # training pixels only
    # a pixel is a sample where any target is: the NaN strip keeps its class labels
    item = data.dataset("train")[0]
    assert item["targets"].shape == (2,) and "target" not in item
    trained = train_and_write(task, dict(TINY, head=dict(TINY["head"], dropout=0.2)), data, 0,
                              tmp_path / "run", test=True)
    m = trained.metrics()
    assert m["val_oa__landcover"] == m["val_oa"] > 0.6
    assert m["test_r2__height"] > 0.5 and m["test_rmse__height"] < 1.5
    assert 0.3 < m["test_coverage68__height"] <= 1.0
    # the interval factors are fitted on validation and measured on test
    fitted = trained.outcome.val_metrics["intervals"]["height"]
    assert 0 < fitted["z68"] < fitted["z95"] and fitted["n"] > 100
    assert abs(m["test_coverage68_calibrated__height"] - 0.6827) < \
        abs(m["test_coverage68__height"] - 0.6827) + 0.1
    assert m["val_score"] == pytest.approx((m["val_oa"] + max(m["val_r2__height"], -1)) / 2)
    assert trained.outcome.arch.heads is None  # no `heads`: both heads like `head`
    out = trained.outcome.model({"optical": torch.zeros(2, 4, 5, 5),
                                 "lidar": torch.zeros(2, 1, 5, 5)})
    assert out.shape == (2, 5) and trained.outcome.model.output_slices() == \
        {"landcover": (0, 3), "height": (3, 5)}

    # MC dropout in evaluation: the passes' spread adds to the head's variance
    mc = evaluate_targets(trained.outcome.model, data, "test", mc_passes=4)
    assert mc["targets"]["height"]["mean_std"] > m["test_mean_std__height"]

    export_model(tmp_path / "run", tmp_path / "model")
    exported = load_exported(tmp_path / "model")
    card = exported.card
    assert card.format == 6 and [(t.name, t.kind, t.start, t.stop, t.has_std, t.units)
                                 for t in card.targets] == \
        [("landcover", "classes", 0, 3, False, ""), ("height", "continuous", 3, 5, True, "m")]
    assert card.metrics.test["rmse__height"].mean == pytest.approx(m["test_rmse__height"])
    assert "coverage95__height" in card.metrics.test
    assert max(card.export.parity.values()) < 1e-4 and set(card.export.parity) == \
        {"torchscript", "onnx"}
    sensors = {"optical": files["optical"], "lidar": files["lidar"]}
    result = predict_scene(exported, sensors, tmp_path / "map.tif", progress=False)
    with rasterio.open(result.class_map) as f:
        names = list(f.descriptions)
        bands = {n: f.read(i + 1) for i, n in enumerate(names)}
    assert names == ["landcover", "landcover__confidence", "height", "height__std",
                     "valid_sensors"]
    with rasterio.open(files["labels"]) as f:
        labels = f.read(1)
    with rasterio.open(height) as f:
        ref = f.read(1)
    assert set(np.unique(bands["landcover"])) <= {1.0, 2.0, 3.0}
    labelled = labels > 0
    assert (bands["landcover"][labelled] == labels[labelled]).mean() > 0.6
    has = ~np.isnan(ref)
    assert np.sqrt(np.mean((bands["height"][has] - ref[has]) ** 2)) < 1.5
    assert (bands["height__std"] > 0).all()
    # the std band is calibrated by default (the head's std x z68), raw on request
    assert card.targets[1].intervals.z68 == pytest.approx(fitted["z68"])
    raw = predict_scene(exported, sensors, tmp_path / "raw.tif",
                        PredictOptions(calibrated=False), progress=False)
    with rasterio.open(raw.class_map) as f:
        raw_std = f.read(4)
        assert "not calibrated" in f.tags()["height__std"]
    assert np.allclose(bands["height__std"], raw_std * fitted["z68"], rtol=1e-4, equal_nan=True)
    assert "68.27 % interval" in result.calibration
    mc = predict_scene(exported, sensors, tmp_path / "mc.tif", PredictOptions(mc_dropout=4),
                       progress=False)
    with rasterio.open(mc.class_map) as f:  # the passes' spread adds to the head's std
        assert np.nanmean(f.read(4)) >= np.nanmean(bands["height__std"])
    with pytest.raises(ModelFolderError, match="one class target"):
        predict_scene(exported, sensors, tmp_path / "p.tif",
                      PredictOptions(probabilities=True), progress=False)
    # a format-5 card (before targets) still loads
    old = json.loads((tmp_path / "model" / "model.json").read_text())
    old["format"] = 5
    del old["targets"]
    assert ModelCard.model_validate(upgrade_card(old)).targets is None


def test_dense_targets_train(scene, tmp_path):
    files, height = scene
    task = _load(tmp_path, multi_dict(files, height, task_kind="segmentation", loss="huber"))
    data = prepare(task)
    item = data.dataset("train", augment=True, seed=1)[0]
    assert item["targets"].shape == (2, 16, 16)
    assert torch.isnan(item["targets"][1]).any() or not torch.isnan(item["targets"][0]).all()
    trained = train_evaluate(task, dict(TINY, head={"kind": "segmentation", "hidden": 8}),
                             data, 0, max_epochs=1)
    assert {"val_rmse__height", "val_miou__landcover", "val_score"} <= set(trained.metrics())
    assert "val_coverage68__height" not in trained.metrics()  # huber: no std head


def test_a_labels_task_keeps_its_arch_and_weights():
    """Single-target archs and models are as before issue 16 (hashes from commit e3aa2e4)."""
    a = fusion.baseline_arch("two_branch_centre", {"optical": 4, "lidar": 1}, dense=False)
    d = json.dumps(a.to_dict(), sort_keys=True)
    assert hashlib.sha256(d.encode()).hexdigest() == \
        "60deff022a4ad11dc5d485c75c278da9f87d1e7c000f71ef3306ee4caa025994"
    m = fusion.build_model(a, {"optical": 4, "lidar": 1}, 3)
    keys = json.dumps(sorted((k, list(v.shape)) for k, v in m.state_dict().items()))
    assert hashlib.sha256(keys.encode()).hexdigest() == \
        "8ee2ae3d52dc4e9343facb907dfe1f095de252038bd4d708e9cfd1dbd7d20d48"


def test_heads_read_their_stage_and_script():
    """One head per target: a head on the fused map, TorchScript equal to eager."""
    d = fusion.baseline_arch("two_branch_centre", {"optical": 4, "lidar": 1}).to_dict()
    d["fusion"]["trunk"] = {"kind": "conv", "width": 16, "depth": 0, "kernel": 3}
    d["heads"] = {"lc": {"hidden": 8, "stage": "fused"}, "h": {"hidden": 0, "stage": "last"}}
    arch = fusion.Arch.from_dict(d)
    assert "lc:h8@fused" in arch.summary()
    torch.manual_seed(0)
    model = fusion.build_model(arch, {"optical": 4, "lidar": 1}, {"lc": 3, "h": 2}).eval()
    x = {"optical": torch.randn(3, 4, 5, 5), "lidar": torch.randn(3, 1, 5, 5)}
    assert torch.allclose(torch.jit.script(model)(x), model(x), atol=1e-6)
    assert model.head.heads[0].in_channels == 64  # the fused map's width, not the trunk's
    bad = dict(d, fusion=dict(d["fusion"], trunk={"kind": "off"}))
    with pytest.raises(fusion.ArchError, match="heads.lc.stage"):
        fusion.Arch.from_dict(bad)


def test_a_dataset_of_scenes_gives_each_target_per_scene(scene, tmp_path):
    """`scenes.template.targets`: a target raster per scene (a scene without one has no value
    there); the scene split keeps whole scenes."""
    import shutil

    files, height = scene
    for sid in ("a", "b", "c"):
        for key, src in (("optical", files["optical"]), ("lidar", files["lidar"]),
                         ("landcover", files["labels"]), ("height", height)):
            if not (sid == "c" and key == "height"):  # scene c: no height raster
                shutil.copy(src, tmp_path / f"{sid}_{key}.tif")
    d = multi_dict(files, height)
    for t in d["targets"].values():
        del t["path"]
    for s in d["sensors"].values():
        del s["path"]
    d["scenes"] = {"template": {
        "sensors": {k: str(tmp_path / f"{{scene}}_{k}.tif") for k in ("optical", "lidar")},
        "targets": {k: str(tmp_path / f"{{scene}}_{k}.tif") for k in ("landcover", "height")}}}
    d["split"] = {"kind": "scenes", "train": ["a"], "val": ["c"], "test": ["b"]}
    data = prepare(_load(tmp_path, d))
    by_id = {e.id: e for e in data.index.scenes}
    assert sorted(by_id) == ["a", "b", "c"] and by_id["c"].n("val") > 0
    assert np.isnan(by_id["c"].target_values(2)[1]).all()  # c: no height, classes only
    assert not np.isnan(by_id["a"].target_values(2)[1]).all()
    bad = dict(d, scenes={"template": dict(d["scenes"]["template"],
                                           targets={"landcover": "x_{scene}.tif"})})
    with pytest.raises(TaskFileError, match="scenes.template.targets must give a template"):
        _load(tmp_path, bad)


def test_objectives_may_name_each_targets_metric(scene, tmp_path):
    """A Pareto front across targets: `search.objectives` names val_<metric>__<target>."""
    files, height = scene
    d = multi_dict(files, height)
    d["search"] = {"objectives": [{"name": "val_oa__landcover", "goal": "max"},
                                  {"name": "val_rmse__height", "goal": "min"}]}
    task = _load(tmp_path, d)
    assert [o.name for o in task.search.front_objectives] == ["val_oa__landcover",
                                                              "val_rmse__height"]
    d["search"]["objectives"][1]["name"] = "val_rmse__depth"
    with pytest.raises(TaskFileError, match="names target 'depth'"):
        _load(tmp_path, d)
