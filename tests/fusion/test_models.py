"""Every branch x fusion op x position x head builds, runs forward and backward, for 1, 2 and
4 sensors with band counts 1, 2, 13, 48 and patch sizes 7, 11 (segmentation 32x32)."""

from __future__ import annotations

import pytest
import torch

import fusion
from fusion import Arch, BranchSpec, FusionSpec, HeadSpec, build_model

# Band counts stress "any band count": LiDAR (1), dual-pol SAR (2), Sentinel-2 (13), HSI (48).
SENSOR_SETS = {
    1: {"hsi": 48},
    2: {"hsi": 48, "lidar": 1},
    4: {"hsi": 48, "lidar": 1, "sar": 2, "optical": 13},
}
# kinds for any band stack (complex-pair kinds: tests/fusion/test_complex.py)
KINDS = [k for k in fusion.BRANCHES.names() if fusion.BRANCHES.get(k).input_kind == "real"]
HEAD_KINDS = fusion.HEADS.names()
NUM_CLASSES = 3


def _case(position: str, op: str, n: int, k: int) -> tuple[Arch, dict[str, int], int]:
    """Variant k of a (position, op, sensor count) case: sensor i uses branch kind
    KINDS[(k + i) % len], so the k loop gives every sensor slot every kind; the head, patch size
    and trunk rotate with k. An extra sensor with an 'off' branch rides along every time."""
    in_channels = {**SENSOR_SETS[n], "unused": 3}
    head = HEAD_KINDS[k % len(HEAD_KINDS)]
    branches = {
        s: BranchSpec(KINDS[(k + i) % len(KINDS)], width=4 + i, depth=(k + i) % 3,
                      kernel=(1, 3, 5)[(k + i) % 3])
        for i, s in enumerate(SENSOR_SETS[n])
    }
    branches["unused"] = BranchSpec("off")
    trunk_on = k % 2 == 0 and fusion.POSITIONS.get(position).uses_trunk
    trunk = BranchSpec(KINDS[k], width=5, depth=k % 2, kernel=3) if trunk_on else BranchSpec("off")
    arch = Arch(branches, FusionSpec(op, position, width=6, trunk=trunk),
                HeadSpec(head, hidden=(0, 16)[k % 2], dropout=0.1))
    size = 32 if fusion.HEADS.get(head).dense else (7, 11)[k % 2]
    return arch, in_channels, size


@pytest.mark.parametrize("n", sorted(SENSOR_SETS))
@pytest.mark.parametrize("op", fusion.FUSION_OPS.names())
@pytest.mark.parametrize("position", fusion.POSITIONS.names())
def test_every_branch_builds_and_trains(position: str, op: str, n: int, make_inputs) -> None:
    for k in range(len(KINDS)):
        arch, in_channels, size = _case(position, op, n, k)
        torch.manual_seed(k)
        model = build_model(arch, in_channels, NUM_CLASSES)
        x = make_inputs(in_channels, size, batch=4, seed=k)
        for t in x.values():
            t.requires_grad_(True)
        y = model(x)
        want = (4, NUM_CLASSES, size, size) if arch.dense else (4, NUM_CLASSES)
        assert tuple(y.shape) == want, arch.summary()
        assert torch.isfinite(y).all(), arch.summary()
        y.square().mean().backward()
        no_grad = [name for name, p in model.named_parameters() if p.grad is None]
        assert not no_grad, f"{arch.summary()}: parameters without gradient {no_grad}"
        # every used sensor influences the logits (ReLUs could all be dead on a tiny batch
        # with tiny widths, hence batch 4 and 16 hidden units)
        silent = [s for s in arch.sensors if x[s].grad is None or not x[s].grad.abs().sum() > 0]
        assert not silent, f"{arch.summary()}: no gradient reaches {silent}"
        assert x["unused"].grad is None, arch.summary()


