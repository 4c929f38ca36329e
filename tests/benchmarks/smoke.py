"""What the benchmark smoke tests share: run a script in its `--smoke` mode, read a report's
markdown tables, tell a numeric cell.

The smoke runs are subprocesses pinned to one thread each (`OMP_NUM_THREADS=1`), so one at a
time leaves a core idle: `SmokeRuns` (the session fixture `smoke_runs` of
tests/benchmarks/conftest.py) starts every run the collected tests name (`uses(...)`), two at a
time, as soon as the first of them is asked for; each test then waits for its own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?( ± \d+(\.\d+)?)?$")


def run_smoke(script: str, tmp_path: Path, *extra: str) -> Path:
    """Run `benchmarks/<script> --smoke` into `tmp_path / "out"` (returned); fails the test
    with the script's stderr when it fails."""
    out = tmp_path / "out"
    # Ray's socket paths must fit AF_UNIX's ~107 characters: pytest's tmp_path is too deep.
    ray_tmp = tempfile.mkdtemp(prefix="rb", dir="/tmp")
    env = dict(os.environ, OMP_NUM_THREADS="1", RAY_TMPDIR=ray_tmp)
    try:
        proc = subprocess.run(
            [sys.executable, str(BENCH / script), "--smoke", "--out", str(out),
             "--workdir", str(tmp_path / "work"), *extra],
            check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def table(text: str, header_start: str) -> list[list[str]]:
    """Data rows of the first markdown table whose header begins with `header_start`."""
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


# name -> the runs, in order, into one folder (a chain: each script reads what the one before
# wrote); each run is (script, extra arguments)
RUNS: dict[str, tuple[tuple[str, ...], ...]] = {
    "chain": (("baselines.py", "--repeat-check"), ("search_compare.py", "--repeat-check"),
              ("searched_vs_baselines.py", "--results", "{out}", "--repeat-check")),
    "dense": (("dense.py",),),
    "robustness": (("robustness.py", "--repeat-check"),),
    "data_scale": (("data_scale.py", "--repeat-check"),),
    "search_hypervolume": (("search_hypervolume.py",),),
    "engine_scaling": (("engine_scaling.py", "--repeat-check"),),
    "temporal": (("temporal.py",),),
    "synth_ablation": (("synth_ablation.py", "--repeat-check"),),
    "uncertainty": (("uncertainty.py",),),
    "calibration": (("calibration.py",),),
    "targets": (("targets.py",),),
    "complex_sar": (("complex_sar.py",),),
    "target_intervals": (("target_intervals.py",),),
    "rank_correlation": (("rank_correlation.py",),),
    "search_efficiency": (("search_efficiency.py",),),
}  # longest first, so the two lanes end together
PARALLEL = 2  # CI's cores


def uses(*names: str) -> Callable:
    """Mark a test as reading the smoke runs `names` (keys of RUNS)."""
    unknown = set(names) - set(RUNS)
    assert not unknown, f"unknown smoke runs {sorted(unknown)}"

    def mark(test: Callable) -> Callable:
        test.smoke_runs = names
        return test
    return mark


class SmokeRuns:
    """The smoke runs the session's tests use, run `PARALLEL` at a time from the first ask."""

    def __init__(self, names: set[str], root: Path) -> None:
        self.names = [n for n in RUNS if n in names]
        self.root = root
        self.futures: dict[str, Future] = {}
        self.pool: ThreadPoolExecutor | None = None

    def _run(self, name: str) -> Path:
        tmp = self.root / name
        tmp.mkdir(parents=True)
        out = tmp / "out"
        for script, *extra in RUNS[name]:
            run_smoke(script, tmp, *(e.format(out=out) for e in extra))
        return out

    def output(self, name: str) -> Path:
        """The `out` folder of run `name` once it has finished (its failure fails the test)."""
        if self.pool is None:
            self.pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="smoke")
            self.futures = {n: self.pool.submit(self._run, n) for n in self.names}
        assert name in self.futures, f"the test did not declare smoke run {name!r} (uses)"
        return self.futures[name].result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
