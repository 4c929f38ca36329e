"""Shared by every test folder: the helper modules that several folders use import by name.

pytest runs in importlib mode (test folders are not packages and may repeat file names), so it
never adds test folders to sys.path; this is the one place that does, for the helper modules:
`make_fixtures` (tests/data), `helpers` (tests/search), `loopback` and `isolation`
(tests/cluster), `smoke` (tests/benchmarks).
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _folder in ("data", "search", "cluster", "benchmarks"):
    if str(_HERE / _folder) not in sys.path:
        sys.path.insert(0, str(_HERE / _folder))