def test_the_cross_product_is_covered() -> None:
    """The k loop above really gives each sensor slot each kind, and each case every head."""
    for n in SENSOR_SETS:
        for slot in range(n):
            kinds = {_case("middle", "sum", n, k)[0].branches[list(SENSOR_SETS[n])[slot]].kind
                     for k in range(len(KINDS))}
            assert kinds == set(KINDS)
        heads = {_case("middle", "sum", n, k)[0].head.kind for k in range(len(KINDS))}
        assert heads == set(HEAD_KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_branch_contract(kind: str) -> None:
    """timm-like: out_channels / reductions per stage match what forward_stages returns, for
    band counts 1 and 48."""
    for bands in (1, 48):
        branch = fusion.BRANCHES.get(kind)(bands, 6, 2, 3)
        assert branch.out_channels == [6, 6, 6] and branch.reductions == [1, 1, 1]
        branch.eval()
        x = torch.randn(2, bands, 9, 9)
        feats = branch.forward_stages(x)
        assert [tuple(f.shape) for f in feats] == [(2, 6, 9, 9)] * 3
        assert torch.equal(branch(x), feats[-1])


@pytest.mark.parametrize("op", fusion.FUSION_OPS.names())
def test_fusion_op_contract(op: str) -> None:
    """Any number of sensors with any channel counts -> [B, out, H, W]; order matters."""
    for chans in ([5], [3, 8], [1, 2, 13, 48]):
        torch.manual_seed(0)
        layer = fusion.FUSION_OPS.get(op)(chans, 7)
        xs = [torch.randn(2, c, 4, 4) for c in chans]
        y = layer(xs)
        assert tuple(y.shape) == (2, 7, 4, 4)
        if len(chans) > 1:  # each sensor contributes
            xs2 = [xs[0] * 0] + xs[1:]
            assert not torch.allclose(layer(xs2), y)


def test_off_sensor_is_accepted_and_ignored(make_inputs, tiny_arch) -> None:
    arch = tiny_arch(["hsi", "lidar", "sar"], ["conv"], position="middle")
    arch = Arch({**arch.branches, "lidar": BranchSpec("off")}, arch.fusion, arch.head)
    in_channels = {"hsi": 48, "lidar": 1, "sar": 2}
    model = build_model(arch, in_channels, 4).eval()
    x = make_inputs(in_channels, 7)
    y = model(x)
    x["lidar"] = torch.full_like(x["lidar"], 1e3)
    assert torch.equal(model(x), y)
    del x["lidar"]
    assert torch.equal(model(x), y)
    assert arch.sensors == ["hsi", "sar"]


def test_missing_or_wrong_input_is_a_clear_error(make_inputs) -> None:
    in_channels = {"hsi": 48, "lidar": 1}
    model = build_model("two_branch", in_channels, 4)
    x = make_inputs(in_channels, 7)
    with pytest.raises(ValueError, match="missing input for sensor 'lidar'"):
        model({"hsi": x["hsi"]})
    with pytest.raises(ValueError, match=r"sensor 'hsi' needs \[B, 48, H, W\]"):
        model({"hsi": x["hsi"][:, :40], "lidar": x["lidar"]})


def test_any_patch_size_keeps_segmentation_resolution(make_inputs, tiny_arch) -> None:
    in_channels = {"hsi": 48, "lidar": 1}
    for position in fusion.POSITIONS.names():
        arch = tiny_arch(list(in_channels), ["sar", "spectral"], position=position,
                         head="segmentation", trunk=position != "late")
        model = build_model(arch, in_channels, 5)
        for size in (1, 8, 13):
            assert tuple(model(make_inputs(in_channels, size)).shape) == (2, 5, size, size)


def test_determinism_for_a_seed(make_inputs, tiny_arch) -> None:
    """Same seed -> same weights, same outputs and same weights after a training step."""
    in_channels = {"hsi": 48, "lidar": 1, "sar": 2}
    arch = tiny_arch(list(in_channels), ["spectral", "residual", "sar"], op="cross_attention",
                     position="multi")

    def run(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        model = build_model(arch, in_channels, 4)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x = make_inputs(in_channels, 7, batch=4)
        target = torch.tensor([0, 1, 2, 3])
        loss = torch.nn.functional.cross_entropy(model(x), target)  # dropout draws from seed
        loss.backward()
        opt.step()
        return [loss.detach()] + [p.detach().clone() for p in model.parameters()]

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not all(torch.equal(u, v) for u, v in zip(a[1:], c[1:]))


def test_mc_dropout_is_switchable(make_inputs) -> None:
    """Eval is deterministic; turning the Dropout modules back on gives stochastic samples."""
    in_channels = {"hsi": 48, "lidar": 1}
    model = build_model("late_cnn", in_channels, 4).eval()
    x = make_inputs(in_channels, 7)
    assert torch.equal(model(x), model(x))
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.train()
    assert not torch.equal(model(x), model(x))


def test_sar_stem_is_log_safe() -> None:
    """Linear power up to 1e8, zeros and negative dB give finite features."""
    branch = fusion.BRANCHES.get("sar")(2, 4, 1, 3).eval()
    x = torch.tensor([1e8, 0.0, -25.0, 1e-6]).repeat(1, 2, 3, 1)  # [1, 2, 3, 4]
    assert torch.isfinite(branch(x)).all()


def test_separable_is_compact() -> None:
    conv = fusion.count_params(fusion.BRANCHES.get("conv")(13, 64, 3, 5))
    sep = fusion.count_params(fusion.BRANCHES.get("separable")(13, 64, 3, 5))
    assert sep < conv / 5


def test_count_params_counts_trainable_parameters() -> None:
    model = build_model("early_cnn", {"a": 3}, 2)
    total = sum(p.numel() for p in model.parameters())
    assert fusion.count_params(model) == total > 0
    model.head.requires_grad_(False)
    assert fusion.count_params(model) == total - sum(p.numel() for p in model.head.parameters())
