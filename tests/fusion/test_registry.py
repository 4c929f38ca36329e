"""Registries: a duplicate name raises, an unknown name lists the valid ones."""

from __future__ import annotations

import pytest

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
    assert fusion.BRANCHES.names() == ["conv", "residual", "sar", "separable", "spectral"]
    assert fusion.FUSION_OPS.names() == ["concat", "cross_attention", "gate", "se", "sum"]
    assert fusion.POSITIONS.names() == ["early", "late", "middle", "multi"]
    assert fusion.HEADS.names() == ["centre", "patch", "segmentation"]
