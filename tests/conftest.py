"""Shared by every test folder: the helper modules that several folders use import by name.

pytest runs in importlib mode (test folders are not packages and may repeat file names), so it
never adds test folders to sys.path; this is the one place that does, for the helper modules:
`make_fixtures` (tests/data), `helpers` (tests/search), `loopback` and `isolation`
(tests/cluster), `smoke` (tests/benchmarks).

It also runs the benchmark smoke runs in the background (smoke.SmokeRuns), one at a time beside
the other tests, which mostly keep one of CI's two cores busy; the smoke tests themselves run
last. Tests marked `timing` (the cluster tests' wrapper: trial timeouts, node-death latencies)
run first, before any smoke run starts. (Not a test that uses the session's local Ray: started
first, it would stay connected while other folders' searches expect to start their own.)
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _folder in ("data", "search", "cluster", "benchmarks"):
    if str(_HERE / _folder) not in sys.path:
        sys.path.insert(0, str(_HERE / _folder))


# -- the benchmark smoke runs, in the background (tests/benchmarks/smoke.py) ------------------
import pytest  # after the sys.path set-up above: smoke is found through it
from smoke import SMOKE_RUNS, SmokeRuns  # tests/benchmarks


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "timing: asserts wall times or short timeouts: runs first, before the "
        "background smoke runs start")


def _smoke_names(item: pytest.Item) -> tuple[str, ...]:
    return getattr(getattr(item, "function", None), "smoke_runs", ())


def _timing(item: pytest.Item | None) -> bool:
    return item is not None and item.get_closest_marker("timing") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `timing` first (on a quiet machine), the benchmark smoke tests last (their
    runs go on in the background meanwhile), the others in between in their order."""
    first = [it for it in items if _timing(it)]
    last = [it for it in items if _smoke_names(it) and not _timing(it)]
    middle = [it for it in items if not _timing(it) and not _smoke_names(it)]
    items[:] = first + middle + last


def pytest_collection_finish(session: pytest.Session) -> None:
    """Prepare the smoke runs the collected tests name (smoke.SmokeRuns): one at a time from
    now, or from the end of the `timing` tests when there are any."""
    if session.config.option.collectonly:
        return
    names = {n for item in session.items for n in _smoke_names(item)}
    if names:
        # pytest's own temporary folder (pytest-current/smoke0 stays for a look after a run)
        root = session.config._tmp_path_factory.mktemp("smoke")
        lanes = 0 if any(_timing(it) for it in session.items) else 1
        session.config.stash[SMOKE_RUNS] = SmokeRuns(names, root, lanes=lanes)


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    runs = item.config.stash.get(SMOKE_RUNS, None)
    if runs is not None and _timing(item) and not _timing(nextitem):
        runs.start(lanes=1)  # the last timing test is done


def pytest_sessionfinish(session: pytest.Session) -> None:
    runs = session.config.stash.get(SMOKE_RUNS, None)
    if runs is not None:
        runs.close()
