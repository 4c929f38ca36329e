"""Fixtures of the data tests: GeoTIFFs generated into tmp_path by make_fixtures.py."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import make_fixtures  # tests/data (on sys.path via tests/conftest.py)
import pytest

HERE = Path(__file__).resolve().parent


def shared_data_dir() -> Path | None:
    """The real rasters: $AUTORS_DATA, else ../shared/data next to the repository."""
    env = os.environ.get("AUTORS_DATA")
    path = Path(env) if env else HERE.parents[2] / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def fx() -> ModuleType:
    return make_fixtures


@pytest.fixture
def scene_files(tmp_path: Path, fx: ModuleType) -> dict[str, Path]:
    """Paths of a freshly generated scene (labels, optical, sar, lidar)."""
    return fx.make_scene(tmp_path)


@pytest.fixture
def write_task(tmp_path: Path, fx: ModuleType, scene_files: dict[str, Path]) -> Callable[..., Path]:
    """write_task(edit=None, name='task.yaml'): the fixture task, changed in place by `edit`."""

    def write(edit: Callable[[dict], None] | None = None, name: str = "task.yaml") -> Path:
        data = fx.task_dict(scene_files)
        if edit is not None:
            edit(data)
        return fx.write_task(tmp_path, data, name)

    return write


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("real rasters not found: set AUTORS_DATA or put them in ../shared/data")
    return path
