"""`load_exported`: open an exported model folder, verify every file, rebuild the model.

Verification order: model.json parses and is consistent; every file it lists exists and has
the recorded sha256 (a truncated, replaced or edited file is named with the fix); arch.json
builds a model for the card's sensors and classes; weights.pt loads into it strictly
(`weights_only=True`). Any failure is a ModelFolderError.

An ensemble folder (`autors.export.ensemble`, the card's `ensemble`) has member files
(`member<i>_arch.json`, `member<i>_weights.pt`) instead of arch.json / weights.pt: each member
is verified and rebuilt so, and the model is their `EnsembleModel` (the members' temperatures
from the card).

Without autors, the same folder loads with torch alone (`torch.jit.load("model.ts")`), with
onnxruntime alone (`InferenceSession("model.onnx")`: the sensors' values and validity masks
as model.json's `export.inputs` lists them), or with `fusion.build_model` + arch.json +
weights.pt.
"""

from __future__ import annotations

import json
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

import fusion
from autors.errors import ModelFolderError
from autors.export.card import CARD_FILE, ModelCard, read_card
from autors.export.ensemble import EnsembleModel
from autors.export.export import ONNX_FILE, TS_FILE
from autors.files import file_sha256
from autors.plugins import load_plugins

REQUIRED = ("arch.json", "weights.pt")
_FIX = "re-export the model with `autors export RUN --out DIR`"


@dataclass
class ExportedModel:
    """A verified exported model: the card, the arch and the rebuilt PyTorch model (eval)."""

    path: Path
    card: ModelCard
    arch: fusion.Arch  # an ensemble's: its first member's (`archs` lists every member's)
    model: nn.Module
    archs: list[fusion.Arch] = field(default_factory=list)  # the members of an ensemble

    @property
    def is_ensemble(self) -> bool:
        return self.card.ensemble is not None

    def torchscript(self) -> torch.jit.ScriptModule:
        """model.ts loaded with torch (takes {sensor: [B, C, S, S], sensor__mask: [B, S, S]};
        a mask left out means valid everywhere)."""
        if "torchscript" not in self.card.export.formats:
            raise ModelFolderError(f"{self.path} was exported without TorchScript ({TS_FILE})")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
            return torch.jit.load(self.path / TS_FILE, map_location="cpu")

    def onnx_session(self) -> object:
        """An onnxruntime InferenceSession on model.onnx (CPU)."""
        import onnxruntime as ort  # only this method needs it

        if "onnx" not in self.card.export.formats:
            raise ModelFolderError(f"{self.path} was exported without ONNX ({ONNX_FILE})")
        return ort.InferenceSession(str(self.path / ONNX_FILE),
                                    providers=["CPUExecutionProvider"])


def load_exported(path: str | Path) -> ExportedModel:
    """Verify the exported folder `path` and rebuild its model (see the module docstring)."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFolderError(f"model folder {path} does not exist (create it with "
                               "`autors export RUN --out DIR`)")
    card = read_card(path)
    _verify_files(path, card)
    # The arch may name parts that plugins register: import them first, as the card lists.
    load_plugins([p.module for p in card.plugins], f"{path / CARD_FILE}: plugins")
    if card.ensemble is not None:
        members = [_rebuild(path, m.arch_file, m.weights_file, card, member=True)
                   for m in card.ensemble.members]
        used = [s for s in card.inputs if any(s in a.sensors for a, _ in members)]
        if used != card.inputs:
            raise ModelFolderError(f"{path / CARD_FILE}: the members use sensors {used}, the "
                                   f"card lists inputs {card.inputs}: {_FIX}")
        temps = [m.temperature or 1.0 for m in card.ensemble.members]
        model = EnsembleModel([m for _, m in members], temps).eval()
        return ExportedModel(path=path, card=card, arch=members[0][0], model=model,
                             archs=[a for a, _ in members])
    arch, model = _rebuild(path, "arch.json", "weights.pt", card)
    return ExportedModel(path=path, card=card, arch=arch, model=model.eval(), archs=[arch])


def _rebuild(path: Path, arch_file: str, weights_file: str, card: ModelCard,
             member: bool = False) -> tuple[fusion.Arch, nn.Module]:
    """The arch of `arch_file` and its model with `weights_file` loaded (eval mode)."""
    arch = _read_arch(path / arch_file, card, member)
    try:
        model = fusion.build_model(arch, card.in_channels, card.model_outputs,
                                   dense=card.task.dense, dates=card.steps or None)
    except (fusion.ArchError, ValueError) as err:
        raise ModelFolderError(
            f"{path / arch_file} does not fit the sensors and classes of model.json ({err}); "
            f"the files come from different exports: {_FIX}"
        ) from None
    weights = path / weights_file
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError,
            zipfile.BadZipFile) as err:
        raise ModelFolderError(
            f"{weights}: cannot load the weights into the model of {arch_file} "
            f"({str(err).splitlines()[0]}): {_FIX}"
        ) from None
    return arch, model.eval()


def _verify_files(path: Path, card: ModelCard) -> None:
    expected = list(REQUIRED) if card.ensemble is None else card.ensemble.files
    expected += [TS_FILE] if "torchscript" in card.export.formats else []
    expected += [ONNX_FILE] if "onnx" in card.export.formats else []
    for name in expected:
        if name not in card.files:
            raise ModelFolderError(f"{path / 'model.json'}: files lists no checksum for {name}; "
                                   f"{_FIX}")
    for name, digest in card.files.items():
        f = path / name
        if not f.is_file():
            raise ModelFolderError(f"{f} is missing from the model folder: copy the whole "
                                   f"folder, or {_FIX}")
        if file_sha256(f) != digest:
            raise ModelFolderError(
                f"{f} does not match its checksum in model.json: the file was changed, "
                f"truncated or replaced after export; restore the original folder or {_FIX}"
            )


def _read_arch(path: Path, card: ModelCard, member: bool = False) -> fusion.Arch:
    """The arch at `path`; it must use the card's inputs (`member`: some of them)."""
    try:
        arch = fusion.Arch.from_dict(json.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, fusion.ArchError) as err:
        raise ModelFolderError(f"{path}: not a valid arch ({err}); {_FIX}") from None
    if member and set(arch.sensors) <= set(card.inputs):
        return arch
    if arch.sensors != card.inputs:
        raise ModelFolderError(
            f"{path}: the arch uses sensors {arch.sensors} but model.json lists inputs "
            f"{card.inputs}; the files come from different exports: {_FIX}"
        )
    return arch
