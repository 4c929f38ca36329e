"""Channel dropout in branches and trunk (`BranchSpec.dropout`), and the named feature stages
of a model (`FusionModel.feature_stages`, `forward_stage`, `FeatureExtractor`)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import fusion
from fusion import Arch, BranchSpec, DecoderSpec, FusionSpec, HeadSpec, build_model

IN = {"a": 3, "b": 2}
OLD = {  # an arch dict written before branch dropout existed
    "version": 1,
    "branches": {"a": {"kind": "conv", "width": 4, "depth": 1, "kernel": 3},
                 "b": {"kind": "sar", "width": 4, "depth": 2, "kernel": 3}},
    "fusion": {"op": "concat", "position": "middle", "width": 6,
               "trunk": {"kind": "conv", "width": 5, "depth": 1, "kernel": 3}},
    "head": {"kind": "centre", "hidden": 5, "dropout": 0.1},
}


def _with_dropout(arch: dict, p: float) -> dict:
    out = json.loads(json.dumps(arch))
    for b in out["branches"].values():
        if b["kind"] != "off":
            b["dropout"] = p
    out["fusion"]["trunk"]["dropout"] = p
    return out


def test_old_arch_dicts_keep_their_dict_and_hash() -> None:
    arch = Arch.from_dict(OLD)
    assert arch.to_dict() == OLD  # no "dropout" key appears: the same JSON, the same hash
    explicit = _with_dropout(OLD, 0.0)
    assert Arch.from_dict(explicit) == arch and hash(Arch.from_dict(explicit)) == hash(arch)
    dropped = Arch.from_dict(_with_dropout(OLD, 0.2))
    assert dropped != arch and dropped.to_dict() == _with_dropout(OLD, 0.2)
    assert dropped.branches["a"].describe() == "conv(w4,d1,k3,p0.2)"


@pytest.mark.parametrize("value", [1.0, -0.1, "0.1", True])
def test_a_bad_rate_names_the_key(value: object) -> None:
    bad = _with_dropout(OLD, 0.1)
    bad["branches"]["b"]["dropout"] = value
    with pytest.raises(fusion.ArchError, match=r"branches\.b\.dropout"):
        Arch.from_dict(bad)


def _inputs(size: int = 9, batch: int = 4) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {s: torch.randn(batch, c, size, size, generator=gen) for s, c in IN.items()}


def test_dropout2d_sits_after_every_stage_and_keeps_the_weights() -> None:
    torch.manual_seed(0)
    plain = build_model(Arch.from_dict(OLD), IN, 3)
    model = build_model(Arch.from_dict(_with_dropout(OLD, 0.3)), IN, 3)
    # stages: a 1 + 1, b 1 + 2, trunk 1 + 1 -> one Dropout2d module per branch and trunk
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout2d)]
    assert len(drops) == 3 and all(m.p == 0.3 for m in drops)
    assert not any(isinstance(m, nn.Dropout2d) for m in plain.modules())
    assert plain.state_dict().keys() == model.state_dict().keys()  # no weights of its own
    model.load_state_dict(plain.state_dict())
    model.eval()
    plain.eval()
    x = _inputs()
    assert torch.equal(model(x), plain(x))  # eval: dropout is the identity
    calls = []
    hooks = [m.register_forward_hook(lambda *a: calls.append(1)) for m in drops]
    model(x)
    assert len(calls) == 2 + 3 + 2  # called on every stage: stem and each block
    for h in hooks:
        h.remove()
    for m in drops:
        m.train()
    a, b = model(x), model(x)
    assert not torch.equal(a, b)  # MC dropout samples differ
    # a channel mask per sample: a whole feature map of a sample is zeroed or kept (scaled)
    seen = {}
    model.branches[0].blocks[-1].register_forward_hook(lambda m, a, out: seen.update(pre=out))
    feats = model.branches[0](x["a"])  # [B, C, H, W]: the last block's output, dropped
    kept = torch.isclose(feats, seen["pre"] / 0.7, atol=1e-6).flatten(2).all(dim=2)  # [B, C]
    dropped = (feats == 0).flatten(2).all(dim=2) & (seen["pre"] != 0).flatten(2).any(dim=2)
    assert (kept | dropped).all() and dropped.any() and kept.any()


ARCHS = {
    "middle_trunk": (Arch.from_dict(OLD), ["fused", "trunk"], [6, 5], [1, 1]),
    "early": (Arch({"a": BranchSpec("conv"), "b": BranchSpec("conv")},
                   FusionSpec("sum", "early", 7, BranchSpec("off")), HeadSpec("patch", 4)),
              ["fused"], [7], [1]),
    "multi": (Arch({"a": BranchSpec("conv", 4, 2, 3), "b": BranchSpec("sar", 4, 1, 3)},
                   FusionSpec("gate", "multi", 6, BranchSpec("off")), HeadSpec("patch", 0)),
              ["fused"], [6], [1]),
    "multi_unet": (Arch({"a": BranchSpec("conv", 4, 2, 3, dropout=0.1),
                         "b": BranchSpec("sar", 4, 1, 3)},
                        FusionSpec("gate", "multi", 6, BranchSpec("conv", 5, 1, 3)),
                        HeadSpec("segmentation", 0, 0.1),
                        decoder=DecoderSpec(8, (0, 1), "bilinear", "none")),
                   ["fused", "trunk", "decoder"], [6, 5, 8], [4, 8, 1]),
    "middle_unet": (Arch({"a": BranchSpec("conv", 4, 2, 3), "b": BranchSpec("sar", 4, 1, 3)},
                         FusionSpec("concat", "middle", 6, BranchSpec("conv", 6, 1, 3)),
                         HeadSpec("segmentation", 0, 0.1),
                         decoder=DecoderSpec(8, (2,), "bilinear", "none")),
                    ["fused", "trunk", "decoder"], [6, 6, 8], [4, 8, 1]),
}


@pytest.mark.parametrize("case", list(ARCHS))
def test_feature_stages_are_the_maps_the_model_computes(case: str) -> None:
    arch, stages, channels, reductions = ARCHS[case]
    torch.manual_seed(0)
    model = build_model(arch, IN, 3).eval()
    assert model.feature_stages() == stages
    x = _inputs(size=16, batch=2)
    seen = {}
    if "decoder" in stages:  # the decoder's output is what the head reads
        model.head.register_forward_hook(lambda m, args, out: seen.update(head_in=args[0]))
    elif "trunk" in stages:
        model.trunk.register_forward_hook(lambda m, args, out: seen.update(trunk=out))
    with torch.no_grad():
        model(x)
        for stage, c, r in zip(stages, channels, reductions):
            y = model.forward_stage(x, stage)
            assert y.shape == (2, c, 16 // r, 16 // r), stage
            assert torch.equal(fusion.FeatureExtractor(model, stage)(x), y)
    if "head_in" in seen:
        assert torch.equal(model.forward_stage(x, "decoder"), seen["head_in"])
    if "trunk" in seen:
        assert torch.equal(model.forward_stage(x, "trunk"), seen["trunk"])


def test_late_fusion_and_unknown_stages_say_what_exists() -> None:
    late = build_model(Arch({"a": BranchSpec("conv", 4, 1, 3), "b": BranchSpec("sar", 4, 1, 3)},
                            FusionSpec("sum", "late"), HeadSpec("centre", 4)), IN, 3)
    assert late.feature_stages() == []
    with pytest.raises(ValueError, match="late fusion fuses the sensors' logits"):
        fusion.FeatureExtractor(late, "fused")
    model = build_model(Arch.from_dict(OLD), IN, 3)
    with pytest.raises(ValueError, match=r"unknown feature stage 'decoder': this model has "
                                         r"\['fused', 'trunk'\]"):
        model.forward_stage(_inputs(), "decoder")
