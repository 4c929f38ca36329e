"""Small name -> class registries: the extension points of fusion.

    @BRANCHES.register("conv")
    class ConvBranch(Branch): ...

A duplicate name raises `ValueError` at import time (two parts cannot share a name); looking
up an unknown name raises `ArchError` listing the valid names (a user typo in an arch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from fusion.errors import ArchError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to classes of one kind of model part (`what` names the kind in messages)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator adding the class under `name`; a name already taken raises."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"{self.what} name must be an identifier, got {name!r}")

        def add(cls: T) -> T:
            if name in self._items:
                raise ValueError(
                    f"{self.what} '{name}' is already registered "
                    f"(by {self._items[name]!r}): choose another name"
                )
            self._items[name] = cls
            return cls

        return add

    def unregister(self, name: str) -> None:
        """Remove `name` (tests that register a part for their own duration); an unknown name
        raises `ArchError` listing the valid ones."""
        self.get(name)
        del self._items[name]

    def get(self, name: str) -> T:
        """The class registered as `name`; an unknown name raises `ArchError` listing valid ones."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise ArchError(
                f"unknown {self.what} {name!r}: valid {self.what} names are {self.names()}"
            ) from None

    __getitem__ = get

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {self.names()})"


# The registries are created here, before any part registers itself, so that `fusion.arch`
# can validate names without importing the modules that hold the torch parts.
BRANCHES: Registry = Registry("branch kind")
FUSION_OPS: Registry = Registry("fusion op")
HEADS: Registry = Registry("head kind")
POSITIONS: Registry = Registry("fusion position")
# Operators that collapse a time axis (`fusion.temporal`): inside a temporal branch, or after
# the fusion (`fusion.time`).
TIME_OPS: Registry = Registry("temporal operator")
