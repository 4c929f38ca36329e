"""What every benchmark report shares: machine, versions, the command line, tables, stats.

Imported by the scripts beside it (`python benchmarks/<name>.py` puts this folder on sys.path).
"""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import torch

PACKAGES = ("autors", "torch", "numpy", "rasterio", "nni", "ray")
# Captured when a script imports this module, i.e. before its own work loads the machine.
LOAD_AT_START = os.getloadavg()


def machine() -> str:
    """One line: host, architecture, CPU count and the load average when the run started."""
    load = ", ".join(f"{x:.2f}" for x in LOAD_AT_START)
    return (f"{platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, "
            f"load average (1/5/15 min) at start {load}")


def versions() -> str:
    """`name version` of the packages that shape the figures."""
    parts = [f"python {platform.python_version()}"]
    for name in PACKAGES:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(parts)


def command() -> str:
    """The command line that produced the report, relative to the repository root."""
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def one_thread() -> None:
    """One torch thread per process: figures comparable across runs, two processes per 2 cores."""
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    vals = list(values)
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def fmt_pm(values: Sequence[float], scale: float = 100.0, digits: int = 1) -> str:
    """'m ± s' of values times `scale` (percent points by default)."""
    m, s = mean_std(values)
    return f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str) -> str:
    """A markdown table; `align` has one character per column: l (left) or r (right)."""
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def header_block(title: str, script: str, wall_s: float) -> str:
    """The report's head: title, command, machine, versions, wall time."""
    return (f"# {title} ({script})\n\n"
            f"Command: `{command()}`  \n"
            f"Machine: {machine()}  \n"
            f"Versions: {versions()}  \n"
            f"Wall time: {wall_s / 60:.1f} min\n")


def write_report(out_dir: Path, name: str, text: str) -> Path:
    """Write `<out_dir>/<name>.md` and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.md"
    path.write_text(text)
    return path
