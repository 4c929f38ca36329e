"""A REAL multi-node Ray cluster on this machine: one `ray start` per node, each node on its own
loopback address (127.0.0.2 head, 127.0.0.3 worker, ...), token authentication on, a private
RAY_TMPDIR. Every wait is bounded in time.

Each node is started as its own session (`start_new_session`): every process of a node (raylet,
agents, log monitor, the Ray workers it forks, which put themselves in their own process group
but stay in the session) shares that session id. Killing a node SIGKILLs exactly that session,
as if the machine had died. `ray stop` is never used: it kills every Ray process of the machine
(every user's test session), whatever RAY_TMPDIR says.

Imported by name (tests/conftest.py puts the helper folders on sys.path).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import helpers  # tests/search/helpers.py (on sys.path via tests/conftest.py)
import ray

from autors.search.cluster import use_token_auth

SEARCH_TESTS = Path(__file__).resolve().parents[1] / "search"
HEAD_IP = "127.0.0.2"
WORKER_IP = "127.0.0.3"
RAY_START_TIMEOUT_S = 90.0  # one `ray start` (slow under load: it imports Ray, spawns daemons)
# GCS marks a node dead after `failure_threshold` failed health checks `period_ms` apart; Ray's
# defaults (3000 ms x 5) would make every node-death test wait ~15-20 s.
HEALTH_ENV = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


@dataclass
class Node:
    ip: str
    sid: int  # session id shared by every process of this node
    start_s: float  # how long its `ray start` took


def free_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]




class LoopbackCluster:
    """Start, inspect, kill and stop the nodes of one loopback cluster."""

    def __init__(self, tmpdir: Path) -> None:
        self.tmpdir = tmpdir
        self.port = free_port(HEAD_IP)
        self.nodes: dict[str, Node] = {}
        ray_bin = Path(sys.executable).with_name("ray")
        self._ray = str(ray_bin) if ray_bin.exists() else "ray"
        # Every process that joins or connects needs the token mode (the token is the user's
        # ~/.ray/auth_token); the private temp dir keeps other test sessions' Ray apart.
        self.env = {**os.environ, "RAY_TMPDIR": str(tmpdir), "RAY_AUTH_MODE": "token",
                    **HEALTH_ENV}
        self.env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # it forbids joining nodes
        self.env.pop("RAY_ADDRESS", None)

    @property
    def address(self) -> str:
        return f"{HEAD_IP}:{self.port}"

    # -- nodes ------------------------------------------------------------------------------
    def _ray_start(self, ip: str, args: list[str]) -> Node:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [self._ray, "start", f"--node-ip-address={ip}", "--disable-usage-stats", *args],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, text=True,
        )
        try:
            out, _ = proc.communicate(timeout=RAY_START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            helpers.kill_session(proc.pid)
            proc.kill()
            out, _ = proc.communicate()
            raise RuntimeError(f"`ray start` for {ip} took over {RAY_START_TIMEOUT_S} s:\n"
                               f"{out[-3000:]}") from None
        node = Node(ip=ip, sid=proc.pid, start_s=time.monotonic() - t0)
        if proc.returncode != 0:
            helpers.kill_session(node.sid)
            raise RuntimeError(f"`ray start` for {ip} failed ({proc.returncode}):\n{out[-3000:]}")
        self.nodes[ip] = node
        return node

    def start_head(self, cpus: int = 1) -> Node:
        return self._ray_start(HEAD_IP, [
            "--head", f"--port={self.port}", f"--num-cpus={cpus}", "--num-gpus=0",
            "--include-dashboard=false",
        ])

    def start_worker(self, ip: str = WORKER_IP, cpus: int = 1, gpus: int = 0,
                     wait: bool = True) -> Node:
        """Join a worker node. With `wait`, return once the GCS lists it alive (this process
        must not be connected to the cluster then)."""
        node = self._ray_start(ip, [f"--address={self.address}", f"--num-cpus={cpus}",
                                    f"--num-gpus={gpus}"])
        if wait:
            self.wait_alive({*self.alive(), ip})
        return node

    def kill_node(self, ip: str) -> float:
        """SIGKILL every process of node `ip` (its raylet, agents and workers); unix time."""
        node = self.nodes.pop(ip)
        when = time.time()
        helpers.kill_session(node.sid)
        return when

    def remove_worker(self, ip: str = WORKER_IP, timeout: float = 60.0) -> None:
        """Kill node `ip` and wait until the GCS has marked it dead."""
        if ip in self.nodes:
            self.kill_node(ip)
        self.wait_alive(self.alive() - {ip}, timeout)

    def pids(self) -> set[int]:
        """Every live process of the cluster: each node's session, and anything else whose
        command line names the private temp dir."""
        pids = set(helpers.processes_using(str(self.tmpdir)))
        for node in self.nodes.values():
            pids |= set(helpers.session_pids(node.sid))
        return pids

    # -- the GCS's view -----------------------------------------------------------------------
    def node_table(self) -> list[dict]:
        """ray.nodes() through a short connection of this process (must not be connected)."""
        assert not ray.is_initialized(), "connect to the cluster only through the search"
        use_token_auth()
        ray.init(address=self.address, _node_ip_address=HEAD_IP, log_to_driver=False,
                 logging_level="ERROR")
        try:
            return ray.nodes()
        finally:
            ray.shutdown()

    def alive(self) -> set[str]:
        return {n["NodeManagerAddress"] for n in self.node_table() if n["Alive"]}

    def wait_alive(self, ips: set[str], timeout: float = 60.0) -> float:
        """Wait until exactly `ips` are alive; seconds waited."""
        t0 = time.monotonic()
        while True:
            now = self.alive()
            if now == ips:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"alive nodes {sorted(now)} != {sorted(ips)} after {timeout} s")
            time.sleep(0.5)

    # -- teardown -----------------------------------------------------------------------------
    def stop(self, timeout: float = 20.0) -> list[int]:
        """Kill every node and every process left in the private temp dir; what survived."""
        for ip in list(self.nodes):
            self.kill_node(ip)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = helpers.processes_using(str(self.tmpdir))
            if not left:
                return []
            helpers.kill_pids(left)
            time.sleep(0.3)
        return helpers.processes_using(str(self.tmpdir))
