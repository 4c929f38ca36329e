"""User plugins: Python modules that register parts when imported (sensor branches, fusion
operators, heads and positions in fusion's registries, search spaces in `search_spaces.SPACES`,
strategies in `autors.search.catalog.STRATEGIES`), without editing autors.

Two sources, imported in this order:

- installed distributions that declare an entry point in the `autors.plugins` group, e.g. in
  their pyproject.toml (the value names a module; `module:function` also calls that function,
  once per process, after importing the module):

      [project.entry-points."autors.plugins"]
      lab_parts = "lab_package.autors_parts"

- the modules a task file lists by dotted name: `plugins: [lab_parts, lab.fusion_ops]`.

autors imports them wherever a part is looked up by name: on the search driver before the
space is built, in every Ray worker before a trial, in `autors train`, `autors export` and
`autors predict`. The model card lists them (`plugins`), so `autors predict` imports what the
model needs. With `--ship-code` the plugins' top-level packages (or single-file modules) travel
to the cluster's workers with autors (`shipped_modules`).
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING

from autors.errors import PluginError

if TYPE_CHECKING:
    from autors.config import TaskSpec

ENTRY_POINT_GROUP = "autors.plugins"
# Shipped with --ship-code anyway (autors.search.cluster.SHIPPED_PACKAGES).
OWN_PACKAGES = ("autors", "fusion", "search_spaces")

_FIX = ("install it, or put the folder that holds it on PYTHONPATH (on a cluster: on every "
        "node, or search with --ship-code)")


@dataclass(frozen=True)
class PluginInfo:
    """An imported plugin module, as the model card records it."""

    module: str  # dotted module name
    version: str | None  # its distribution's version, else the module's __version__
    file: str | None  # where it was imported from
    source: str  # "task" (a task file's `plugins`) or "entry point <name>"

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


# Plugins already imported in this process, by module name (entry points: by entry point), so
# that a registration function runs once and repeated calls are cheap.
_LOADED: dict[str, PluginInfo] = {}


def load_plugins(names: Iterable[str] = (), where: str = "plugins") -> list[PluginInfo]:
    """Import the `autors.plugins` entry points, then the modules `names`; what was imported.

    `where` names the field that lists `names` in error messages (e.g. "task.yaml: plugins",
    "model.json: plugins"). A module that cannot be imported, or fails while importing, is a
    PluginError naming `where`, the module and the fix.
    """
    infos = _load_entry_points()
    for name in names:
        if any(info.module == name for info in infos):
            continue  # an entry point's module, or a name listed twice
        if name not in _LOADED:
            _LOADED[name] = _info(_import(name, where), "task")
        infos.append(_LOADED[name])
    return infos


def task_plugins(task: TaskSpec) -> list[PluginInfo]:
    """`load_plugins` for a task's `plugins` field (errors name the task file)."""
    where = f"{task.source}: plugins" if task.source is not None else "task field 'plugins'"
    return load_plugins(task.plugins, where)


def shipped_modules(plugins: Sequence[PluginInfo]) -> list[ModuleType]:
    """The top-level packages (or single-file modules) holding `plugins`, except autors' own
    packages: what `--ship-code` sends to the workers besides autors."""
    out: list[ModuleType] = []
    for info in plugins:
        top = info.module.split(".")[0]
        module = sys.modules.get(top)
        if top not in OWN_PACKAGES and module is not None and module not in out:
            out.append(module)
    return out


def _load_entry_points() -> list[PluginInfo]:
    infos = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = f"entry point {ep.name}"
        if key not in _LOADED:
            dist = ep.dist.name if ep.dist is not None else "an unknown distribution"
            where = (f"entry point '{ep.name} = {ep.value}' (group {ENTRY_POINT_GROUP}, "
                     f"distribution {dist})")
            module = _import(ep.module, where)
            if ep.attr:
                try:
                    ep.load()()
                except Exception as err:  # noqa: BLE001 - reported with where it happened
                    raise PluginError(f"{where}: {ep.value}() failed: {_described(err)}; fix "
                                      "or uninstall that distribution") from None
            _LOADED[key] = _info(module, key)
        infos.append(_LOADED[key])
    return infos


def _import(name: str, where: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        # The module itself (or a package above it) is missing, not one of its imports.
        if err.name is not None and (name == err.name or name.startswith(f"{err.name}.")):
            raise PluginError(f"{where}: no plugin module named '{name}' can be imported: "
                              f"{_FIX}") from None
        raise PluginError(f"{where}: plugin module '{name}' failed to import: "
                          f"{_described(err)}") from None
    except Exception as err:  # noqa: BLE001 - any error in user code is reported, not raised
        raise PluginError(f"{where}: plugin module '{name}' failed to import: "
                          f"{_described(err)}") from None


def _described(err: BaseException) -> str:
    """`Type: message (at file:line)` of the innermost frame: where the plugin went wrong."""
    frames = traceback.extract_tb(err.__traceback__)
    at = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(err).__name__}: {err}{at}"


def _info(module: ModuleType, source: str) -> PluginInfo:
    return PluginInfo(module=module.__name__, version=_version(module),
                      file=getattr(module, "__file__", None), source=source)


def _version(module: ModuleType) -> str | None:
    top = module.__name__.split(".")[0]
    for dist in metadata.packages_distributions().get(top, []):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    version = getattr(module, "__version__", None)
    return str(version) if version is not None else None
