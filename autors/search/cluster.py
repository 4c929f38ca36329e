"""Connecting to Ray: a local instance on loopback, or an existing cluster (`--address`).

autors never starts a cluster manager: without an address it starts a private single-node
Ray instance for the duration of the search (registered as 127.0.0.1, so nothing listens on a
public interface), and with an address it joins the cluster someone started with `ray start`
(token authentication stays on). If Ray is already initialised in this process (tests,
notebooks) that connection is used and left open.

How the code reaches the cluster's workers (docs/cluster.md): by default every node imports the
autors installed there (it needs torch, nni and rasterio installed anyway); with `ship_code`
the driver's own copies of autors, fusion and search_spaces (and of the task's plugins, see
`autors.plugins`) are uploaded once per search as the job's runtime environment (`py_modules`)
and put first on the workers' import path.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import ray

import autors
import fusion
import search_spaces
from autors.config import SearchSpec
from autors.errors import SearchError
from autors.search.limits import MIB

# The packages a trial imports from this repository (the rest comes from the nodes' Python).
SHIPPED_PACKAGES = (autors, fusion, search_spaces)


@dataclass(frozen=True)
class ClusterInfo:
    mode: str  # "local", "address" or "existing"
    address: str
    nodes: int
    cpus: float
    gpus: float
    max_node_cpus: float
    max_node_gpus: float
    max_node_memory_mb: float  # Ray's schedulable 'memory' resource of the largest node
    shipped_code: bool  # the job's runtime environment carries autors (py_modules)


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


def use_token_auth() -> None:
    """Connect with Ray's token authentication unless RAY_AUTH_MODE says otherwise.

    Clusters started with `ray start` require the token from every process that connects (the
    user's ~/.ray/auth_token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH). Ray reads RAY_AUTH_MODE
    into its cached configuration when it is imported, and `ray.init(address=HOST:PORT)` does
    not turn token mode on by itself: the variable is set and the cache refreshed here.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    from ray._raylet import Config

    Config.initialize("")


def _prepare_address(address: str) -> str | None:
    """Set up the environment for joining `address` (host:port); the driver's node address
    when it must be given to ray.init (None: Ray finds it)."""
    host = address.rsplit(":", 1)[0]
    use_token_auth()
    if host in ("127.0.0.1", "localhost"):
        # Otherwise Ray rewrites 127.0.0.1 to the machine's address and cannot connect.
        _loopback_only()
        return None
    if host.startswith("127."):
        # A loopback multi-node cluster (127.0.0.2, ...): the driver must sit on that address.
        return host
    return None


def _connect_failure(err: BaseException) -> str:
    """Why ray.init could not connect, in one line (Ray wraps an authentication failure in a
    RuntimeError's text, inside a generic ConnectionError)."""
    chain = [err]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    text = " ".join(str(e) for e in chain)
    if "InvalidAuthToken" in text or "AuthenticationError" in text:
        return "the cluster refused this machine's authentication token"
    inner = chain[-1]
    return f"{type(inner).__name__}: {(str(inner).splitlines() or [''])[0][:200]}"


@contextmanager
def ray_cluster(
    address: str | None, spec: SearchSpec, ship_code: bool = False,
    plugin_modules: Sequence[ModuleType] = (),
) -> Iterator[ClusterInfo]:
    """Connect (or start a local instance), check the per-trial resources fit, disconnect.

    `ship_code` (only with `address`) sends this process's autors, fusion and search_spaces,
    and `plugin_modules` (`autors.plugins.shipped_modules`), to the workers instead of relying
    on the copies installed on the nodes.
    """
    if not ship_code:
        with _connect(address, spec, None) as info:
            yield info
        return
    if not address:
        raise SearchError("--ship-code sends the code to an existing cluster: give --address")
    with (
        tempfile.TemporaryDirectory(prefix="autors-job-") as empty,
        _connect(address, spec, _shipped_code_env(Path(empty), plugin_modules)) as info,
    ):
        yield info


def _shipped_code_env(empty_dir: Path, plugin_modules: Sequence[ModuleType] = ()) -> dict:
    """Runtime environment that ships this process's autors, fusion and search_spaces, and the
    packages (or single-file modules) of the task's plugins.

    Ray puts the driver's current directory first on the workers' import path unless the job
    has a working_dir: an empty one keeps a checkout there (or at the same path on a shared
    file system) from shadowing the shipped packages.
    """
    return {"py_modules": [*SHIPPED_PACKAGES, *plugin_modules], "working_dir": str(empty_dir)}


@contextmanager
def _connect(
    address: str | None, spec: SearchSpec, runtime_env: dict | None
) -> Iterator[ClusterInfo]:
    started = False
    if ray.is_initialized():
        if runtime_env is not None:
            raise SearchError("--ship-code needs a new connection, but Ray is already "
                              "initialised in this process")
        mode = "existing"
    elif address:
        mode = "address"
        node_ip = _prepare_address(address)
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING,
                     runtime_env=runtime_env, _node_ip_address=node_ip)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise SearchError(
                f"--address {address}: cannot connect to the Ray cluster ({_connect_failure(err)}); "
                "check that `ray start --head` runs there, the port, and that this machine has "
                "the cluster's token (~/.ray/auth_token or RAY_AUTH_TOKEN) with "
                "RAY_AUTH_MODE=token"
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
        info = _describe(mode, runtime_env is not None)
        _check_fits(info, spec)
        yield info
    finally:
        if started:
            ray.shutdown()


def _describe(mode: str, shipped_code: bool) -> ClusterInfo:
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
        max_node_memory_mb=max((r.get("memory", 0.0) for r in res), default=0.0) / MIB,
        shipped_code=shipped_code,
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
    if spec.memory_per_trial_mb is not None and spec.memory_per_trial_mb > info.max_node_memory_mb:
        raise SearchError(
            f"search.memory_per_trial_mb = {spec.memory_per_trial_mb} but the largest Ray node "
            f"offers {info.max_node_memory_mb:.0f} MiB of 'memory' to tasks: lower "
            "memory_per_trial_mb or add a node with more memory"
        )
