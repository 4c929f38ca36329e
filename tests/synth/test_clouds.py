"""Clouds as invalid optical pixels: `cloud_nodata` (a cloud mask raster) and `cloud_qa` (an SCL
band), in one scene and in a multi-scene dataset; the default output is left as it was."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from autors.cli import main
from autors.config import load_task
from autors.synth import SynthConfig, SynthConfigError, generate_scene, optical
from autors.synth.bands import OPTICAL
from autors.synth.dataset import (
    CLOUD_CORE,
    HAND_DIR,
    DatasetConfig,
    DatasetInfo,
    generate_dataset,
    swath_mask,
)
from autors.synth.illumination import Sun
from autors.synth.scene import CLOUD_MASK_FILE, SceneInfo, scene_rngs, task_schema_has

SIZE = 96
PLAIN = SynthConfig(size=SIZE, seed=3, n_train_per_class=5, block_size=32, hsi_bands=12)
FLAGGED = replace(PLAIN, cloud_nodata=True, cloud_qa=True)
needs_mask_rules = pytest.mark.skipif(
    not (task_schema_has("mask") and task_schema_has("qa")),
    reason="autors.config does not read sensors.<name>.mask / .qa yet (issue 14): the written "
    "task leaves the rules out, so there is nothing to load",
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[SceneInfo, SceneInfo]:
    """(the scene with both cloud flags, the same scene without)."""
    return (generate_scene(tmp_path_factory.mktemp("flagged"), FLAGGED),
            generate_scene(tmp_path_factory.mktemp("plain"), PLAIN))


def _read(path: Path) -> tuple[np.ndarray, rasterio.profiles.Profile, tuple, dict]:
    with rasterio.open(path) as src:
        return src.read(), src.profile, src.descriptions, src.tags()


def _fields(cfg: SynthConfig, sun: Sun | None = None, seed: int | None = None,
            cover: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The scene's cloud fields, drawn again from its optical stream."""
    return optical.cloud_fields(
        (cfg.size, cfg.size), cfg.cloud_cover if cover is None else cover, cfg.pixel_size_m,
        sun or Sun(), scene_rngs(cfg.seed if seed is None else seed)["optical"])


def test_mask_raster_is_on_the_optical_grid(pair: tuple[SceneInfo, SceneInfo]) -> None:
    info, _ = pair
    assert info.files["cloudmask"] == info.out_dir / CLOUD_MASK_FILE
    mask, prof, names, tags = _read(info.files["cloudmask"])
    _, oprof, _, otags = _read(info.files["optical"])
    assert mask.dtype == np.uint8 and mask.shape == (1, SIZE, SIZE) and names == ("cloud",)
    assert prof["nodata"] is None  # every pixel is classed
    assert (prof["transform"], prof["crs"], prof["width"], prof["height"]) == \
        (oprof["transform"], oprof["crs"], oprof["width"], oprof["height"])
    assert set(np.unique(mask).tolist()) == {0, 1, 2, 3}
    assert tags["classes"] == "0=clear,1=thick cloud,2=thin cloud,3=cloud shadow"
    assert tags["invalid"] == "1,3" and otags["cloud mask"] == CLOUD_MASK_FILE
    # the hyperspectral sensor flies below the clouds: it gets no mask
    assert sorted(p.name for p in info.out_dir.glob("*mask*")) == [CLOUD_MASK_FILE]


def test_mask_classes_are_where_the_generator_put_clouds_and_shadows(
    pair: tuple[SceneInfo, SceneInfo],
) -> None:
    info, _ = pair
    mask = _read(info.files["cloudmask"])[0][0]
    opacity, transmission = _fields(FLAGGED)
    assert np.array_equal(mask, optical.cloud_mask(opacity, transmission))
    assert (opacity[mask == 1] >= optical.THICK_MIN).all()
    assert (opacity[mask == 2] < optical.THICK_MIN).all()
    assert (opacity[mask == 2] >= optical.THIN_MIN).all()
    assert (1 - transmission[mask == 3] >= optical.SHADOW_MIN).all()
    assert (opacity[mask == 0] < optical.THIN_MIN).all()
    # what the optical image shows: cloud bright in the blue, shadow dark in the near infrared
    img = _read(info.files["optical"])[0].astype(float)
    blue, nir = img[OPTICAL.names.index("B2")], img[OPTICAL.names.index("B8")]
    assert blue[mask == 1].mean() > 1.5 * blue[mask == 2].mean() > 1.5 * blue[mask == 0].mean()
    assert blue[mask == 1].min() > np.percentile(blue[mask == 0], 95)
    assert nir[mask == 3].mean() < 0.5 * nir[mask == 0].mean()


