"""A damaged exported folder is refused with a ModelFolderError naming the file and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autors.errors import ModelFolderError
from autors.export.loader import load_exported
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
    with pytest.raises(ModelFolderError, match="model card format 99 is not supported"):
        load_exported(model_copy)


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelFolderError, match="does not exist"):
        load_exported(tmp_path / "nothing")
