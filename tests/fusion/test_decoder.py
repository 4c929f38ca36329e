"""Encoder-decoders: arch checks, every position decodes, maps independent of the window."""

from __future__ import annotations

import pytest
import torch

from fusion import (
    POSITIONS,
    Arch,
    ArchError,
    BranchSpec,
    DecoderSpec,
    FusionSpec,
    HeadSpec,
    build_model,
    mask_key,
    receptive_radius,
)

SENSORS = {"s1": 2, "s2": 5}


def _arch(position: str, skips: tuple[int, ...], depths=(2, 1), trunk_depth: int = 1,
          up: str = "bilinear", context: str = "none", head: str = "segmentation") -> Arch:
    trunk = BranchSpec("off") if position == "late" else BranchSpec("conv", 6, trunk_depth, 3)
    return Arch(
        branches={"s1": BranchSpec("sar", 4, depths[0], 3), "s2": BranchSpec("conv", 5, depths[1], 3)},
        fusion=FusionSpec("gate", position, 6, trunk),
        head=HeadSpec(head, 0, 0.0),
        decoder=DecoderSpec(6, skips, up, context),
    )


def _bn_statistics(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics, so eval mode is not an identity."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return model.eval()


@pytest.mark.parametrize("position,skips,depth", [
    ("early", (0,), 1),          # the trunk is the encoder
    ("middle", (2,), 3),         # sensors meet at scale 2 (the deepest branch), trunk to 3
    ("multi", (0, 1, 2), 3),     # every scale fused
    ("late", (0, 1), 2),         # one encoder-decoder per sensor
])
@pytest.mark.parametrize("up", ["bilinear", "transposed"])
def test_every_position_decodes_to_full_resolution(position, skips, depth, up, make_inputs):
    arch = Arch.from_dict(_arch(position, skips, up=up, context="aspp").to_dict())
    assert arch.depth == depth
    model = build_model(arch, SENSORS, 3)
    assert model.reduction == 2**depth
    x = make_inputs(SENSORS, 19)  # no multiple of the output stride
    x[mask_key("s2")] = (torch.rand(2, 19, 19) > 0.5).float()
    y = model(x)
    assert tuple(y.shape) == (2, 3, 19, 19)
    y.sum().backward()  # trains: every used part gets a gradient
    assert all(p.grad is not None for n, p in model.named_parameters() if "missing" not in n)


def test_skips_must_have_a_fused_map():
    # middle fusion meets at the deepest branch's scale: nothing fused above it
    with pytest.raises(ArchError, match=r"decoder.skips: scale 0 has no fused map with "
                                        r"'middle' fusion .* usable scales are \[2\]"):
        _arch("middle", (0,)).validate()
    assert POSITIONS.get("multi").skip_scales(_arch("multi", ())) == [0, 1, 2]
    with pytest.raises(ArchError, match="decoder.skips: scale 3"):
        _arch("multi", (3,)).validate()  # the deepest map is the decoder's input, no skip


def test_a_decoder_needs_a_dense_head_and_a_downsampling_encoder():
    with pytest.raises(ArchError, match="decoder: an encoder-decoder predicts every pixel"):
        _arch("multi", (0,), head="patch").validate()
    with pytest.raises(ArchError, match="the encoder never downsamples"):
        _arch("early", (), trunk_depth=0).validate()
    with pytest.raises(ArchError, match=r"decoder.up: unknown upsampling 'nearest'"):
        Arch.from_dict({**_arch("multi", ()).to_dict(),
                        "decoder": {"width": 4, "skips": [], "up": "nearest"}})
    with pytest.raises(ArchError, match=r"decoder.skips: must be a list"):
        Arch.from_dict({**_arch("multi", ()).to_dict(), "decoder": {"skips": 1}})


def test_arch_without_decoder_keeps_its_dict_and_summary_names_the_decoder():
    arch = _arch("multi", (0, 1), context="aspp")
    plain = Arch(arch.branches, arch.fusion, arch.head)
    assert "decoder" not in plain.to_dict() and plain.depth == 0
    assert Arch.from_dict(arch.to_dict()) == arch
    assert "decoder(w6,skips=0.1,bilinear,aspp)" in arch.summary()


@pytest.mark.parametrize("position,skips", [("multi", (0, 1, 2)), ("middle", (2,)),
                                            ("late", (0, 1))])
def test_windows_aligned_to_the_output_stride_give_the_same_map(position, skips):
    """A window with a halo of the measured receptive radius, aligned to the output stride,
    reproduces the whole-scene map: tiled prediction has no seams."""
    torch.manual_seed(0)
    _check_windows(_bn_statistics(build_model(_arch(position, skips, context="aspp"), SENSORS,
                                              3)))
    _check_windows(_bn_statistics(build_model(_entering(position, skips), SENSORS, 3)))


def _check_windows(model: torch.nn.Module) -> None:
    radius = receptive_radius(model, SENSORS)
    r = model.reduction
    assert radius % r == 0
    side = 2 * radius + 3 * r
    gen = torch.Generator().manual_seed(2)
    x = {s: torch.randn(1, c, side + 2 * radius, side + 2 * radius, generator=gen)
         for s, c in SENSORS.items()}
    with torch.no_grad():
        whole = model(x)
        top = radius  # an aligned window [top, top + 3r) with its halo
        win = {s: v[:, :, top - radius: top + 3 * r + radius, top - radius: top + 3 * r + radius]
               for s, v in x.items()}
        part = model(win)[:, :, radius: radius + 3 * r, radius: radius + 3 * r]
        torch.testing.assert_close(part, whole[:, :, top: top + 3 * r, top: top + 3 * r],
                                   rtol=0, atol=1e-5)
        # an unaligned window (shifted by one pixel) sees another pooling grid: not the same
        off = top + 1
        win = {s: v[:, :, off - radius: off + 3 * r + radius, off - radius: off + 3 * r + radius]
               for s, v in x.items()}
        shifted = model(win)[:, :, radius: radius + 3 * r, radius: radius + 3 * r]
        assert (shifted - whole[:, :, off: off + 3 * r, off: off + 3 * r]).abs().max() > 1e-4


def test_receptive_radius_of_a_full_resolution_model_is_its_kernels():
    arch = Arch({"a": BranchSpec("conv", 4, 2, 3)}, FusionSpec("concat", "middle", 4),
                HeadSpec("segmentation", 0, 0.0))
    model = build_model(arch, {"a": 1}, 2)
    # stem + 2 blocks of 3x3: 3 pixels, plus the one-cell safety margin of reduction 1
    assert model.reduction == 1 and receptive_radius(model, {"a": 1}) == 3 + 1


def _entering(position: str, skips: tuple[int, ...]) -> Arch:
    """s2 (a coarser sensor) enters at scale 1: its input average-pooled 2x, stages at 1..2."""
    arch = _arch(position, skips, depths=(2, 1), context="none")
    branches = dict(arch.branches, s2=BranchSpec("conv", 5, 1, 3, scale=1))
    return Arch(branches, arch.fusion, arch.head, decoder=arch.decoder)


@pytest.mark.parametrize("position,skips,usable", [
    ("multi", (0, 1, 2), [0, 1, 2]),   # scale 0: s1 only; scales 1, 2: both
    ("middle", (2,), [2]),             # both reach scale 2: they meet there
    ("late", (0, 1), [0, 1]),          # s1 skips 0 and 1, s2 skips 1 only
])
def test_a_sensor_enters_at_a_coarser_scale(position, skips, usable, make_inputs) -> None:
    arch = Arch.from_dict(_entering(position, skips).to_dict())
    assert arch.branches["s2"].scale == 1 and "@1" in arch.summary()
    assert POSITIONS.get(position).skip_scales(arch) == usable
    torch.manual_seed(0)
    model = _bn_statistics(build_model(arch, SENSORS, 3))
    x = make_inputs(SENSORS, 21)
    y = model(x)
    assert tuple(y.shape) == (2, 3, 21, 21)
    # the s2 branch sees its input at half resolution: its stem runs on 11 x 11
    seen = []
    branch = model.paths[1].branch if position == "late" else model.branches[1]
    hook = branch.stem.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model(x)
    hook.remove()
    assert tuple(seen[0][-2:]) == (11, 11)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), rtol=0, atol=1e-5)


