"""How autors writes what it keeps: whole files and folders replaced atomically, JSON lines
appended and fsynced, file hashes, and the versions record of a run or an export.

Every layer (training, search, export) writes through these, so a reader never sees half a
file and a crash never loses a line that was reported as written.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import autors

# Packages whose versions describe a result (the numbers change with any of them).
VERSIONED_PACKAGES = ("torch", "numpy", "rasterio", "nni", "ray")


def versions() -> dict[str, str]:
    """The version record: python, autors, and each of VERSIONED_PACKAGES ('not installed' when
    absent). Read from package metadata, so nothing is imported."""
    out = {"python": platform.python_version(), "autors": autors.__version__}
    for pkg in VERSIONED_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks (weights and ONNX files can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def json_default(obj: object) -> object:
    """`json.dumps(default=...)` for the non-JSON values records hold (paths)."""
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def write_atomic(path: str | Path, text: str) -> None:
    """Replace `path` with `text` so that readers see the old or the new file, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_fsynced(path: str | Path, record: dict[str, Any]) -> None:
    """Append `record` as one JSON line and fsync: once this returns, it survives a crash.

    The line is written in one call, so a crash can only cut the last line (readers repair
    that, see `autors.search.search_folder`)."""
    line = json.dumps(record, default=json_default, allow_nan=True) + "\n"
    with open(path, "a") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


@contextmanager
def atomic_folder(out: str | Path) -> Iterator[Path]:
    """Write a folder under a temporary sibling name (yielded) and rename it to `out` when the
    block succeeds; on any error the temporary folder is removed. `out` must be absent or an
    empty folder, so a folder with the final name is never half-written."""
    out = Path(out)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():  # left by a crashed earlier attempt of this pid
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if out.exists():
            out.rmdir()  # empty (the caller checked); the rename needs the name free
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
