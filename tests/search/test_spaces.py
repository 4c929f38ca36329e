"""Search spaces: every sample of every space is a valid architecture that builds and runs;
sample <-> Arch round trips; size() counts distinct networks; spaces adapt to the sensors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import fusion
from autors.config import TaskSpec
from autors.errors import SearchError
from autors.search.catalog import check_strategy, list_spaces, space_for_task
from search_spaces import SPACES, make_space

MIXES = {
    "single": {"s2": "optical"},
    "optical_sar": {"s2": "optical", "s1": "sar"},
    "hsi_lidar_sar": {"hsi": "hyperspectral", "lidar": "lidar", "s1": "sar"},
}
BANDS = {"optical": 4, "sar": 2, "hyperspectral": 12, "lidar": 1}
NUM_CLASSES = 3


def _random_sample(space, rng: np.random.Generator) -> dict:
    return {label: c.values[rng.integers(len(c.values))] for label, c in space.choices().items()}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.mark.parametrize("dense", [False, True], ids=["patch", "dense"])
@pytest.mark.parametrize("mix", list(MIXES))
@pytest.mark.parametrize("name", list(SPACES))
def test_every_sample_builds_and_runs(name: str, mix: str, dense: bool) -> None:
    sensors = MIXES[mix]
    space = make_space(name, sensors, dense)
    in_channels = {s: BANDS[k] for s, k in sensors.items()}
    rng = np.random.default_rng(0)
    invalid = 0
    built = 0
    for i in range(400):
        sample = _random_sample(space, rng)
        reason = space.invalid_reason(sample)
        if reason is not None:
            # The only invalid samples are those that switch every sensor off.
            assert all(sample[f"branch.{s}.kind"] == "off" for s in sensors), reason
            invalid += 1
            continue
        arch = space.to_arch(sample)
        assert fusion.Arch.from_dict(arch.to_dict()) == arch
        assert space.to_arch(space.to_sample(arch)) == arch
        if i % 10 == 0:  # building is the slow part: every 10th sample runs forward
            model = fusion.build_model(arch, in_channels, NUM_CLASSES).eval()
            x = {s: torch.randn(2, c, 7, 7) for s, c in in_channels.items()}  # [B, C, H, W]
            with torch.no_grad():
                y = model(x)
            assert y.shape == ((2, NUM_CLASSES, 7, 7) if dense else (2, NUM_CLASSES))
            assert torch.isfinite(y).all()
            built += 1
    assert built >= 30
    assert invalid < 400 // 4


@pytest.mark.parametrize("name", list(SPACES))
@pytest.mark.parametrize("mix", ["single", "optical_sar"])
def test_size_counts_distinct_architectures(name: str, mix: str) -> None:
    space = make_space(name, MIXES[mix], dense=False)
    if space.num_samples() > 30_000:
        pytest.skip("too many samples to enumerate; covered by the compact space")
    choices = space.choices()
    labels = list(choices)
    archs = set()
    for values in itertools.product(*(choices[label].values for label in labels)):
        sample = dict(zip(labels, values))
        if space.invalid_reason(sample) is None:
            archs.add(repr(space.to_arch(sample).to_dict()))
    assert len(archs) == space.size()
    assert space.size() < space.num_samples()  # unused fields make samples collide


def test_compact_space_is_enumerated() -> None:
    # Guard for the test above: at least one space/mix must actually be enumerated.
    assert make_space("compact", MIXES["optical_sar"], dense=False).num_samples() <= 30_000


def test_branch_kinds_follow_the_sensor_kind() -> None:
    space = make_space("fusion", MIXES["hsi_lidar_sar"], dense=False)
    opts = space.options()
    assert opts["branch.hsi.kind"][0] == "spectral"
    assert "spectral" not in opts["branch.lidar.kind"] and "sar" not in opts["branch.lidar.kind"]
    assert "sar" in opts["branch.s1.kind"] and "spectral" not in opts["branch.s1.kind"]
    assert all("off" in opts[f"branch.{s}.kind"] for s in ("hsi", "lidar", "s1"))
    single = make_space("fusion", MIXES["single"], dense=False)
    assert "off" not in single.options()["branch.s2.kind"]  # one sensor cannot be switched off


def test_dense_tasks_only_get_dense_heads() -> None:
    space = make_space("fusion", MIXES["optical_sar"], dense=True)
    assert space.options()["head.kind"] == ["segmentation"]
    assert "head.kind" not in space.choices()  # a single option is a constant, not a choice


def test_arch_outside_the_space_is_refused() -> None:
    space = make_space("compact", MIXES["optical_sar"], dense=False)
    sample = _random_sample(space, np.random.default_rng(1))
    while space.invalid_reason(sample) is not None:
        sample = _random_sample(space, np.random.default_rng(2))
    arch = space.to_arch(sample).to_dict()
    arch["fusion"]["position"] = "middle"
    arch["branches"]["s2"] = {"kind": "conv", "width": 48, "depth": 1, "kernel": 3}
    with pytest.raises(fusion.ArchError, match="branch.s2.width: 48 is not in the compact"):
        space.to_sample(fusion.Arch.from_dict(arch))


def test_unknown_space_and_strategy_list_the_valid_names(make_task) -> None:
    task: TaskSpec = make_task(space="fusionn")
    with pytest.raises(SearchError, match=r"search.space: unknown search space 'fusionn'.*compact"):
        space_for_task(task)
    with pytest.raises(SearchError, match=r"unknown strategy 'anneal'.*evolution, grid, motpe, nsga2, "
                                          r"optuna_tpe, random, tpe"):
        check_strategy("anneal")


def test_list_spaces_gives_sizes_for_the_task(make_task) -> None:
    lines = list_spaces(make_task())
    assert [line.split()[0] for line in lines] == list(SPACES)
    size = make_space("compact", {"optical": "optical", "sar": "sar", "lidar": "lidar"},
                      dense=False).size()
    assert f"{size:,}" in lines[0]


def test_dense_spaces_choose_encoder_decoders() -> None:
    space = make_space("fusion", MIXES["optical_sar"], dense=True)
    opts = space.options()
    assert opts["decoder.width"] == [0, 16, 32] and opts["decoder.context"] == ["none", "aspp"]
    assert "decoder.width" not in make_space("fusion", MIXES["optical_sar"], dense=False).options()
    base = {label: values[0] for label, values in opts.items()}
    sample = base | {"branch.s2.kind": "conv", "branch.s2.depth": 3, "branch.s1.kind": "sar",
                     "branch.s1.depth": 1, "fusion.position": "multi", "trunk.layers": 2,
                     "decoder.width": 16, "decoder.skips": "all", "decoder.up": "transposed"}
    arch = space.to_arch(sample)
    # multi fuses scales 0..3 (branches), the trunk adds scale 4: skips from every scale above
    assert arch.depth == 4 and arch.decoder.skips == (0, 1, 2, 3)
    assert space.to_arch(space.to_sample(arch)) == arch
    middle = space.to_arch(sample | {"fusion.position": "middle", "decoder.skips": "finest"})
    assert middle.decoder.skips == (3,)  # the sensors meet at scale 3: the finest fused map
    # an encoder that never downsamples gets no decoder (the same network as width 0)
    flat = sample | {"branch.s2.depth": 0, "branch.s1.depth": 0, "trunk.layers": 1}
    assert space.to_arch(flat).decoder is None
    assert space.to_arch(flat) == space.to_arch(flat | {"decoder.width": 0})
    assert space.size() > make_space("fusion", MIXES["optical_sar"], dense=False).size()


def test_a_coarser_sensor_may_enter_at_its_own_scale() -> None:
    space = make_space("fusion", MIXES["optical_sar"], dense=True)
    assert "branch.s1.scale" not in space.options()  # unknown native scales: none offered
    space.set_native_scales({"s2": 0, "s1": 1})  # s1's pixels are twice the grid's
    opts = space.options()
    assert opts["branch.s1.scale"] == [0, 1] and "branch.s2.scale" not in opts
    base = {label: values[0] for label, values in opts.items()}
    sample = base | {"branch.s2.kind": "conv", "branch.s2.depth": 2, "branch.s1.kind": "sar",
                     "branch.s1.depth": 1, "branch.s1.scale": 1, "fusion.position": "multi",
                     "decoder.width": 16, "decoder.skips": "all"}
    arch = space.to_arch(sample)
    assert arch.branches["s1"].scale == 1 and arch.decoder.skips == (0, 1)
    assert space.to_arch(space.to_sample(arch)) == arch
    # without a decoder the scale is unused: the same network as scale 0
    flat = space.to_arch(sample | {"decoder.width": 0})
    assert flat.branches["s1"].scale == 0
    assert flat == space.to_arch(sample | {"decoder.width": 0, "branch.s1.scale": 0})
    patch = make_space("fusion", MIXES["optical_sar"], dense=False)
    patch.set_native_scales({"s1": 1})
    assert "branch.s1.scale" not in patch.options()  # patch tasks have no encoder-decoders


class _SmallDropoutSpace(SPACES.get("fusion")):
    """The fusion space's mechanics with few options, so it can be enumerated."""

    name = "small_dropout"
    BRANCH_KINDS = ("conv",)
    WIDTHS = (8,)
    DEPTHS = (0, 1)
    KERNELS = (3,)
    OPS = ("sum", "concat")
    FUSION_WIDTHS = (8, 16)
    TRUNK_LAYERS = (0, 1)
    HEAD_HIDDEN = (0,)
    FEATURE_DROPOUT = (0.0, 0.1, 0.2)


