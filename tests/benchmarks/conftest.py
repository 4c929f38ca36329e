"""The benchmark smoke runs: started in the background once the tests are collected
(tests/conftest.py): one at a time beside the other tests, two at a time once a smoke test
asks for its run (the smoke tests run last)."""

from __future__ import annotations

import pytest
from smoke import SMOKE_RUNS, SmokeRuns  # tests/benchmarks (tests/conftest.py)


@pytest.fixture(scope="session")
def smoke_runs(request: pytest.FixtureRequest) -> SmokeRuns:
    runs = request.config.stash.get(SMOKE_RUNS, None)
    assert runs is not None, "no smoke run was started for the collected tests"
    return runs
