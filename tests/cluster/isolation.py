"""Run the cluster tests inside a network namespace of their own.

Ray 2.60 binds its gRPC servers to every interface when a node's address is not 127.0.0.1
(docs/cluster.md). In a fresh network namespace the only interface is loopback, so "every
interface" *is* loopback: nothing the tests start can be reached from outside, by
construction. `unshare -rn` (a user + network namespace, no root needed) makes one; where it
is unavailable the cluster tests run directly and the listener test reports the exposure.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess

NETNS_ENV = "AUTORS_TEST_NETNS"  # "1" inside the namespace made by the wrapper test


def inside_isolated_netns() -> bool:
    return os.environ.get(NETNS_ENV) == "1"


def only_loopback_interfaces() -> bool:
    return [name for _, name in socket.if_nameindex()] == ["lo"]


@functools.cache
def can_isolate() -> bool:
    """True when `unshare -rn` and `ip` work here (checked once, in a throwaway namespace)."""
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    probe = subprocess.run(["unshare", "-rn", "sh", "-c", "ip link set lo up"],
                           capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


def isolated_command(argv: list[str]) -> list[str]:
    """`argv` run in a new user + network namespace whose loopback interface is up."""
    return ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]
