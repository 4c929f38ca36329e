"""A damaged exported folder is refused with a ModelFolderError naming the file and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from autors.errors import ModelFolderError
from autors.export.card import ModelCard, read_card
from autors.export.loader import load_exported
from autors.export.predict import predict_scene
from autors.files import file_sha256


def test_intact_copy_loads(model_copy: Path) -> None:
    loaded = load_exported(model_copy)
    assert loaded.card.inputs == loaded.arch.sensors
    assert not loaded.model.training


def test_truncated_weights(model_copy: Path) -> None:
    weights = model_copy / "weights.pt"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelFolderError, match=r"weights\.pt does not match its checksum.*"
                       r"truncated.*autors export"):
        load_exported(model_copy)


def test_edited_arch(model_copy: Path) -> None:
    arch = json.loads((model_copy / "arch.json").read_text())
    arch["fusion"]["width"] = 32
    (model_copy / "arch.json").write_text(json.dumps(arch))
    with pytest.raises(ModelFolderError, match=r"arch\.json does not match its checksum"):
        load_exported(model_copy)


def test_edited_arch_with_forged_checksum(model_copy: Path) -> None:
    """Even with model.json updated to the edited arch, the weights no longer fit it."""
    arch = json.loads((model_copy / "arch.json").read_text())
    arch["fusion"]["width"] = 32
    (model_copy / "arch.json").write_text(json.dumps(arch))
    card = json.loads((model_copy / "model.json").read_text())
    card["files"]["arch.json"] = file_sha256(model_copy / "arch.json")
    (model_copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelFolderError, match=r"weights\.pt: cannot load the weights into the "
                       r"model of arch\.json"):
        load_exported(model_copy)


def test_arch_that_is_not_json(model_copy: Path) -> None:
    (model_copy / "arch.json").write_text("{not json")
    card = json.loads((model_copy / "model.json").read_text())
    card["files"]["arch.json"] = file_sha256(model_copy / "arch.json")
    (model_copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelFolderError, match=r"arch\.json: not a valid arch"):
        load_exported(model_copy)


def test_missing_onnx(model_copy: Path) -> None:
    (model_copy / "model.onnx").unlink()
    with pytest.raises(ModelFolderError, match=r"model\.onnx is missing from the model folder"):
        load_exported(model_copy)


def test_missing_card(model_copy: Path) -> None:
    (model_copy / "model.json").unlink()
    with pytest.raises(ModelFolderError, match=r"model\.json is missing: .* is not an exported "
                       "model folder"):
        load_exported(model_copy)


def test_card_not_json(model_copy: Path) -> None:
    (model_copy / "model.json").write_text('{"format": 1, "task": ')
    with pytest.raises(ModelFolderError, match=r"model\.json: unreadable or not valid JSON"):
        load_exported(model_copy)


def test_card_with_a_missing_field(model_copy: Path) -> None:
    card = json.loads((model_copy / "model.json").read_text())
    del card["sensors"][1]["mean"]
    (model_copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelFolderError, match=r"invalid model card at 'sensors\.1\.mean'"):
        load_exported(model_copy)


def test_card_of_another_format(model_copy: Path) -> None:
    card = json.loads((model_copy / "model.json").read_text())
    card["format"] = 99
    (model_copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelFolderError, match="model card format 99 is not supported .*reads "
                       "formats 2, 3, 4, 5, 6"):
        load_exported(model_copy)


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match="does not exist"):
        load_exported(tmp_path / "nothing")


def test_card_round_trip(exported: Path) -> None:
    card = read_card(exported)
    again = ModelCard.model_validate_json(card.to_json())
    assert again == card and again.to_json() == card.to_json()


def _format_2(card: dict) -> dict:
    """`card` as a format-2 card (before validity masks) wrote it."""
    old = {k: v for k, v in card.items() if k not in ("require_sensors", "robustness",
                                                       "input_profile", "calibration")}
    old["format"] = 2
    old["sensors"] = [dict(s, read={k: v for k, v in s["read"].items() if k not in
                                    ("mask", "qa")}) for s in card["sensors"]]
    old["export"] = {k: v for k, v in card["export"].items() if k != "inputs"}
    return old


def test_format_2_card_loads(model_copy: Path) -> None:
    """A card written before masks loads as what it meant: no validity rules, compiled files
    that take no masks, a pixel labelled only where every given input is valid."""
    card = json.loads((model_copy / "model.json").read_text())
    (model_copy / "model.json").write_text(json.dumps(_format_2(card)))
    old = read_card(model_copy)
    assert old.format == 6 and old.require_sensors == "all" and old.robustness is None
    assert old.input_profile is None  # before input profiles: predict skips its checks
    assert not old.export.takes_masks
    assert [t.name for t in old.export.inputs] == card["inputs"]
    assert old.export.inputs[0].shape == ["batch", 10, 7, 7]
    assert all(s.read.mask is None and s.read.qa is None for s in old.sensors)
    assert old.metrics.test["oa"].mean == card["metrics"]["test"]["oa"]["mean"]


def test_format_3_card_loads_without_an_input_profile(model_copy: Path) -> None:
    """A card written before input profiles loads as it was; predict skips its input checks
    (tests/export/test_input_check.py)."""
    card = json.loads((model_copy / "model.json").read_text())
    assert card["format"] == 6 and card["input_profile"] is not None
    old = dict({k: v for k, v in card.items() if k not in ("input_profile", "calibration")},
               format=3)
    (model_copy / "model.json").write_text(json.dumps(old))
    loaded = load_exported(model_copy).card
    assert loaded.format == 6 and loaded.input_profile is None and loaded.calibration is None
    assert loaded.sensors == read_card(model_copy).sensors and loaded.metrics.test is not None


def test_format_4_card_loads_without_a_calibration(model_copy: Path) -> None:
    """A card written before calibration loads as it was (predict then writes the raw
    confidence, with a note: tests/export/test_calibrated_predict.py)."""
    card = json.loads((model_copy / "model.json").read_text())
    assert card["calibration"]["temperature"] > 0
    old = dict({k: v for k, v in card.items() if k != "calibration"}, format=4)
    (model_copy / "model.json").write_text(json.dumps(old))
    loaded = load_exported(model_copy).card
    assert loaded.format == 6 and loaded.calibration is None
    assert loaded.input_profile == read_card(model_copy).input_profile is not None


def test_format_2_card_with_a_missing_field(model_copy: Path) -> None:
    card = _format_2(json.loads((model_copy / "model.json").read_text()))
    del card["task"]["input_size"]
    (model_copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelFolderError, match=r"invalid model card at 'task\.input_size'"):
        read_card(model_copy)


def test_a_format_2_model_predicts_as_it_did(model_copy: Path, scene, tmp_path: Path) -> None:
    """No masks given to the model (it was exported without them) and every given input
    required, as predict did for such models."""
    card = json.loads((model_copy / "model.json").read_text())
    (model_copy / "model.json").write_text(json.dumps(_format_2(card)))
    result = predict_scene(load_exported(model_copy), scene.sensors(), tmp_path / "m.tif",
                           progress=False)
    with rasterio.open(result.class_map) as ds:
        classes = ds.read(1)
    with rasterio.open(result.scores) as ds:
        count = ds.read(2)
    assert (count < 4).any()  # the LiDAR gaps
    np.testing.assert_array_equal(classes == 0, count < 4)
