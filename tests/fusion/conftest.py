"""Shared helpers for the fusion tests: random sensor inputs and tiny archs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from fusion import Arch, BranchSpec, FusionSpec, HeadSpec


def _make_inputs(in_channels: dict[str, int], size: int, batch: int = 2, seed: int = 0
                ) -> dict[str, torch.Tensor]:
    """{sensor: [batch, C, size, size]} standard-normal tensors."""
    gen = torch.Generator().manual_seed(seed)
    return {s: torch.randn(batch, c, size, size, generator=gen) for s, c in in_channels.items()}


def _tiny_arch(
    sensors: list[str],
    kinds: list[str],
    op: str = "concat",
    position: str = "middle",
    head: str = "patch",
    trunk: bool = True,
) -> Arch:
    """A cheap arch: sensor i gets branch kind kinds[i % len] with width 4 + i, depth i % 3."""
    branches = {
        s: BranchSpec(kinds[i % len(kinds)], width=4 + i, depth=i % 3, kernel=3 if i % 2 else 1)
        for i, s in enumerate(sensors)
    }
    trunk_spec = BranchSpec("conv", width=5, depth=1, kernel=3) if trunk else BranchSpec("off")
    return Arch(
        branches=branches,
        fusion=FusionSpec(op, position, width=6, trunk=trunk_spec),
        head=HeadSpec(head, hidden=5, dropout=0.1),
    )


@pytest.fixture
def make_inputs() -> Callable[..., dict[str, torch.Tensor]]:
    """`make_inputs(in_channels, size, batch=2, seed=0)`."""
    return _make_inputs


@pytest.fixture
def tiny_arch() -> Callable[..., Arch]:
    """`tiny_arch(sensors, kinds, op=, position=, head=, trunk=)`."""
    return _tiny_arch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The models here are tiny: a second intra-op thread only adds synchronisation, and on a
    shared 2-core CI runner a busy-waiting thread pool slows everything down."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
