"""The cluster tests, run in a network namespace holding only loopback (see isolation.py).

Outside the namespace, conftest.py deselects the other tests of this folder and this one runs
them all in a child pytest inside the namespace; its output is shown when it fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import isolation
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.mark.timing  # trial timeouts, node-death latencies: first, on a quiet machine
def test_cluster_tests_pass_in_an_isolated_network_namespace() -> None:
    env = {**os.environ, isolation.NETNS_ENV: "1"}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE)]
    proc = subprocess.run(isolation.isolated_command(argv), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    tail = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, tail
    assert " passed" in proc.stdout and " failed" not in proc.stdout, tail
