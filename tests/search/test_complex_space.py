"""The search spaces offer the complex SAR branch kinds (`Branch.input_kind == "complex"`) to
complex sensors only, asking the registry; sampled archs with them build and run on channel
pairs and round-trip through the space."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import fusion
from autors.config import parse_task
from autors.search.catalog import space_for_task
from search_spaces import SPACES, make_space

SENSORS = {"slc": "sar", "s1": "sar", "s2": "optical"}
CHANNELS = {"slc": 4, "s1": 2, "s2": 4}


def _complex_kinds() -> set[str]:
    return {k for k in fusion.BRANCHES if fusion.BRANCHES.get(k).input_kind == "complex"}


def test_complex_kinds_only_for_complex_sensors() -> None:
    assert {"complex_modrelu", "complex_crelu", "complex_ampphase",
            "complex_features"} <= _complex_kinds()
    for name in SPACES:
        space = make_space(name, SENSORS, dense=False)
        assert not _complex_kinds() & {k for s in SENSORS for k in space.branch_kinds(s)}
        space.set_input_kinds({"slc": "complex"})
        kinds = {s: space.branch_kinds(s) for s in SENSORS}
        offered = set(kinds["slc"]) & _complex_kinds()
        assert offered and kinds["slc"][:len(offered)] == [
            k for k in kinds["slc"] if k in offered]  # complex kinds first
        assert "conv" in kinds["slc"]  # real-input kinds read the pairs too
        assert not _complex_kinds() & (set(kinds["s1"]) | set(kinds["s2"]))


def test_sampled_complex_archs_build_run_and_round_trip() -> None:
    space = make_space("compact", SENSORS, dense=False)
    space.set_input_kinds({"slc": "complex"})
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(40):
        sample = {label: c.values[rng.integers(len(c.values))]
                  for label, c in space.choices().items()}
        if sample.get("branch.slc.kind") not in _complex_kinds() or \
                sample.get("fusion.position") == "early":
            continue
        arch = space.to_arch(sample)
        seen.add(arch.branches["slc"].kind)
        assert space.to_arch(space.to_sample(arch)) == arch
        model = fusion.build_model(arch, CHANNELS, 3)
        out = model({s: torch.randn(2, c, 7, 7) for s, c in CHANNELS.items()})
        assert out.shape == (2, 3) and torch.isfinite(out).all()
    assert seen


def test_task_space_asks_the_sensor_declaration(tmp_path: Path) -> None:
    raw = {"name": "t", "task": "patch_classification", "patch_size": 5,
           "sensors": {"slc": {"kind": "sar", "path": "slc.tif", "sar_units": "complex"},
                       "s1": {"kind": "sar", "path": "s1.tif", "sar_units": "db"}},
           "labels": {"path": "labels.tif", "classes": ["a", "b"]},
           "split": {"kind": "spatial_blocks", "block_size": 8}}
    space = space_for_task(parse_task(raw, tmp_path / "task.yaml"))
    assert _complex_kinds() & set(space.branch_kinds("slc"))
    assert not _complex_kinds() & set(space.branch_kinds("s1"))
