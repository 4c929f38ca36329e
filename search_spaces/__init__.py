"""Candidate fusion topologies: labelled NNI choices over the fusion Arch format.

Imports `nni.mutable` and fusion's registries only. `make_space(name, sensors, dense)` gives a
space adapted to a task's sensor mix; `SPACES` lists the registered spaces.
"""

from collections.abc import Mapping

from search_spaces import branch_fusion as _branch_fusion  # noqa: F401 - registers the spaces
from search_spaces.base import SPACES, Sample, SearchSpace
from search_spaces.branch_fusion import BranchFusionSpace, CompactSpace, FusionSpace


def make_space(name: str, sensors: Mapping[str, str], dense: bool) -> SearchSpace:
    """The registered space `name` for sensors `{name: kind}`; an unknown name raises
    `fusion.ArchError` listing the registered spaces."""
    return SPACES.get(name)(sensors, dense)


__all__ = [
    "SPACES",
    "BranchFusionSpace",
    "CompactSpace",
    "FusionSpace",
    "Sample",
    "SearchSpace",
    "make_space",
]