@pytest.mark.parametrize("cover", [0.05, 0.2, 0.4, 0.8])
def test_cloud_fraction_is_about_the_cloud_cover(cover: float) -> None:
    opacity, transmission = _fields(SynthConfig(size=256, seed=11), cover=cover)
    mask = optical.cloud_mask(opacity, transmission)
    cloudy = np.isin(mask, (1, 2)).mean()
    # a shadow outranks a thin cloud edge, so a little under the cover, never over
    assert cover - 0.04 < cloudy <= cover
    thin_in_shadow = ((mask == 3) & (opacity >= optical.THIN_MIN)).mean()
    assert cloudy + thin_in_shadow == pytest.approx(cover, abs=0.005)
    assert (mask == 1).mean() > 0.6 * cover  # mostly thick: thin cloud is the edge
    assert (mask == 3).any() or cover > 0.7  # shadows beside the clouds


def test_scene_cloud_fraction(pair: tuple[SceneInfo, SceneInfo]) -> None:
    mask = _read(pair[0].files["cloudmask"])[0][0]
    assert np.isin(mask, (1, 2)).mean() == pytest.approx(FLAGGED.cloud_cover, abs=0.03)


def test_images_and_labels_stay_as_without_the_flags(pair: tuple[SceneInfo, SceneInfo]) -> None:
    """The optical values keep their clouds (only a band is added) and every other file is the
    plain scene's, byte for byte: labels stay labelled under clouds."""
    flagged, plain = pair
    img, prof, names, _ = _read(flagged.files["optical"])
    ref, ref_prof, ref_names, _ = _read(plain.files["optical"])
    assert names == ref_names + ("SCL",) and prof["dtype"] == ref_prof["dtype"] == "uint16"
    assert np.array_equal(img[:-1], ref)
    assert not (img == 0).any()  # nothing became nodata
    for role in ("sar", "lidar", "hsi", "labels", "train", "test"):
        assert flagged.files[role].read_bytes() == plain.files[role].read_bytes(), role
    labels = _read(flagged.files["labels"])[0][0]
    mask = _read(flagged.files["cloudmask"])[0][0]
    assert (labels[mask == 1] > 0).all()


def test_scl_band(pair: tuple[SceneInfo, SceneInfo]) -> None:
    info, _ = pair
    img, _, _, tags = _read(info.files["optical"])
    scl = img[-1]
    mask = _read(info.files["cloudmask"])[0][0]
    opacity, _ = _fields(FLAGGED)
    assert set(np.unique(scl).tolist()) <= {3, 4, 5, 6, 8, 9, 10}
    assert np.array_equal(np.isin(scl, (8, 9)), mask == 1)
    assert np.array_equal(scl == 3, mask == 3) and np.array_equal(scl == 10, mask == 2)
    assert np.array_equal(scl == 9, opacity >= optical.HIGH_PROB_MIN)
    assert "3=cloud shadow" in tags["SCL"] and "10=thin cirrus" in tags["SCL"]
    # under clear sky the classes follow the ground (a scene classifier's, not the labels)
    labels = _read(info.files["labels"])[0][0]
    clear = mask == 0
    assert (scl[clear & (labels == 1)] == 6).mean() > 0.6  # water
    assert (scl[clear & np.isin(labels, (4, 5, 6, 10))] == 4).mean() > 0.8  # vegetation
    assert (scl[clear & np.isin(labels, (2, 3, 7, 8, 9))] == 5).mean() > 0.6  # not vegetated


