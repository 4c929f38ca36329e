"""The Arch format: JSON round trip, rebuild from arch.json + weights, validation errors."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import fusion
from fusion import Arch, ArchError, BranchSpec, FusionSpec, HeadSpec, build_model

EXAMPLE = {
    "version": 1,
    "branches": {
        "hsi": {"kind": "spectral", "width": 8, "depth": 2, "kernel": 3},
        "lidar": {"kind": "conv", "width": 4, "depth": 1, "kernel": 3},
        "sar": {"kind": "off"},
    },
    "fusion": {"op": "gate", "position": "middle", "width": 8,
               "trunk": {"kind": "residual", "width": 8, "depth": 1, "kernel": 3}},
    "head": {"kind": "patch", "hidden": 16, "dropout": 0.1},
}
IN_CHANNELS = {"hsi": 48, "lidar": 1, "sar": 2}


def _with(path: str, value: object) -> dict:
    """EXAMPLE with the dotted key set to value (or deleted when value is ...)."""
    d = json.loads(json.dumps(EXAMPLE))
    *parents, last = path.split(".")
    node = d
    for p in parents:
        node = node[p]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return d


def test_dict_round_trip_is_exact() -> None:
    arch = Arch.from_dict(EXAMPLE)
    assert arch.to_dict() == EXAMPLE
    again = Arch.from_dict(json.loads(json.dumps(arch.to_dict())))
    assert again == arch and hash(again) == hash(arch)
    assert list(again.branches) == ["hsi", "lidar", "sar"]  # the order fixes the fusion order


def test_defaults_fill_optional_keys() -> None:
    arch = Arch.from_dict({
        "version": 1, "branches": {"a": {"kind": "conv"}},
        "fusion": {"op": "sum", "position": "late"}, "head": {"kind": "centre"},
    })
    assert arch.branches["a"] == BranchSpec("conv", 32, 2, 3)
    assert arch.fusion == FusionSpec("sum", "late", 32, BranchSpec("off"))
    assert arch.head == HeadSpec("centre", 64, 0.0)


def test_off_branch_drops_its_numbers() -> None:
    arch = Arch.from_dict(_with("branches.sar", {"kind": "off", "width": 99, "depth": 3}))
    assert arch.branches["sar"] == BranchSpec("off")
    assert arch.to_dict()["branches"]["sar"] == {"kind": "off"}


def test_rebuild_from_arch_json_and_weights_is_exact(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model(EXAMPLE, IN_CHANNELS, 5)
    # a training step so that BatchNorm running statistics are not at their defaults
    x = {s: torch.randn(8, c, 7, 7) for s, c in IN_CHANNELS.items()}
    model(x).sum().backward()
    (tmp_path / "arch.json").write_text(json.dumps(model.arch.to_dict()))
    torch.save(model.state_dict(), tmp_path / "weights.pt")

    torch.manual_seed(123)  # different initial weights, all overwritten by the state_dict
    again = build_model(json.loads((tmp_path / "arch.json").read_text()), IN_CHANNELS, 5)
    again.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    model.eval(), again.eval()
    assert torch.equal(model(x), again(x))


def test_summary_is_one_readable_line() -> None:
    arch = Arch.from_dict(EXAMPLE)
    assert arch.summary() == (
        "hsi:spectral(w8,d2,k3) + lidar:conv(w4,d1,k3) -> middle gate(w8) -> "
        "residual(w8,d1,k3) -> patch(h16,p0.1)"
    )
    early = fusion.baseline_arch("early_cnn", {"hsi": 48, "lidar": 1})
    assert early.summary() == "hsi + lidar -> early concat(w64) -> conv(w64,d2,k3) -> patch(h64,p0.1)"
    late = fusion.baseline_arch("late_cnn", {"a": 3})
    assert late.summary() == "a:conv(w32,d2,k3) -> late sum -> patch(h64,p0.1)"


def test_canonical_merges_archs_that_build_the_same_network() -> None:
    a = Arch.from_dict(_with("fusion.position", "early"))
    b = _with("fusion.position", "early")
    b["branches"]["hsi"] = {"kind": "sar", "width": 3}
    b = Arch.from_dict(b)
    assert a != b and a.canonical() == b.canonical()
    late = _with("fusion.trunk", {"kind": "off"})
    late["fusion"]["position"] = "late"
    c, d = Arch.from_dict(late), Arch.from_dict(late | {"fusion": late["fusion"] | {"width": 3}})
    assert c != d and c.canonical() == d.canonical()
    assert Arch.from_dict(EXAMPLE).canonical() == Arch.from_dict(EXAMPLE)  # middle: all used


def test_dense_follows_the_head() -> None:
    assert not Arch.from_dict(EXAMPLE).dense
    assert Arch.from_dict(_with("head.kind", "segmentation")).dense


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        ("branches.hsi.kind", "convv",
         (r"branches\.hsi\.kind: unknown branch kind 'convv'; valid values are "
          r"\['complex_ampphase', 'complex_crelu', 'complex_features', 'complex_modrelu', "
          r"'conv', 'off', 'residual', 'sar', 'separable', 'spectral', 'time_conv', ")),
        ("fusion.op", "mean", r"fusion\.op: unknown fusion op 'mean'; valid values are \['concat'"),
        ("fusion.position", "middel",
         (r"fusion\.position: unknown fusion position 'middel'; valid values are "
          r"\['early', 'late', 'middle', 'multi'\]")),
        ("fusion.stage", 1,
         r"fusion\.stage: unknown key; valid keys are \['op', 'position', 'width', 'trunk', 'time'\]"),
        ("head.kind", "mlp", r"head\.kind: unknown head kind 'mlp'; valid values are \['centre'"),
        ("head.kind", ..., r"head\.kind: required key is missing"),
        ("branches.hsi.width", "32", r"branches\.hsi\.width: must be an integer, got '32'"),
        ("branches.hsi.width", 0, r"branches\.hsi\.width: must be an integer >= 1, got 0"),
        ("branches.hsi.depth", -1, r"branches\.hsi\.depth: must be an integer >= 0, got -1"),
        ("branches.hsi.kernel", 4, r"branches\.hsi\.kernel: must be an odd integer >= 1"),
        ("fusion.trunk.kind", "dense", r"fusion\.trunk\.kind: unknown branch kind 'dense'"),
        ("head.dropout", 1.0, r"head\.dropout: must be in \[0, 1\), got 1\.0"),
        ("head.hidden", -3, r"head\.hidden: must be an integer >= 0, got -3"),
        ("version", 2, r"version: unsupported arch version 2; this fusion reads 1"),
        ("branches", {}, r"branches: must be a non-empty mapping"),
        ("fusion", "middle", r"fusion: must be a mapping, got str"),
    ],
)
def test_bad_arch_names_the_key_and_the_valid_values(path: str, value: object, match: str) -> None:
    with pytest.raises(ArchError, match=match):
        Arch.from_dict(_with(path, value))


def test_all_branches_off_is_refused() -> None:
    d = _with("branches.hsi", {"kind": "off"})
    d["branches"]["lidar"] = {"kind": "off"}
    with pytest.raises(ArchError, match=r"every branch is 'off'; at least one sensor must be used"):
        Arch.from_dict(d)


def test_late_fusion_has_no_trunk() -> None:
    with pytest.raises(ArchError, match=r"fusion\.trunk: position 'late' has no shared trunk"):
        Arch.from_dict(_with("fusion.position", "late"))


def test_arch_must_match_the_task_sensors() -> None:
    arch = Arch.from_dict(EXAMPLE)
    arch.validate(sensors=["hsi", "lidar", "sar"])
    with pytest.raises(ArchError, match=r"branches: no branch for task sensor 'optical': add "
                                         r"branches\.optical \(kind 'off' to leave it out\)"):
        arch.validate(sensors=["hsi", "lidar", "sar", "optical"])
    with pytest.raises(ArchError, match=r"branches\.sar: the task has no sensor 'sar'"):
        arch.validate(sensors=["hsi", "lidar"])
    with pytest.raises(ArchError, match=r"no branch for task sensor 'optical'"):
        build_model(arch, {**IN_CHANNELS, "optical": 13}, 3)


def test_arch_head_must_fit_the_task_output() -> None:
    arch = Arch.from_dict(EXAMPLE)
    arch.validate(dense=False)
    with pytest.raises(ArchError, match=r"head\.kind: 'patch' does not fit a task that needs a "
                                         r"per-pixel map \(segmentation\): use one of "
                                         r"\['segmentation'\]"):
        build_model(arch, IN_CHANNELS, 3, dense=True)


def test_sensor_names_must_be_identifiers() -> None:
    with pytest.raises(ArchError, match=r"sensor name 'my sensor' must be a Python identifier"):
        Arch.from_dict(EXAMPLE | {"branches": {"my sensor": {"kind": "conv"}}})
    # `<sensor>__mask` names a sensor's validity mask next to it in the model's inputs
    with pytest.raises(ArchError, match=r"sensor name 'lidar__mask' ends with '__mask'"):
        Arch.from_dict(EXAMPLE | {"branches": {"lidar__mask": {"kind": "conv"}}})


def test_build_model_rejects_other_types() -> None:
    with pytest.raises(ArchError, match="arch must be an Arch, a dict or a baseline name, got int"):
        build_model(3, IN_CHANNELS, 3)  # type: ignore[arg-type]


def test_training_choices_round_trip_and_are_checked() -> None:
    from fusion import TrainingSpec

    base = fusion.baseline_arch("late_cnn", {"a": 2, "b": 3})
    assert "training" not in base.to_dict()  # optional: older arch dicts are unchanged
    arch = dataclasses.replace(base, training=TrainingSpec(modality_dropout=0.2,
                                                           cloud_blobs=0.0))
    d = arch.to_dict()
    assert d["training"] == {"modality_dropout": 0.2, "cloud_blobs": 0.0}
    assert fusion.Arch.from_dict(d) == arch and hash(fusion.Arch.from_dict(d)) == hash(arch)
    assert "[train modality_dropout=0.2 cloud_blobs=0]" in arch.summary()
    with pytest.raises(fusion.ArchError, match=r"training.cloud_blobs: must be in \[0, 1\)"):
        fusion.Arch.from_dict({**d, "training": {"cloud_blobs": 1.5}})
    with pytest.raises(fusion.ArchError, match="training"):
        fusion.Arch.from_dict({**d, "training": {"lr": 0.1}})


def test_a_space_refuses_training_choices_it_does_not_offer() -> None:
    from fusion import TrainingSpec
    from search_spaces.base import SPACES

    sensors = {"a": "optical", "b": "sar"}
    robust = SPACES.get("robust")(sensors, dense=False)
    arch = robust.to_arch({k: v[0] if k.endswith(".kind") else v[-1]
                           for k, v in robust.options().items()})
    assert arch.training == TrainingSpec(modality_dropout=0.4, cloud_blobs=0.3)
    assert robust.to_arch(robust.to_sample(arch)) == arch
    with pytest.raises(ArchError, match="training.modality_dropout: the fusion space does not"):
        SPACES.get("fusion")(sensors, dense=False).to_sample(arch)
