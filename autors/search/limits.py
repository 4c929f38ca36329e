"""Per-trial memory limit inside a Ray worker (search.memory_per_trial_mb).

Ray reuses worker processes across trials, so the limit is the soft RLIMIT_DATA of the worker
set for the duration of one trial and restored afterwards (a soft limit may be raised again up
to the hard limit; the hard limit is never touched). RLIMIT_DATA counts private writable memory
(heap, anonymous mappings: numpy and torch CPU tensors), not code, shared memory (the object
store's zero-copy inputs) or address space merely reserved, so it measures what a trial
allocates. An allocation past the limit fails inside the trial (MemoryError, or torch's
"can't allocate memory"), which the pool records as a failed trial with the reason.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MIB = 2**20
_STATUS = Path("/proc/self/status")
# How an allocation refused by the limit shows up in a trial's error text.
_OOM_MARKERS = ("MemoryError", "can't allocate memory", "Cannot allocate memory",
                "std::bad_alloc", "out of memory")


def data_bytes() -> int:
    """Private writable memory of this process now (VmData), in bytes."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        pass
    raise OSError(
        "search.memory_per_trial_mb needs Linux (/proc/self/status with VmData) on every Ray "
        "node; remove it from the task file on other systems"
    )


@contextmanager
def memory_limit(extra_mb: int | None) -> Iterator[int | None]:
    """Let this process allocate at most `extra_mb` MiB more than it holds now, until exit.

    Yields the limit in bytes (None without a limit).
    """
    if extra_mb is None:
        yield None
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = data_bytes() + extra_mb * MIB
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def looks_out_of_memory(error_text: str) -> bool:
    """Whether a trial's error text is an allocation refused for lack of memory."""
    return any(marker in error_text for marker in _OOM_MARKERS)
