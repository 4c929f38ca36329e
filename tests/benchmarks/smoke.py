"""What the benchmark smoke tests share: run a script in its `--smoke` mode, read a report's
markdown tables, tell a numeric cell.

The smoke runs are subprocesses pinned to one thread each (`OMP_NUM_THREADS=1`), and most of
the rest of the suite keeps one core busy, not two: `SmokeRuns` (made by tests/conftest.py once
the tests are collected; the session fixture `smoke_runs` of tests/benchmarks/conftest.py) runs
every smoke run the collected tests name (`uses(...)`) in the background, one at a time while the
other tests run, two at a time once the smoke tests (collected last) ask for their outputs; each
test then waits for its own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import helpers  # tests/search/helpers.py (on sys.path via tests/conftest.py)
import pytest

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
    # its own session: `stop_all` can end it with everything it started (Ray included)
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / script), "--smoke", "--out", str(out),
         "--workdir", str(tmp_path / "work"), *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    _LIVE.add(proc.pid)
    try:
        _, stderr = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            helpers.kill_session(proc.pid)
            proc.wait()
        _LIVE.discard(proc.pid)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, stderr[-3000:]
    return out


_LIVE: set[int] = set()  # session ids of the smoke runs under way


def stop_all() -> None:
    """SIGKILL every smoke run under way, with what it started (an interrupted session)."""
    for sid in list(_LIVE):
        helpers.kill_session(sid)


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
    """The smoke runs of the collected tests, run in the background from the end of collection.

    `lanes` runs at once: 0 while the tests marked `timing` run (first), 1 while the rest of
    the suite runs (it leaves a core idle most of the time), `PARALLEL` once a test asks for an
    output (the smoke tests run last).
    """

    def __init__(self, names: set[str], root: Path, lanes: int = 1) -> None:
        self.names = [n for n in RUNS if n in names]
        self.root = root
        self.futures: dict[str, Future] = {n: Future() for n in self.names}
        self._pending = list(self.names)
        self._running = 0
        self._lanes = lanes
        self._closed = False
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._lane, name=f"smoke-{i}", daemon=True)
                         for i in range(PARALLEL if self.names else 0)]
        for thread in self._threads:
            thread.start()

    def _run(self, name: str) -> Path:
        tmp = self.root / name
        tmp.mkdir(parents=True)
        out = tmp / "out"
        for script, *extra in RUNS[name]:
            run_smoke(script, tmp, *(e.format(out=out) for e in extra))
        return out

    def _may_start(self) -> bool:
        return self._closed or bool(self._pending and self._running < self._lanes)

    def _lane(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(self._may_start)
                if self._closed:
                    return
                name = self._pending.pop(0)
                self._running += 1
            future = self.futures[name]
            try:
                future.set_result(self._run(name))
            except BaseException as err:  # noqa: BLE001 - the test that reads it fails
                future.set_exception(err)
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()

    def start(self, lanes: int) -> None:
        """Run up to `lanes` at once from now (never fewer than before)."""
        with self._cond:
            self._lanes = max(self._lanes, lanes)
            self._cond.notify_all()

    def output(self, name: str) -> Path:
        """The `out` folder of run `name` once it has finished (its failure fails the test)."""
        assert name in self.futures, f"the test did not declare smoke run {name!r} (uses)"
        self.start(PARALLEL)
        return self.futures[name].result()

    def close(self) -> None:
        """Start nothing more and stop the runs under way (only an interrupted session, or
        one whose smoke tests were deselected or failed early, has any)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        stop_all()
        for name in self._pending:
            self.futures[name].cancel()
        for thread in self._threads:
            thread.join()


SMOKE_RUNS = pytest.StashKey[SmokeRuns]()  # the session's SmokeRuns (made by tests/conftest.py)
