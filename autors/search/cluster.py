"""Connecting to Ray: a local instance on loopback, or an existing cluster (`--address`).

autors never starts a cluster manager: without an address it starts a private single-node
Ray instance for the duration of the search (registered as 127.0.0.1, so nothing listens on a
public interface), and with an address it joins the cluster someone started with `ray start`
(token authentication stays on). If Ray is already initialised in this process (tests,
notebooks) that connection is used and left open.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import ray

from autors.config import SearchSpec
from autors.errors import SearchError


@dataclass(frozen=True)
class ClusterInfo:
    mode: str  # "local", "address" or "existing"
    address: str
    nodes: int
    cpus: float
    gpus: float
    max_node_cpus: float
    max_node_gpus: float


def local_cpus(spec: SearchSpec) -> int:
    """CPUs given to a local instance: enough for `concurrency` trials of `cpus_per_trial`."""
    return max(1, math.ceil(spec.concurrency * spec.cpus_per_trial))


def _loopback_only() -> None:
    """Make this driver (and the local instance it starts) use 127.0.0.1.

    Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER once, when `ray` is imported, and otherwise
    registers even a local instance under the machine's network address. The variable is set
    for child processes and Ray's import-time constant is updated for this process.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    if hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
        ray_constants.ENABLE_RAY_CLUSTER = False


def _prepare_address(address: str) -> dict:
    """Environment and ray.init arguments for joining `address` (host:port)."""
    host = address.rsplit(":", 1)[0]
    # Clusters started with `ray start` require token auth from every connecting process.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    if host in ("127.0.0.1", "localhost"):
        # Otherwise Ray rewrites 127.0.0.1 to the machine's address and cannot connect.
        _loopback_only()
        return {}
    if host.startswith("127."):
        # A loopback multi-node cluster (127.0.0.2, ...): the driver must sit on that address.
        return {"_node_ip_address": host}
    return {}


@contextmanager
def ray_cluster(address: str | None, spec: SearchSpec) -> Iterator[ClusterInfo]:
    """Connect (or start a local instance), check the per-trial resources fit, disconnect."""
    started = False
    if ray.is_initialized():
        mode = "existing"
    elif address:
        mode = "address"
        extra = _prepare_address(address)
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, **extra)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise SearchError(
                f"--address {address}: cannot connect to the Ray cluster ({err}); check that "
                "`ray start --head` runs there, the port, and RAY_AUTH_MODE=token with the "
                "cluster's token"
            ) from None
        started = True
    else:
        mode = "local"
        _loopback_only()  # nothing listens on a public interface
        ray.init(
            num_cpus=local_cpus(spec),
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
        started = True
    try:
        info = _describe(mode)
        _check_fits(info, spec)
        yield info
    finally:
        if started:
            ray.shutdown()


def _describe(mode: str) -> ClusterInfo:
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    res = [n.get("Resources", {}) for n in nodes]
    return ClusterInfo(
        mode=mode,
        address=ray.get_runtime_context().gcs_address,
        nodes=len(nodes),
        cpus=sum(r.get("CPU", 0.0) for r in res),
        gpus=sum(r.get("GPU", 0.0) for r in res),
        max_node_cpus=max((r.get("CPU", 0.0) for r in res), default=0.0),
        max_node_gpus=max((r.get("GPU", 0.0) for r in res), default=0.0),
    )


def _check_fits(info: ClusterInfo, spec: SearchSpec) -> None:
    # A task asking for more than any node has would wait forever in Ray's queue.
    if spec.cpus_per_trial > info.max_node_cpus:
        raise SearchError(
            f"search.cpus_per_trial = {spec.cpus_per_trial:g} but the largest Ray node has "
            f"{info.max_node_cpus:g} CPUs: lower cpus_per_trial or add a bigger node"
        )
    if spec.gpus_per_trial > info.max_node_gpus:
        raise SearchError(
            f"search.gpus_per_trial = {spec.gpus_per_trial:g} but the largest Ray node has "
            f"{info.max_node_gpus:g} GPUs: set gpus_per_trial: 0 or connect to a GPU node"
        )
