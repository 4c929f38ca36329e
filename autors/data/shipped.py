"""Task files shipped inside the package (autors/tasks/*.yaml) for public datasets.

Their raster paths are relative to a *data root*, the folder that holds the dataset folders
(e.g. `sen1floods11_sample/`), because the package cannot know where a user keeps data.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from autors.config import TaskSpec, parse_task
from autors.errors import TaskFileError

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "tasks"
DATA_ROOT_ENV = "AUTORS_DATA"


def shipped_task_names() -> list[str]:
    """Names of the shipped task files (without .yaml)."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


def shipped_task(name: str, data_root: str | Path | None = None) -> TaskSpec:
    """Load shipped task `name`, resolving its raster paths against `data_root`
    (default: the AUTORS_DATA environment variable)."""
    path = SHIPPED_DIR / f"{name}.yaml"
    if not path.is_file():
        raise TaskFileError(
            f"no shipped task named '{name}'; shipped tasks: {shipped_task_names()}"
        )
    if data_root is None:
        data_root = os.environ.get(DATA_ROOT_ENV)
        if not data_root:
            raise TaskFileError(
                f"shipped task '{name}' needs a data root (the folder holding its dataset): "
                f"pass --data-root DIR or set {DATA_ROOT_ENV}=DIR"
            )
    root = Path(data_root).expanduser().resolve()
    if not root.is_dir():
        raise TaskFileError(f"data root {root} is not a folder (shipped task '{name}')")
    # parse_task resolves relative paths against the source's folder: here, the data root.
    task = parse_task(yaml.safe_load(path.read_text()), root / path.name)
    return task.model_copy(update={"source": path})
