"""Registries: a duplicate name raises, an unknown name lists the valid ones."""

from __future__ import annotations

import pytest
import torch

import fusion
from fusion import ArchError, Registry


def test_duplicate_name_raises() -> None:
    reg: Registry = Registry("widget")

    @reg.register("a")
    class A:
        pass

    with pytest.raises(ValueError, match=r"widget 'a' is already registered"):
        @reg.register("a")
        class B:
            pass

    assert reg.get("a") is A and list(reg) == ["a"]
    reg.unregister("a")  # a part registered for one test is removed again
    assert "a" not in reg and len(reg) == 0
    with pytest.raises(ArchError, match=r"unknown widget 'a': valid widget names are \[\]"):
        reg.unregister("a")


@pytest.mark.parametrize("registry", [fusion.BRANCHES, fusion.FUSION_OPS, fusion.HEADS,
                                      fusion.POSITIONS])
def test_builtin_names_cannot_be_taken_twice(registry: Registry) -> None:
    name = registry.names()[0]
    before = registry.get(name)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(name)(type("Impostor", (), {}))
    assert registry.get(name) is before


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ArchError, match=r"unknown fusion op 'mean': valid fusion op names are "
                                        r"\['concat', 'cross_attention', 'gate', 'se', 'sum'\]"):
        fusion.FUSION_OPS.get("mean")


def test_names_must_be_identifiers() -> None:
    with pytest.raises(ValueError, match="must be an identifier"):
        Registry("widget").register("two words")


def test_the_vocabulary_is_complete() -> None:
    assert fusion.BRANCHES.names() == ["complex_ampphase", "complex_crelu", "complex_features",
                                       "complex_modrelu", "conv", "residual", "sar",
                                       "separable", "spectral"] + [
        f"time_{op}{first}" for op in ("conv", "gru", "lstm", "ltae", "max", "mean")
        for first in ("", "_first")]
    assert fusion.FUSION_OPS.names() == ["concat", "cross_attention", "gate", "se", "sum"]
    assert fusion.POSITIONS.names() == ["early", "late", "middle", "multi"]
    assert fusion.HEADS.names() == ["centre", "patch", "segmentation"]


def test_parts_describe_what_fully_convolutional_prediction_needs() -> None:
    """Local operators, positions with one shared head, heads with a pixelwise form."""
    assert {n for n in fusion.FUSION_OPS if fusion.FUSION_OPS.get(n).local} == {
        "concat", "sum", "cross_attention"}
    assert fusion.FUSION_OPS.get("gate")([4], 4).local  # one sensor: the gate is always 1
    assert not fusion.FUSION_OPS.get("gate")([4, 4], 4).local
    assert {n for n in fusion.POSITIONS if not fusion.POSITIONS.get(n).shared_head} == {"late"}
    centre = fusion.HEADS.get("centre")(6, 3, 5, 0.0).eval()
    x = torch.randn(2, 6, 7, 7)
    pixelwise = centre.pixelwise()
    torch.testing.assert_close(pixelwise(x)[:, :, 3, 3], centre(x))
    assert pixelwise(x).shape == (2, 3, 7, 7)
    assert fusion.HEADS.get("patch")(6, 3, 5, 0.0).pixelwise() is None
    assert fusion.HEADS.get("segmentation")(6, 3, 5, 0.0).pixelwise() is None