def test_multi_fuses_only_scales_some_branch_reaches() -> None:
    arch = Arch({"s1": BranchSpec("sar", 4, 1, 3, scale=1), "s2": BranchSpec("conv", 5, 2, 3,
                                                                              scale=1)},
                FusionSpec("concat", "multi", 6), HeadSpec("segmentation", 0, 0.0),
                decoder=DecoderSpec(6, (1, 2)))
    assert POSITIONS.get("multi").skip_scales(arch) == [1, 2]
    with pytest.raises(ArchError, match="decoder.skips: scale 0 has no fused map"):
        Arch(arch.branches, arch.fusion, arch.head, decoder=DecoderSpec(6, (0,))).validate()
    model = build_model(arch, SENSORS, 2).eval()
    assert model.fused_at == [-1, 0, 1, 2] and model.reduction == 8
    assert tuple(model({s: torch.randn(1, c, 16, 16) for s, c in SENSORS.items()}).shape) == \
        (1, 2, 16, 16)


def test_an_entry_scale_needs_an_encoder_decoder_that_reads_the_sensors() -> None:
    arch = _entering("multi", (0,))
    with pytest.raises(ArchError, match=r"branches.s2.scale: a sensor enters at a coarser scale "
                                        r"only in an encoder-decoder"):
        Arch(arch.branches, arch.fusion, arch.head).validate()
    early = Arch(arch.branches, FusionSpec("concat", "early", 6, BranchSpec("conv", 6, 2, 3)),
                 arch.head, decoder=DecoderSpec(6, (0,)))
    with pytest.raises(ArchError, match="branches.s2.scale"):
        early.validate()
    assert BranchSpec("conv").to_dict() == {"kind": "conv", "width": 32, "depth": 2, "kernel": 3}


def test_receptive_radius_ignores_sensors_the_model_does_not_use():
    arch = Arch({"a": BranchSpec("conv", 4, 1, 3), "b": BranchSpec("off")},
                FusionSpec("concat", "middle", 4), HeadSpec("segmentation", 0, 0.0))
    model = build_model(arch, {"a": 1, "b": 2}, 2)
    assert receptive_radius(model, {"a": 1, "b": 2}) == receptive_radius(model, {"a": 1}) == 3