def test_feature_dropout_is_chosen_counted_and_round_trips() -> None:
    fusion_space = make_space("fusion", MIXES["optical_sar"], dense=False)
    assert fusion_space.options()["features.dropout"] == [0.0, 0.1, 0.2]
    assert "features.dropout" not in make_space("compact", MIXES["optical_sar"],
                                                dense=False).options()
    space = _SmallDropoutSpace(MIXES["optical_sar"], dense=False)
    choices = space.choices()
    archs = set()
    for values in itertools.product(*(c.values for c in choices.values())):
        sample = dict(zip(choices, values))
        if space.invalid_reason(sample) is None:
            arch = space.to_arch(sample)
            assert space.to_arch(space.to_sample(arch)) == arch
            archs.add(repr(arch.to_dict()))
            rate = sample["features.dropout"]
            used = [b for b in arch.branches.values() if b.on and arch.fusion.position != "early"]
            used += [arch.fusion.trunk] if arch.fusion.trunk.on else []
            assert all(b.dropout == rate for b in used)
    assert len(archs) == space.size()  # early fusion without a trunk: the rate is unused
    # a rate the space does not offer, or two rates, are refused with the label
    arch = space.to_arch({label: c.values[0] for label, c in choices.items()}
                         | {"fusion.position": "middle"})
    two = fusion.Arch.from_dict(arch.to_dict() | {"branches": {
        "s2": arch.branches["s2"].to_dict() | {"dropout": 0.1},
        "s1": arch.branches["s1"].to_dict() | {"dropout": 0.2}}})
    with pytest.raises(fusion.ArchError, match="features.dropout: the small_dropout space gives"):
        space.to_sample(two)
    compact = make_space("compact", MIXES["optical_sar"], dense=False)
    dropped = compact.to_arch(_random_sample(compact, np.random.default_rng(3)) | {
        "branch.s2.kind": "conv", "fusion.position": "middle"})
    dropped = fusion.Arch.from_dict(dropped.to_dict() | {"branches": {
        n: b.to_dict() | ({"dropout": 0.1} if b.on else {}) for n, b in dropped.branches.items()}})
    with pytest.raises(fusion.ArchError, match="features.dropout: the compact space has no"):
        compact.to_sample(dropped)