def test_task_declares_the_rules(pair: tuple[SceneInfo, SceneInfo]) -> None:
    flagged, plain = pair
    spec = yaml.safe_load(flagged.task_path.read_text())["sensors"]["optical"]
    assert spec["bands"] == list(OPTICAL.names)  # SCL is no model input
    if task_schema_has("mask"):
        assert spec["mask"] == {"path": CLOUD_MASK_FILE, "invalid_values": [1, 3]}
    if task_schema_has("qa"):
        assert spec["qa"] == {"band": "SCL", "invalid_values": [3, 8, 9]}
    plain_spec = yaml.safe_load(plain.task_path.read_text())["sensors"]["optical"]
    assert not {"bands", "mask", "qa"} & set(plain_spec)
    assert not (plain.out_dir / CLOUD_MASK_FILE).exists() and "cloudmask" not in plain.files
    record = yaml.safe_load(plain.files["record"].read_text())["config"]
    assert "cloud_nodata" not in record and "cloud_qa" not in record  # the record as before


@needs_mask_rules
def test_task_loads_and_masks_optical_only(pair: tuple[SceneInfo, SceneInfo]) -> None:
    from autors.data import load_scene

    info, _ = pair
    task = load_task(info.task_path)
    opt = task.sensors["optical"]
    assert opt.mask is not None and opt.mask.path == info.files["cloudmask"]
    assert opt.mask.invalid_values == [1, 3]
    assert opt.qa is not None and opt.qa.band == "SCL" and opt.qa.invalid_values == [3, 8, 9]
    scene = load_scene(task)
    assert scene.band_names["optical"] == list(OPTICAL.names)
    mask = _read(info.files["cloudmask"])[0][0]
    assert np.array_equal(scene.sensor_valid["optical"], ~np.isin(mask, (1, 3)))
    assert scene.sensor_valid["sar"].all()  # invalid for optical only


