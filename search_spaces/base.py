"""SearchSpace: labelled choices for one task's sensor mix, and the map sample <-> Arch.

A *sample* is a flat `{label: value}` dict with one value per labelled choice (the format NNI
strategies produce). Every valid sample maps to an `Arch` that `fusion.build_model` builds for
the task's sensors; `to_sample(arch)` maps an arch of the space back to a sample.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from nni.mutable import Categorical

from fusion import Arch, ArchError, Registry

Sample = dict[str, Any]


class SearchSpace(ABC):
    """Base class of registered spaces (`SPACES`); `name` equals the registered name."""

    name: ClassVar[str]
    description: ClassVar[str]

    def __init__(self, sensors: Mapping[str, str], dense: bool) -> None:
        """`sensors`: task sensor name -> kind (optical, sar, lidar, hyperspectral, other), in
        task order; `dense`: the task needs per-pixel maps (segmentation)."""
        if not sensors:
            raise ArchError("a search space needs at least one sensor")
        self.sensors: dict[str, str] = dict(sensors)
        self.dense = dense
        self.native_scales: dict[str, int] = {}
        self.targets: list[str] = []
        self.input_kinds: dict[str, str] = {}

    def set_native_scales(self, scales: Mapping[str, int]) -> None:
        """How much coarser each sensor's own pixels are than the grid (2^k; from the data,
        `autors.data.native.native_scales`): a space may let such a sensor enter an
        encoder-decoder at scale k. Call before sampling; unknown means 0 for every sensor."""
        self.native_scales = {s: int(scales.get(s, 0)) for s in self.sensors}

    def set_input_kinds(self, kinds: Mapping[str, str]) -> None:
        """What each sensor's input is: "real" (default) or "complex" (real/imaginary channel
        pairs, `sar_units: complex`). A space offers a branch kind only to sensors whose input
        kind is the branch's `input_kind`, or any real-input kind. Call before sampling."""
        self.input_kinds = {s: str(kinds.get(s, "real")) for s in self.sensors}

    def set_targets(self, names: list[str]) -> None:
        """A task with several targets (`targets:`): their names, in the model's output
        order; a space may then choose one head per target (`Arch.heads`). Call before
        sampling; none (default) means one head."""
        self.targets = list(names)

    @abstractmethod
    def options(self) -> dict[str, list[Any]]:
        """Every label with its candidate values (single-value labels are constants)."""

    @abstractmethod
    def to_arch(self, sample: Sample) -> Arch:
        """The architecture a (complete, valid) sample stands for; ArchError if invalid."""

    @abstractmethod
    def to_sample(self, arch: Arch) -> Sample:
        """A sample giving `arch` (fields the arch does not use take their first option);
        ArchError naming the field when the arch is outside this space."""

    @abstractmethod
    def size(self) -> int:
        """Number of distinct architectures in the space (samples that build the same network
        count once)."""

    # -- derived ------------------------------------------------------------------------------
    def choices(self) -> dict[str, Categorical]:
        """The labelled NNI choices a strategy samples (labels with two or more options)."""
        return {
            label: Categorical(values, weights=self.weights(label, values), label=label)
            for label, values in self.options().items()
            if len(values) > 1
        }

    def weights(self, label: str, values: list[Any]) -> list[float] | None:
        """The prior probability of each option of `label` (summing to 1) that a sampling
        strategy draws from (NNI's random and evolution strategies read it), or None for
        uniform. A space weights options that suit the task's inputs (see subclasses)."""
        return None

    def constants(self) -> Sample:
        """Labels with a single option and that option."""
        return {label: v[0] for label, v in self.options().items() if len(v) == 1}

    def num_samples(self) -> int:
        """Number of distinct samples (larger than `size()`: some fields are unused by some
        architectures)."""
        return math.prod(len(v) for v in self.options().values())

    def invalid_reason(self, sample: Sample) -> str | None:
        """Why a complete sample is not a valid architecture, or None when it is."""
        try:
            self.to_arch(sample)
        except ArchError as err:
            return str(err)
        return None

    def _value(self, sample: Sample, label: str) -> Any:
        options = self.options()[label]
        if len(options) == 1:
            return options[0]
        if label not in sample:
            raise ArchError(f"sample has no value for {label!r}")
        value = sample[label]
        if value not in options:
            raise ArchError(f"{label}: {value!r} is not one of {options}")
        return value

    def describe(self) -> str:
        return (
            f"{self.name}: {self.description} ({len(self.choices())} choices, "
            f"{self.size():,} architectures)"
        )


SPACES: Registry = Registry("search space")
