"""The benchmark smoke runs: started together (two at a time) for the tests collected."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from smoke import SmokeRuns  # tests/benchmarks (tests/conftest.py)


@pytest.fixture(scope="session")
def smoke_runs(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmokeRuns]:
    names = {n for item in request.session.items
             for n in getattr(getattr(item, "function", None), "smoke_runs", ())}
    runs = SmokeRuns(names, tmp_path_factory.mktemp("smoke"))
    yield runs
    runs.close()
