"""Validity masks: every fusion op and position handles a sensor missing at some pixels or for a
whole sample (`<sensor>__mask`, 1 = valid), never reads a value where its sensor is invalid,
and gives exactly the unmasked result when masks are absent or all ones.

Ops, positions, heads and branch kinds come from the registries, so a part registered later
is tested the same way.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

import fusion
from fusion import (
    FUSION_OPS,
    HEADS,
    POSITIONS,
    Arch,
    BranchSpec,
    FusionOp,
    FusionSpec,
    HeadSpec,
    build_model,
    mask_key,
)
from fusion.ops import MaskFilled

# torch 2.13 deprecates torch.jit.* (still what export ships; see test_export.py)
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")

IN_CHANNELS = {"optical": 4, "lidar": 1, "sar": 2, "unused": 3}
SENSORS = ["optical", "lidar", "sar"]  # "unused" has an 'off' branch
# kinds for any band stack (complex-pair kinds: tests/fusion/test_complex.py)
KINDS = [k for k in fusion.BRANCHES.names() if fusion.BRANCHES.get(k).input_kind == "real"]
NUM_CLASSES = 3
BATCH = 4


def _arch(position: str, op: str, head: str, kinds: list[str] | None = None) -> Arch:
    """Sensor i: kind kinds[i], width 4 + i, depth i (so multi fusion has stages with 3, 2
    and 1 members)."""
    kinds = kinds or [KINDS[i % len(KINDS)] for i in range(len(SENSORS))]
    branches = {s: BranchSpec(kinds[i], width=4 + i, depth=i, kernel=3)
                for i, s in enumerate(SENSORS)}
    branches["unused"] = BranchSpec("off")
    trunk = (BranchSpec("conv", width=5, depth=1, kernel=3) if POSITIONS.get(position).uses_trunk
             else BranchSpec("off"))
    return Arch(branches, FusionSpec(op, position, width=6, trunk=trunk),
                HeadSpec(head, hidden=8, dropout=0.1))


def _size(head: str) -> int:
    return 12 if HEADS.get(head).dense else 7


def _masks(size: int, seed: int = 0) -> dict[str, Tensor]:
    """[BATCH, size, size] float32 masks of every task sensor:
    sample 0: the first sensor absent for the whole sample;
    sample 1: the second sensor missing on the left half, every sensor missing in a 3x3 block
              at the centre;
    sample 2: about 30 % random holes in every sensor, the third one missing at the centre;
    sample 3: every sensor missing everywhere."""
    gen = torch.Generator().manual_seed(seed)
    c = size // 2
    out = {}
    for i, s in enumerate(IN_CHANNELS):
        m = torch.ones(BATCH, size, size)
        if i == 0:
            m[0] = 0
        if i == 1:
            m[1, :, : size // 2] = 0
        m[1, c - 1:c + 2, c - 1:c + 2] = 0
        m[2] = (torch.rand(size, size, generator=gen) > 0.3).float()
        if i == 2:
            m[2, c, c] = 0
        m[3] = 0
        out[mask_key(s)] = m
    return out


def _inputs(size: int, masks: dict[str, Tensor] | None = None, seed: int = 0
            ) -> dict[str, Tensor]:
    """Standard-normal sensor tensors, 0 where invalid (the data contract)."""
    gen = torch.Generator().manual_seed(seed)
    x = {s: torch.randn(BATCH, c, size, size, generator=gen) for s, c in IN_CHANNELS.items()}
    if masks is not None:
        x = {s: t * masks[mask_key(s)][:, None] for s, t in x.items()}
    return x


def _garbage(x: dict[str, Tensor], masks: dict[str, Tensor]) -> dict[str, Tensor]:
    """`x` with other values where a sensor is invalid: large numbers, and NaN and inf (what a
    careless reader could leave in holes)."""
    gen = torch.Generator().manual_seed(123)
    out = {}
    for s, t in x.items():
        junk = torch.randn(t.shape, generator=gen) * 1e3
        junk[..., 0, 0] = float("nan")
        junk[..., -1, -1] = float("inf")
        out[s] = torch.where(masks[mask_key(s)][:, None] > 0, t, junk)
    return out


def _ones(size: int) -> dict[str, Tensor]:
    return {mask_key(s): torch.ones(BATCH, size, size) for s in IN_CHANNELS}


def _fusion_ops(model: nn.Module) -> list[FusionOp]:
    return [m for m in model.modules() if isinstance(m, FusionOp)]


# ---- whole models: every position x op x head ------------------------------------------------
@pytest.mark.parametrize("head", HEADS.names())
@pytest.mark.parametrize("op", FUSION_OPS.names())
@pytest.mark.parametrize("position", POSITIONS.names())
def test_models_handle_missing_sensors(position: str, op: str, head: str) -> None:
    arch = _arch(position, op, head)
    size = _size(head)
    masks = _masks(size)
    x = _inputs(size, masks)
    torch.manual_seed(0)
    model = build_model(arch, IN_CHANNELS, NUM_CLASSES)
    model({**x, **masks})  # train mode once: BatchNorm statistics are not the defaults
    model.eval()
    with torch.no_grad():
        y = model({**x, **masks})
        assert torch.isfinite(y).all(), arch.summary()  # one sensor absent, all absent, holes
        # no mask == all-ones masks, exactly
        assert torch.equal(model(x), model({**x, **_ones(size)})), arch.summary()
        # whatever a sensor holds where it is invalid never reaches the output
        assert torch.equal(model({**_garbage(x, masks), **masks}), y), arch.summary()
        # the masks matter (the model is not blind to them)
        assert not torch.equal(model(x), y), arch.summary()


@pytest.mark.parametrize("head", HEADS.names())
@pytest.mark.parametrize("op", FUSION_OPS.names())
@pytest.mark.parametrize("position", POSITIONS.names())
def test_gradients_flow_with_missing_sensors(position: str, op: str, head: str) -> None:
    arch = _arch(position, op, head)
    size = _size(head)
    masks = _masks(size)
    x = _inputs(size, masks)
    for t in x.values():
        t.requires_grad_(True)
    torch.manual_seed(0)
    model = build_model(arch, IN_CHANNELS, NUM_CLASSES)
    y = model({**x, **masks})
    # linear in y: a zero output (an all-missing sample, zero-initialised embeddings) still
    # passes a gradient back
    (y * torch.randn(y.shape, generator=torch.Generator().manual_seed(1))).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"{arch.summary()}: parameters without gradient {no_grad}"
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, f"{arch.summary()}: non-finite gradients {bad}"
    # the missing-sensor embeddings learn (every sample 3 pixel lacks every sensor)
    assert all(m.missing.grad.abs().sum() > 0 for m in _fusion_ops(model)), arch.summary()
    for s in SENSORS:
        valid = masks[mask_key(s)][:, None].expand_as(x[s]) > 0
        assert x[s].grad[~valid].abs().max() == 0, f"{arch.summary()}: {s} read where invalid"
        assert x[s].grad[valid].abs().sum() > 0, f"{arch.summary()}: no gradient reaches {s}"
    assert x["unused"].grad is None


@pytest.mark.parametrize("name", fusion.BASELINES)
def test_baselines_take_masks(name: str) -> None:
    for dense in (False, True):
        if name not in fusion.baselines_for(dense):
            continue
        size = 12 if dense else 7
        masks = _masks(size)
        x = _inputs(size, masks)
        model = build_model(name, IN_CHANNELS, NUM_CLASSES, dense=dense).eval()
        with torch.no_grad():
            y = model({**x, **masks})
            assert torch.isfinite(y).all()
            assert torch.equal(model({**_garbage(x, masks), **masks}), y)


def test_mask_inputs_are_checked_and_converted() -> None:
    arch = _arch("middle", "concat", "patch")
    model = build_model(arch, IN_CHANNELS, NUM_CLASSES).eval()
    masks = _masks(7)
    x = _inputs(7, masks)
    with pytest.raises(ValueError, match=r"mask 'lidar__mask' needs \[B, H, W\] = \[4, 7, 7\]"):
        model({**x, "lidar__mask": masks["lidar__mask"][:, None]})
    with pytest.raises(ValueError, match=r"mask 'sar__mask' needs \[B, H, W\]"):
        model({**x, "sar__mask": masks["sar__mask"][:, :5]})
    with torch.no_grad():
        want = model({**x, **masks})
        as_bool = {k: m.bool() for k, m in masks.items()}
        assert torch.equal(model({**x, **as_bool}), want)
        # a mask for some sensors only: the others are valid everywhere
        some = model({**x, "lidar__mask": masks["lidar__mask"]})
        assert torch.equal(some, model({**x, **_ones(7), "lidar__mask": masks["lidar__mask"]}))
        # the mask of a sensor the model does not use is ignored
        assert torch.equal(model({**x, **masks, "unused__mask": torch.zeros(BATCH, 7, 7)}), want)
    assert fusion.mask_key("lidar") == "lidar" + fusion.MASK_SUFFIX == "lidar__mask"


# ---- fusion ops on their own -----------------------------------------------------------------
CHANS = [3, 5, 1]


def _op_masks(size: int = 5) -> list[Tensor]:
    """[2, 1, size, size] per sensor: sample 0 loses sensor 0 entirely; sample 1 has holes, and
    no sensor at (0, 0)."""
    gen = torch.Generator().manual_seed(1)
    ms = []
    for i in range(len(CHANS)):
        m = (torch.rand(2, 1, size, size, generator=gen) > 0.3).float()
        m[0] = 1.0 if i else 0.0
        m[1, :, 0, 0] = 0
        ms.append(m)
    return ms


@pytest.mark.parametrize("op", FUSION_OPS.names())
def test_ops_handle_masks(op: str) -> None:
    torch.manual_seed(0)
    layer = FUSION_OPS.get(op)(CHANS, 4).eval()
    assert layer.handles_masks  # the built-in operators handle masks themselves
    with torch.no_grad():
        layer.missing.normal_()  # a trained embedding, not the zero initialisation
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(2, c, 5, 5, generator=gen) for c in CHANS]
    ms = _op_masks()
    with torch.no_grad():
        ones = [torch.ones(2, 1, 5, 5) for _ in CHANS]
        assert torch.equal(layer(xs), layer(xs, ones))
        y = layer(xs, ms)
        assert y.shape == (2, 4, 5, 5) and torch.isfinite(y).all()
        zeros = [torch.zeros(2, 1, 5, 5) for _ in CHANS]
        assert torch.isfinite(layer(xs, zeros)).all()
        # features where a sensor is invalid do not matter (the branch computed them from
        # its neighbours; they are replaced by the missing embedding)
        junk = [torch.where(m > 0, x, torch.full_like(x, 1e4)) for x, m in zip(xs, ms)]
        assert torch.equal(layer(junk, ms), y)
        # one presence weight per sample (late fusion of patch logits)
        per_sample = [torch.tensor([0.0, 0.25]).view(2, 1, 1, 1), torch.ones(2, 1, 1, 1),
                      torch.tensor([0.0, 1.0]).view(2, 1, 1, 1)]
        logits = [x[:, :, :1, :1] for x in xs]
        assert torch.isfinite(layer(logits, per_sample)).all()
        everyone_absent = [torch.zeros(2, 1, 1, 1) for _ in CHANS]
        assert torch.isfinite(layer(logits, everyone_absent)).all()


@pytest.mark.parametrize("chans", [CHANS, [4]], ids=["3_sensors", "1_sensor"])
@pytest.mark.parametrize("op", FUSION_OPS.names())
def test_local_ops_stay_local_with_masks(op: str, chans: list[int]) -> None:
    """A local op's output at a position depends on that position's features and masks only
    (`gate` is local for one sensor)."""
    torch.manual_seed(0)
    layer = FUSION_OPS.get(op)(chans, 4).eval()
    if not layer.local:
        pytest.skip(f"'{op}' is not local for {len(chans)} sensors (it pools over the patch)")
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(2, c, 5, 5, generator=gen) for c in chans]
    ms = _op_masks()[:len(chans)]
    xs2 = [x.clone() for x in xs]
    ms2 = [m.clone() for m in ms]
    xs2[-1][:, :, 2, 3] += 5.0
    ms2[0][:, :, 2, 3] = 1 - ms2[0][:, :, 2, 3]
    with torch.no_grad():
        a, b = layer(xs, ms), layer(xs2, ms2)
    changed = (a != b).any(dim=1)  # [2, 5, 5]
    assert changed[:, 2, 3].any()
    changed[:, 2, 3] = False
    assert not changed.any()


def test_sum_is_the_rescaled_mean_over_present_sensors() -> None:
    layer = FUSION_OPS.get("sum")([4, 4], 4)  # equal widths: no projections
    with torch.no_grad():
        layer.missing.copy_(torch.arange(8.0))
    a, b = torch.randn(1, 4, 1, 3), torch.randn(1, 4, 1, 3)
    ma = torch.tensor([1.0, 0.0, 0.0]).view(1, 1, 1, 3)
    mb = torch.tensor([1.0, 1.0, 0.0]).view(1, 1, 1, 3)
    y = layer([a, b], [ma, mb])
    torch.testing.assert_close(y[..., 0], a[..., 0] + b[..., 0], rtol=0, atol=0)
    torch.testing.assert_close(y[..., 1], 2 * b[..., 1])
    # no sensor present: the sum of the missing embeddings
    torch.testing.assert_close(y[0, :, 0, 2], torch.arange(4.0) + torch.arange(4.0, 8.0))


def test_gate_weighs_only_present_sensors() -> None:
    layer = FUSION_OPS.get("gate")([4, 4], 4)
    a, b = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    ma, mb = torch.ones(2, 1, 3, 3), torch.ones(2, 1, 3, 3)
    mb[0] = 0  # b absent from sample 0
    ma[1, :, 1, 1] = 0  # a missing at one pixel of sample 1
    y = layer([a, b], [ma, mb])
    torch.testing.assert_close(y[0], a[0])
    torch.testing.assert_close(y[1, :, 1, 1], b[1, :, 1, 1])
    torch.testing.assert_close(y[1, :, 0, 0], (a[1, :, 0, 0] + b[1, :, 0, 0]) / 2)  # zero init


def test_concat_sees_the_masks() -> None:
    layer = FUSION_OPS.get("concat")([3, 5], 4)
    assert layer.mix.in_channels == 3 + 5 + 2  # features, then one mask channel per sensor


# ---- late fusion: presence as each head sees it ----------------------------------------------
@pytest.mark.parametrize("head", HEADS.names())
def test_heads_state_how_present_a_sensor_is(head: str) -> None:
    h = HEADS.get(head)(6, NUM_CLASSES, 5, 0.0)
    m = _masks(7)["lidar__mask"][:, None]  # [B, 1, 7, 7]
    w = h.presence()(m)
    assert w.shape == ((BATCH, 1, 7, 7) if h.dense else (BATCH, 1, 1, 1))
    assert ((w >= 0) & (w <= 1)).all()
    assert torch.equal(h.presence()(torch.ones_like(m)), torch.ones_like(w))


def test_patch_and_centre_heads_weigh_presence_as_they_read_the_patch() -> None:
    m = torch.zeros(2, 1, 5, 5)
    m[0, :, :2] = 1  # 10 of 25 valid, not the centre
    m[1, :, 2, 2] = 1  # only the centre
    patch = HEADS.get("patch")(4, 2, 0, 0.0).presence()
    centre = HEADS.get("centre")(4, 2, 0, 0.0).presence()
    torch.testing.assert_close(patch(m).flatten(), torch.tensor([0.4, 0.04]))
    assert torch.equal(centre(m).flatten(), torch.tensor([0.0, 1.0]))


def test_late_fusion_weighs_logits_by_presence() -> None:
    """late + sum + patch head: (w_a y_a + w_b y_b) * 2 / (w_a + w_b), w = valid fraction."""
    in_channels = {"a": 2, "b": 3}
    arch = Arch({"a": BranchSpec("conv", 4, 1, 3), "b": BranchSpec("conv", 4, 0, 3)},
                FusionSpec("sum", "late"), HeadSpec("patch", 0, 0.0))
    torch.manual_seed(0)
    model = build_model(arch, in_channels, NUM_CLASSES).eval()
    gen = torch.Generator().manual_seed(0)
    x = {s: torch.randn(2, c, 5, 5, generator=gen) for s, c in in_channels.items()}
    ma, mb = torch.ones(2, 5, 5), torch.ones(2, 5, 5)
    ma[0, :2] = 0  # a: 15 of 25 valid in sample 0
    mb[1] = 0  # b absent from sample 1
    with torch.no_grad():
        y = model({**x, "a__mask": ma, "b__mask": mb})
        ya = model.paths[0](x["a"] * ma[:, None])
        yb = model.paths[1](x["b"] * mb[:, None])
    torch.testing.assert_close(y[0], (0.6 * ya[0] + yb[0]) * 2 / 1.6)
    torch.testing.assert_close(y[1], 2 * ya[1])


# ---- plugins: an op that does not handle masks, a branch that downsamples --------------------
class _PlainMix(FusionOp):
    """An operator written before masks existed: `forward(xs)` only."""

    local = True

    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__(in_channels, out_channels)
        self.mix = nn.Conv2d(sum(in_channels), out_channels, 1)

    def forward(self, xs: list[Tensor]) -> Tensor:  # type: ignore[override]
        return self.mix(torch.cat(xs, dim=1))


def test_an_op_without_mask_handling_runs_on_filled_maps() -> None:
    FUSION_OPS.register("plain_mix_test")(_PlainMix)
    try:
        arch = _arch("middle", "plain_mix_test", "centre")
        torch.manual_seed(0)
        model = build_model(arch, IN_CHANNELS, NUM_CLASSES).eval()
        assert isinstance(model.fuse, MaskFilled) and isinstance(model.fuse.op, _PlainMix)
        assert all(op.local for op in _fusion_ops(model))  # what fullconv asks
        masks = _masks(7)
        x = _inputs(7, masks)
        with torch.no_grad():
            y = model({**x, **masks})
            assert torch.isfinite(y).all()
            assert torch.equal(model({**_garbage(x, masks), **masks}), y)
            assert torch.equal(model(x), model({**x, **_ones(7)}))
            scripted = torch.jit.script(model)
            torch.testing.assert_close(scripted({**x, **masks}), y, rtol=0, atol=1e-5)
    finally:
        FUSION_OPS.unregister("plain_mix_test")


class _Strided(fusion.Branch):
    """Halves the resolution in its stem: stage reductions are 2."""

    def __init__(self, in_channels: int, width: int, depth: int, kernel: int) -> None:
        super().__init__(in_channels, width, depth, kernel)
        self.reductions = [2] * (depth + 1)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, kernel, 2, kernel // 2),
                                  nn.ReLU())
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, kernel, 1, kernel // 2), nn.ReLU())
            for _ in range(depth))


def test_masks_are_pooled_like_a_downsampling_branch() -> None:
    fusion.BRANCHES.register("strided_test")(_Strided)
    try:
        arch = _arch("middle", "concat", "patch", kinds=["strided_test"] * 3)
        torch.manual_seed(0)
        model = build_model(arch, IN_CHANNELS, NUM_CLASSES).eval()
        seen: list[list[Tensor]] = []
        model.fuse.register_forward_pre_hook(lambda _, args: seen.append(args[1]))
        masks = _masks(7)
        x = _inputs(7, masks)
        with torch.no_grad():
            y = model({**x, **masks})
        assert torch.isfinite(y).all()
        assert [tuple(m.shape) for m in seen[0]] == [(BATCH, 1, 4, 4)] * 3
        # sample 2's random holes: fractions of valid pixels per 2 x 2 cell (edge cells smaller)
        m = masks["optical__mask"][2]
        assert seen[0][0][2, 0, 0, 0] == m[:2, :2].mean()
        assert seen[0][0][2, 0, 3, 3] == m[6, 6]
    finally:
        fusion.BRANCHES.unregister("strided_test")


# ---- fully convolutional prediction keeps working with masks ---------------------------------
@pytest.mark.parametrize("op", FUSION_OPS.names())
@pytest.mark.parametrize("position", [p for p in POSITIONS.names() if POSITIONS.get(p).shared_head])
def test_local_models_label_a_window_like_its_patches(position: str, op: str) -> None:
    """What `autors.export.fullconv` relies on: with local parts and a centre head, the
    pixelwise head over a window gives each pixel the label of the patch centred there, masks
    included."""
    arch = Arch({s: BranchSpec("conv", 4, 1, 3) for s in SENSORS} | {"unused": BranchSpec("off")},
                FusionSpec(op, position, 6, BranchSpec("conv", 5, 0, 3)),
                HeadSpec("centre", 8, 0.0))
    torch.manual_seed(0)
    model = build_model(arch, IN_CHANNELS, NUM_CLASSES)
    if not all(m.local for m in _fusion_ops(model)):
        pytest.skip(f"'{op}' is not local")
    model({**_inputs(7), **_masks(7)})  # BatchNorm statistics
    model.eval()
    dense = copy.deepcopy(model)
    dense.head = dense.head.pixelwise()
    p, size = 7, 15
    gen = torch.Generator().manual_seed(5)
    masks = {mask_key(s): (torch.rand(1, size, size, generator=gen) > 0.3).float()
             for s in IN_CHANNELS}
    masks["lidar__mask"][:, 4:9, 2:12] = 0  # a LiDAR gap
    x = {s: t[:1] * masks[mask_key(s)][:, None] for s, t in _inputs(size).items()}
    with torch.no_grad():
        window = dense({**x, **masks})[0]  # [K, size, size]
        for r in range(p // 2, size - p // 2, 2):
            for c in range(p // 2, size - p // 2, 2):
                crop = {k: v[..., r - p // 2:r + p // 2 + 1, c - p // 2:c + p // 2 + 1]
                        for k, v in {**x, **masks}.items()}
                torch.testing.assert_close(window[:, r, c], model(crop)[0], rtol=0, atol=1e-5)
