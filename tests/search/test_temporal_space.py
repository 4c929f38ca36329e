"""The search spaces offer the time-series branch kinds (`Branch.input_kind == "temporal"`)
to time-series sensors only, asking the registry and the task's declaration; sampled archs
build and run on dated inputs and round-trip through the space."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import fusion
from autors.config import parse_task
from autors.search.catalog import space_for_task
from autors.training.cost import random_inputs
from search_spaces import SPACES, make_space

SENSORS = {"s2": "optical", "s1": "sar"}
CHANNELS = {"s2": 4, "s1": 2}


def _temporal() -> set[str]:
    return {k for k in fusion.BRANCHES if fusion.BRANCHES.get(k).input_kind == "temporal"}


def test_temporal_kinds_only_for_time_series_and_sampled_archs_run() -> None:
    for name in SPACES:
        space = make_space(name, SENSORS, dense=False)
        assert not _temporal() & {k for s in SENSORS for k in space.branch_kinds(s)}
    space = make_space("compact", SENSORS, dense=False)
    space.set_input_kinds({"s2": "temporal"})
    kinds = space.branch_kinds("s2")
    offered = [k for k in kinds if k in _temporal()]
    assert offered and kinds[:len(offered)] == offered and "conv" in kinds
    assert not _temporal() & set(space.branch_kinds("s1"))
    rng = np.random.default_rng(0)
    seen = set()
    x = random_inputs(CHANNELS, 5, 2, dates={"s2": 3})
    for _ in range(30):
        sample = {label: c.values[rng.integers(len(c.values))]
                  for label, c in space.choices().items()}
        if all(sample[f"branch.{s}.kind"] == fusion.OFF for s in SENSORS):
            continue  # an invalid sample: every sensor off
        arch = space.to_arch(sample)
        seen.add(arch.branches["s2"].kind)
        assert space.to_arch(space.to_sample(arch)) == arch
        out = fusion.build_model(arch, CHANNELS, 3, dates={"s2": 3})(x)
        assert out.shape == (2, 3) and torch.isfinite(out).all()
    assert seen & _temporal()


def test_task_space_asks_the_sensor_declaration(tmp_path: Path) -> None:
    raw = {"name": "t", "task": "patch_classification", "patch_size": 5,
           "sensors": {"s2": {"kind": "optical", "path": "s2_{date}.tif",
                              "dates": ["2021-03-01", "2021-06-01"]},
                       "s1": {"kind": "sar", "path": "s1.tif", "sar_units": "db"}},
           "labels": {"path": "labels.tif", "classes": ["a", "b"]},
           "split": {"kind": "spatial_blocks", "block_size": 8}}
    space = space_for_task(parse_task(raw, tmp_path / "task.yaml"))
    assert _temporal() & set(space.branch_kinds("s2"))
    assert not _temporal() & set(space.branch_kinds("s1"))


def test_space_offers_time_after_fusion_and_weights_timing_aware_options() -> None:
    space = make_space("compact", SENSORS, dense=False)
    assert "fusion.time" not in space.options()  # no time series: no choice
    space.set_input_kinds({"s2": "temporal"})
    opts = space.options()
    assert opts["fusion.time"][0] == fusion.TIME_IN_BRANCH and "ltae" in opts["fusion.time"]
    choices = space.choices()
    # the options that read timing (stated by the parts) share TIMING_SHARE of the prior
    kinds = choices["branch.s2.kind"]
    timed = [fusion.BRANCHES.get(k).sees_timing if k != fusion.OFF else False
             for k in kinds.values]
    assert any(timed) and not all(timed)
    share = sum(w for w, t in zip(kinds.weights, timed) if t)
    assert abs(share - space.TIMING_SHARE) < 1e-9 and abs(sum(kinds.weights) - 1) < 1e-9
    assert "time_mean_first" in kinds.values and not fusion.BRANCHES.get("time_mean_first").sees_timing
    assert choices["branch.s1.kind"].weights == [1 / len(choices["branch.s1.kind"].values)] * len(
        choices["branch.s1.kind"].values)  # a single-date sensor: uniform
    base = {label: values[0] for label, values in opts.items()}
    per_date = base | {"branch.s2.kind": "conv", "branch.s1.kind": "conv",
                       "fusion.position": "middle", "fusion.time": "ltae"}
    arch = space.to_arch(per_date)
    assert arch.fusion.time == "ltae" and space.to_arch(space.to_sample(arch)) == arch
    x = random_inputs(CHANNELS, 5, 2, dates={"s2": 3})
    out = fusion.build_model(arch, CHANNELS, 3, dates={"s2": 3})(x)
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    # unused where nothing is read per date (a temporal kind) or the position cannot
    for unused in ({"branch.s2.kind": "time_ltae_first"}, {"fusion.position": "late"}):
        assert space.to_arch(per_date | unused).fusion.time == fusion.TIME_IN_BRANCH