def test_without_the_config_rules_the_task_still_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where autors.config does not read mask / qa, the files are written and the task names
    only what loads (the SCL band kept out of the inputs by `bands`)."""
    monkeypatch.setattr("autors.synth.scene.task_schema_has", lambda *_: False)
    cfg = SynthConfig(size=48, seed=1, n_train_per_class=3, block_size=24,
                      sensors=("optical", "sar"), cloud_nodata=True, cloud_qa=True)
    info = generate_scene(tmp_path, cfg)
    spec = yaml.safe_load(info.task_path.read_text())["sensors"]["optical"]
    assert set(spec) == {"kind", "path", "nodata", "scale", "bands"}
    assert info.files["cloudmask"].is_file()
    assert load_task(info.task_path).sensors["optical"].bands == list(OPTICAL.names)


def test_same_seed_same_bytes(pair: tuple[SceneInfo, SceneInfo], tmp_path: Path) -> None:
    again = generate_scene(tmp_path, FLAGGED)
    for role in ("optical", "cloudmask", "labels", "task"):
        assert again.files[role].read_bytes() == pair[0].files[role].read_bytes(), role


def test_either_flag_alone(tmp_path: Path) -> None:
    base = SynthConfig(size=48, seed=2, n_train_per_class=3, block_size=24,
                       sensors=("optical", "sar"))
    mask_only = generate_scene(tmp_path / "m", replace(base, cloud_nodata=True))
    assert _read(mask_only.files["optical"])[2] == OPTICAL.names
    assert "bands" not in yaml.safe_load(mask_only.task_path.read_text())["sensors"]["optical"]
    qa_only = generate_scene(tmp_path / "q", replace(base, cloud_qa=True))
    assert "cloudmask" not in qa_only.files and not (tmp_path / "q" / CLOUD_MASK_FILE).exists()
    assert _read(qa_only.files["optical"])[2][-1] == "SCL"
    # the optical stream is drawn the same way in all three: the same image bands
    assert np.array_equal(_read(mask_only.files["optical"])[0],
                          _read(qa_only.files["optical"])[0][:-1])


def test_cloud_flags_need_the_optical_sensor(tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SynthConfigError, match="cloud_nodata=True needs the optical sensor"):
        SynthConfig(sensors=("sar", "lidar"), cloud_nodata=True)
    with pytest.raises(SynthConfigError, match="cloud_nodata=True and cloud_qa=True need"):
        SynthConfig(sensors=("sar",), cloud_nodata=True, cloud_qa=True)
    with pytest.raises(SynthConfigError, match="cloud_qa=True needs the optical sensor"):
        DatasetConfig(scenes=2, sensors=("sar",), cloud_qa=True)
    rc = main(["synth", str(tmp_path / "x"), "--sensors", "sar", "--cloud-qa"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "cloud_qa=True needs the optical" in err


def test_cli_cloud_flags(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "scene"
    rc = main(["synth", str(out), "--size", "48", "--sensors", "optical,sar", "--seed", "2",
               "--train-per-class", "3", "--cloud-nodata", "--cloud-qa"])
    assert rc == 0
    text = capsys.readouterr().out
    assert f"clouds:  mask {CLOUD_MASK_FILE}" in text and "band SCL of optical.tif" in text
    assert (out / CLOUD_MASK_FILE).is_file()
    assert _read(out / "optical.tif")[2][-1] == "SCL"


# ---- a dataset of scenes ----------------------------------------------------------------------

DS = DatasetConfig(scenes=4, size=48, classes=6, seed=7)  # clouds .25, .21 (cores cut), .3, 0
DS_FLAGGED = replace(DS, cloud_nodata=True, cloud_qa=True)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatasetInfo, DatasetInfo]:
    """(the dataset with both cloud flags, the same dataset without)."""
    root = tmp_path_factory.mktemp("datasets")
    return generate_dataset(root / "flagged", DS_FLAGGED), generate_dataset(root / "plain", DS)


def test_dataset_writes_a_mask_per_chip(datasets: tuple[DatasetInfo, DatasetInfo]) -> None:
    flagged, plain = datasets
    assert sorted(p.name for p in (flagged.out_dir / HAND_DIR).iterdir()) == \
        ["CloudMaskHand", "LabelHand", "S1Hand", "S2Hand"]
    assert not (plain.out_dir / HAND_DIR / "CloudMaskHand").exists()
    cloudy = 0
    for chip in flagged.chips:
        p = chip.plan
        path = chip.files["cloudmask"]
        assert path == flagged.out_dir / HAND_DIR / "CloudMaskHand" / f"{p.name}_CloudMaskHand.tif"
        mask, prof, _, _ = _read(path)
        s2, s2prof, names, _ = _read(chip.files["optical"])
        assert prof["transform"] == s2prof["transform"] and prof["crs"] == s2prof["crs"]
        assert mask.shape == (1, 48, 48) and mask.dtype == np.uint8
        fields = _fields(SynthConfig(size=48), p.sun, p.seed, p.cloud_cover)
        assert np.array_equal(mask[0], optical.cloud_mask(*fields))
        assert np.array_equal(np.isin(s2[-1], (8, 9)), mask[0] == 1)
        assert names[-1] == "SCL" and not (s2 == 0).any()  # no core was cut
        assert not p.cloud_masked
        cloudy += p.cloud_cover > 0
        if p.cloud_cover == 0:
            assert not mask.any()
        else:
            assert np.isin(mask, (1, 2)).mean() == pytest.approx(p.cloud_cover, abs=0.08)
    assert 0 < cloudy < len(flagged.chips)


def test_dataset_labels_stay_labelled_under_clouds(
    datasets: tuple[DatasetInfo, DatasetInfo],
) -> None:
    flagged, plain = datasets
    assert any(c.plan.cloud_masked for c in plain.chips)  # the plain dataset cuts some cores
    gained = 0
    for chip, ref in zip(flagged.chips, plain.chips):
        p = chip.plan
        assert p.name == ref.plan.name and p.seed == ref.plan.seed
        labels, lprof, _, _ = _read(chip.files["labels"])
        ref_labels = _read(ref.files["labels"])[0]
        s2, ref_s2 = _read(chip.files["optical"])[0], _read(ref.files["optical"])[0]
        opacity, _ = _fields(SynthConfig(size=48), p.sun, p.seed, p.cloud_cover)
        core = opacity > CLOUD_CORE
        # the plain dataset's -1 under cloud cores are labelled; the other gaps are the same
        differ = (labels != ref_labels)[0]
        assert (ref_labels[0][differ] == -1).all() and core[differ].all()
        in_swath = ~swath_mask(p, 48, lprof["transform"], (48, 48), lprof["transform"])
        if (core & in_swath).any():
            assert (labels[0][core & in_swath] >= 0).mean() > 0.9  # holes aside
        gained += int(differ.sum())
        # S2 values as rendered: equal where the plain dataset kept them
        kept = ~(ref_s2 == 0).all(axis=0)
        assert np.array_equal(s2[:-1][:, kept], ref_s2[:, kept])
        # SAR and its swath gaps are untouched
        assert chip.files["sar"].read_bytes() == ref.files["sar"].read_bytes()
    assert gained > 0


def test_dataset_task_file(datasets: tuple[DatasetInfo, DatasetInfo]) -> None:
    flagged, plain = datasets
    task = yaml.safe_load(flagged.task_path.read_text())
    spec = task["sensors"]["optical"]
    assert spec["bands"] == list(OPTICAL.names)
    masks = task["scenes"]["template"].get("masks")
    if task_schema_has("mask") and task_schema_has("masks", "SceneTemplateSpec"):
        assert spec["mask"] == {"invalid_values": [1, 3]}
        assert masks == {"optical": "v1.1/data/flood_events/HandLabeled/CloudMaskHand/"
                                    "{scene}_CloudMaskHand.tif"}
        for chip in flagged.chips:
            assert flagged.out_dir / masks["optical"].format(scene=chip.plan.name) == \
                chip.files["cloudmask"]
    else:
        assert "mask" not in spec and masks is None
    if task_schema_has("qa"):
        assert spec["qa"] == {"band": "SCL", "invalid_values": [3, 8, 9]}
    plain_task = yaml.safe_load(plain.task_path.read_text())
    assert "masks" not in plain_task["scenes"]["template"]
    assert not {"bands", "mask", "qa"} & set(plain_task["sensors"]["optical"])
    record = yaml.safe_load((flagged.out_dir / "synth_dataset.json").read_text())["config"]
    assert record["cloud_nodata"] is True and record["cloud_qa"] is True
    plain_record = yaml.safe_load((plain.out_dir / "synth_dataset.json").read_text())["config"]
    assert "cloud_nodata" not in plain_record


@needs_mask_rules
def test_dataset_task_loads(datasets: tuple[DatasetInfo, DatasetInfo]) -> None:
    from autors.data import prepare

    task = load_task(datasets[0].task_path)
    assert task.sensors["optical"].mask is not None and task.scenes is not None
    assert set(task.scenes.template.masks) == {"optical"}
    data = prepare(task)
    assert data.in_channels == {"sar": 2, "optical": 10}
    assert data.band_names["optical"] == list(OPTICAL.names)


def test_dataset_same_bytes(datasets: tuple[DatasetInfo, DatasetInfo], tmp_path: Path) -> None:
    again = generate_dataset(tmp_path, DS_FLAGGED, jobs=2)
    first = {p.relative_to(datasets[0].out_dir): p.read_bytes()
             for p in sorted(datasets[0].out_dir.rglob("*")) if p.is_file()}
    second = {p.relative_to(again.out_dir): p.read_bytes()
              for p in sorted(again.out_dir.rglob("*")) if p.is_file()}
    assert first.keys() == second.keys()
    for key, data in first.items():
        assert data == second[key], key


def test_dataset_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["synth", str(tmp_path / "ds"), "--scenes", "2", "--size", "32", "--classes", "4",
               "--cloud-nodata"])
    assert rc == 0
    assert re.search(r"clouds:  mask CloudMaskHand/<chip>_CloudMaskHand\.tif",
                     capsys.readouterr().out)
    assert len(list((tmp_path / "ds" / HAND_DIR / "CloudMaskHand").iterdir())) == 2
